"""Files in and out: default names, no clobbering, nothing written on errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.compose.plan import InjectOptions
from gossamer.compose.workflow import (
    default_output,
    inject_file,
    relative_paths_warning,
    uninject_file,
)
from gossamer.errors import ConfigError

TEXT = "services:\n  web:\n    image: w  # the web\n    ports: ['80:80']\n"


@pytest.fixture
def compose(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(TEXT)
    return path


def test_default_output_names():
    assert default_output(Path("a/compose.yaml")) == Path("a/compose.meshed.yaml")
    assert default_output(Path("docker-compose.yml")) == Path("docker-compose.meshed.yml")
    assert default_output(Path("stack")) == Path("stack.meshed.yaml")
    assert default_output(Path("a/compose.meshed.yaml")) == Path("a/compose.meshed.yaml")


def test_inject_writes_beside_and_leaves_the_input_alone(compose: Path):
    outcome = inject_file(compose, None, InjectOptions())
    meshed = compose.with_name("compose.meshed.yaml")
    assert outcome.output == meshed and outcome.written
    assert compose.read_text() == TEXT
    assert (compose.parent / ".gossamer" / "tokens" / "web.token").is_file()
    again = inject_file(meshed, None, InjectOptions())
    assert again.output == meshed and not again.written
    restored, target = uninject_file(meshed, None)
    assert target == meshed and meshed.read_text() == TEXT == restored


def test_stdout_mode_writes_no_compose_file(compose: Path):
    outcome = inject_file(compose, None, InjectOptions(), stdout=True)
    assert outcome.output is None and not outcome.written
    assert sorted(p.name for p in compose.parent.iterdir()) == [".gossamer", "compose.yaml"]
    assert "web-proxy" in outcome.result.text


def test_in_place_and_back(compose: Path):
    inject_file(compose, compose, InjectOptions())
    assert "web-netns" in compose.read_text()
    uninject_file(compose, None)
    assert compose.read_text() == TEXT


def test_a_foreign_output_file_is_not_clobbered(compose: Path):
    other = compose.with_name("compose.meshed.yaml")
    other.write_text("precious\n")
    with pytest.raises(ConfigError, match="not written by gossamer inject"):
        inject_file(compose, None, InjectOptions())
    assert other.read_text() == "precious\n"
    inject_file(compose, None, InjectOptions(), force=True)
    assert "web-proxy" in other.read_text()


def test_an_edited_output_is_not_clobbered(compose: Path):
    outcome = inject_file(compose, None, InjectOptions())
    assert outcome.output is not None
    edited = outcome.output.read_text().replace("image: w", "image: w2")
    outcome.output.write_text(edited)
    with pytest.raises(ConfigError, match="edited"):
        inject_file(compose, None, InjectOptions(mode="explicit"))
    assert outcome.output.read_text() == edited


def test_bad_input_writes_nothing(tmp_path: Path):
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web: [\n")
    with pytest.raises(ConfigError) as info:
        inject_file(path, None, InjectOptions())
    assert info.value.line is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yaml"]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        inject_file(binary, None, InjectOptions())
    with pytest.raises(ConfigError, match="not found"):
        inject_file(tmp_path / "missing.yaml", None, InjectOptions())


def test_uninject_does_not_overwrite_another_file(compose: Path):
    outcome = inject_file(compose, None, InjectOptions())
    assert outcome.output is not None
    with pytest.raises(ConfigError, match="exists"):
        uninject_file(outcome.output, compose)
    _, target = uninject_file(outcome.output, compose, force=True)
    assert target == compose and compose.read_text() == TEXT


def test_relative_paths_warning(tmp_path: Path):
    assert relative_paths_warning(tmp_path / "a.yaml", tmp_path / "b.yaml") is None
    assert relative_paths_warning(tmp_path / "a.yaml", tmp_path / "sub" / "b.yaml")
