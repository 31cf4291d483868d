"""Durations as mesh.yaml, flags and the API write them: `5s`, `250ms`, `1h30m`, `24h`.

Kept apart from `gossamer.yamlconf` (which re-exports both functions) so that code that
only formats or parses a duration, such as join tokens in the sidecar, does not load
the YAML parser: ruamel.yaml costs a sidecar about 2.8 MB of memory.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)")
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int) -> float:
    """Parse `5s`, `250ms`, `1h30m`, `24h` or a bare number of seconds into seconds."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 5s, 250ms or 1h, got a boolean")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative, got {text}")
        return float(text)
    s = str(text).strip()
    if not s:
        raise ValueError("expected a duration such as 5s, 250ms or 1h, got an empty string")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {s}")
        return value
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"expected a duration such as 5s, 250ms or 1h, got {s!r}")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 86400 -> '24h', 90 -> '1m30s', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)
