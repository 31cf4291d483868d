"""Read and write compose files with ruamel.yaml round-trip, refusing what is not one.

`load_compose` parses the text (comments, key order and quoting are kept), checks that
it is a compose file at all — a mapping at the top, only keys the Compose
Specification knows (or `x-` extensions), a `services` mapping whose entries are
mappings with valid names — and raises `ConfigError` with the file and line otherwise.
`dump` writes the tree back in the file's own indentation style (guessed from the
text), so untouched parts come out as they went in.
"""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gossamer.compose.yaml_speed import CachedAnalysisEmitter, CachedTagRepresenter
from gossamer.errors import ConfigError
from gossamer.yamlconf import MAX_DEPTH, check_flow_depth, check_shape

# Top-level keys of the Compose Specification (compose-spec.json), besides `x-*`.
TOP_LEVEL_KEYS = frozenset(
    {
        "version",
        "name",
        "include",
        "services",
        "models",
        "networks",
        "volumes",
        "secrets",
        "configs",
    }
)
NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
_KEY_LINE = re.compile(r"^(\s*)[^\s#-][^#]*:\s*(#.*)?$")
_HINT = "gossamer inject reads a Docker Compose file (compose.yaml with a `services:` mapping)"


@dataclass(frozen=True)
class IndentStyle:
    """How a file indents: mapping levels, and where a list's dash sits under its key."""

    mapping: int = 2
    offset: int = 2


def guess_indent(text: str) -> IndentStyle:
    """The indentation most of the file uses (ruamel.yaml writes one style throughout)."""
    maps: Counter[int] = Counter()
    seqs: Counter[int] = Counter()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for prev, cur in itertools.pairwise(lines):
        match = _KEY_LINE.match(prev)
        if match is None:
            continue
        step = (len(cur) - len(cur.lstrip())) - len(match.group(1))
        if cur.lstrip().startswith("- "):
            if step >= 0:
                seqs[step] += 1
        elif step > 0:
            maps[step] += 1
    mapping = maps.most_common(1)[0][0] if maps else 2
    offset = seqs.most_common(1)[0][0] if seqs else mapping
    return IndentStyle(mapping=mapping, offset=offset)


def make_yaml(style: IndentStyle) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Representer = CachedTagRepresenter
    yaml.Emitter = CachedAnalysisEmitter
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long lines the author wrote on one line
    yaml.indent(mapping=style.mapping, sequence=style.offset + 2, offset=style.offset)
    return yaml


@dataclass
class ComposeDocument:
    """A loaded compose file: the round-trip tree plus what is needed to write it back."""

    data: CommentedMap
    source: str
    style: IndentStyle
    leading: str = ""

    @property
    def services(self) -> CommentedMap:
        services = self.data["services"]
        assert isinstance(services, CommentedMap)
        return services

    def line_of(self, container: Any, key: Any = None) -> int | None:
        return line_of(container, key)

    def error(
        self,
        message: str,
        container: Any = None,
        key: Any = None,
        *,
        field: str | None = None,
        hint: str | None = None,
    ) -> ConfigError:
        line = line_of(container, key) if container is not None else None
        return ConfigError(message, field=field, source=self.source, line=line, hint=hint)


def line_of(container: Any, key: Any = None) -> int | None:
    """1-based line of `container[key]` (or of the container itself)."""
    try:
        if key is None:
            return int(container.lc.line) + 1
        if isinstance(container, CommentedMap):
            return int(container.lc.key(key)[0]) + 1
        if isinstance(container, CommentedSeq):
            return int(container.lc.item(key)[0]) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def parse(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigError with its line, and so does
    nesting deeper than the configuration limit (`yamlconf.MAX_DEPTH`, flow brackets
    refused before the parser recurses into them, block nesting when the parser's
    recursion gives out or after loading) or more values than `yamlconf.MAX_VALUES`."""
    check_flow_depth(text, source)
    yaml = make_yaml(guess_indent(text))
    try:
        data = yaml.load(text)
    except RecursionError:
        raise ConfigError(
            f"nested too deeply to parse (the limit is {MAX_DEPTH} levels)", source=source
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"not valid YAML: {problem}", source=source, line=line) from None
    except YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    except Exception as exc:  # ruamel's constructors on odd input (as in yamlconf)
        raise ConfigError(f"not valid YAML: {type(exc).__name__}: {exc}", source=source) from None
    check_shape(data, source)
    return data


def load_compose(text: str, source: str = "compose.yaml") -> ComposeDocument:
    """Parse and check a compose file; anything else is a ConfigError naming the line."""
    data = parse(text, source)
    if data is None:
        raise ConfigError("the file is empty, not a compose file", source=source, hint=_HINT)
    if not isinstance(data, CommentedMap):
        raise ConfigError(
            f"not a compose file: the top level is {_kind(data)}, expected a mapping",
            source=source,
            line=line_of(data) or 1,
            hint=_HINT,
        )
    for key in data:
        if not isinstance(key, str) or (key not in TOP_LEVEL_KEYS and not key.startswith("x-")):
            raise ConfigError(
                f"not a compose file: unknown top-level key {key!r}",
                source=source,
                line=line_of(data, key),
                hint=f"a compose file has only {', '.join(sorted(TOP_LEVEL_KEYS))} and x-* keys",
            )
    if "services" not in data:
        raise ConfigError(
            "not a compose file: there is no `services:` section",
            source=source,
            line=line_of(data) or 1,
            hint=_HINT,
        )
    for section in ("networks", "volumes", "secrets", "configs"):
        if data.get(section) is not None and not isinstance(data[section], CommentedMap):
            raise ConfigError(
                f"`{section}` must be a mapping, got {_kind(data[section])}",
                field=section,
                source=source,
                line=line_of(data, section),
            )
    services = data["services"]
    if not isinstance(services, CommentedMap) or not services:
        raise ConfigError(
            f"`services` must be a mapping of service names to definitions, got {_kind(services)}",
            field="services",
            source=source,
            line=line_of(data, "services"),
        )
    for name, service in services.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(
                f"invalid service name {name!r} (letters, digits, '.', '_' and '-' only)",
                field="services",
                source=source,
                line=line_of(services, name),
            )
        if not isinstance(service, CommentedMap):
            raise ConfigError(
                f"a service must be a mapping, got {_kind(service)}",
                field=f"services.{name}",
                source=source,
                line=line_of(services, name),
            )
    leading = text[: len(text) - len(text.lstrip("\n"))]
    return ComposeDocument(data=data, source=source, style=guess_indent(text), leading=leading)


def dump(doc: ComposeDocument) -> str:
    """Write the tree back as text in the file's own style."""
    stream = io.StringIO()
    make_yaml(doc.style).dump(doc.data, stream)
    text = stream.getvalue()
    if doc.leading and not text.startswith("\n"):
        text = doc.leading + text
    return text
