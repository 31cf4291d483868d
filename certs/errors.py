"""Typed errors of the CA, CSR checks and join tokens.

Each rejected CSR case has its own class so callers (the identity service, the CLI,
tests) can tell them apart; all are GossamerErrors with a clear message.
"""

from __future__ import annotations

from gossamer.errors import AuthorizationDenied, ConfigError, GossamerError, NotFound


class CsrError(GossamerError):
    """A certificate signing request was rejected."""


class NotACsr(CsrError):
    """The bytes are not a PEM or DER certificate signing request."""


class CsrSignatureInvalid(CsrError):
    """The CSR's self-signature does not verify with its public key."""


class UnsupportedKey(CsrError):
    """The CSR's key is not ECDSA P-256/P-384 or RSA >= 2048 bits."""


class IdentityMismatch(CsrError):
    """The CSR asks for a name other than the identity it is authorized for."""


class MultipleSpiffeIds(CsrError):
    """The CSR carries more than one SPIFFE ID."""


class CaRequested(CsrError):
    """The CSR asks for a CA certificate (basicConstraints CA:true)."""


class InvalidSpiffeId(ConfigError):
    """A string is not a Gossamer SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<service>)."""


class CaError(GossamerError):
    """The CA directory is missing, incomplete or would be overwritten."""


class CaNotFound(CaError, NotFound):
    """No CA in the given directory."""


class CaExists(CaError):
    """A CA already exists and --force was not given."""


class TokenError(AuthorizationDenied):
    """A join token was refused."""


class TokenMalformed(TokenError):
    """The string is not a Gossamer join token."""


class TokenUnknown(TokenError):
    """No token with that id exists (or the secret does not match)."""


class TokenExpired(TokenError):
    """The token's lifetime is over."""


class TokenRevoked(TokenError):
    """The token was revoked."""


class TokenWrongService(TokenError):
    """The token is scoped to another service or namespace."""


class TokenUsedUp(TokenError):
    """The token has already admitted as many sidecar instances as it allows."""
