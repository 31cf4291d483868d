"""gRPC and HTTP/2 through a mesh of real processes: a grpcio client app calls a grpcio
server app (three instances) through its sidecar's outbound port (h2c, routed by the
channel's authority), sidecar to sidecar over mTLS with ALPN h2, and h2c to the apps.

Proves: unary, server-streaming and bidi calls with initial and trailing metadata and
status details intact; one channel's calls spread over all three instances (request-
level balancing); a trailers-only UNAVAILABLE from one instance retried elsewhere;
grpc-timeout propagated (the app sees less time than the client gave) and enforced as
DEADLINE_EXCEEDED; gRPC statuses classified in the metrics; a plain h2 client (the h2
library, prior knowledge) gets its response and trailers too; the circuit breaker of an
HTTP/2 cluster (max_connections 1, max_pending_requests 1, to an app without a sidecar
that takes one stream at a time) keeps one upstream connection, makes the next call
wait and answers the one after at once with a trailers-only UNAVAILABLE (overflow).
"""

from __future__ import annotations

import functools
import queue
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from tests.helpers.net import established_to
from tests.helpers.procs import Process, free_port, port_open, processes, wait_for
from tests.helpers.xds_mesh import REPO, XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e

AUTHORITY = "greeter:8080"
LIMITED = "outbound|8080||limited"
SERVICES = [
    http_service("web"),
    {
        "name": "greeter",
        "ports": [{"port": 8080, "protocol": "grpc"}],
        "retries": {"attempts": 2, "on": ["connect-failure", "refused-stream", "unavailable"]},
    },
]


def limited_service(app_port: int) -> dict[str, object]:
    """A gRPC service without a sidecar (a static endpoint: h2c from the caller's
    sidecar), whose cluster may hold one connection and one pending request."""
    return {
        "name": "limited",
        "ports": [{"port": 8080, "protocol": "grpc"}],
        "endpoints": [{"address": "127.0.0.1", "port": app_port}],
        "circuit_breakers": {"max_connections": 1, "max_pending_requests": 1},
    }


def _ident(b: bytes) -> bytes:
    return b


def grpc_app(mesh: XdsMesh, port: int, name: str, *flags: str) -> None:
    args = [sys.executable, "-m", "tests.helpers.grpc_app", "--port", str(port), "--name", name]
    mesh.procs.append(Process([*args, *flags], mesh.tmp / f"grpc-app-{name}.log", cwd=REPO))
    wait_for(functools.partial(port_open, port), what=f"gRPC app on {port}")


