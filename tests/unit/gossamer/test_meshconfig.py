"""The mesh.yaml schema's shape, and the README reference generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.contract.vocabulary import GrpcRetryOn, HttpRetryOn, LbPolicy, Protocol
from gossamer.meshconfig import schema
from gossamer.meshconfig.fields import Field, Section
from gossamer.meshconfig.reference import readme_section, reference_markdown

README = Path(__file__).resolve().parents[3] / "README.md"


def test_sections_nest_as_the_file_does():
    paths = [s.path for s in schema.MESH.walk()]
    assert paths[:3] == ["", "control", "services[]"]
    assert set(paths) >= {
        "services[].ports[]",
        "services[].endpoints[]",
        "services[].retries",
        "services[].authorization",
        "services[].outlier_detection",
        "services[].outlier_detection.success_rate",
        "services[].circuit_breakers",
        "services[].health_check",
        "observability",
    }
    for section in schema.MESH.walk():
        for f in section.fields:
            if f.section is not None:
                own = f"{section.path}.{f.name}" if section.path else f.name
                assert f.section.path.rstrip("[]") == own, (section.path, f.name)


def test_key_lists_come_from_the_sections():
    assert schema.TOP_LEVEL_KEYS == ("trust_domain", "control", "services", "observability")
    assert schema.SERVICE_KEYS == schema.SERVICE_DISCOVERY_KEYS + schema.POLICY_KEYS
    assert schema.SERVICE_DISCOVERY_KEYS == ("name", "namespace", "ports", "endpoints")
    assert "lb_policy" in schema.POLICY_KEYS and "health_check" in schema.POLICY_KEYS
    assert schema.RETRY_KEYS == ("attempts", "per_try_timeout", "on", "budget_percent")


def test_allowed_values_are_the_shared_enums():
    assert schema.SERVICE["lb_policy"].choices == tuple(LbPolicy)
    assert schema.PORT["protocol"].choices == tuple(Protocol)
    assert set(schema.RETRIES["on"].choices) == set(HttpRetryOn) | set(GrpcRetryOn)
    assert schema.SERVICE["lb_policy"].default in schema.SERVICE["lb_policy"].choices
    assert schema.RETRIES["attempts"].maximum == 10


def test_every_field_has_a_doc_and_a_type():
    for section in schema.MESH.walk():
        assert section.doc
        for f in section.fields:
            assert f.doc and f.type, f.name
            assert not (f.required and f.default is not None), f.name


def test_a_section_refuses_a_field_declared_twice():
    with pytest.raises(ValueError, match="twice"):
        Section("x", "doc", (Field("a", "string", "one"), Field("a", "string", "two")))


def test_bounds_in_words():
    assert Field("a", "integer", "d", minimum=0, maximum=10).bounds == "0 to 10"
    assert Field("a", "duration", "d", minimum=2).bounds == "at least 2s"
    assert Field("a", "number", "d", minimum=0.1, maximum=10).bounds == "0.1 to 10"
    assert Field("a", "string", "d").bounds == ""


def test_reference_lists_every_field_with_type_default_and_doc():
    text = reference_markdown()
    for path in schema.MESH.field_paths():
        assert f"| `{path}` |" in text, path
    assert "| `control.lease_ttl` | duration, 1s to 3600s | `10s` |" in text
    assert "| `services[].retries.attempts` | integer, 0 to 10 | required |" in text
    assert "`round_robin`, `random`" in text


def test_readme_carries_the_generated_reference():
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section is not None, "README.md lost its mesh.yaml reference markers"
    assert section == reference_markdown(), (
        "README.md's mesh.yaml reference is stale: replace the text between the markers "
        "with the output of `gossamer validate --reference`"
    )


def test_readme_section_needs_both_markers():
    assert readme_section("no markers here") is None
