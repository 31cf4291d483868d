"""Structured logging: one line per event, JSON when stderr is not a terminal.

Call `setup_logging()` once in a process entry point, then log with
`log.info("event name", extra={"fields": {...}})` or the `event()` helper. Never log
secrets: callers pass identities and hashes, not tokens or keys.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict) and fields:
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str | None = None, *, json_output: bool | None = None) -> None:
    """Configure the root logger (level from GOSSAMER_LOG_LEVEL, default info)."""
    chosen = (level or os.environ.get("GOSSAMER_LOG_LEVEL") or "info").upper()
    if json_output is None:
        forced = os.environ.get("GOSSAMER_LOG_FORMAT")
        json_output = forced == "json" if forced else not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_output else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen)
    # grpc/asyncio chatter stays at warning unless asked for
    for noisy in ("asyncio", "grpc", "aetcd"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log one structured event with fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
