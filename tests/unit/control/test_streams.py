from __future__ import annotations

from gossamer.contract import xds
from gossamer.control.stream_status import MAX_REMEMBERED_NACKS, StreamRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stream_state_for_the_operator_api():
    clock = Clock()
    registry = StreamRegistry(clock)
    info = registry.open("sotw", "ipv4:127.0.0.1:5000")
    info.node_id = "web-1"
    info.node = "node-2"
    info.group = "sidecar:default/web"
    info.record_subscription(xds.CLUSTER, True, 0)
    info.record_sent(xds.CLUSTER, "v1")
    clock.now = 101.0
    info.record_ack(xds.CLUSTER, "v1")
    info.record_sent(xds.CLUSTER, "v2")
    clock.now = 102.5
    info.record_nack(xds.CLUSTER, "v2", "bad cluster")
    view = registry.to_dict()
    [stream] = view["streams"]
    assert stream["node_id"] == "web-1" and stream["peer"] == "ipv4:127.0.0.1:5000"
    assert stream["node"] == "node-2"
    cds = stream["types"]["CDS"]
    assert cds["acked_version"] == "v1" and cds["acked_at"] == 101.0
    assert cds["sent_version"] == "v2" and cds["responses"] == 2 and cds["wildcard"]
    assert cds["last_nack"] == {"version": "v2", "error": "bad cluster", "at": 102.5}
    assert view["nacks"] == {
        "web-1": {"CDS": {"version": "v2", "error": "bad cluster", "at": 102.5}}
    }
    registry.close(info)
    assert len(registry) == 0
    # the NACK outlives the stream
    nack = registry.last_nack("web-1", xds.CLUSTER)
    assert nack is not None and nack.error == "bad cluster"


def test_remembered_nacks_are_bounded():
    registry = StreamRegistry(Clock())
    info = registry.open("delta", "p")
    for i in range(MAX_REMEMBERED_NACKS + 5):
        info.node_id = f"n{i}"
        info.record_nack(xds.ENDPOINT, "v", "e")
    nacks = registry.nacks()
    assert len(nacks) == MAX_REMEMBERED_NACKS
    assert "n0" not in nacks and f"n{MAX_REMEMBERED_NACKS + 4}" in nacks
