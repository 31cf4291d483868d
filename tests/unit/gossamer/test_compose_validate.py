"""The output checks find what they are meant to find."""

from __future__ import annotations

from pathlib import Path

from gossamer.compose.validate import (
    PLACEHOLDER,
    comments,
    compose_command,
    compose_problems,
    placeholder_environment,
    schema_problems,
    semantic_problems,
    structure_problems,
)
from tests.helpers.compose import plain

GOOD = """\
services:
  a-netns:
    image: x
    ports: ["80:80"]
  a:
    image: a   # the app
    network_mode: service:a-netns
    depends_on:
      a-netns: {condition: service_started}
"""


def test_a_good_file_passes_everything(tmp_path: Path):
    path = tmp_path / "compose.yaml"
    path.write_text(GOOD)
    assert schema_problems(GOOD) == []
    assert compose_problems(path) == []
    assert semantic_problems(GOOD, GOOD) == []


def test_keys_beside_a_shared_namespace():
    for key, value in (
        ("ports", "['81:81']"),
        ("networks", "[n]"),
        ("expose", "[1]"),
        ("hostname", "h"),
        ("dns", "[1.1.1.1]"),
        ("extra_hosts", "['x:1.2.3.4']"),
    ):
        text = GOOD.replace("    network_mode:", f"    {key}: {value}\n    network_mode:")
        problems = structure_problems(plain(text))
        assert problems == [f"services.a: {key!r} beside network_mode: service:a-netns"]


def test_dangling_references_and_cycles():
    text = GOOD.replace("a-netns: {condition", "ghost: {condition")
    assert structure_problems(plain(text)) == ["services.a.depends_on: no service named 'ghost'"]
    text = GOOD.replace("service:a-netns", "service:ghost")
    assert "services.a.network_mode: no service named 'ghost'" in structure_problems(plain(text))
    cyclic = "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    network_mode: service:a\n"
    assert structure_problems(plain(cyclic)) == ["dependency cycle: a -> b -> a"]
    chained = GOOD + "  c:\n    image: c\n    network_mode: service:a\n"
    assert "services.c.network_mode: a itself joins another namespace" in structure_problems(
        plain(chained)
    )


def test_lost_parts_of_the_original():
    original = GOOD + "volumes:\n  data: {}\nsecrets:\n  s: {file: s.txt}\n"
    problems = semantic_problems(original, GOOD.replace("# the app", ""))
    assert "volumes.data of the original is missing" in problems
    assert "secrets.s of the original is missing" in problems
    assert "comment lost (1x): # the app" in problems


def test_comments_are_told_from_data():
    text = 'a: "x # not a comment"  # one\nb: |\n  # not one either\nc: d#e # two\n# three\n'
    assert comments(text) == {"# one": 1, "# two": 1, "# three": 1}


def test_schema_problems_name_the_path():
    problems = schema_problems(GOOD.replace("image: x", "image: x\n    bogus: 1"))
    assert len(problems) == 1 and "services.a-netns" in problems[0] and "bogus" in problems[0]


def test_the_compose_binary_is_really_run(tmp_path: Path):
    assert compose_command() is not None
    path = tmp_path / "compose.yaml"
    path.write_text(GOOD.replace("service:a-netns", "service:ghost"))
    problems = compose_problems(path)
    assert problems and all(p.startswith("compose: ") for p in problems)
    assert "ghost" in " ".join(problems)


def test_placeholders_only_for_unset_variables(monkeypatch):
    monkeypatch.setenv("GOSSAMER_TEST_SET", "1")
    monkeypatch.delenv("GOSSAMER_TEST_UNSET", raising=False)
    env = placeholder_environment("a: ${GOSSAMER_TEST_SET} $GOSSAMER_TEST_UNSET")
    assert env == {"GOSSAMER_TEST_UNSET": PLACEHOLDER}
