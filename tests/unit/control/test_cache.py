from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from gossamer.contract import xds
from gossamer.control.cache import (
    DeltaSubscription,
    InconsistentSnapshot,
    Resource,
    Snapshot,
    SnapshotCache,
    SotwSubscription,
    TypeSnapshot,
    delta_update,
    sotw_update,
)
from gossamer.control.translate.common import ads_source


def eds_cluster(name: str) -> Resource:
    return Resource.of(
        name,
        cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.EDS,
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        ),
    )


def cla(name: str, weight: int = 1) -> Resource:
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    message.policy.overprovisioning_factor.value = weight
    return Resource.of(name, message)


def snapshot(clusters=("a",), weights=None) -> Snapshot:
    weights = weights or {}
    return Snapshot.build(
        {
            xds.CLUSTER: [eds_cluster(c) for c in clusters],
            xds.ENDPOINT: [cla(c, weights.get(c, 1)) for c in clusters],
        }
    )


def test_versions_depend_on_content_only():
    assert eds_cluster("a").version == eds_cluster("a").version
    assert eds_cluster("a").version != eds_cluster("b").version
    one = snapshot(("a", "b"))
    two = snapshot(("b", "a"))
    assert one.versions() == two.versions()
    assert snapshot(("a",), {"a": 2}).get(xds.ENDPOINT).version != one.get(xds.ENDPOINT).version
    assert TypeSnapshot.of(()).version  # even an empty type has a version


def test_consistency_check_refuses_dangling_references():
    cache = SnapshotCache()
    broken = Snapshot.build({xds.CLUSTER: [eds_cluster("a")]})
    assert broken.consistency_errors() == ["cluster a needs ClusterLoadAssignment a"]
    with pytest.raises(InconsistentSnapshot, match="needs ClusterLoadAssignment a"):
        cache.set_snapshot("g", broken)
    assert cache.get("g") is None


def test_watchers_are_notified_only_on_change():
    cache = SnapshotCache()
    seen: list[Snapshot] = []
    cancel = cache.watch("g", seen.append)
    assert cache.set_snapshot("g", snapshot())
    assert not cache.set_snapshot("g", snapshot())  # same content: no notification
    assert cache.set_snapshot("g", snapshot(("a", "b")))
    assert len(seen) == 2
    late: list[Snapshot] = []
    cache.watch("g", late.append)
    assert late == [cache.get("g")]  # a new watcher gets the current snapshot at once
    cancel()
    cache.set_snapshot("g", snapshot(("c",)))
    assert len(seen) == 2 and len(late) == 2
    assert cache.watched_groups() == {"g"} and cache.watcher_count() == 1


def test_sotw_full_state_types_resend_everything_on_change():
    sub = SotwSubscription(wildcard=True)
    first = sotw_update(xds.CLUSTER, snapshot(("a", "b")).get(xds.CLUSTER), sub)
    assert first is not None and sorted(r.name for r in first) == ["a", "b"]
    assert sotw_update(xds.CLUSTER, snapshot(("a", "b")).get(xds.CLUSTER), sub) is None
    removed = sotw_update(xds.CLUSTER, snapshot(("a",)).get(xds.CLUSTER), sub)
    assert removed is not None and [r.name for r in removed] == ["a"]  # absence deletes b


def test_sotw_other_types_send_only_changes_and_new_names():
    sub = SotwSubscription(names=frozenset({"a", "missing"}))
    first = sotw_update(xds.ENDPOINT, snapshot(("a", "b")).get(xds.ENDPOINT), sub)
    assert [r.name for r in first or []] == ["a"]
    changed = snapshot(("a", "b", "missing"), {"b": 5}).get(xds.ENDPOINT)
    # b changed but is not subscribed; "missing" now exists and was requested
    assert [r.name for r in sotw_update(xds.ENDPOINT, changed, sub) or []] == ["missing"]
    assert sotw_update(xds.ENDPOINT, changed, sub) is None


def test_sotw_mark_current_suppresses_the_first_response():
    sub = SotwSubscription(wildcard=True)
    current = snapshot(("a",)).get(xds.CLUSTER)
    sub.mark_current(current)
    assert sotw_update(xds.CLUSTER, current, sub) is None


def test_delta_sends_differences_and_removals():
    sub = DeltaSubscription(wildcard=True)
    updates, removed = delta_update(snapshot(("a", "b")).get(xds.CLUSTER), sub)
    assert sorted(r.name for r in updates) == ["a", "b"] and removed == []
    assert delta_update(snapshot(("a", "b")).get(xds.CLUSTER), sub) == ([], [])
    updates, removed = delta_update(snapshot(("a",)).get(xds.CLUSTER), sub)
    assert updates == [] and removed == ["b"]


def test_delta_initial_versions_and_absent_names():
    current = snapshot(("a", "b")).get(xds.ENDPOINT)
    sub = DeltaSubscription(
        names={"a", "b", "x"}, known={"a": current.resources["a"].version, "b": "old", "gone": "v"}
    )
    updates, removed = delta_update(current, sub)
    assert [r.name for r in updates] == ["b"]
    assert removed == ["gone", "x"]
    assert delta_update(current, sub) == ([], [])  # "x" reported absent only once
    later = snapshot(("a", "b", "x")).get(xds.ENDPOINT)
    assert [r.name for r in delta_update(later, sub)[0]] == ["x"]


def test_delta_force_removed():
    sub = DeltaSubscription(wildcard=True, force_removed={"nope"})
    updates, removed = delta_update(snapshot(()).get(xds.CLUSTER), sub)
    assert updates == [] and removed == ["nope"] and not sub.force_removed
