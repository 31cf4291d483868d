"""Which control-plane replica a sidecar talks to: the address list, failover, fail-back.

    addresses = parse_addresses("a:15012,b:15012", "--control")   # in preference order
    replicas = ReplicaSet(expand(addresses), rng=rng, clock=time.monotonic)
    replicas.current                        # the index in use (0: this node's replica)
    replicas.failed(i)                      # the replica at i failed: move to the next
    replicas.succeeded(i)                   # a call on it worked: a new round begins
    replicas.probe_due()                    # time to see whether the preferred one is back

Theory of operation (docs/architecture.md, "Identity"; issue 18, item 3):

- `--control` (and `--bootstrap`) take one `HOST:PORT`, a comma-separated list of them,
  or a name that resolves to several addresses. The order is the preference: the first
  is this node's replica. A name that resolves to one address (or one of each family,
  as `localhost`) stays a name (the channel resolves it again at each connection, as
  with a single address before); one that resolves to several addresses of a family
  becomes one target per address, in the resolver's order, resolved once at start.
- Failover: a failure that says the replica is gone (connect refused or timed out, TLS
  failure, connection lost, stream reset or ended by the server, UNAVAILABLE or
  DEADLINE_EXCEEDED: `fails_over`) moves the sidecar to the next replica at once. A
  failure reported for a replica that is no longer current is ignored, so the ADS and
  registration streams that break together move it once, not twice. Callers retry at
  once while the round has untried replicas (`fresh`), and back off (their jittered
  exponential delay) only after every replica failed in a row.
- Fail-back: while not on the preferred replica, it is probed every `probe_interval`
  seconds (jittered by +-20%, so a fleet does not probe in step); when the probe's
  connection works the sidecar moves back (`moved_to(0)`).
- Every move is logged by the caller and counted here (`moves`), which the sidecar
  exports as `gossamer_control_plane_moves_total`.

Pure: no I/O except `expand` (the resolver); the clock and randomness are injected.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gossamer.errors import UsageError

Address = tuple[str, int]

DEFAULT_PROBE_INTERVAL = 30.0
PROBE_JITTER = 0.2

# gRPC status names that say "this replica is unreachable or gone" (grpc_h2.Status)
FAILOVER_STATUSES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"})


def fails_over(status_name: str) -> bool:
    """Whether a call that ended with this gRPC status should move to another replica
    (PERMISSION_DENIED, INVALID_ARGUMENT... would be answered the same by every one)."""
    return status_name in FAILOVER_STATUSES


def parse_hostport(text: str, flag: str, *, listed: bool = True) -> Address:
    """`HOST:PORT` (IPv6 in brackets) -> (host, port); a UsageError names the flag (and,
    for a flag that takes a list, `listed`, says so)."""
    host, sep, port = text.strip().rpartition(":")
    bad_host = not host or "," in host
    if not sep or bad_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        if not listed:
            raise UsageError(f"{flag} {text!r}: expected HOST:PORT")
        raise UsageError(
            f"{flag} {text!r}: expected HOST:PORT or a comma-separated list of them",
            hint=f"e.g. {flag} control-a:15012,control-b:15012",
        )
    return host.strip("[]"), int(port)


def parse_addresses(text: str, flag: str) -> tuple[Address, ...]:
    """A comma-separated list of `HOST:PORT`, in preference order, without repeats."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise UsageError(f"{flag} is empty: expected HOST:PORT[,HOST:PORT...]")
    out: list[Address] = []
    for part in parts:
        address = parse_hostport(part, flag)
        if address not in out:
            out.append(address)
    return tuple(out)


def bootstrap_addresses(control: Sequence[Address], port: int) -> tuple[Address, ...]:
    """The default `--bootstrap`: each control host with the bootstrap port."""
    out: list[Address] = []
    for host, _ in control:
        if (host, port) not in out:
            out.append((host, port))
    return tuple(out)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP), in the resolver's order; [] if none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    out: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


def expand(
    addresses: Sequence[Address], resolve: Resolver = system_resolver
) -> tuple[Address, ...]:
    """Targets to connect to: a name resolving to several addresses becomes one per
    address; IPs, names resolving to one address and unresolvable names stay as given."""
    out: list[Address] = []
    for host, port in addresses:
        found = [] if _is_ip(host) else resolve(host, port)
        v4 = [a for a in found if ":" not in a]
        several = len(v4) > 1 or len(found) - len(v4) > 1  # not localhost's 127.0.0.1 + ::1
        targets = [(a, port) for a in found] if several else [(host, port)]
        out.extend(t for t in targets if t not in out)
    return tuple(out)


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class ReplicaSet:
    """The replicas in preference order and the one in use (see the module docstring)."""

    addresses: tuple[Address, ...]
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    rng: random.Random | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("at least one control-plane address is needed")
        self.current = 0
        self.moves = 0
        self._failed_in_row = 0  # replicas that failed since the last success
        self._rng = self.rng or random.Random()
        self._next_probe = self.clock() + self._probe_delay()

    @property
    def several(self) -> bool:
        return len(self.addresses) > 1

    @property
    def address(self) -> Address:
        return self.addresses[self.current]

    @property
    def preferred(self) -> bool:
        return self.current == 0

    @property
    def fresh(self) -> bool:
        """The current replica has not failed in this round: try it without back-off."""
        return self.several and self._failed_in_row < len(self.addresses)

    def failed(self, index: int) -> bool:
        """The replica at `index` failed; returns True when that moved the sidecar
        (False: a stale report about a replica already left, or a single replica)."""
        if index != self.current:
            return False
        self._failed_in_row += 1
        if not self.several:
            return False
        self._move((self.current + 1) % len(self.addresses))
        return True

    def succeeded(self, index: int) -> None:
        """A call on the replica at `index` worked: the next failure starts a new round."""
        if index == self.current:
            self._failed_in_row = 0

    def round_done(self) -> bool:
        """Every replica failed in a row (the caller backs off)."""
        return self._failed_in_row >= len(self.addresses)

    def probe_due(self) -> bool:
        """Time to probe the preferred replica (only while on another one)."""
        return not self.preferred and self.clock() >= self._next_probe

    def probe_wait(self) -> float:
        """Seconds until the next probe is due (from now)."""
        return max(0.0, self._next_probe - self.clock())

    def probed(self, *, answered: bool) -> bool:
        """The preferred replica was probed; True when the sidecar moves back to it."""
        self._next_probe = self.clock() + self._probe_delay()
        if not answered or self.preferred:
            return False
        self._move(0)
        self._failed_in_row = 0
        return True

    def _move(self, index: int) -> None:
        if index != self.current:
            self.current = index
            self.moves += 1
        self._next_probe = self.clock() + self._probe_delay()

    def _probe_delay(self) -> float:
        spread = self.probe_interval * PROBE_JITTER
        return max(0.05, self.probe_interval + self._rng.uniform(-spread, spread))
