"""Stand-ins for the sidecar's surroundings that the protocol targets share."""

from __future__ import annotations

from gossamer.proxy.transport.http1.conns import ConnectionTracker, Tracked


class QuietTracker(ConnectionTracker):
    """A connection tracker without its sweep task: header and idle deadlines are timers,
    not what the protocol targets fuzz."""

    def add(self, conn: Tracked) -> None:
        self.live.add(conn)
        self.opened_total += 1
