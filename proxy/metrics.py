"""Sidecar metrics: plain counters on the hot path, Prometheus text at scrape time.

Counting a request is one dict update keyed by a tuple; the labelled Prometheus
families are built only when `/metrics` is scraped (a custom collector), so the data
path never touches prometheus-client's locks. Names and labels follow DESIGN.md
section 3 (Istio's vocabulary under the `gossamer_` prefix).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REQUEST_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "response_code",
    "classification",
    "connection_security_policy",
)
TCP_LABELS = ("reporter", "source_service", "destination_service", "connection_security_policy")


class Metrics(Collector):
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int, str], int] = {}
        self.tcp_opened: dict[tuple[str, str, str, str], int] = {}
        self.tcp_closed: dict[tuple[str, str, str, str], int] = {}
        self.tcp_sent: dict[tuple[str, str, str, str], int] = {}
        self.tcp_received: dict[tuple[str, str, str, str], int] = {}
        self.retries: dict[tuple[str, str], int] = {}
        self.downstream_connections: dict[str, int] = {}
        self.tls_failures: dict[str, int] = {}
        self.gauges: dict[str, Any] = {}  # name -> callable returning a number
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- hot path ------------------------------------------------------------------
    def request(
        self, reporter: str, source: str, destination: str, status: int, security: str
    ) -> None:
        key = (reporter, source, destination, status, security)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1

    def retry(self, destination: str, outcome: str) -> None:
        key = (destination, outcome)
        self.retries[key] = self.retries.get(key, 0) + 1

    def connection(self, listener: str) -> None:
        self.downstream_connections[listener] = self.downstream_connections.get(listener, 0) + 1

    def tls_failure(self, listener: str) -> None:
        self.tls_failures[listener] = self.tls_failures.get(listener, 0) + 1

    def tcp_open(self, key: tuple[str, str, str, str]) -> None:
        self.tcp_opened[key] = self.tcp_opened.get(key, 0) + 1

    def tcp_close(self, key: tuple[str, str, str, str], sent: int, received: int) -> None:
        self.tcp_closed[key] = self.tcp_closed.get(key, 0) + 1
        self.tcp_sent[key] = self.tcp_sent.get(key, 0) + sent
        self.tcp_received[key] = self.tcp_received.get(key, 0) + received

    # -- scrape ----------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        fam = CounterMetricFamily(
            "gossamer_requests",
            "HTTP requests by reporter, peers and response code.",
            labels=REQUEST_LABELS,
        )
        for (reporter, src, dst, code, sec), n in list(self.requests.items()):
            cls = "failure" if code >= 500 else "success"
            fam.add_metric([reporter, src, dst, str(code), cls, sec], n)
        yield fam
        for name, data, help_text in (
            ("gossamer_tcp_connections_opened", self.tcp_opened, "TCP connections proxied."),
            ("gossamer_tcp_connections_closed", self.tcp_closed, "TCP connections closed."),
            ("gossamer_tcp_sent_bytes", self.tcp_sent, "Bytes sent to the destination."),
            ("gossamer_tcp_received_bytes", self.tcp_received, "Bytes received from it."),
        ):
            tcp = CounterMetricFamily(name, help_text, labels=TCP_LABELS)
            for key, n in list(data.items()):
                tcp.add_metric(list(key), n)
            yield tcp
        retries = CounterMetricFamily(
            "gossamer_retries",
            "Retries by destination and outcome.",
            labels=("destination_service", "outcome"),
        )
        for (dst, outcome), n in list(self.retries.items()):
            retries.add_metric([dst, outcome], n)
        yield retries
        conns = CounterMetricFamily(
            "gossamer_downstream_connections", "Connections accepted.", labels=("listener",)
        )
        for listener, n in list(self.downstream_connections.items()):
            conns.add_metric([listener], n)
        yield conns
        tls = CounterMetricFamily(
            "gossamer_tls_handshake_failures", "Refused TLS handshakes.", labels=("listener",)
        )
        for listener, n in list(self.tls_failures.items()):
            tls.add_metric([listener], n)
        yield tls
        for name, fn in list(self.gauges.items()):
            yield GaugeMetricFamily(name, name.replace("_", " "), value=float(fn()))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def total_requests(self, reporter: str | None = None) -> int:
        return sum(n for k, n in self.requests.items() if reporter is None or k[0] == reporter)
