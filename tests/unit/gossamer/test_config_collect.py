"""yamlconf's error collector: every independent error of a block, sorted, deduplicated;
outside a block the first error is raised as before."""

from __future__ import annotations

import pytest

from gossamer.errors import ConfigError, ConfigErrors
from gossamer.yamlconf import attempt, collecting, load_document, report

DOC = "a: x\nb: 2\nc: [1]\nd: 4\n"


def test_outside_a_block_attempt_raises_the_first_error():
    root = load_document(DOC, source="f.yaml")
    with pytest.raises(ConfigError) as info:
        attempt(lambda: root.child("a").integer(), 0)
    assert not isinstance(info.value, ConfigErrors)
    assert info.value.message == "f.yaml:1: a: expected an integer, got string 'x'"


def test_a_block_reports_every_error_sorted_by_line_and_uses_the_fallbacks():
    root = load_document(DOC, source="f.yaml")
    seen: list[object] = []
    with pytest.raises(ConfigErrors) as info, collecting():
        seen.append(attempt(lambda: root.child("c").string(), "fallback"))
        seen.append(attempt(lambda: root.child("a").integer(), -1))
        seen.append(attempt(lambda: root.child("b").integer(maximum=9), 0))
        root.check_keys(["c"])  # a, b and d are unknown: each reported
    assert seen == ["fallback", -1, 2]
    err = info.value
    assert [e.message for e in err.errors] == [
        "f.yaml:1: a: expected an integer, got string 'x'",
        "f.yaml:1: a: unknown field",
        "f.yaml:2: b: unknown field",
        "f.yaml:3: c: expected a string, got a list",
        "f.yaml:4: d: unknown field",
    ]
    # the aggregate reads as its first error, and prints one line per error
    assert (err.field, err.line) == ("a", 1)
    assert str(err).splitlines() == [e.message for e in err.errors]


def test_one_error_is_raised_alone_and_duplicates_are_dropped():
    root = load_document(DOC, source="f.yaml")
    with pytest.raises(ConfigError) as info, collecting():
        report(root.child("d").error("bad"))
        report(root.child("d").error("bad"))
    assert not isinstance(info.value, ConfigErrors)
    assert info.value.message == "f.yaml:4: d: bad"


def test_an_error_that_ends_the_block_joins_the_others():
    root = load_document(DOC, source="f.yaml")
    with pytest.raises(ConfigErrors) as info, collecting():
        report(root.child("b").error("first"))
        root.child("missing")  # raises: the block ends here
        report(root.child("d").error("never reached"))
    assert [e.detail for e in info.value.errors] == ["missing required field 'missing'", "first"]


def test_nested_blocks_share_the_outer_list():
    root = load_document(DOC, source="f.yaml")
    with pytest.raises(ConfigErrors) as info, collecting():
        with collecting():  # inner: does not raise on leaving
            report(root.child("a").error("inner"))
        report(root.child("b").error("outer"))
    assert [e.detail for e in info.value.errors] == ["inner", "outer"]


def test_nothing_reported_nothing_raised():
    with collecting() as errors:
        assert attempt(lambda: 5, 0) == 5
    assert errors == []
