"""A ketama-like consistent-hash ring (pure).

Each host owns `points_per_weight x weight` points derived only from its own address
and port (64-bit slices of BLAKE2b digests), so adding or removing a host moves only
the keys that land on its points; every other key keeps its host. Keys hash with the
same function, so every sidecar maps a key to the same host.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterator, Sequence

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
