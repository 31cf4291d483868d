"""The audit log: every change made through the operator API, as JSON lines.

One line per change: when, who (the API token's name and role), what (action and
target), and the outcome. Never secrets: created tokens are recorded by id or name only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.log"


class AuditLog:
    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / AUDIT_FILE
        self._lock = threading.Lock()

    def record(
        self, who: str, role: str, action: str, target: str, outcome: str, **details: Any
    ) -> None:
        entry = {
            "ts": round(time.time(), 3),
            "who": who,
            "role": role,
            "action": action,
            "target": target,
            "outcome": outcome,
            **details,
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def tail(self, limit: int = 100) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[-limit:] if line.strip()]
