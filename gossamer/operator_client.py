"""A small client for the control plane's operator API, for CLI commands.

Where to connect: `--api URL`, else `GOSSAMER_API`, else mesh.yaml's
`control.api_listen` when a config file is given or present, else
http://127.0.0.1:15014. Which token: `--token`, else `GOSSAMER_API_TOKEN`, else the
admin token file the control plane wrote in its data dir (same machine only).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.contract.ports import API_PORT
from gossamer.errors import AuthorizationDenied, ConfigError, GossamerError, UpstreamConnectError

DEFAULT_API = f"http://127.0.0.1:{API_PORT}"


@dataclass(frozen=True)
class ApiClient:
    base_url: str
    token: str | None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"the API address must be an http:// or https:// URL, got {self.base_url!r}"
            )

    def get(self, path: str, *, timeout: float = 5.0) -> Any:
        return self.request("GET", path, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 5.0) -> Any:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            return self._send(req, timeout, retry_reset=method == "GET")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            if exc.code in (401, 403):
                raise AuthorizationDenied(
                    f"the control plane refused the request: {message}",
                    hint="pass --token or set GOSSAMER_API_TOKEN",
                ) from None
            raise GossamerError(f"the control plane answered {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpstreamConnectError(
                f"cannot reach the control plane at {self.base_url}: {reason}",
                hint="is `gossamer control` running? pass --api URL",
            ) from None

    @staticmethod
    def _send(req: urllib.request.Request, timeout: float, *, retry_reset: bool) -> Any:
        """The decoded answer. A GET whose connection is reset before any answer is sent
        once more: an API at its connection cap displaces the oldest connection that has
        not yet sent a whole request head, which may be ours (README, "Limits")."""
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310
                    return json.loads(response.read() or b"null")
            except OSError as exc:  # urllib.error.URLError is one
                if not (retry_reset and connection_reset(exc) and attempt == 1):
                    raise
        raise AssertionError("unreachable")


def connection_reset(exc: BaseException) -> bool:
    """The peer reset, broke or aborted the connection (bare, or as urllib's URLError
    reason): the one failure after which a GET is worth sending again."""
    resets = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
    return isinstance(exc, resets) or isinstance(getattr(exc, "reason", None), resets)


def resolve_client(api: str | None, token: str | None, config: Path | None) -> ApiClient:
    base = api or os.environ.get("GOSSAMER_API")
    token = token or os.environ.get("GOSSAMER_API_TOKEN")
    data_dir: Path | None = None
    if config is None and Path("mesh.yaml").exists():
        config = Path("mesh.yaml")
    if config is not None and (base is None or token is None):
        from gossamer.control.config import load_mesh

        try:
            _root, mesh = load_mesh(config)
        except ConfigError:
            if base is None:
                raise
        else:
            listen = mesh.control.api_listen
            host = "127.0.0.1" if listen.host in ("0.0.0.0", "::") else listen.host
            base = base or f"http://{host}:{listen.port}"
            data_dir = mesh.control.data_dir
    if token is None and data_dir is not None:
        admin = data_dir / "admin-token"
        if admin.exists():
            token = admin.read_text().strip()
    return ApiClient((base or DEFAULT_API).rstrip("/"), token)
