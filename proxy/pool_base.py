"""What the HTTP/1.1 and the HTTP/2 endpoint pools share: opening one upstream
connection within a request's deadline, and counting it.

`PoolBase._connect_new(conn, deadline)` runs the pool's connector with the time left
before `deadline` (a loop time), counts the attempt (`connects_total`) and the
connection while it lives (`open`: the owner's `lost` takes it back off), and on
failure detaches the protocol from the pool (its late `connection_lost` must not count
it twice). A connect failure that ends after the deadline is reported as the timeout it
is (`UpstreamTimeout`), not as a refused connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from gossamer.errors import UpstreamConnectError, UpstreamTimeout


class PooledConnection(Protocol):
    """What a pool needs of its connections (`Http1Client`, `H2Client`)."""

    loop: asyncio.AbstractEventLoop
    _owner: Any  # the pool, told when the connection is lost


C = TypeVar("C", bound=PooledConnection)


class PoolBase(Generic[C]):
    __slots__ = ("_connect", "connects_total", "open")

    def __init__(self, connect: Callable[[C, float], Awaitable[Any]]) -> None:
        self._connect = connect  # (protocol, seconds allowed) -> transport
        self.open = 0  # connections alive
        self.connects_total = 0

    async def _connect_new(self, conn: C, deadline: float) -> None:
        """Connect `conn` before `deadline`; raises UpstreamConnectError, or
        UpstreamTimeout when the deadline passes first."""
        self.connects_total += 1
        self.open += 1
        try:
            left = deadline - conn.loop.time()
            if left <= 0:
                raise UpstreamTimeout("no time left to connect")
            await self._connect(conn, left)
        except BaseException as exc:
            self.open -= 1
            conn._owner = None
            if isinstance(exc, UpstreamConnectError) and conn.loop.time() >= deadline:
                raise UpstreamTimeout(
                    f"the request's timeout passed while connecting ({exc})"
                ) from None
            raise
