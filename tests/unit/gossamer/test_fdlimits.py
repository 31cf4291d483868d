"""gossamer.fdlimits: the connection cap's accounting and eviction, with fake transports."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable

from gossamer.control.api_limits import ApiLimits
from gossamer.fdlimits import ConnectionLimit, raise_nofile_limit


class FakeTransport:
    def __init__(self) -> None:
        self.closing = False
        self.protocol: asyncio.BaseProtocol | None = None

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


class Inner(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


def accept(factory: Callable[[], asyncio.BaseProtocol]) -> FakeTransport:
    transport = FakeTransport()
    factory().connection_made(transport)  # type: ignore[arg-type]
    return transport


def test_over_the_cap_newcomers_are_closed_and_counted() -> None:
    overflows: list[int] = []
    reports: list[int] = []
    limit = ConnectionLimit(
        2, on_overflow=lambda: overflows.append(1), on_report=reports.append, recount_interval=0
    )
    factory = limit.wrap(Inner)
    a, b = accept(factory), accept(factory)
    assert isinstance(a.protocol, Inner) and not a.closing
    c = accept(factory)
    assert c.closing and len(overflows) == 1 and reports == [1]
    b.closing = True  # a slot frees: the recount sees it
    d = accept(factory)
    assert not d.closing and isinstance(d.protocol, Inner)


def test_a_newcomer_displaces_the_oldest_unproven_connection() -> None:
    limit = ConnectionLimit(2, evict_new=True, recount_interval=3600)
    factory = limit.wrap(Inner)
    first, second = accept(factory), accept(factory)
    limit.proven(second)
    third = accept(factory)
    assert first.closing and not second.closing and not third.closing
    limit.proven(third)
    assert accept(factory).closing  # everyone proven: the newcomer is refused
    limit.closed(second)  # exact release, no recount needed
    assert not accept(factory).closing


def test_no_cap_is_the_factory_itself() -> None:
    assert ConnectionLimit(0).wrap(Inner) is Inner


def test_api_cap_keeps_the_reserve() -> None:
    limits = ApiLimits(max_connections=256, fd_reserve=512)
    assert limits.connection_cap(1_048_576) == 256
    assert limits.connection_cap(700) == 188
    assert limits.connection_cap(256) == 32  # low limit: an eighth


def test_raise_nofile_limit_reaches_the_hard_limit() -> None:
    soft, hard = raise_nofile_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    assert hard == resource.RLIM_INFINITY or soft == hard
