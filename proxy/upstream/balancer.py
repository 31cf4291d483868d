"""Load-balancer choice: which endpoint of a cluster gets the next request.

Pure logic, no I/O: randomness (`random.Random`) and the clock are injected so the
choices are reproducible and property-tested.

Theory of operation:
- `Host` is the mutable per-endpoint state the data path keeps (in-flight requests, an
  RTT estimate); it survives configuration updates for the same address and port.
- Locality: a balancer is built over the healthy hosts of the local zone while there are
  any; when the zone has none, over every healthy host (fail-over). With no healthy
  host at all, `choose` returns None (the caller answers 503 no-healthy-upstream).
  Health changes arrive with new endpoint sets, which rebuild the balancer.
- Policies: weighted round robin (earliest-deadline-first, as Envoy, with a random start
  so sidecars do not move in lock-step), weighted random, least-request with the power
  of two choices, peak-EWMA (P2C on RTT x (in-flight + 1), as Finagle/linkerd) and a
  ketama-like ring hash (points per host depend only on that host, so removing a host
  moves only its keys).
- `avoid`: retries ask for a host other than those already tried, when one exists.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterator, Sequence
from itertools import accumulate

from gossamer.proxy.config import Endpoint, Health, LbPolicy

Clock = Callable[[], float]


class Host:
    """Runtime state of one endpoint (shared by successive balancers)."""

    __slots__ = (
        "active",
        "ejected_until",
        "ejections",
        "endpoint",
        "errors_5xx",
        "failures",
        "hc_failed",
        "hc_streak",
        "rtt",
        "rtt_stamp",
        "sr_ok",
        "sr_total",
        "total",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.active = 0  # requests in flight
        self.total = 0  # requests sent
        self.rtt = -1.0  # peak-EWMA estimate in seconds; < 0: not measured yet
        self.rtt_stamp = 0.0
        # outlier detection (proxy/upstream/outlier.py)
        self.failures = 0  # consecutive gateway failures
        self.errors_5xx = 0  # consecutive 5xx (and local failures)
        self.ejections = 0  # the ejection-time multiplier
        self.ejected_until = 0.0
        self.sr_total = 0  # outcomes this interval (success rate)
        self.sr_ok = 0
        # active health checking (proxy/upstream/health_check.py)
        self.hc_failed = False
        self.hc_streak = 0  # checks in a row contradicting the current state

    @property
    def weight(self) -> int:
        return self.endpoint.weight

    def __repr__(self) -> str:
        ep = self.endpoint
        return f"Host({ep.address}:{ep.port} zone={ep.zone!r} w={ep.weight} active={self.active})"


def eligible_hosts(
    hosts: Sequence[Host], local_zone: str, panic_threshold: float = 0.0
) -> list[Host]:
    """The healthy hosts of the first priority (EDS locality priority, 0 first) that has
    any; among those, the local zone's if there are any.

    The control plane gives the sidecar's own zone priority 0, so a zone whose endpoints
    are all unhealthy fails over to the next priority; with every priority 0 (a static
    configuration) the local zone is preferred the same way.

    Panic (Envoy's `healthy_panic_threshold`, in percent; 0: never): when fewer than
    that share of the hosts is healthy, every host but the draining ones is eligible,
    since a small healthy minority would be overwhelmed by all the traffic."""
    healthy = [h for h in hosts if h.endpoint.health is Health.HEALTHY]
    if panic_threshold and hosts and len(healthy) * 100 < panic_threshold * len(hosts):
        return [h for h in hosts if h.endpoint.health is not Health.DRAINING]
    if healthy:
        first = min(h.endpoint.priority for h in healthy)
        healthy = [h for h in healthy if h.endpoint.priority == first]
    if local_zone:
        local = [h for h in healthy if h.endpoint.zone == local_zone]
        if local:
            return local
    return healthy


class Balancer(ABC):
    """Chooses among a fixed set of eligible hosts."""

    policy: LbPolicy

    def __init__(self, hosts: Sequence[Host], rng: random.Random, clock: Clock) -> None:
        self.hosts = list(hosts)
        self.rng = rng
        self.clock = clock

    @abstractmethod
    def _pick(self, key: bytes | None) -> Host: ...

    def choose(self, key: bytes | None = None, avoid: Collection[Host] = ()) -> Host | None:
        """The host for the next request, preferring hosts not in `avoid`."""
        hosts = self.hosts
        if not hosts:
            return None
        host = self._pick(key)
        if avoid and host in avoid and any(h not in avoid for h in hosts):
            host = self._pick_avoiding(key, avoid)
        return host

    def _pick_avoiding(self, key: bytes | None, avoid: Collection[Host]) -> Host:
        for _ in range(2 * len(self.hosts)):
            host = self._pick(key)
            if host not in avoid:
                return host
        return self.rng.choice([h for h in self.hosts if h not in avoid])


class RoundRobin(Balancer):
    """Weighted round robin by earliest deadline first; plain cycling for equal weights."""

    policy = LbPolicy.ROUND_ROBIN

    def __init__(self, hosts: Sequence[Host], rng: random.Random, clock: Clock) -> None:
        super().__init__(hosts, rng, clock)
        n = len(self.hosts)
        self._equal = len({h.weight for h in self.hosts}) <= 1
        self._next = rng.randrange(n) if n else 0
        self._heap: list[tuple[float, int]] = [(1.0 / h.weight, i) for i, h in enumerate(hosts)]
        heapq.heapify(self._heap)
        if not self._equal and n:
            for _ in range(rng.randrange(sum(h.weight for h in self.hosts))):
                self._pick(None)

    def _pick(self, key: bytes | None) -> Host:
        if self._equal:
            i = self._next
            self._next = (i + 1) % len(self.hosts)
            return self.hosts[i]
        deadline, i = self._heap[0]
        host = self.hosts[i]
        heapq.heapreplace(self._heap, (deadline + 1.0 / host.weight, i))
        return host


class WeightedRandom(Balancer):
    """Each host with probability weight / total weight."""

    policy = LbPolicy.RANDOM

    def __init__(self, hosts: Sequence[Host], rng: random.Random, clock: Clock) -> None:
        super().__init__(hosts, rng, clock)
        self._cumulative = list(accumulate(h.weight for h in self.hosts))
        self._equal = len({h.weight for h in self.hosts}) <= 1

    def _random_host(self) -> Host:
        if self._equal:
            return self.hosts[int(self.rng.random() * len(self.hosts))]
        r = self.rng.random() * self._cumulative[-1]
        return self.hosts[bisect_right(self._cumulative, r)]

    def _pick(self, key: bytes | None) -> Host:
        return self._random_host()


class _PowerOfTwo(WeightedRandom):
    """Draw two distinct hosts (weighted), keep the cheaper one."""

    def _two(self) -> tuple[Host, Host]:
        a = self._random_host()
        if len(self.hosts) == 1:
            return a, a
        for _ in range(8):
            b = self._random_host()
            if b is not a:
                return a, b
        others = [h for h in self.hosts if h is not a]
        return a, others[int(self.rng.random() * len(others))]

    @abstractmethod
    def cost(self, host: Host, now: float) -> float: ...

    def _pick(self, key: bytes | None) -> Host:
        a, b = self._two()
        if a is b:
            return a
        now = self.clock()
        return b if self.cost(b, now) < self.cost(a, now) else a


class LeastRequest(_PowerOfTwo):
    """Power of two choices on in-flight requests per unit of weight."""

    policy = LbPolicy.LEAST_REQUEST

    def cost(self, host: Host, now: float) -> float:
        return host.active / host.weight


class PeakEwma(_PowerOfTwo):
    """Power of two choices on RTT estimate x (in-flight + 1) / weight.

    The estimate jumps up to any slower observation (peak) and decays towards faster
    ones with time constant `tau`; an unused host's estimate decays towards zero so it
    is tried again. Unmeasured hosts cost `default_rtt`.
    """

    policy = LbPolicy.EWMA

    def __init__(
        self,
        hosts: Sequence[Host],
        rng: random.Random,
        clock: Clock,
        *,
        tau: float = 10.0,
        default_rtt: float = 0.03,
    ) -> None:
        super().__init__(hosts, rng, clock)
        self.tau = tau
        self.default_rtt = default_rtt

    def cost(self, host: Host, now: float) -> float:
        if host.rtt < 0:
            estimate = self.default_rtt
        else:
            estimate = host.rtt * math.exp(-max(now - host.rtt_stamp, 0.0) / self.tau)
        return estimate * (host.active + 1) / host.weight


def observe_rtt(host: Host, rtt: float, now: float, tau: float = 10.0) -> None:
    """Fold one response time into the host's peak-EWMA estimate."""
    if host.rtt < 0 or rtt > host.rtt:
        host.rtt = rtt
    else:
        decay = math.exp(-max(now - host.rtt_stamp, 0.0) / tau)
        host.rtt = host.rtt * decay + rtt * (1.0 - decay)
    host.rtt_stamp = now


# -- the consistent-hash ring --------------------------------------------------
# A ketama-like consistent-hash ring (pure).
#
# Each host owns `points_per_weight x weight` points derived only from its own address
# and port (64-bit slices of BLAKE2b digests), so adding or removing a host moves only
# the keys that land on its points; every other key keeps its host. Keys hash with the
# same function, so every sidecar maps a key to the same host.

POINTS_PER_WEIGHT = 64
_SLICES = 8  # 64-bit points per 64-byte digest


def hash64(data: bytes) -> int:
    """A stable 64-bit hash (the same in every process, unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def host_points(address: str, port: int, weight: int) -> list[int]:
    """The ring points of one host: a function of the host alone."""
    count = POINTS_PER_WEIGHT * min(max(weight, 1), 128)
    points: list[int] = []
    for block in range((count + _SLICES - 1) // _SLICES):
        digest = hashlib.blake2b(f"{address}:{port}-{block}".encode(), digest_size=64).digest()
        for j in range(_SLICES):
            points.append(int.from_bytes(digest[8 * j : 8 * j + 8], "big"))
    return points[:count]


class Ring:
    """Points on a 64-bit circle; a key belongs to the first point at or after its hash."""

    __slots__ = ("_owners", "_points", "size")

    def __init__(self, hosts: Sequence[tuple[tuple[str, int], int]]) -> None:
        pairs: list[tuple[int, int]] = []
        for index, ((address, port), weight) in enumerate(hosts):
            pairs.extend((p, index) for p in host_points(address, port, weight))
        # ties (astronomically rare) are broken by host key so the ring is deterministic
        keys = [h[0] for h in hosts]
        pairs.sort(key=lambda pi: (pi[0], keys[pi[1]]))
        self._points = [p for p, _ in pairs]
        self._owners = [i for _, i in pairs]
        self.size = len(hosts)

    def lookup(self, key: bytes) -> int:
        """Index (into the hosts given) of the host owning `key`."""
        i = bisect_left(self._points, hash64(key))
        return self._owners[i if i < len(self._owners) else 0]

    def walk(self, key: bytes) -> Iterator[int]:
        """Distinct host indices in ring order starting at `key`'s owner."""
        n = len(self._points)
        if not n:
            return
        start = bisect_left(self._points, hash64(key))
        seen: set[int] = set()
        for k in range(n):
            owner = self._owners[(start + k) % n]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == self.size:
                    return


class RingHash(Balancer):
    """Consistent hashing of a request key (a header); random without a key."""

    policy = LbPolicy.RING_HASH

    def __init__(self, hosts: Sequence[Host], rng: random.Random, clock: Clock) -> None:
        super().__init__(hosts, rng, clock)
        self.ring = Ring([(h.endpoint.key, h.weight) for h in self.hosts])

    def _pick(self, key: bytes | None) -> Host:
        if key is None:
            return self.hosts[int(self.rng.random() * len(self.hosts))]
        return self.hosts[self.ring.lookup(key)]

    def _pick_avoiding(self, key: bytes | None, avoid: Collection[Host]) -> Host:
        if key is None:
            return super()._pick_avoiding(key, avoid)
        for index in self.ring.walk(key):
            if self.hosts[index] not in avoid:
                return self.hosts[index]
        return super()._pick_avoiding(None, avoid)


_POLICIES: dict[LbPolicy, type[Balancer]] = {
    LbPolicy.ROUND_ROBIN: RoundRobin,
    LbPolicy.RANDOM: WeightedRandom,
    LbPolicy.LEAST_REQUEST: LeastRequest,
    LbPolicy.EWMA: PeakEwma,
    LbPolicy.RING_HASH: RingHash,
}


def make_balancer(
    policy: LbPolicy,
    hosts: Sequence[Host],
    *,
    local_zone: str = "",
    rng: random.Random,
    clock: Clock,
    panic_threshold: float = 0.0,
) -> Balancer:
    """A balancer of `policy` over the eligible hosts (locality, health, panic applied)."""
    return _POLICIES[policy](eligible_hosts(hosts, local_zone, panic_threshold), rng, clock)


__all__ = [
    "Balancer",
    "Host",
    "LeastRequest",
    "PeakEwma",
    "Ring",
    "RingHash",
    "RoundRobin",
    "WeightedRandom",
    "eligible_hosts",
    "hash64",
    "host_points",
    "make_balancer",
    "observe_rtt",
]
