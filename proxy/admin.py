"""The admin port: health, the applied configuration, cluster state and metrics.

Plain HTTP/1.1 served by the same server protocol as the data path:
- `/live`: 200 while the process runs.
- `/ready`: 200 only when the certificate, the configuration and the app's readiness
  are all in place; otherwise 503 with what is missing (JSON).
- `/config_dump`: the applied configuration as JSON, with the version of each resource
  type, the configuration generation and the certificate in use (serial, issuer, how
  many roots the trust bundle holds); with a control plane
  also `xds`: the ADS stream's state per type (version, ACK/NACK counts, last NACK
  error), the accepted Envoy resources themselves (`?resources=0` leaves them out) and
  `control_plane`: the replica in use, whether it is the preferred one, every address,
  the moves so far, where the instance is registered, whether the sidecar started from
  its state directory (agent/session.py); with `--dns-port`, `dns`: the upstream
  resolvers, the names answered with their virtual IPs, the mesh names left to the
  upstream (local services) and the query counts (listeners/dns.py).
- `/clusters`: every cluster's endpoints with health, zone, LB weight, in-flight and
  total requests, RTT estimate, whether the balancer currently uses them, and pool state.
- `/metrics`: Prometheus text format.

The admin port listens on 127.0.0.1 by default (`/config_dump` and `/clusters` show
the sidecar's policies and endpoints). `MetricsOnly` serves the metrics port (15090,
all interfaces by default): `GET /metrics` and nothing else, so Prometheus and the
control plane scrape there without reaching the rest.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gossamer.proxy.service import Request, Response
from gossamer.proxy.static_config import dump_config

if TYPE_CHECKING:
    from gossamer.proxy.sidecar import Sidecar

JSON = b"application/json"
PROM = b"text/plain; version=0.0.4; charset=utf-8"


def _json(status: int, data: Any) -> Response:
    body = json.dumps(data, indent=2, default=str).encode() + b"\n"
    return Response(status, [(b"content-type", JSON)], body)


def _text(status: int, text: str, ctype: bytes = b"text/plain") -> Response:
    return Response(status, [(b"content-type", ctype)], text.encode())


class Admin:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    async def service(self, req: Request) -> Response:
        path = req.path.split(b"?", 1)[0]
        if req.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n")
        if path == b"/live":
            return _text(200, "live\n")
        if path == b"/ready":
            missing = self.sidecar.not_ready()
            return _json(503 if missing else 200, {"ready": not missing, "missing": missing})
        if path == b"/config_dump":
            return _json(200, self.config_dump(b"resources=0" not in req.path))
        if path == b"/clusters":
            return _json(200, self.clusters())
        if path == b"/metrics":
            return self.metrics()
        return _text(404, "unknown admin path; try /ready /live /config_dump /clusters /metrics\n")

    def metrics(self) -> Response:
        return Response(200, [(b"content-type", PROM)], self.sidecar.telemetry.render_metrics())

    def config_dump(self, resources: bool = True) -> dict[str, Any]:
        sc = self.sidecar
        config = sc.holder.current
        contexts = sc.credentials.contexts
        xds = sc.xds_status(resources=resources) if sc.xds_status is not None else None
        return {
            "xds": xds,
            "generation": sc.holder.generation,
            "versions": dict(config.versions) if config is not None else {},
            "certificate": None
            if contexts is None
            else {
                "spiffe_id": contexts.spiffe_id,
                "not_after": contexts.not_after.isoformat(),
                "serial": f"{contexts.serial:x}",
                "issuer": contexts.issuer,
                "trusted_roots": contexts.trusted_roots,
                "crls": contexts.crls,  # from the ROOTCA secret; 0: no revocation check
                "revoked": len(contexts.revoked),
            },
            "listeners": sc.bound_ports,
            "dns": None if sc.dns is None else sc.dns.status(),
            "config": dump_config(config) if config is not None else None,
        }

    def clusters(self) -> dict[str, Any]:
        snap = self.sidecar.snapshot
        if snap is None:
            return {"clusters": []}
        out = []
        for name, rt in snap.clusters.items():
            eligible = {id(h) for h in rt.balancer.hosts}
            endpoints = []
            for host in rt.hosts:
                ep = host.endpoint
                pool = rt.pools.get(ep.key)
                endpoints.append(
                    {
                        "address": ep.address,
                        "port": ep.port,
                        "zone": ep.zone,
                        "node": ep.node,
                        "priority": ep.priority,
                        "health": ep.health.value,
                        "weight": ep.weight,
                        "eligible": id(host) in eligible,
                        "active_requests": host.active,
                        "total_requests": host.total,
                        "rtt_ms": round(host.rtt * 1000, 3) if host.rtt >= 0 else None,
                        "consecutive_failures": host.failures,
                        "consecutive_5xx": host.errors_5xx,
                        "ejected": host.ejected_until > rt.clock(),
                        "ejection_multiplier": host.ejections,
                        "health_check_failed": host.hc_failed,
                        "connections": pool.open if pool is not None else 0,
                        "idle_connections": pool.idle_count if pool is not None else 0,
                    }
                )
            out.append(
                {
                    "name": name,
                    "service": rt.config.service,
                    "lb_policy": rt.config.lb_policy.value,
                    "tls": rt.config.tls,
                    "identity": rt.config.identity,
                    "circuit_breaker": rt.breaker.state(),
                    "endpoints": endpoints,
                }
            )
        return {"clusters": out}


class MetricsOnly:
    """The metrics port: `GET /metrics` (the admin port's), 404 for every other path."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    async def service(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n")
        if req.path.split(b"?", 1)[0] == b"/metrics":
            return self.admin.metrics()
        return _text(404, "the metrics port serves /metrics only\n")
