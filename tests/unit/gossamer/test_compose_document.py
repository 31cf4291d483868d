"""Loading compose files: round trip in the file's own style, clear errors otherwise."""

from __future__ import annotations

import pytest

from gossamer.compose.document import IndentStyle, dump, guess_indent, load_compose
from gossamer.errors import ConfigError
from tests.helpers.compose import sample_paths


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_compose(text, "compose.yaml")
    return info.value


def test_not_yaml_names_the_line():
    err = error_of("services:\n  web:\n    image: [unclosed\n  db: {}\n")
    assert err.line is not None and err.line >= 3
    assert "not valid YAML" in err.message and "compose.yaml:" in err.message


def test_tab_indentation_is_a_yaml_error_with_line():
    err = error_of("services:\n\tweb:\n")
    assert err.line == 2


def test_duplicate_key_is_reported_with_line():
    err = error_of("services:\n  web:\n    image: a\n  web:\n    image: b\n")
    assert err.line == 4 and "not valid YAML" in err.message


def test_a_list_at_the_top_level():
    err = error_of("- services\n- web\n")
    assert "top level is a list" in err.message and err.line == 1


def test_a_plain_string_is_not_a_compose_file():
    err = error_of("hello world\n")
    assert "not a compose file" in err.message


def test_empty_file():
    assert "empty" in error_of("").message
    assert "empty" in error_of("# only a comment\n").message


def test_a_kubernetes_manifest_is_not_a_compose_file():
    err = error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n")
    assert "unknown top-level key 'apiVersion'" in err.message and err.line == 1


def test_missing_services():
    err = error_of("volumes:\n  data: {}\n")
    assert "no `services:`" in err.message


def test_services_not_a_mapping():
    err = error_of("name: x\nservices:\n  - web\n  - db\n")
    assert err.line == 2 and "services" in err.message and "a list" in err.message


def test_a_service_that_is_not_a_mapping():
    err = error_of("services:\n  web: nginx\n")
    assert err.line == 2 and "services.web" in err.message


def test_invalid_service_name():
    err = error_of("services:\n  'web app':\n    image: x\n")
    assert "invalid service name" in err.message and err.line == 2


def test_top_level_section_of_the_wrong_type():
    err = error_of("services:\n  web:\n    image: x\nsecrets: [a, b]\n")
    assert err.line == 4 and "secrets" in err.message


def test_indent_guess():
    assert guess_indent("a:\n  b:\n    - 1\n") == IndentStyle(mapping=2, offset=2)
    assert guess_indent("a:\n    b:\n    - 1\n") == IndentStyle(mapping=4, offset=0)
    assert guess_indent(" a:\n   b: 1\n") == IndentStyle(mapping=2, offset=2)


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.name)
def test_untouched_samples_round_trip_apart_from_whitespace(path):
    text = path.read_text()
    out = dump(load_compose(text, path.name))

    # ruamel drops trailing spaces and re-indents odd blocks; content lines survive
    def words(t: str) -> list[str]:
        return [" ".join(ln.split()) for ln in t.splitlines() if ln.strip()]

    assert words(out) == words(text)
