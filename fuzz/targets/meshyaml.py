"""mesh.yaml loading: text -> `load_mesh_text` (YAML, the schema, every section's
parser); the only allowed failure is ConfigError.

Input: the file's bytes, decoded as UTF-8 with replacement (the loader takes text).
"""

from __future__ import annotations

from fuzz.harness import FuzzBug
from gossamer.control.config import load_mesh_text
from gossamer.errors import ConfigError


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        load_mesh_text(text, source="mesh.yaml")
    except ConfigError:
        return
    except Exception as exc:
        raise FuzzBug(f"load_mesh_text raised {type(exc).__name__}: {exc}") from exc
