"""The control plane's own Prometheus metrics, read from live state at scrape time.

Streams by protocol, xDS pushes and NACKs since start, snapshot publishes and the
duration of the last one (the push latency the control plane adds), certificates
issued, registry size, configuration reloads and errors, registrations refused (by
reason: `foreign_address`, an address neither the connection nor the certificate
allows; `no_peer_address`: control/addresses.py), operator API connections closed at
its connection cap (control/api_limits.py), the embedded metric history's series and
the points it dropped at its series cap (control/series_api.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .publisher import PublishStats
from .stream_status import StreamRegistry


@dataclass
class ControlMetricSources:
    streams: StreamRegistry
    publish_stats: Callable[[], PublishStats]
    certificates_issued: Callable[[], int]
    registry_size: Callable[[], tuple[int, int]]  # (services, endpoints)
    config_loads: Callable[[], int]
    config_error: Callable[[], bool]
    registrations_refused: Callable[[], Mapping[str, int]] = lambda: {}
    api_overflows: Callable[[], int] = lambda: 0  # connections the operator API's cap cut
    # (taps open, sidecars' Tap streams, taps opened since start): control/tap_hub.py
    taps: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)
    # (series in the metric history, points dropped at its cap): control/series_api.py
    history: Callable[[], tuple[int, int]] = lambda: (0, 0)


class ControlCollector(Collector):
    def __init__(self, sources: ControlMetricSources) -> None:
        self.s = sources

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        streams = GaugeMetricFamily(
            "gossamer_control_streams", "Open ADS streams", labels=["protocol"]
        )
        by_protocol: dict[str, int] = {"sotw": 0, "delta": 0}
        for info in self.s.streams.streams():
            by_protocol[info.protocol] = by_protocol.get(info.protocol, 0) + 1
        for protocol, count in sorted(by_protocol.items()):
            streams.add_metric([protocol], count)
        yield streams
        yield CounterMetricFamily(
            "gossamer_control_xds_pushes", "xDS responses sent", value=self.s.streams.pushes_total
        )
        yield CounterMetricFamily(
            "gossamer_control_xds_nacks", "NACKs received", value=self.s.streams.nacks_total
        )
        stats = self.s.publish_stats()
        yield CounterMetricFamily(
            "gossamer_control_publishes", "Snapshot publications", value=stats.publishes
        )
        yield GaugeMetricFamily(
            "gossamer_control_last_publish_seconds",
            "Time the last snapshot publication took (translate + diff)",
            value=stats.last_duration,
        )
        yield CounterMetricFamily(
            "gossamer_control_certificates_issued",
            "Workload certificates issued",
            value=self.s.certificates_issued(),
        )
        services, endpoints = self.s.registry_size()
        yield GaugeMetricFamily("gossamer_control_services", "Services", value=services)
        yield GaugeMetricFamily("gossamer_control_endpoints", "Endpoints", value=endpoints)
        yield CounterMetricFamily(
            "gossamer_control_config_loads", "mesh.yaml loads", value=self.s.config_loads()
        )
        yield GaugeMetricFamily(
            "gossamer_control_config_error",
            "1 when the last mesh.yaml change was rejected",
            value=1 if self.s.config_error() else 0,
        )
        refused = CounterMetricFamily(
            "gossamer_control_registrations_refused",
            "Sidecar registrations refused for their address (control/addresses.py)",
            labels=["reason"],
        )
        counts = self.s.registrations_refused()
        for reason in sorted({"foreign_address", *counts}):
            refused.add_metric([reason], counts.get(reason, 0))
        yield refused
        yield CounterMetricFamily(
            "gossamer_control_api_connections_overflow",
            "Operator API connections closed or displaced at its connection cap",
            value=self.s.api_overflows(),
        )
        open_taps, tap_streams, opened = self.s.taps()
        yield GaugeMetricFamily(
            "gossamer_control_taps_open", "Operator taps open (gossamer tap)", value=open_taps
        )
        yield GaugeMetricFamily(
            "gossamer_control_tap_streams", "Sidecars' open Tap streams", value=tap_streams
        )
        yield CounterMetricFamily(
            "gossamer_control_taps_opened", "Operator taps opened since start", value=opened
        )
        series, dropped = self.s.history()
        yield GaugeMetricFamily(
            "gossamer_control_history_series", "Series in the metric history", value=series
        )
        yield CounterMetricFamily(
            "gossamer_control_history_points_dropped",
            "Points of new series the metric history did not store: it was at its series cap",
            value=dropped,
        )


def metrics_renderer(sources: ControlMetricSources) -> Callable[[], bytes]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlCollector(sources))
    return lambda: generate_latest(registry)
