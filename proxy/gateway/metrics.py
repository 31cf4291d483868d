"""The gateway's golden metrics, rendered in Prometheus' text format (no I/O).

    gossamer_gateway_connections_total{service, peer_node}   routed connections
    gossamer_gateway_bytes_total{service, peer_node, direction}
        direction="received": from the peer node to the instance; "sent": back
    gossamer_gateway_active_connections                      open connections, any stage
    gossamer_gateway_rejected_total{reason}                  connections closed unrouted:
        not_tls | malformed | too_large | hello_timeout (ClientHello), unknown_sni,
        no_endpoint, connect_failure (the instance did not answer), overflow (the
        connection cap displaced or refused it)
    gossamer_gateway_idle_closed_total                       routed, closed for idleness
    gossamer_gateway_route_instances{service}                this node's healthy instances
    gossamer_control_plane_moves_total                       moves between control-plane
        replicas (the sidecar's metric of that name)

`service` is `<svc>.<namespace>`; `peer_node` is the node whose registered address the
connection came from, "unknown" for any other (gateway/table.py). Bytes are counted as
they pass, so a long connection's bytes show before it ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

REJECT_REASONS = (
    "not_tls",
    "malformed",
    "too_large",
    "hello_timeout",
    "unknown_sni",
    "no_endpoint",
    "connect_failure",
    "overflow",
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}" if pairs else ""


class GatewayMetrics:
    def __init__(self) -> None:
        self.connections: Counter[tuple[str, str]] = Counter()
        self.bytes: Counter[tuple[str, str, str]] = Counter()
        self.rejected: Counter[str] = Counter({reason: 0 for reason in REJECT_REASONS})
        self.idle_closed = 0
        self.active = 0
        self.instances: Callable[[], dict[str, int]] = dict
        self.control_moves: Callable[[], int] = lambda: 0

    def routed(self, service: str, peer_node: str) -> None:
        self.connections[(service, peer_node)] += 1

    def moved(self, service: str, peer_node: str, direction: str, n: int) -> None:
        self.bytes[(service, peer_node, direction)] += n

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, doc: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        family(
            "gossamer_gateway_connections_total",
            "counter",
            "Connections routed to a local instance, by service and peer node.",
            [
                (_labels(("service", "peer_node"), k), v)
                for k, v in sorted(self.connections.items())
            ],
        )
        family(
            "gossamer_gateway_bytes_total",
            "counter",
            "Bytes relayed, by service, peer node and direction (received from the peer, sent to it).",
            [
                (_labels(("service", "peer_node", "direction"), k), v)
                for k, v in sorted(self.bytes.items())
            ],
        )
        family(
            "gossamer_gateway_active_connections",
            "gauge",
            "Open downstream connections (reading the ClientHello or relaying).",
            [("", self.active)],
        )
        family(
            "gossamer_gateway_rejected_total",
            "counter",
            "Connections closed without being routed, by reason.",
            [(_labels(("reason",), (k,)), v) for k, v in sorted(self.rejected.items())],
        )
        family(
            "gossamer_gateway_idle_closed_total",
            "counter",
            "Routed connections closed after the idle timeout.",
            [("", self.idle_closed)],
        )
        family(
            "gossamer_gateway_route_instances",
            "gauge",
            "Healthy local instances the gateway routes to, by service.",
            [(_labels(("service",), (k,)), v) for k, v in sorted(self.instances().items())],
        )
        family(
            "gossamer_control_plane_moves_total",
            "counter",
            "Moves of this gateway from one control-plane replica to another.",
            [("", self.control_moves())],
        )
        return "\n".join(out) + "\n"
