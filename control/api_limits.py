"""Bounds on the operator API's connections, so it can never starve xDS of file descriptors.

The API (aiohttp, `control.api_listen`) shares its process with the xDS, bootstrap and
renewal ports. A client that opens connections and never finishes a request would
otherwise hold a file descriptor each, until the process has none left for sidecars.

- Connection cap: `ApiLimits.connection_cap(nofile)` = the smaller of `max_connections`
  and RLIMIT_NOFILE minus `fd_reserve` (the descriptors kept for xDS streams, the CA,
  the store and logs); when the limit is so low that this leaves little, the API still
  gets an eighth of it. At the cap, a new connection displaces the oldest one that has
  not yet sent a complete request head (`gossamer.fdlimits.ConnectionLimit`), or is
  closed when there is none.
- Header timeout: a request head must be complete `header_timeout` seconds after its
  first byte (for a new connection: after the accept), else the connection is closed.
- Idle timeout: aiohttp's keep-alive timeout, `idle_timeout` after the last response.
- Body timeout: `body_timeout_middleware` reads a request's body (at most aiohttp's
  `client_max_size`, 1 MiB, else 413) within `body_timeout` seconds before any handler
  runs, else 408 and the connection closes.

`GuardedRequestHandler` is aiohttp's request handler with the header deadline; it reads
two of aiohttp's private attributes (`_messages`, `_current_request`), which
tests/unit/control/test_api_limits.py checks against the pinned aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gossamer.contract import limits as defaults
from gossamer.fdlimits import ConnectionLimit
from gossamer.logs import event

log = logging.getLogger("gossamer.control.operator_api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIN_SHARE = 8  # with a low RLIMIT_NOFILE the API gets at least 1/8 of it


@dataclass(frozen=True)
class ApiLimits:
    """The operator API's connection cap and timeouts (`gossamer control` flags)."""

    max_connections: int = defaults.API_MAX_CONNECTIONS
    fd_reserve: int = defaults.API_FD_RESERVE
    header_timeout: float = defaults.API_HEADER_TIMEOUT
    idle_timeout: float = defaults.API_IDLE_TIMEOUT
    body_timeout: float = defaults.API_BODY_TIMEOUT

    def connection_cap(self, nofile: int) -> int:
        """How many connections the API may hold with `nofile` file descriptors."""
        return max(1, min(self.max_connections, max(nofile - self.fd_reserve, nofile // MIN_SHARE)))

    def connection_limit(self, nofile: int) -> ConnectionLimit:
        cap = self.connection_cap(nofile)

        def report(count: int) -> None:
            event(log, logging.WARNING, "operator API connection limit reached; "
                  "connections closed", limit=cap, closed=count)  # fmt: skip

        return ConnectionLimit(cap, evict_new=True, on_report=report)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's handler, closing a connection whose request head is late, and marking
    the connection proven (not to be displaced) once a complete head has arrived."""

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        connection_limit: ConnectionLimit,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._limit = connection_limit
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # the first head is due `header_timeout` after the accept

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._current_request is None and not self._messages:
            self._arm()  # the first byte of a new request head
        super().data_received(data)
        if self._messages and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
            self._limit.proven(self.transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.transport is not None:
            self._limit.closed(self.transport)
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self._loop.call_later(self._header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        self.force_close()


def handler_factory(
    server: web.Server, limits: ApiLimits, connection_limit: ConnectionLimit
) -> Callable[[], asyncio.BaseProtocol]:
    """The API listener's protocol factory: guarded handlers behind the connection cap."""
    loop = asyncio.get_running_loop()

    def make() -> asyncio.BaseProtocol:
        return GuardedRequestHandler(
            server,
            loop=loop,
            access_log=None,
            keepalive_timeout=limits.idle_timeout,
            lingering_time=0,  # bodies are read by the middleware; a 408's rest is not
            header_timeout=limits.header_timeout,
            connection_limit=connection_limit,
        )

    return connection_limit.wrap(make)


def body_timeout_middleware(timeout: float) -> Any:
    """An aiohttp middleware: a request's body must arrive within `timeout` seconds,
    before any handler runs (else 408, and the connection closes); handlers then read
    it from memory. Its size is bounded by the application's `client_max_size`."""

    @web.middleware
    async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()  # kept by the request for the handler
            except TimeoutError:
                exc = web.HTTPRequestTimeout(
                    text=f"the request body did not arrive within {timeout:g} s"
                )
                exc.force_close()
                raise exc from None
        return await handler(request)

    return read_body
