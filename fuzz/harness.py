"""What every fuzz target shares: the bug signal, splitting an input into parts, and
catching errors that the code under test logs or drops instead of raising.

Nothing here imports Gossamer, so `fuzz/__main__.py` can instrument Gossamer's modules
before any of them is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class FuzzBug(AssertionError):
    """An input broke a rule of its target (an exception type, a logged error...)."""


def split(data: bytes, separator: bytes, parts: int) -> list[bytes]:
    """`data` cut at the first `parts - 1` separators, padded with b"" to `parts`."""
    pieces = data.split(separator, parts - 1)
    return pieces + [b""] * (parts - len(pieces))


class Reader:
    """Values taken from the front of a fuzz input (zero when it runs out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_logged_errors(logger: str = "gossamer") -> Iterator[None]:
    """Fail with FuzzBug when `logger` (or a child) logs at ERROR or above: the data
    path logs the exceptions it turns into 500s ("service failed", "request handling
    failed"), and each of those is a bug."""
    collector = _Collector()
    log = logging.getLogger(logger)
    log.addHandler(collector)
    previous = log.propagate
    log.propagate = False  # (keep a fuzz run's output to atheris' status lines)
    try:
        yield
    finally:
        log.removeHandler(collector)
        log.propagate = previous
    if collector.records:
        record = collector.records[0]
        detail = ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            detail = f": {type(exc).__name__}: {exc}"
        raise FuzzBug(f"logged error {record.getMessage()!r}{detail}") from (
            record.exc_info[1] if record.exc_info else None
        )