class World:
    def __init__(self, mesh: XdsMesh, limited_port: int) -> None:
        self.mesh = mesh
        mesh.start_control()
        self.apps = []
        for i in range(3):
            port = free_port()
            grpc_app(mesh, port, f"greeter-{i}", *(["--unavailable"] if i == 2 else []))
            self.apps.append(port)
        self.limited_app = limited_port
        grpc_app(mesh, limited_port, "limited", "--max-streams", "1")
        self.greeters = [mesh.sidecar("greeter", p) for p in self.apps]
        self.web: XdsSidecar = mesh.sidecar("web")
        wait_for(
            lambda: len(self.web.endpoints("outbound|8080||greeter")) == 3,
            timeout=20,
            what="three greeter endpoints at web",
        )
        wait_for(lambda: len(self.web.endpoints(LIMITED)) == 1, what="the limited endpoint")
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.web.outbound}", options=[("grpc.default_authority", AUTHORITY)]
        )

    def unary(self, method: str, request: bytes, **kw: object) -> grpc.Call:
        call = self.channel.unary_unary(
            f"/test.Echo/{method}", request_serializer=_ident, response_deserializer=_ident
        )
        return call.with_call(request, timeout=kw.pop("timeout", 10), **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("xds-grpc")
    limited_port = free_port()
    with processes() as procs:
        w = World(XdsMesh(tmp, procs, [*SERVICES, limited_service(limited_port)]), limited_port)
        yield w
        w.channel.close()


def test_unary_call_keeps_metadata_and_trailers(world: World) -> None:
    reply, call = world.unary("Unary", b"hello")
    name = reply.split(b":")[0].decode()
    assert reply == name.encode() + b":hello"
    assert call.code() == grpc.StatusCode.OK
    assert dict(call.initial_metadata())["x-served-by"] == name
    trailers = dict(call.trailing_metadata())
    assert trailers["x-instance"] == name and trailers["x-trailer"] == "done"


def test_status_details_and_trailers_of_a_failed_call(world: World) -> None:
    with pytest.raises(grpc.RpcError) as info:
        world.unary("Fail", b"PERMISSION_DENIED:no entry for you")
    err = info.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "no entry for you"
    assert dict(err.trailing_metadata())["x-why"] == "test"


def test_calls_of_one_channel_spread_over_all_instances(world: World) -> None:
    served = Counter(world.unary("Unary", b"x")[0].split(b":")[0] for _ in range(60))
    assert set(served) == {b"greeter-0", b"greeter-1", b"greeter-2"}, served
    assert min(served.values()) >= 10, served


def test_server_streaming_call(world: World) -> None:
    call = world.channel.unary_stream(
        "/test.Echo/ServerStream", request_serializer=_ident, response_deserializer=_ident
    )
    stream = call(b"50", timeout=10)
    messages = list(stream)
    assert len(messages) == 50
    name = messages[0].split(b":")[0]
    assert messages == [b"%s:%d" % (name, i) for i in range(50)]
    assert stream.code() == grpc.StatusCode.OK
    assert dict(stream.trailing_metadata())["x-count"] == "50"


def test_bidi_streaming_call_interleaves(world: World) -> None:
    call = world.channel.stream_stream(
        "/test.Echo/Bidi", request_serializer=_ident, response_deserializer=_ident
    )
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests():
        while (item := outbox.get()) is not None:
            yield item

    stream = call(requests(), timeout=10)
    got = []
    for word in (b"alpha", b"beta", b"gamma"):
        outbox.put(word)
        got.append(next(stream))  # each answer arrives before the next request is sent
    outbox.put(None)
    assert got == [b"ALPHA", b"BETA", b"GAMMA"]
    assert list(stream) == []
    assert stream.code() == grpc.StatusCode.OK
    assert dict(stream.trailing_metadata())["x-instance"].startswith("greeter-")


def test_unavailable_is_retried_on_another_instance(world: World) -> None:
    before = world.web.metric("gossamer_retries_total", destination_service="greeter")
    served = Counter(world.unary("Flaky", b"r")[0].split(b":")[0] for _ in range(30))
    # greeter-2 answers UNAVAILABLE every time: each of its calls was retried elsewhere
    assert set(served) <= {b"greeter-0", b"greeter-1"} and sum(served.values()) == 30, served
    retries = world.web.metric("gossamer_retries_total", destination_service="greeter") - before
    assert retries >= 5, retries


def test_deadline_reaches_the_app(world: World) -> None:
    reply, _ = world.unary("Deadline", b"", timeout=5)
    left = float(reply)
    # the app saw the client's deadline, minus the trip: grpcio's client rounds the
    # timeout it sends up to 10 ms, and its server keeps the deadline in whole
    # milliseconds (a CI run saw 5.011)
    assert 3.0 < left <= 5.012, left
    status, _, body, trailers = h2_call(
        world.web.outbound, "/test.Echo/Deadline", b"", grpc_timeout=b"2S"
    )
    assert status == 200 and trailers[b"grpc-status"] == b"0"
    assert 1.0 < float(body[5:]) <= 2.01, body  # (grpc rounds deadlines to ms)


def test_sidecar_enforces_grpc_timeout_with_deadline_exceeded(world: World) -> None:
    status, headers, _, trailers = h2_call(
        world.web.outbound, "/test.Echo/Deadline", b"sleep:3", grpc_timeout=b"300m"
    )
    assert status == 200
    assert headers.get(b"grpc-status") == b"4", headers  # trailers-only DEADLINE_EXCEEDED
    assert headers.get(b"x-gossamer-error") == b"timeout"
    assert trailers == {}


def test_plain_h2_client_with_prior_knowledge(world: World) -> None:
    status, headers, body, trailers = h2_call(world.web.outbound, "/test.Echo/Unary", b"plain")
    assert status == 200
    assert headers[b"content-type"] == b"application/grpc"
    assert body[5:].endswith(b":plain")
    assert trailers[b"grpc-status"] == b"0" and trailers[b"x-trailer"] == b"done"


def test_grpc_statuses_are_classified(world: World) -> None:
    def failures() -> float:
        return world.web.metric(
            "gossamer_requests_total", reporter="source", destination_service="greeter",
            response_code="200", classification="failure",
        )  # fmt: skip

    def internal() -> float:
        return world.web.metric(
            "gossamer_grpc_responses_total", reporter="source", destination_service="greeter",
            grpc_status="13",
        )  # fmt: skip

    before, before_13 = failures(), internal()
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            world.unary("Fail", b"INTERNAL:boom")
    world.unary("Unary", b"ok")
    assert failures() - before == 3
    assert internal() - before_13 == 3


def h2_call(
    port: int,
    path: str,
    message: bytes,
    grpc_timeout: bytes | None = None,
    authority: str = AUTHORITY,
) -> tuple[int, dict[bytes, bytes], bytes, dict[bytes, bytes]]:
    """One gRPC call with the h2 library over h2c prior knowledge."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [
        (":method", "POST"), (":scheme", "http"), (":authority", authority), (":path", path),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ]  # fmt: skip
    if grpc_timeout is not None:
        headers.append(("grpc-timeout", grpc_timeout.decode()))
    conn.send_headers(1, headers)
    conn.send_data(1, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, head, body, trailers = 0, {}, b"", {}
    done = False
    while not done:
        data = sock.recv(65536)
        assert data, "connection closed before the stream ended"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                head = {bytes(k): bytes(v) for k, v in ev.headers}
                status = int(head[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = {bytes(k): bytes(v) for k, v in ev.headers}
            elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                done = True
        sock.sendall(conn.data_to_send())
    sock.close()
    return status, head, body, trailers


def test_h2_cluster_circuit_breaker_one_connection_one_pending_then_overflow(
    world: World,
) -> None:
    web = world.web

    def breaker() -> dict[str, int]:
        clusters = web.admin_json("/clusters")["clusters"]
        cluster = next(c for c in clusters if c["name"].startswith(LIMITED))
        return {**cluster["circuit_breaker"], "open": cluster["endpoints"][0]["connections"]}

    def overflows() -> float:
        return web.metric(
            "gossamer_circuit_breaker_overflows_total",
            destination_service="limited",
            limit="max_pending_requests",
        )

    assert breaker()["max_connections"] == 1 and breaker()["max_pending_requests"] == 1
    before = overflows()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{web.outbound}", options=[("grpc.default_authority", "limited:8080")]
    )
    slow = channel.unary_unary(
        "/test.Echo/Deadline", request_serializer=_ident, response_deserializer=_ident
    )
    try:
        # one call opens the connection (and brings the app's SETTINGS: one stream at a
        # time); it stays open and holds the cluster's only connection unit
        assert float(slow(b"sleep:0", timeout=20)) > 10
        assert breaker()["connections"] == 1 and established_to(world.limited_app) == 1
        # the first call holds the app's only stream on the cluster's only connection
        first = slow.future(b"sleep:3", timeout=20)
        wait_for(lambda: breaker()["requests"] == 1, what="the first call upstream")
        # the second has no stream and no connection unit left: it waits as pending
        second = slow.future(b"sleep:0.1", timeout=20)
        wait_for(lambda: breaker()["pending"] == 1, what="a pending call")
        # the third would be a second pending request: refused at once
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            slow(b"sleep:0", timeout=20)
        refused_in = time.monotonic() - start
        err = info.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        assert "max_pending_requests (1) reached" in err.details(), err.details()
        assert dict(err.trailing_metadata())["x-gossamer-error"] == "overflow"
        # what is on the wire: a trailers-only answer (HTTP 200, grpc-status 14 in the
        # headers, nothing after them)
        status, headers, body, trailers = h2_call(
            web.outbound, "/test.Echo/Deadline", b"sleep:0", authority="limited:8080"
        )
        assert status == 200 and body == b"" and trailers == {}
        assert headers[b"grpc-status"] == b"14" and headers[b"x-gossamer-error"] == b"overflow"
        assert refused_in < 1.0, refused_in  # not queued behind the first call
        assert not first.done() and not second.done()
        assert established_to(world.limited_app) == 1
        # the first call ends; the pending one gets its stream on the same connection
        assert float(first.result()) > 10 and float(second.result()) > 10
        state = breaker()
        assert state["pending"] == 0 and state["requests"] == 0
        assert state["connections"] == 1 and state["open"] == 1
        assert established_to(world.limited_app) == 1
        assert overflows() - before == 2
    finally:
        channel.close()


def test_drain_lets_an_open_stream_finish_and_calls_move_on(world: World) -> None:
    """(Last: it stops one instance.) SIGTERM to the sidecar serving a bidi call: the
    call carries on and ends with its trailers (GOAWAY: open streams finish), new calls
    go to the other instances, none fails."""
    call = world.channel.stream_stream(
        "/test.Echo/Bidi", request_serializer=_ident, response_deserializer=_ident
    )
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (item := outbox.get()) is not None:
            yield item

    stream = call(requests(), timeout=20)
    outbox.put(b"before")
    assert next(stream) == b"BEFORE"
    name = dict(stream.initial_metadata())["x-served-by"]
    draining = world.greeters[int(name.rsplit("-", 1)[1])]
    draining.process.signal(signal.SIGTERM)
    wait_for(lambda: not draining.ready(), timeout=10, what="the sidecar to start draining")
    # meanwhile other calls keep succeeding (on the others, or retried there)
    served = Counter(world.unary("Unary", b"x")[0].split(b":")[0] for _ in range(20))
    assert sum(served.values()) == 20
    outbox.put(b"during")
    assert next(stream) == b"DURING"  # the open stream still flows through the drain
    outbox.put(None)
    assert list(stream) == []
    assert stream.code() == grpc.StatusCode.OK
    assert dict(stream.trailing_metadata())["x-instance"] == name
    wait_for(lambda: not draining.process.alive(), timeout=15, what="the sidecar to exit")
    served = Counter(world.unary("Unary", b"x")[0].split(b":")[0] for _ in range(20))
    assert name.encode() not in served and sum(served.values()) == 20, served
