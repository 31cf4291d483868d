"""Bearer tokens for the operator API, with roles `viewer` < `operator` < `admin`.

Stored in `<data_dir>/api-tokens.json` (mode 0600) as SHA-256 hashes only. On first
start the control plane creates one admin token and writes it to
`<data_dir>/admin-token` (mode 0600) for the operator on that machine, as Consul does
with its bootstrap ACL token.

A token may also come from a file (`add_file_token`; mesh.yaml's
`observability.prometheus_token_file`): whatever the file holds is accepted with its
role, re-read when the file changes, so a deployment (`gossamer inject`'s bootstrap)
can hand the same secret to Prometheus without going through the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gossamer.errors import AuthorizationDenied, ConfigError, NotFound
from gossamer.fsutil import atomic_write, locked

ROLES = ("viewer", "operator", "admin")
TOKENS_FILE = "api-tokens.json"
ADMIN_TOKEN_FILE = "admin-token"
PREFIX = "gsa1_"


def role_allows(have: str, need: str) -> bool:
    return ROLES.index(have) >= ROLES.index(need)


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    sha256: str
    created: float

    def public(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "created": self.created}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MIN_FILE_TOKEN = 16  # characters: a shorter secret in a token file is refused


def _unsafe_token_file(st: os.stat_result) -> str:
    """Why a token file could hold a token someone other than its owner chose ("" if
    none): a symbolic link, or writable by its group or by everyone."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_mode & 0o022:
        return f"is writable by its group or by everyone (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


class FileToken:
    """A token kept in a file (not in the store), with the role it grants."""

    def __init__(self, name: str, role: str, path: Path) -> None:
        self.name, self.role, self.path = name, role, path
        self._stamp: tuple[int, int, int] | None = None
        self._record: ApiToken | None = None
        self.error: str | None = None  # why the file gives no token, when it does not

    def record(self) -> ApiToken | None:
        """The token the file holds now (None: absent, unreadable or too short)."""
        try:
            st = self.path.lstat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._stamp, self._record, self.error = stamp, None, None
                unsafe = _unsafe_token_file(st)
                if unsafe:  # whoever can write it chooses a valid token
                    self.error = f"{self.path} {unsafe}; not used as a token"
                    return None
                text = self.path.read_text(encoding="utf-8").strip()
                if len(text) < MIN_FILE_TOKEN:
                    self.error = f"{self.path} holds fewer than {MIN_FILE_TOKEN} characters"
                else:
                    self._record = ApiToken(self.name, self.role, _digest(text), st.st_mtime)
        except (OSError, UnicodeDecodeError) as exc:
            self._stamp, self._record = None, None
            self.error = f"cannot read {self.path}: {getattr(exc, 'strerror', None) or exc}"
        return self._record


class ApiTokenStore:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / TOKENS_FILE
        self._lock = self.dir / ".api-tokens.lock"
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, ApiToken] = {}
        self.file_tokens: list[FileToken] = []

    def add_file_token(self, name: str, role: str, path: Path) -> FileToken:
        """Accept whatever `path` holds as a `role` token called `name`."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; use one of {', '.join(ROLES)}", field="role")
        token = FileToken(name, role, path)
        self.file_tokens.append(token)
        return token

    def _load(self) -> dict[str, ApiToken]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._tokens, self._stamp = {}, None
            return self._tokens
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            raw = json.loads(self.path.read_text())
            self._tokens = {t["name"]: ApiToken(**t) for t in raw.get("tokens", [])}
            self._stamp = stamp
        return self._tokens

    def _save(self, tokens: dict[str, ApiToken]) -> None:
        body = {"tokens": [asdict(t) for t in tokens.values()]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        self._stamp = None

    def create(self, name: str, role: str) -> str:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; use one of {', '.join(ROLES)}", field="role")
        if not name or len(name) > 64:
            raise ConfigError("a token name is 1-64 characters", field="name")
        token = PREFIX + secrets.token_urlsafe(32)
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self._lock):
            tokens = dict(self._load())
            if name in tokens:
                raise ConfigError(f"an API token named {name!r} exists", field="name")
            tokens[name] = ApiToken(name, role, _digest(token), time.time())
            self._save(tokens)
        return token

    def delete(self, name: str) -> None:
        with locked(self._lock):
            tokens = dict(self._load())
            if name not in tokens:
                raise NotFound(f"no API token named {name!r}")
            del tokens[name]
            self._save(tokens)

    def list(self) -> list[ApiToken]:
        return sorted(self._load().values(), key=lambda t: t.created)

    def authenticate(self, token: str | None) -> ApiToken:
        """The token's record; AuthorizationDenied if absent or unknown (constant time)."""
        if not token:
            raise AuthorizationDenied("an API token is required (Authorization: Bearer ...)")
        digest = _digest(token)
        found = None
        files = (f.record() for f in self.file_tokens)
        for record in [*self._load().values(), *(r for r in files if r is not None)]:
            if hmac.compare_digest(record.sha256, digest):
                found = record
        if found is None:
            raise AuthorizationDenied("unknown API token")
        return found

    def ensure_admin(self) -> str | None:
        """Create the first admin token if there is none; returns it (else None)."""
        if any(t.role == "admin" for t in self._load().values()):
            return None
        token = self.create("admin", "admin")
        atomic_write(self.dir / ADMIN_TOKEN_FILE, token + "\n", mode=0o600)
        return token
