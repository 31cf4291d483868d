"""TLS over an asyncio transport with `ssl.SSLObject`, supporting half-close.

asyncio's and uvloop's SSL transports close both directions when the peer sends
close_notify and cannot send one while still reading, so an opaque TCP stream proxied
over mTLS could not pass a half-close through. `TlsLayer` is the protocol of the raw TCP
transport and the transport of the application protocol above it:

- handshake: `do_handshake` on memory BIOs, with a timeout counted from the accept (bytes
  do not extend it); on success the server side
  asks `on_handshake(layer)` for the application protocol (None rejects the
  connection), the client side resolves `layer.handshake` (a future).
- reading: ciphertext goes into the incoming BIO, plaintext records come out to the
  application protocol; `pause_reading` pauses the raw transport.
- half-close: `write_eof` sends close_notify (OpenSSL's SSL_shutdown closes only the
  write direction) and keeps reading; the peer's close_notify (or a bare TCP FIN) calls
  the app's `eof_received`, and returning True keeps the write direction open.
- write flow control is the raw transport's (its pause/resume_writing pass through).
- memory: a server-side connection builds its `SSLObject` only when the first
  bytes arrive. OpenSSL's state and buffers are about 40 KB a connection, so an idle
  connection that never speaks costs this object and its timer alone (about 1 KB).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

_READ = 17408  # one TLS record (16 KiB) and change: no large allocation per read

OnHandshake = Callable[["TlsLayer"], asyncio.BaseProtocol | None]


class TlsLayer(asyncio.Protocol, asyncio.Transport):
    _sslobj: ssl.SSLObject  # from the first byte on (server side); at connect (client)

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        app_protocol: asyncio.BaseProtocol | None = None,
        on_handshake: OnHandshake | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        handshake_timeout: float = 10.0,
        on_closed: Callable[[asyncio.BaseTransport], None] | None = None,
    ) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._context = context
        self._server_side = server_side
        self._server_hostname = server_hostname
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._started = False  # the SSLObject is built (`_start_tls`)
        self._app: Any = app_protocol
        self._on_handshake = on_handshake
        self._on_failure = on_failure
        self._timeout = handshake_timeout
        self._on_closed = on_closed  # called with the raw transport when it is lost
        self._timer: asyncio.TimerHandle | None = None
        self._raw: Any = None
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self._established = False
        self._closed = False
        self._eof_in = False
        self._eof_out = False
        self._read_paused = False
        self.sni: str | None = None
        # loop time from the TCP connection to the end of the handshake (traces: an
        # attempt on a new connection shows it; telemetry/attempts.py)
        self.handshake_seconds = 0.0

    @property
    def raw_transport(self) -> asyncio.BaseTransport | None:
        """The TCP transport underneath (None before `connection_made`)."""
        return self._raw  # type: ignore[no-any-return]

    def _start_tls(self) -> None:
        self._started = True
        self._sslobj = self._context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=self._server_side,
            server_hostname=self._server_hostname,
        )

    # -- raw side (Protocol) ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport
        self._timer = self._loop.call_later(self._timeout, self._handshake_timeout)
        self.handshake_seconds = self._loop.time()  # the start, until established
        if not self._server_side:  # the client speaks first: its ClientHello now
            self._start_tls()
            self._do_handshake()

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._start_tls()
        self._incoming.write(data)
        if self._established:
            self._read_app()
        elif not self._closed:
            self._do_handshake()

    def eof_received(self) -> bool | None:
        if not self._established:
            self._fail(ConnectionResetError("connection closed during the TLS handshake"))
            return None
        self._incoming.write_eof()
        self._read_app()
        return True  # _read_app delivers the EOF in order and closes when the app wants

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._on_closed is not None:
            self._on_closed(self._raw)
        if self._timer is not None:
            self._timer.cancel()
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection lost"))
            self.handshake.exception()  # mark retrieved
        if self._established and self._app is not None:
            self._established = False
            self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None and self._established:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None and self._established:
            self._app.resume_writing()

    # -- handshake -----------------------------------------------------------------
    def _handshake_timeout(self) -> None:
        self._fail(TimeoutError("TLS handshake timed out"))

    def _fail(self, exc: BaseException) -> None:
        if self._on_failure is not None and not self._closed:
            self._on_failure(exc)
        if not self.handshake.done():
            self.handshake.set_exception(exc)
            self.handshake.exception()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._raw is not None:
            self._raw.abort()

    def _do_handshake(self) -> None:
        sslobj = self._sslobj
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError, ValueError) as exc:
            self._flush()  # the alert
            self._fail(exc)
            return
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sni = getattr(sslobj, "gossamer_sni", None)
        self.handshake_seconds = self._loop.time() - self.handshake_seconds
        self._established = True
        if self._on_handshake is not None:
            self._app = self._on_handshake(self)
            if self._app is None:
                self._established = False
                self._closed = True
                self._raw.close()
                return
        if not self.handshake.done():
            self.handshake.set_result(None)
        if self._app is not None:
            self._app.connection_made(self)
        if self._incoming.pending and not self._read_paused:
            self._read_app()

    # -- reading -------------------------------------------------------------------
    def _read_app(self) -> None:
        sslobj = self._sslobj
        incoming = self._incoming
        while self._established and not self._read_paused:
            if not incoming.pending and not sslobj.pending() and not incoming.eof:
                break
            try:
                chunk = sslobj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            except ssl.SSLError:
                self._raw.abort()
                return
            if not chunk:
                if not self._eof_in:
                    self._flush()
                    if not self._app_eof():
                        self.close()
                return
            self._app.data_received(chunk)
        if self._outgoing.pending:
            self._flush()

    def _app_eof(self) -> bool:
        if self._eof_in:
            return True
        self._eof_in = True
        keep_open = bool(self._app.eof_received())
        if self._eof_out:
            self._raw.close()
            return False
        return keep_open

    def _flush(self) -> None:
        if self._outgoing.pending and self._raw is not None and not self._raw.is_closing():
            self._raw.write(self._outgoing.read())

    # -- app side (Transport) ------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._established or self._eof_out:
            return
        if data:
            self._sslobj.write(data)
            self._raw.write(self._outgoing.read())

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Send close_notify; keep reading until the peer closes its side."""
        if self._eof_out or not self._established:
            return
        self._eof_out = True
        try:
            self._sslobj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()
        if self._eof_in:
            self._raw.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._established and not self._eof_out:
            self._eof_out = True
            try:
                self._sslobj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._closed = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._closed or self._raw is None or bool(self._raw.is_closing())

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._raw.resume_reading()
            if self._incoming.pending or (self._started and self._sslobj.pending()):
                self._loop.call_soon(self._read_app)

    def is_reading(self) -> bool:
        return not self._read_paused

    def get_write_buffer_size(self) -> int:
        return int(self._raw.get_write_buffer_size()) if self._raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._sslobj if self._started else default
        if name == "peercert":
            return self._sslobj.getpeercert() if self._established else default
        if name == "sni":
            return self.sni
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)
