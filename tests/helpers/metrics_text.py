"""Reading Prometheus text exposition in tests: the sum of one metric's samples."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` (e.g. `gossamer_requests_total`) whose labels
    include `labels`; 0 when there are none."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
