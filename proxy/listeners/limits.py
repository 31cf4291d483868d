"""How many connections each of the sidecar's listeners holds, and what happens over it.

- inbound (15006, peers over mTLS): every new connection is *unproven* until its TLS
  handshake completes; at the cap a newcomer displaces the oldest unproven one, so
  connections that never finish a handshake (from anyone, with no certificate) cannot
  keep a real peer out. When every connection is proven, the newcomer is closed.
- outbound (15001, the local app): at the cap a newcomer is closed at once (the app's
  own connections are never displaced).
- admin (15000, probes: short requests) and metrics (15090, scrapes): at the cap a
  newcomer displaces the oldest connection of that listener (`--max-admin-connections`
  caps each of the two).

Each overflow counts in `gossamer_downstream_connections_overflow_total{listener}`, and
a warning is logged at most every 10 s per listener. The mechanism is
`gossamer.fdlimits.ConnectionLimit`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gossamer.contract import limits as defaults
from gossamer.fdlimits import ConnectionLimit
from gossamer.logs import event
from gossamer.proxy.telemetry.metrics import SidecarMetrics

log = logging.getLogger("gossamer.proxy.limits")

DEFAULT_MAX_INBOUND = defaults.MAX_INBOUND_CONNECTIONS
DEFAULT_MAX_OUTBOUND = defaults.MAX_OUTBOUND_CONNECTIONS
DEFAULT_MAX_ADMIN = defaults.MAX_ADMIN_CONNECTIONS
DEFAULT_HANDSHAKE_TIMEOUT = defaults.HANDSHAKE_TIMEOUT


@dataclass(frozen=True)
class ListenerLimits:
    """Connection caps per listener (0: no cap) and the inbound TLS handshake timeout."""

    inbound: int = DEFAULT_MAX_INBOUND
    outbound: int = DEFAULT_MAX_OUTBOUND
    admin: int = DEFAULT_MAX_ADMIN
    metrics: int = DEFAULT_MAX_ADMIN
    # seconds from accept to a finished handshake, whatever the peer sends meanwhile
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def limit(self, listener: str, metrics: SidecarMetrics) -> ConnectionLimit:
        """The `ConnectionLimit` of `listener` ("inbound", "outbound", "admin", "metrics")."""
        cap: int = getattr(self, listener)

        def overflow() -> None:
            metrics.connection_overflow(listener)

        def report(count: int) -> None:
            event(log, logging.WARNING, "connection limit reached; connections closed",
                  listener=listener, limit=cap, closed=count)  # fmt: skip

        return ConnectionLimit(
            cap, evict_new=listener != "outbound", on_overflow=overflow, on_report=report
        )
