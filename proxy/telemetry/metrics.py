"""The sidecar's metric families and their hot-path recorders (docs/architecture.md,
"Protocols").

Theory of operation: recording must cost next to nothing per request, so the data path
never touches prometheus-client's locks or label maps. It asks once for a *series*
object bound to a label tuple (`SidecarMetrics.requests(...)`, `.tcp(...)`; cached, so
the proxy may keep the object on its route or connection) and then updates plain slots
on it: `series.record(status, seconds)` appends the pair to a list; every 128
responses (or when read) they are counted in bulk, by C-level list operations. The
labelled Prometheus families are built only when `/metrics` is scraped:
`SidecarMetrics` is a prometheus-client `Collector` registered in its own
`CollectorRegistry` (one per sidecar).

Families (Istio's vocabulary under the `gossamer_` prefix). Labels are bounded: service
names, SPIFFE IDs of services, status codes, configured route names, a fixed set of
methods; never paths, ids or addresses.

- `gossamer_requests_total{reporter, source_service, destination_service, response_code,
  classification, connection_security_policy}`
- `gossamer_request_duration_seconds{reporter, source_service, destination_service,
  connection_security_policy}` histogram, buckets 0.5 ms .. 10 s
- `gossamer_route_requests_total{reporter, source_service, destination_service, route,
  method, classification}` (what `gossamer top` ranks)
- `gossamer_grpc_responses_total{reporter, source_service, destination_service,
  grpc_status}`: gRPC calls by final status (0-16 or `unknown`); their classification in
  `gossamer_requests_total` follows grpc-status, response_code stays the HTTP status
- `gossamer_tcp_connections_opened_total`, `..._closed_total`, `gossamer_tcp_sent_bytes_total`,
  `gossamer_tcp_received_bytes_total{reporter, source_service, destination_service,
  connection_security_policy, source_principal, destination_principal}`
- `gossamer_retries_total{destination_service}`,
  `gossamer_retry_budget_exhausted_total{destination_service}`,
  `gossamer_outlier_ejections_total{destination_service, reason}`,
  `gossamer_circuit_breaker_overflows_total{destination_service, limit}`,
  `gossamer_health_check_failures_total{destination_service}`
- `gossamer_xds_updates_total{type}`, `gossamer_xds_nacks_total{type}`
- `gossamer_downstream_connections_total{listener}`,
  `gossamer_downstream_connections_overflow_total{listener}` (connections closed because
  the listener was at its connection limit: the newcomer, or an unproven one it displaced),
  `gossamer_tls_handshake_failures_total{listener}`
- `gossamer_downstream_h2_abuse_closed_total{listener, reason}`: HTTP/2 connections
  closed with GOAWAY(ENHANCE_YOUR_CALM) (reasons in `transport/h2/abuse.py`)
- `gossamer_downstream_stream_timeouts_total{listener, reason}`: requests cut because
  they stalled (reason `idle` or `request`: `transport/stream_timeouts.py`)
- `gossamer_certificate_expiry_timestamp_seconds{identity}`
- extra counters and gauges registered by callback (`add_counter`, `add_gauge`)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# values (two per response) a series keeps before counting them: small, as every series
# may hold this many between scrapes
FOLD_AT = 256
_BUCKET_LE = (*(repr(b) for b in BUCKETS), "+Inf")
REPORTERS = ("source", "destination")
SECURITY_POLICIES = ("mutual_tls", "none")
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
XDS_TYPES = frozenset({"CDS", "EDS", "LDS", "RDS", "SDS"})
REQUEST_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "response_code",
    "classification",
    "connection_security_policy",
)
DURATION_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "connection_security_policy",
)
ROUTE_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "route",
    "method",
    "classification",
)
GRPC_LABELS = ("reporter", "source_service", "destination_service", "grpc_status")
TCP_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "connection_security_policy",
    "source_principal",
    "destination_principal",
)


def classify(status: int, grpc_status: int | None = None) -> str:
    """`failure` for 5xx, a missing response (0) or a gRPC status other than OK."""
    if status >= 500 or status <= 0:
        return "failure"
    if grpc_status:
        return "failure"
    return "success"


_OTHER = "other"


def normalize_method(method: str) -> str:
    """The method as a bounded label value: standard methods, else `other`."""
    return method if method in METHODS else _OTHER


def _unknown(value: str) -> str:
    return value or "unknown"


class RequestSeries:
    """Counts and latencies of one (reporter, source, destination, security, route,
    method). Hot path: `record(status, seconds)`, or the same three lines inlined (the
    telemetry layers): the pair goes on `pending`, counted in bulk by `fold` when
    `FOLD_AT` values wait, and whenever the counts are read (each reader folds first)."""

    __slots__ = ("_buckets", "_failed", "_ok", "_sum", "grpc", "labels", "pending")

    def __init__(self, labels: tuple[str, str, str, str, str, str]) -> None:
        self.labels = labels  # reporter, src, dst, security, route, method
        self._ok: dict[int, int] = {}
        self._failed: dict[int, int] = {}
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self.grpc: dict[str, int] | None = None  # gRPC calls by grpc-status (lazily)
        self.pending: list[float] = []  # status, seconds, status, seconds ... not counted yet

    def record(self, status: int, seconds: float, failed: bool | None = None) -> None:
        """Count one response. `failed` overrides the classification by status (pass
        True for a gRPC response whose grpc-status is not OK)."""
        if failed is None:
            pending = self.pending
            pending += (status, seconds)
            if len(pending) >= FOLD_AT:
                self.fold()
            return
        counts = self._failed if failed else self._ok
        counts[status] = counts.get(status, 0) + 1
        self._buckets[bisect_left(BUCKETS, seconds)] += 1
        self._sum += seconds

    def fold(self) -> None:
        """Count the pending responses: statuses by `list.count` (one status is the
        common case) or a Counter, durations sorted once and cut at the bucket bounds,
        so the per-response cost stays in C."""
        pending = self.pending
        if not pending:
            return
        self.pending = []
        statuses = pending[0::2]
        seconds = pending[1::2]
        n = len(statuses)
        first = statuses[0]
        same = statuses.count(first)
        by_status = {first: same} if same == n else Counter(statuses)
        for status, k in by_status.items():
            counts = self._failed if status >= 500 or status <= 0 else self._ok
            counts[int(status)] = counts.get(int(status), 0) + k
        seconds.sort()
        buckets = self._buckets
        below = 0  # responses in the buckets before this one (sorted: a prefix)
        for i, bound in enumerate(BUCKETS):
            upto = bisect_right(seconds, bound, below)
            buckets[i] += upto - below
            below = upto
        buckets[-1] += n - below
        self._sum += sum(seconds)

    @property
    def ok(self) -> dict[int, int]:
        """Responses classified as successes, by status."""
        self.fold()
        return self._ok

    @property
    def failed(self) -> dict[int, int]:
        """Responses classified as failures, by status."""
        self.fold()
        return self._failed

    @property
    def buckets(self) -> list[int]:
        """Histogram counts per bucket of BUCKETS (not cumulative), then +Inf."""
        self.fold()
        return self._buckets

    @property
    def sum(self) -> float:
        self.fold()
        return self._sum

    def grpc_status(self, status: int | None) -> None:
        """Count a gRPC call's final status (bounded: the 17 codes, else `unknown`)."""
        label = str(status) if status is not None and 0 <= status <= 16 else "unknown"
        if self.grpc is None:
            self.grpc = {}
        self.grpc[label] = self.grpc.get(label, 0) + 1

    @property
    def count(self) -> int:
        return sum(self.buckets)


