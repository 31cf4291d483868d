"""A small client for Prometheus' HTTP API (`/api/v1/query`, `/api/v1/query_range`).

Errors become GossamerErrors with a hint: an unreachable server, an HTTP error, a
PromQL error (`status: error` with `errorType`/`error`), or an answer that is not JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gossamer.errors import GossamerError, RemoteProtocolError, UsageError


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"{url!r} is not a Prometheus URL", hint="give one like http://127.0.0.1:9090"
        )
    return url.rstrip("/")


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.timeout = timeout

    async def _get(
        self, session: aiohttp.ClientSession, path: str, params: Mapping[str, str]
    ) -> Any:
        url = f"{self.url}{path}"
        try:
            async with session.get(url, params=dict(params)) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GossamerError(
                f"cannot reach Prometheus at {self.url}: {type(exc).__name__}: {exc}",
                hint="check --prometheus (or observability.prometheus_url) and that it runs",
            ) from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise RemoteProtocolError(
                f"Prometheus at {self.url} answered HTTP {status} with something not JSON",
                hint="is that URL Prometheus' own (e.g. http://host:9090)?",
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "unknown error") if isinstance(body, dict) else body
            raise GossamerError(f"Prometheus refused the query (HTTP {status}): {error}")
        return body.get("data", {})

    async def query_many(
        self, queries: Mapping[str, str], at: float | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Run instant queries concurrently; name -> result vector."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(expr: str) -> list[dict[str, Any]]:
                params = {"query": expr}
                if at is not None:
                    params["time"] = f"{at:.3f}"
                data = await self._get(session, "/api/v1/query", params)
                result = data.get("result", []) if isinstance(data, dict) else []
                if data.get("resultType") == "scalar":
                    return [{"metric": {}, "value": result}]
                return list(result)

            names = list(queries)
            results = await asyncio.gather(*(one(queries[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        return (await self.query_many({"q": expr}, at))["q"]

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            data = await self._get(session, "/api/v1/query_range", params)
        return list(data.get("result", [])) if isinstance(data, dict) else []
