"""The CLI's client for the control plane's observability routes (/v1/stat, ...).

Used when no Prometheus is given: the control plane scrapes the sidecars itself.
Failures become GossamerErrors with hints (unreachable, token refused, bad answer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gossamer.errors import AuthorizationDenied, GossamerError, RemoteProtocolError, UsageError


class ControlApi:
    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"{url!r} is not an API URL", hint="give one like http://127.0.0.1:15014"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        if not self.token:
            raise UsageError(
                "an API token is needed to ask the control plane",
                hint="pass --token (or $GOSSAMER_API_TOKEN, --token-file), "
                "or --prometheus URL to ask Prometheus instead",
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{self.url}{path}", params=dict(params or {}), headers=headers) as r,
            ):
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GossamerError(
                f"cannot reach the control plane at {self.url}: {type(exc).__name__}: {exc}",
                hint="check --api (or control.api_listen in mesh.yaml) and that it runs",
            ) from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise RemoteProtocolError(
                f"the control plane answered HTTP {status} with something not JSON"
            ) from None
        if status in (401, 403):
            raise AuthorizationDenied(
                f"the control plane refused the token: {body.get('error', status)}",
                hint="use a token with role viewer or above (gossamer API tokens start gsa1_)",
            )
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else body
            raise GossamerError(f"the control plane answered HTTP {status}: {error}")
        return body
