"""`gossamer tap SERVICE`: live request records of a service, through the control plane.

Streams `GET /v1/tap` (control/tap_api.py; an operator API token) and prints each record
as it arrives: with `-o json` one JSON object per line (flushed per record), otherwise
one aligned table row per record. Ctrl-C, `--max N` records, or the control plane
ending the stream ends it; the summary line (on stderr) says how many records came and
how many the sidecars dropped over their cap. When the control plane ended the tap (its
last line `{"type": "end", "reason": ...}`, e.g. it is stopping), that reason follows as
an error and the exit status is 1. The source options are those of `stat`
(`--api`, `--token`, `--token-file`, `--config`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from gossamer.cli.output import output_option
from gossamer.errors import AuthorizationDenied, GossamerError, UsageError

COLUMNS = (("TIME", 12), ("DIR", 4), ("SOURCE", 14), ("DESTINATION", 14), ("METHOD", 7),
           ("AUTHORITY", 22), ("PATH", 28), ("STATUS", 6), ("LATENCY", 10), ("BYTES", 8),
           ("TRACE", 0))  # fmt: skip


def _short(spiffe_id: str | None) -> str:
    return spiffe_id.rsplit("/", 1)[-1] if spiffe_id else "-"


def _fit(text: str, width: int) -> str:
    if width and len(text) > width:
        return text[: width - 1] + "~"
    return text.ljust(width) if width else text


def table_header() -> str:
    return " ".join(_fit(name, width) for name, width in COLUMNS).rstrip()


def table_row(r: dict[str, Any]) -> str:
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(r["ts"])) + f".{int(r['ts'] % 1 * 1000):03d}"
    trace = r.get("trace_id") or "-"
    if r.get("trace_id") and r.get("sampled"):
        trace += " (sampled)"
    cells = (
        stamp, "in" if r["direction"] == "inbound" else "out", _short(r.get("source")),
        _short(r.get("destination")), r["method"], r["authority"], r["path"],
        str(r["status"]), f"{r['latency_ms']:.1f}ms",
        "-" if r.get("bytes") is None else str(r["bytes"]), trace,
    )  # fmt: skip
    return " ".join(_fit(c, w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()


def _refused(status: int, body: str) -> GossamerError:
    try:
        message = json.loads(body).get("error", body)
    except (json.JSONDecodeError, AttributeError):
        message = body.strip()[:200]
    if status in (401, 403):
        return AuthorizationDenied(
            f"the control plane refused the token: {message}",
            hint="tap needs an API token with role operator or admin (an admin makes one: "
            'POST /v1/api-tokens {"name": ..., "role": "operator"})',
        )
    if status == 404:
        return GossamerError(message, hint="gossamer stat lists the services")
    return GossamerError(f"the control plane answered HTTP {status}: {message}")


async def stream_tap(
    api: str, token: str | None, params: dict[str, str], on_line: Callable[[dict[str, Any]], None]
) -> None:
    """Call GET /v1/tap and hand each JSON line to `on_line` until the stream ends."""
    import aiohttp

    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{api!r} is not an API URL", hint="give one like http://127.0.0.1:15014")
    if not token:
        raise UsageError(
            "an API token is needed to tap",
            hint="pass --token (or $GOSSAMER_API_TOKEN, --token-file) with role operator",
        )
    url = api.rstrip("/") + "/v1/tap"
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params=params, headers=headers) as r,
        ):
            if r.status != 200:
                raise _refused(r.status, await r.text())
            async for raw in r.content:
                line = raw.strip()
                if line:
                    on_line(json.loads(line))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise GossamerError(
            f"cannot reach the control plane at {api}: {type(exc).__name__}: {exc}",
            hint="check --api (or control.api_listen in mesh.yaml) and that it runs",
        ) from None
    except json.JSONDecodeError:
        raise GossamerError("the control plane sent a line that is not JSON") from None


class Printer:
    def __init__(self, output: str) -> None:
        self.json = output == "json"
        self.records = 0
        self.dropped = 0
        self.sidecars = -1
        self.header = False
        self.ended: str | None = None  # why the control plane ended the tap, if it did

    def __call__(self, obj: dict[str, Any]) -> None:
        if obj.get("type") == "end":
            self.ended = str(obj.get("reason") or "no reason given")
            return
        if obj.get("type") == "status":
            self.dropped = int(obj.get("dropped", 0))
            if obj.get("sidecars") != self.sidecars:
                self.sidecars = int(obj.get("sidecars", 0))
                if self.sidecars == 0:
                    click.echo("waiting: no sidecar of this service is connected to this "
                               "control plane (several replicas: --api of the one its "
                               "sidecars use)", err=True)  # fmt: skip
            return
        if "ts" not in obj:
            return
        self.records += 1
        if self.json:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
            return
        if not self.header:
            click.echo(table_header())
            self.header = True
        click.echo(table_row(obj))

    def summary(self) -> str:
        text = f"{self.records} records"
        return text + (f", {self.dropped} dropped over the sidecars' cap" if self.dropped else "")


@click.command()
@click.argument("service")
@click.option("--to", "to", help="Only requests to this service.")
@click.option("--path", "path", help="Only paths starting with this prefix.")
@click.option("--method", help="Only this HTTP method.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), help="Only one side.")
@click.option("--max", "max_records", type=click.IntRange(1, 100_000), help="Stop after N records.")
@click.option(
    "--rate", type=click.IntRange(1, 100), help="Records per second per sidecar (cap 100)."
)
@click.option(
    "--api",
    envvar="GOSSAMER_API",
    help="Control plane API URL (default from mesh.yaml, else http://127.0.0.1:15014).",
)
@click.option(
    "--token",
    envvar="GOSSAMER_API_TOKEN",
    help="API token, role operator (also $GOSSAMER_API_TOKEN).",
)
@click.option(
    "--token-file", type=click.Path(path_type=Path, dir_okay=False), help="File with the API token."
)
@click.option(
    "--config",
    "config_path",
    envvar="GOSSAMER_CONFIG",
    type=click.Path(path_type=Path, dir_okay=False),
    help="mesh.yaml to read control settings from.",
)
@output_option
def tap(service: str, output: str, max_records: int | None, **opts: Any) -> None:  # fmt: skip
    """Live requests of SERVICE from its sidecars (never headers or bodies)."""
    from gossamer.cli.observe_cmd import resolve

    r = resolve(None, opts["api"], opts["token"], opts["token_file"], opts["config_path"], None)
    params = {"service": service}
    for key in ("to", "path", "method", "direction", "rate"):
        if opts.get(key):
            params[key] = str(opts[key])
    if max_records:
        params["max"] = str(max_records)
    printer = Printer(output)
    try:
        asyncio.run(stream_tap(r.api, r.token, params, printer))
    except KeyboardInterrupt:
        pass
    click.echo(printer.summary(), err=True)
    if printer.ended is not None:
        raise GossamerError(
            f"the control plane ended the tap: {printer.ended}",
            hint="run gossamer tap again once the control plane is back",
        )
