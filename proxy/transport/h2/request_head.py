"""Checking an HTTP/2 request's header block before it becomes a request line
(RFC 9113 section 8.3).

The pseudo-header fields end up in an HTTP/1.1 request line and `Host` towards the app,
so a malformed one must never pass: `check_request_head` returns why a header block is
malformed (None when it is not). The server answers a malformed request with a stream
error, RST_STREAM PROTOCOL_ERROR (RFC 9113 section 8.1.1; what nghttp2 does). The `h2`
package already refuses some of these forms itself (duplicated, unknown or misplaced
pseudo-headers, connection-specific fields, a missing `:scheme`, CR/LF/NUL anywhere):
those close the whole connection with GOAWAY PROTOCOL_ERROR before the stream reaches
the server; they are checked here too, so the guarantee does not rest on h2 alone.

- `:method` is a token (RFC 9110 section 5.6.2); CONNECT is refused (not supported).
- `:scheme` is a URI scheme (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
- `:path` is present and non-empty: origin-form (starts with "/"), or "*" for OPTIONS
  only; no space, control character, DEL, byte over 0x7f (llhttp refuses those in a
  request line too) or "#" (no fragments).
- `:authority`, when present, is host[:port] characters only: no userinfo ("@"), no
  "/", "?", "#", space or control character; likewise a `Host` used in its place.
- each pseudo-header at most once, only those four, all before the regular fields;
  no connection-specific field (Connection, Keep-Alive, Proxy-Connection,
  Transfer-Encoding, Upgrade), and TE only as "trailers".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*")
PATH = re.compile(rb"/[\x21\x22\x24-\x7e]*")  # visible ASCII but "#"
AUTHORITY = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]+")
PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def check_request_head(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why this request header block is malformed, or None when it is well-formed."""
    seen: dict[bytes, bytes] = {}
    host = None
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name!r} after a regular field"
            if name not in PSEUDO:
                return f"unknown pseudo-header {name!r}"
            if name in seen:
                return f"duplicated pseudo-header {name!r}"
            seen[name] = value
            continue
        regular = True
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r}"
        if name == b"te" and value != b"trailers":
            return "te other than trailers"
        if name == b"host":
            host = value
    return check_pseudo(
        seen.get(b":method"),
        seen.get(b":scheme"),
        seen.get(b":path"),
        seen.get(b":authority"),
        host,
    )


def check_pseudo(
    method: bytes | None,
    scheme: bytes | None,
    path: bytes | None,
    authority: bytes | None,
    host: bytes | None = None,
) -> str | None:
    """The checks of the pseudo-header values (and of a `Host` used as the authority)."""
    if method is None or not TOKEN.fullmatch(method):
        return "missing or malformed :method"
    if method == b"CONNECT":
        return "CONNECT is not supported over HTTP/2"
    if scheme is None or not SCHEME.fullmatch(scheme):
        return "missing or malformed :scheme"
    if not path:
        return "missing or empty :path"
    if path == b"*":
        if method != b"OPTIONS":
            return ":path * is for OPTIONS only"
    elif not PATH.fullmatch(path):
        return "malformed :path (not origin-form)"
    for value, what in ((authority, ":authority"), (host, "host")):
        if value is not None and not AUTHORITY.fullmatch(value):
            return f"malformed {what}"
    return None
