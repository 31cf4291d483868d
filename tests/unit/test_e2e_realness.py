"""The end-to-end tests run real processes: none imports the simulated sidecars
(tests/helpers/sim_mesh.py) or serves the operator API in-process instead of running
`gossamer control` (tests/helpers/operator_api.py `operator_api`); those stay for unit
tests of pure computation."""

from __future__ import annotations

import ast
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"


def _imports(path: Path) -> set[str]:
    """Every `module` and `module.name` a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_e2e_test_uses_simulated_sidecars_or_the_in_process_api():
    files = sorted(E2E.rglob("*.py"))
    assert len(files) > 20  # the folder was found
    offenders = {}
    for path in files:
        bad = _imports(path) & {
            "tests.helpers.sim_mesh",
            "tests.helpers.operator_api.operator_api",
        }
        if bad:
            offenders[str(path.relative_to(E2E))] = sorted(bad)
    assert offenders == {}, offenders
