"""The error hierarchy, split by origin.

Third-party exceptions are translated into these once, at the boundary where they
arise. The CLI prints any `GossamerError` as one line plus its hint and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


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


class ConfigErrors(ConfigError):
    """Several independent configuration errors, reported together (one per line).

    Its field, line and hint are the first error's; `errors` holds them all."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        super().__init__(
            first.detail, field=first.field, source=first.source, line=first.line, hint=first.hint
        )
        self.errors = tuple(errors)
        self.args = ("\n".join(e.message for e in errors),)


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
