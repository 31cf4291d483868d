"""The fuzz targets on their seeds and on every crash the campaign found (issue 17):
each file of fuzz/corpus/<target>/ and tests/data/fuzz/<target>/ runs through
`fuzz.targets.<target>.test_one_input` without atheris, so a fixed crash that comes back
fails here (the file names say what each crash was)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = (ROOT / "fuzz" / "corpus", ROOT / "tests" / "data" / "fuzz")


def _inputs() -> list[tuple[str, Path]]:
    return sorted(
        (target.name, path)
        for folder in FOLDERS
        for target in folder.iterdir()
        if target.is_dir()
        for path in target.iterdir()
        if path.is_file()
    )


@pytest.mark.parametrize(
    ("target", "path"), _inputs(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_input_passes_its_target(target: str, path: Path) -> None:
    module = importlib.import_module(f"fuzz.targets.{target}")
    module.test_one_input(path.read_bytes())


def test_every_target_has_seeds() -> None:
    targets = {p.stem for p in (ROOT / "fuzz" / "targets").glob("*.py") if p.stem != "__init__"}
    seeded = {p.name for p in (ROOT / "fuzz" / "corpus").iterdir() if any(p.iterdir())}
    assert targets == seeded
