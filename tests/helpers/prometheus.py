"""A real Prometheus server for tests (Debian's `prometheus`, /usr/bin/prometheus).

`running_prometheus(tmp_path, http_sd_url=...)` writes a config with a 1 s scrape
interval whose only job finds its targets through `http_sd_configs` (the control
plane's `/v1/http_sd`), starts Prometheus on a free loopback port with its own storage
folder, waits for `/-/ready`, and always stops it. `PrometheusServer.query` and
`query_range` run PromQL over the HTTP API; `wait_for_query` polls until a query's
answer satisfies a predicate (Prometheus needs two scrapes before `rate` has a value).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers.procs import Process, free_port, http_get, wait_for

BINARY = "/usr/bin/prometheus"
JOB = "gossamer-sidecars"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (BINARY if Path(BINARY).exists() else None)
    if found is None:
        raise RuntimeError("prometheus is not installed (./dev setup installs Debian's package)")
    return found


def config_text(
    http_sd_url: str | None,
    *,
    scrape_interval: str = "1s",
    sd_refresh: str = "2s",
    static_targets: list[str] | None = None,
    credentials_file: Path | None = None,
) -> str:
    lines = [
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  scrape_timeout: {scrape_interval}",
        f"  evaluation_interval: {scrape_interval}",
        "scrape_configs:",
    ]
    if http_sd_url is not None:
        lines += [
            f"  - job_name: {JOB}",
            "    http_sd_configs:",
            f"      - url: {json.dumps(http_sd_url)}",
            f"        refresh_interval: {sd_refresh}",
        ]
        if credentials_file is not None:  # /v1/http_sd wants a viewer API token
            lines += [
                "        authorization:",
                "          type: Bearer",
                f"          credentials_file: {json.dumps(str(credentials_file))}",
            ]
    if static_targets:
        lines += [
            "  - job_name: static",
            "    static_configs:",
            f"      - targets: {json.dumps(static_targets)}",
        ]
    return "\n".join(lines) + "\n"


class PrometheusServer:
    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.storage = workdir / "data"
        self.storage.mkdir(exist_ok=True)
        self.proc: Process | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.proc = Process(
            [
                prometheus_binary(),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
            ],
            self.workdir / "prometheus.log",
        )

        def ready() -> bool:
            assert self.proc is not None
            if not self.proc.alive():
                raise RuntimeError(f"prometheus exited:\n{self.proc.output()[-3000:]}")
            return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200

        try:
            wait_for(ready, timeout=timeout, what="prometheus /-/ready")
        except TimeoutError:
            output = self.proc.output()[-3000:]
            self.stop()
            raise TimeoutError(f"prometheus did not become ready:\n{output}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def log(self) -> str:
        return self.proc.output() if self.proc is not None else ""

    # -- HTTP API ----------------------------------------------------------------------
    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=10)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise RuntimeError(f"prometheus {path} failed (HTTP {status}): {data.get('error')}")
        return data["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return list(self._api("/api/v1/query", params)["result"])

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        return list(self._api("/api/v1/query_range", params)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("/api/v1/targets", {"state": "active"})["activeTargets"])

    def wait_for_query(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = self.query(expr)
            if predicate(last):
                return last
            time.sleep(0.25)
        raise TimeoutError(f"PromQL {expr!r} never satisfied the test; last answer {last}")


def values(result: list[dict[str, Any]]) -> list[float]:
    """The numbers of an instant-query result vector."""
    return [float(sample["value"][1]) for sample in result]


@contextlib.contextmanager
def running_prometheus(
    workdir: Path,
    http_sd_url: str | None = None,
    *,
    scrape_interval: str = "1s",
    static_targets: list[str] | None = None,
    credentials_file: Path | None = None,
) -> Iterator[PrometheusServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = PrometheusServer(
        workdir,
        config_text(
            http_sd_url,
            scrape_interval=scrape_interval,
            static_targets=static_targets,
            credentials_file=credentials_file,
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
