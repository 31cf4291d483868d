"""The error hierarchy, split by origin.

Third-party exceptions are translated into these once, at the boundary where they
arise. The CLI prints any `GossamerError` as one line plus its hint and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GossamerError(Exception):
    """Base of every error Gossamer reports to a user or a peer."""

    hint: str | None = None
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class UsageError(GossamerError):
    """The user asked for something that cannot work as asked (bad flag combination...)."""

    exit_code = 2


class ConfigError(GossamerError):
    """A configuration value is invalid. Names the field and, for files, the line."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.field = field
        self.source = source
        self.line = line
        self.detail = message
        where = ""
        if source is not None:
            where = source if line is None else f"{source}:{line}"
        elif line is not None:
            where = f"line {line}"
        prefix = ": ".join(p for p in (where, field) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message, hint=hint)


class ProtocolError(GossamerError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We were about to break a protocol rule (a bug or a bad local configuration)."""


class RemoteProtocolError(ProtocolError):
    """A peer broke a protocol rule (malformed request, bad xDS message...)."""


class UpstreamError(GossamerError):
    """An upstream could not serve a request."""


class UpstreamConnectError(UpstreamError):
    """Connecting (TCP or TLS) to an upstream failed."""


class UpstreamTimeout(UpstreamError):
    """An upstream did not answer in time."""


class AuthorizationDenied(GossamerError):
    """A peer identity or credential is not allowed to do what it asked."""


class NotFound(GossamerError):
    """A named object (service, token, file) does not exist."""
