"""The node gateway's ClientHello reader: bytes -> `HelloAssembler.feed`, in pieces.

Input: one control byte (the size of the pieces the rest is fed in, 1-256; 0: all at
once), then the bytes a peer sends. Allowed: a `ClientHello` (whose `size` is within
the bytes given and whose server name, if any, is lowercase printable ASCII), None (an
incomplete hello) or `HelloError` with a known reason. Fed in pieces, the outcome must
be the one of all the bytes at once (the assembler is incremental: proxy/gateway/
client_hello.py); nothing else may be raised.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fuzz.harness import FuzzBug, Reader
from gossamer.proxy.gateway.client_hello import (
    ClientHello,
    HelloAssembler,
    HelloError,
    parse_client_hello,
)

REASONS = {"not_tls", "malformed", "too_large"}
MAX_SIZE = 4096  # small, so that the size limit is reached too


def _outcome(feed: Callable[[], ClientHello | None]) -> ClientHello | str | None:
    try:
        return feed()
    except HelloError as exc:
        if exc.reason not in REASONS:
            raise FuzzBug(f"unknown reason {exc.reason!r}") from exc
        return exc.reason
    except Exception as exc:
        raise FuzzBug(f"{type(exc).__name__}: {exc}") from exc


def _pieces(data: bytes, size: int) -> ClientHello | str | None:
    assembler = HelloAssembler(MAX_SIZE)
    found: ClientHello | str | None = None
    for start in range(0, len(data), size):
        found = _outcome(partial(assembler.feed, data[start : start + size]))
        if found is not None:
            return found
    return found


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    size = reader.byte()
    rest = reader.rest()
    whole = _outcome(partial(parse_client_hello, rest, MAX_SIZE))
    if isinstance(whole, ClientHello):
        if not 0 < whole.size <= len(rest):
            raise FuzzBug(f"hello size {whole.size} of {len(rest)} bytes")
        name = whole.server_name
        if name is not None and (name != name.lower() or not name.isascii() or not name):
            raise FuzzBug(f"server name {name!r}")
    if size and rest:
        cut = _pieces(rest, size)
        if cut != whole:
            raise FuzzBug(f"in pieces of {size}: {cut!r}, at once: {whole!r}")
