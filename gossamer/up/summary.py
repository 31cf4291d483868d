"""The short live summary `gossamer up` prints every few seconds.

Figures come from the control plane's operator API: `/v1/stat` (per service request
rate, success rate and p99, from the sidecars' /metrics) and `/v1/sidecars` (the
connected ADS streams and their identities). With `--nodes` each replica lists only the
streams connected to it: `fetch` asks every replica (`others`) for theirs and counts the
node gateways apart. `fetch` does the I/O; `render` is pure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.contract.identity import CONTROL_NAMESPACE, GATEWAY_SERVICE
from gossamer.up.probes import get_json

GATEWAY_IDENTITY_SUFFIX = f"/ns/{CONTROL_NAMESPACE}/sa/{GATEWAY_SERVICE}"

SHOWN = ("web", "catalog", "inventory")


@dataclass
class Snapshot:
    sidecars: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    expected_processes: int = 0
    expected_sidecars: int = 0
    error: str | None = None

    expected_gateways: int = 0

    @property
    def connected(self) -> int:
        """Sidecars with an ADS stream over mutual TLS (an identity from their cert)."""
        return sum(1 for s in self.sidecars if s.get("identity") and not _gateway(s))

    @property
    def gateways(self) -> int:
        return sum(1 for s in self.sidecars if _gateway(s))


def _gateway(stream: dict[str, Any]) -> bool:
    return str(stream.get("identity") or "").endswith(GATEWAY_IDENTITY_SUFFIX)


def fetch(
    api_url: str, token: str, window: str = "10s", others: Sequence[tuple[str, str]] = ()
) -> Snapshot:
    """`others`: (API URL, token) of the other replicas, whose streams count too."""
    snapshot = Snapshot()
    try:
        for url, key in [(api_url, token), *others]:
            snapshot.sidecars += get_json(f"{url}/v1/sidecars", token=key)["sidecars"]
        stat = get_json(f"{api_url}/v1/stat?window={window}", token=token, timeout=4.0)
        snapshot.services = list(stat.get("services", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        snapshot.error = f"control plane API: {exc}"
    return snapshot


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def render(snapshot: Snapshot, now: float | None = None) -> list[str]:
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    head = (
        f"{stamp}  sidecars connected {snapshot.connected}/{snapshot.expected_sidecars}"
        f"  processes running {snapshot.running}/{snapshot.expected_processes}"
    )
    if snapshot.expected_gateways:
        head += f"  gateways {snapshot.gateways}/{snapshot.expected_gateways}"
    if snapshot.error:
        return [head, f"  ({snapshot.error})"]
    rows = {str(s.get("name")): s for s in snapshot.services}
    lines = [head, f"  {'service':<10} {'rps':>6} {'success':>8} {'p99 ms':>7} {'sidecars':>8}"]
    for name in SHOWN:
        row = rows.get(name, {})
        sidecars = f"{row.get('meshed', 0)}/{row.get('instances', 0)}"
        lines.append(
            f"  {name:<10} {_num(row.get('rps')):>6} {_pct(row.get('success_rate')):>8}"
            f" {_num(row.get('latency_p99_ms')):>7} {sidecars:>8}"
        )
    return lines
