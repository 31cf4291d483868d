"""Build the wheel, install it in a fresh virtual environment, import every module.

A subpackage missing from `[tool.setuptools]` in pyproject.toml fails here (and, without
building anything, in tests/unit/test_packaging.py): every .py file under the mapped
folders must be importable from the installed wheel under its `gossamer.*` name, from a
directory outside the repository.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

FOLDERS = {
    "gossamer": "gossamer",
    "certs": "gossamer.certs",
    "discovery": "gossamer.discovery",
    "control": "gossamer.control",
    "proxy": "gossamer.proxy",
}


def expected_modules() -> set[str]:
    names: set[str] = set()
    for folder, package in FOLDERS.items():
        root = REPO / folder
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.add(".".join([package, *parts]))
    return names


def test_wheel_installs_and_every_module_imports(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = list(dist.glob("gossamer-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:  # the dashboard ships as package data
        names = set(wheel.namelist())
    for asset in ("index.html", "app.js", "style.css"):
        assert f"gossamer/control/dashboard/{asset}" in names, asset
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Dependencies come from the development environment through a plain path entry;
    # its editable-install hook is a .pth there and is not executed from a path entry.
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    script = """
import importlib, json, pkgutil, sys
import gossamer
found, failed = [], {}
for root in ("gossamer",):
    pkg = importlib.import_module(root)
    found.append(root)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=root + "."):
        try:
            importlib.import_module(info.name)
            found.append(info.name)
        except Exception as exc:
            failed[info.name] = repr(exc)
print(json.dumps({"found": found, "failed": failed, "file": gossamer.__file__}))
"""
    out = subprocess.run(
        [str(py), "-c", script], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout)
    assert str(env_dir) in result["file"], "imported gossamer from outside the fresh venv"
    assert result["failed"] == {}
    missing = expected_modules() - set(result["found"])
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"
    # the console script is installed and runs
    help_out = subprocess.run(
        [str(env_dir / "bin" / "gossamer"), "--help"], capture_output=True, text=True
    )
    assert help_out.returncode == 0 and "Gossamer" in help_out.stdout
