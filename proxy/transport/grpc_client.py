"""A small gRPC client over HTTP/2 (h2, sans-IO) for the sidecar's calls to the control
plane: unary Certify, and the bidirectional ADS and registration streams.

Why not grpcio here: memory. The sidecar must stay under 60 MB RSS; importing grpcio and
opening one channel costs about 13 MB (its C core, mostly), which this client replaces
with h2 (under 1 MB, already a dependency). The control plane stays on grpcio, and the
e2e tests run this client against it.

Theory of operation (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
- One TLS connection (ALPN h2) per `Channel`, opened on first use; each call is an
  HTTP/2 stream: POST `/<service>/<method>`, `content-type: application/grpc`,
  `te: trailers`, optional `grpc-timeout`. Messages are length-prefixed (1 byte
  compression flag, 4 bytes big-endian length); compression is never asked for.
- The call ends with trailers carrying `grpc-status` (and `grpc-message`), or with
  trailers only; a stream reset or a lost connection is UNAVAILABLE (CANCELLED when we
  cancelled it).
- Flow control: received data is acknowledged as soon as it is buffered (messages are
  small and consumed at once); sends wait for window when the peer's is exhausted.
- GOAWAY: the connection ends (h2 processes no frame after it), its calls fail with
  UNAVAILABLE, and the next call opens a new connection.
- Keepalive: a PING every `keepalive` seconds; no answer within `keepalive_timeout`
  closes the connection, so a vanished control plane fails the streams instead of
  leaving them hanging. (The control plane tolerates pings every 10 s or slower.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import h2.exceptions

from gossamer.proxy.transport.grpc_h2 import GrpcError, H2Connection, Status, Stream

__all__ = ["Channel", "GrpcError", "Status", "Stream"]


class Channel:
    """A connection to one gRPC server; reconnects lazily after a failure. `context`
    None: plaintext HTTP/2 with prior knowledge (a local trace collector)."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str,
        *,
        connect_timeout: float = 5.0,
        keepalive: float = 30.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.context = context
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self._conn: H2Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def _connection(self) -> H2Connection:
        conn = self._conn
        if conn is not None and not conn.closed.done() and not conn.going_away:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.closed.done() and not conn.going_away:
                return conn
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    tls = self.context is not None
                    _, conn = await loop.create_connection(
                        lambda: H2Connection(self.server_hostname, b"https" if tls else b"http"),
                        self.host,
                        self.port,
                        ssl=self.context,
                        server_hostname=self.server_hostname if tls else None,
                    )
            except TimeoutError:
                raise GrpcError(Status.UNAVAILABLE, f"{self.target}: connect timed out") from None
            except ssl.SSLError as exc:
                raise GrpcError(
                    Status.UNAVAILABLE, f"{self.target}: TLS: {exc.reason or exc}"
                ) from None
            except OSError as exc:
                raise GrpcError(
                    Status.UNAVAILABLE, f"{self.target}: {exc.strerror or exc}"
                ) from None
            self._conn = conn
            if self.keepalive and (self._keepalive_task is None or self._keepalive_task.done()):
                self._keepalive_task = loop.create_task(self._keep_alive())
            return conn

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            conn = self._conn
            if conn is None or conn.closed.done():
                continue
            if not await conn.ping(self.keepalive_timeout):
                conn._close(GrpcError(Status.UNAVAILABLE, "no answer to keepalive ping"))

    async def ping(self, timeout: float) -> bool:
        """Connect if needed and send an HTTP/2 PING: True when the server answers."""
        conn = await self._connection()
        return await conn.ping(timeout)

    async def stream(self, path: str, *, timeout: float | None = None) -> Stream:
        """Open a call (streaming either way); messages are serialised protobufs."""
        conn = await self._connection()
        return conn.open(path, timeout)

    async def unary(self, path: str, request: bytes, *, timeout: float = 10.0) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                stream = await self.stream(path, timeout=timeout)
                try:
                    await stream.send(request, end=True)
                    reply = await stream.recv()
                    if reply is None:
                        raise GrpcError(Status.INTERNAL, "no response message")
                    while await stream.recv() is not None:
                        pass  # the trailers (status)
                    return reply
                finally:
                    stream.cancel()
        except TimeoutError:
            raise GrpcError(Status.DEADLINE_EXCEEDED, f"no answer within {timeout:g}s") from None

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                conn.h2.close_connection()
                conn.flush()
            conn._close(GrpcError(Status.CANCELLED, "channel closed"))

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
