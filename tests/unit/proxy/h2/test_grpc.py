"""The pure gRPC rules: grpc-timeout parsing and formatting, status extraction,
classification, retry-condition mapping, trailers-only answers."""

from __future__ import annotations

import pytest

from gossamer.proxy.service import Response, generated
from gossamer.proxy.transport.h2 import grpc
from gossamer.proxy.transport.h2.server import grpc_error
from gossamer.proxy.upstream.retry import grpc_retryable


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"5S", 5.0),
        (b"5010m", 5.01),
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"250u", 250e-6),
        (b"99999999n", 0.099999999),
        (b"0m", 0.0),
    ],
)
def test_parse_timeout(value: bytes, seconds: float) -> None:
    assert grpc.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"5", b"5s", b"123456789S", b"-1S", b"1.5S", b"5 S"])
def test_malformed_timeouts_are_ignored(value: bytes) -> None:
    assert grpc.parse_timeout(value) is None


@pytest.mark.parametrize("seconds", [0.0, 1e-9, 0.05, 0.0999, 1.5, 4.99, 99.9, 3600.0, 1e6])
def test_format_timeout_round_trips_never_shorter(seconds: float) -> None:
    text = grpc.format_timeout(seconds)
    back = grpc.parse_timeout(text)
    assert back is not None and len(text) <= 9
    assert seconds <= back <= seconds * 1.0001 + 1e-9, (seconds, text)


def test_status_of_headers_and_trailers() -> None:
    assert grpc.status_of([(b"content-type", b"application/grpc")]) is None
    assert grpc.status_of(None) is None
    assert grpc.status_of([(b"grpc-status", b"14")]) == 14
    assert grpc.status_of([(b"grpc-status", b"x")]) == grpc.UNKNOWN


def test_classification_uses_grpc_status_but_keeps_http_status() -> None:
    assert not grpc.failed(200, 0)
    assert not grpc.failed(200, None)
    assert grpc.failed(200, 14)
    assert grpc.failed(503, None)
    assert grpc.failed(0, None)


def test_is_grpc() -> None:
    assert grpc.is_grpc([(b"content-type", b"application/grpc")])
    assert grpc.is_grpc([(b"content-type", b"application/grpc+proto")])
    assert not grpc.is_grpc([(b"content-type", b"application/json")])
    assert not grpc.is_grpc([])


def test_generated_errors_become_trailers_only_answers() -> None:
    timeout = grpc_error(generated(504, b"timeout", "no response within the deadline"))
    headers = dict(timeout.headers)
    assert timeout.status == 200 and timeout.body is None
    assert headers[b"grpc-status"] == b"4"  # DEADLINE_EXCEEDED
    assert headers[b"grpc-message"] == b"no response within the deadline"
    assert headers[b"x-gossamer-error"] == b"timeout"
    no_route = dict(grpc_error(generated(404, b"no-route", "no route for x")).headers)
    assert no_route[b"grpc-status"] == b"12"  # UNIMPLEMENTED
    down = dict(grpc_error(generated(503, b"no-healthy-upstream")).headers)
    assert down[b"grpc-status"] == b"14"  # UNAVAILABLE
    # grpc-message is percent-encoded
    odd = dict(grpc_error(generated(502, b"x", "bad\nline 100%")).headers)
    assert odd[b"grpc-message"] == b"bad%0Aline 100%25"


class _Stream:
    def __init__(self, done: bool) -> None:
        self.done = done


class _Body:
    def __init__(self, done: bool, replayable: bool) -> None:
        self.stream = _Stream(done)
        self.replayable = replayable


def test_only_trailers_only_answers_of_complete_unary_calls_are_retried() -> None:
    unavailable = Response(200, [(b"grpc-status", b"14")], None)
    codes = frozenset({14})
    assert grpc_retryable(unavailable, codes, None)
    assert grpc_retryable(unavailable, codes, _Body(done=True, replayable=True))
    # a streaming call still sending, or one past the replay buffer: never
    assert not grpc_retryable(unavailable, codes, _Body(done=False, replayable=True))
    assert not grpc_retryable(unavailable, codes, _Body(done=True, replayable=False))
    # another status, or an answer with a body (messages may have reached the client)
    assert not grpc_retryable(Response(200, [(b"grpc-status", b"13")], None), codes, None)
    assert not grpc_retryable(Response(200, [], b"\x00\x00\x00\x00\x00"), codes, None)
