"""Which 502/503 answers prove a request never reached an app (upstream/dispatch.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gossamer.proxy.config import Endpoint
from gossamer.proxy.service import Response
from gossamer.proxy.upstream.balancer import Host
from gossamer.proxy.upstream.dispatch import never_reached_app, strip_gossamer_error

TLS_CLUSTER: Any = SimpleNamespace(config=SimpleNamespace(tls=True))
PLAIN_CLUSTER: Any = SimpleNamespace(config=SimpleNamespace(tls=False))
SIDECAR = Host(Endpoint("10.0.0.1", 15006))
NO_SIDECAR = Host(Endpoint("10.0.0.2", 8080, tls=False))


def answer(status: int, error: bytes | None) -> Response:
    headers = [(b"content-type", b"text/plain")]
    if error is not None:
        headers.append((b"x-gossamer-error", error))
    return Response(status, headers, b"x")


def test_only_a_peer_sidecars_refusal_or_not_ready_counts() -> None:
    assert never_reached_app(answer(502, b"connect-failure"), SIDECAR, TLS_CLUSTER)
    assert never_reached_app(answer(503, b"app-not-ready"), SIDECAR, TLS_CLUSTER)
    assert not never_reached_app(answer(502, b"upstream-reset"), SIDECAR, TLS_CLUSTER)
    assert not never_reached_app(answer(503, b"overflow"), SIDECAR, TLS_CLUSTER)
    assert not never_reached_app(answer(502, None), SIDECAR, TLS_CLUSTER)
    # no sidecar to vouch for it: an app said so, which proves nothing
    assert not never_reached_app(answer(502, b"connect-failure"), NO_SIDECAR, TLS_CLUSTER)
    assert not never_reached_app(answer(502, b"connect-failure"), SIDECAR, PLAIN_CLUSTER)


def test_an_apps_own_502_loses_the_header() -> None:
    forged = Response(502, [(b"X-Gossamer-Error", b"connect-failure"), (b"a", b"b")], b"x")
    assert strip_gossamer_error(forged).headers == [(b"a", b"b")]
    fine = Response(200, [(b"x-gossamer-error", b"whatever")], b"x")
    assert strip_gossamer_error(fine).headers == [(b"x-gossamer-error", b"whatever")]