class TcpSeries:
    """Connections and bytes of one (reporter, peers, security, principals). The proxy
    calls `opened()` when a connection is established (after the TLS handshake, when
    the peer's identity is known), adds to `sent`/`received` as bytes flow (or once at
    the end), and calls `closed()` when it ends."""

    __slots__ = ("closed_count", "labels", "opened_count", "received", "sent")

    def __init__(self, labels: tuple[str, str, str, str, str, str]) -> None:
        self.labels = labels
        self.opened_count = 0
        self.closed_count = 0
        self.sent = 0
        self.received = 0

    def opened(self) -> None:
        self.opened_count += 1

    def closed(self, sent: int = 0, received: int = 0) -> None:
        self.closed_count += 1
        self.sent += sent
        self.received += received

    @property
    def open_now(self) -> int:
        return self.opened_count - self.closed_count


def _bump(table: dict[Any, int], key: Any, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


class SidecarMetrics(Collector):
    """Every metric one sidecar exports, with its own registry."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str, str, str, str], RequestSeries] = {}
        self._tcp: dict[tuple[str, str, str, str, str, str], TcpSeries] = {}
        self.retries: dict[str, int] = {}
        self.budget_exhausted: dict[str, int] = {}
        self.ejections: dict[tuple[str, str], int] = {}
        self.overflows: dict[tuple[str, str], int] = {}
        self.hc_failures: dict[str, int] = {}
        self.xds_updates: dict[str, int] = {}
        self.xds_nacks: dict[str, int] = {}
        self.connections: dict[str, int] = {}
        self.tls_failures: dict[str, int] = {}
        self.connection_overflows: dict[str, int] = {}
        self.cert_expiry: dict[str, float] = {}
        self.h2_abuse: dict[tuple[str, str], int] = {}
        self.stream_timeouts: dict[tuple[str, str], int] = {}
        self._extra: list[tuple[str, str, str, Callable[[], float]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- series (ask once, keep the object) --------------------------------------------
    def requests(
        self,
        reporter: str,
        source: str,
        destination: str,
        security: str,
        route: str = "",
        method: str = "GET",
    ) -> RequestSeries:
        key = (reporter, source, destination, security, route, method)
        series = self._requests.get(key)
        if series is None:
            if method not in METHODS and method != _OTHER:  # the table stays bounded
                return self.requests(reporter, source, destination, security, route, _OTHER)
            if reporter not in REPORTERS:
                raise ValueError(f"reporter must be one of {REPORTERS}, got {reporter!r}")
            if security not in SECURITY_POLICIES:
                raise ValueError(f"security must be one of {SECURITY_POLICIES}, got {security!r}")
            labels = (
                reporter,
                _unknown(source),
                _unknown(destination),
                security,
                route or "default",
                normalize_method(method),
            )
            series = self._requests[key] = RequestSeries(labels)
        return series

    def tcp(
        self,
        reporter: str,
        source: str,
        destination: str,
        security: str,
        source_principal: str = "",
        destination_principal: str = "",
    ) -> TcpSeries:
        key = (reporter, source, destination, security, source_principal, destination_principal)
        series = self._tcp.get(key)
        if series is None:
            if reporter not in REPORTERS:
                raise ValueError(f"reporter must be one of {REPORTERS}, got {reporter!r}")
            labels = (
                reporter,
                _unknown(source),
                _unknown(destination),
                security,
                _unknown(source_principal),
                _unknown(destination_principal),
            )
            series = self._tcp[key] = TcpSeries(labels)
        return series

    # -- rare events -------------------------------------------------------------------
    def retry(self, destination: str) -> None:
        _bump(self.retries, _unknown(destination))

    def retry_budget_exhausted(self, destination: str) -> None:
        _bump(self.budget_exhausted, _unknown(destination))

    def outlier_ejection(self, destination: str, reason: str = "consecutive_5xx") -> None:
        _bump(self.ejections, (_unknown(destination), reason))

    def overflow(self, destination: str, limit: str) -> None:
        _bump(self.overflows, (_unknown(destination), limit))

    def health_check_failure(self, destination: str) -> None:
        _bump(self.hc_failures, _unknown(destination))

    def xds_update(self, type_name: str) -> None:
        _bump(self.xds_updates, _xds_type(type_name))

    def xds_nack(self, type_name: str) -> None:
        _bump(self.xds_nacks, _xds_type(type_name))

    def connection(self, listener: str) -> None:
        """A downstream connection accepted on `listener` (outbound, inbound)."""
        _bump(self.connections, listener)

    def tls_failure(self, listener: str) -> None:
        _bump(self.tls_failures, listener)

    def connection_overflow(self, listener: str) -> None:
        """A connection closed because `listener` was at its connection limit."""
        _bump(self.connection_overflows, listener)

    def h2_abuse_closed(self, listener: str, reason: str) -> None:
        """An HTTP/2 connection on `listener` closed for abuse (`reason`: abuse.py)."""
        _bump(self.h2_abuse, (listener, reason))

    def stream_timeout(self, listener: str, reason: str) -> None:
        """A request on `listener` was cut for stalling (`reason`: idle or request)."""
        _bump(self.stream_timeouts, (listener, reason))

    def set_certificate_expiry(self, identity: str, not_after: float) -> None:
        """The current leaf's notAfter (Unix seconds); replaces any earlier identity."""
        self.cert_expiry = {identity: float(not_after)}

    def add_counter(self, name: str, help_text: str, value: Callable[[], float]) -> None:
        """A counter read at scrape time (e.g. spans dropped by the trace exporter)."""
        self._extra.append(("counter", name, help_text, value))

    def add_gauge(self, name: str, help_text: str, value: Callable[[], float]) -> None:
        self._extra.append(("gauge", name, help_text, value))

    # -- scrape ------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        yield from self._request_families()
        yield from self._tcp_families()
        yield from self._event_families()
        for kind, name, help_text, fn in list(self._extra):
            if kind == "counter":
                yield CounterMetricFamily(name, help_text, value=float(fn()))
            else:
                yield GaugeMetricFamily(name, help_text, value=float(fn()))

    def _request_families(self) -> Iterator[Any]:
        counts: dict[tuple[str, ...], int] = {}
        routes: dict[tuple[str, ...], int] = {}
        grpc: dict[tuple[str, ...], int] = {}
        hist: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        for series in list(self._requests.values()):
            rep, src, dst, sec, route, method = series.labels
            for cls, table in (("success", series.ok), ("failure", series.failed)):
                total = 0
                for code, n in list(table.items()):
                    _bump(counts, (rep, src, dst, str(code), cls, sec), n)
                    total += n
                if total:
                    _bump(routes, (rep, src, dst, route, method, cls), total)
            for status, n in list((series.grpc or {}).items()):
                _bump(grpc, (rep, src, dst, status), n)
            buckets, acc = hist.setdefault((rep, src, dst, sec), ([0] * len(_BUCKET_LE), [0.0]))
            for i, n in enumerate(series.buckets):
                buckets[i] += n
            acc[0] += series.sum
        fam = CounterMetricFamily(
            "gossamer_requests", "Requests by reporter, peers and response.", labels=REQUEST_LABELS
        )
        for labels, n in counts.items():
            fam.add_metric(labels, n)
        yield fam
        dur = HistogramMetricFamily(
            "gossamer_request_duration_seconds",
            "Request duration from request start to response end.",
            labels=DURATION_LABELS,
        )
        for labels, (buckets, acc) in hist.items():
            cumulative, running = [], 0
            for le, n in zip(_BUCKET_LE, buckets, strict=True):
                running += n
                cumulative.append((le, running))
            dur.add_metric(labels, cumulative, acc[0])
        yield dur
        rfam = CounterMetricFamily(
            "gossamer_route_requests", "Requests by route and method.", labels=ROUTE_LABELS
        )
        for labels, n in routes.items():
            rfam.add_metric(labels, n)
        yield rfam
        gfam = CounterMetricFamily(
            "gossamer_grpc_responses",
            "gRPC calls by final grpc-status (unknown: none, e.g. a reset).",
            labels=GRPC_LABELS,
        )
        for labels, n in grpc.items():
            gfam.add_metric(labels, n)
        yield gfam

    def _tcp_families(self) -> Iterator[Any]:
        tcp = list(self._tcp.values())
        for name, attr, help_text in (
            ("gossamer_tcp_connections_opened", "opened_count", "Connections opened."),
            ("gossamer_tcp_connections_closed", "closed_count", "Connections closed."),
            ("gossamer_tcp_sent_bytes", "sent", "Bytes sent to the peer."),
            ("gossamer_tcp_received_bytes", "received", "Bytes received from the peer."),
        ):
            fam = CounterMetricFamily(name, help_text, labels=TCP_LABELS)
            for series in tcp:
                fam.add_metric(series.labels, getattr(series, attr))
            yield fam

    def _event_families(self) -> Iterator[Any]:
        for name, table, label, help_text in (
            ("gossamer_retries", self.retries, "destination_service", "Retries sent."),
            (
                "gossamer_retry_budget_exhausted",
                self.budget_exhausted,
                "destination_service",
                "Retries not sent because the retry budget was spent.",
            ),
            (
                "gossamer_health_check_failures",
                self.hc_failures,
                "destination_service",
                "Active health checks that failed.",
            ),
            ("gossamer_xds_updates", self.xds_updates, "type", "xDS updates accepted."),
            ("gossamer_xds_nacks", self.xds_nacks, "type", "xDS updates rejected (NACK)."),
            (
                "gossamer_downstream_connections",
                self.connections,
                "listener",
                "Connections accepted.",
            ),
            (
                "gossamer_tls_handshake_failures",
                self.tls_failures,
                "listener",
                "Refused TLS handshakes.",
            ),
            (
                "gossamer_downstream_connections_overflow",
                self.connection_overflows,
                "listener",
                "Connections closed because the listener was at its connection limit.",
            ),
        ):
            fam = CounterMetricFamily(name, help_text, labels=(label,))
            for key, n in list(table.items()):
                fam.add_metric((key,), n)
            yield fam
        ej = CounterMetricFamily(
            "gossamer_outlier_ejections",
            "Endpoints ejected by outlier detection.",
            labels=("destination_service", "reason"),
        )
        for (dst, reason), n in list(self.ejections.items()):
            ej.add_metric((dst, reason), n)
        yield ej
        over = CounterMetricFamily(
            "gossamer_circuit_breaker_overflows",
            "Requests or connections refused by a circuit-breaker limit.",
            labels=("destination_service", "limit"),
        )
        for (dst, limit), n in list(self.overflows.items()):
            over.add_metric((dst, limit), n)
        yield over
        abuse = CounterMetricFamily(
            "gossamer_downstream_h2_abuse_closed",
            "HTTP/2 connections closed with GOAWAY(ENHANCE_YOUR_CALM) for abuse.",
            labels=("listener", "reason"),
        )
        for (listener, reason), n in list(self.h2_abuse.items()):
            abuse.add_metric((listener, reason), n)
        yield abuse
        stalled = CounterMetricFamily(
            "gossamer_downstream_stream_timeouts",
            "Downstream requests cut for stalling (stream idle or request timeout).",
            labels=("listener", "reason"),
        )
        for (listener, reason), n in list(self.stream_timeouts.items()):
            stalled.add_metric((listener, reason), n)
        yield stalled
        cert = GaugeMetricFamily(
            "gossamer_certificate_expiry_timestamp_seconds",
            "When the sidecar's current certificate expires (Unix time).",
            labels=("identity",),
        )
        for identity, when in list(self.cert_expiry.items()):
            cert.add_metric((identity,), when)
        yield cert

    def render(self) -> bytes:
        """The Prometheus text exposition of every family (serve with CONTENT_TYPE)."""
        return bytes(generate_latest(self.registry))

    def request_series(self) -> list[RequestSeries]:
        return list(self._requests.values())


def _xds_type(type_name: str) -> str:
    short = type_name.rsplit(".", 1)[-1]
    mapping = {
        "Cluster": "CDS",
        "ClusterLoadAssignment": "EDS",
        "Listener": "LDS",
        "RouteConfiguration": "RDS",
        "Secret": "SDS",
    }
    short = mapping.get(short, short)
    return short if short in XDS_TYPES else "other"
