"""Typed reading of YAML configuration with field paths and line numbers in errors.

`load_document` parses YAML (ruamel.yaml, round-trip mode, so positions are kept) and
returns a `Node`. Accessors such as `node.child("port").integer(minimum=1,
maximum=65535)` validate as they read and raise `ConfigError` naming the field path
(`services[0].ports[0].port`) and the line, e.g. `mesh.yaml:12: services[0].ports[0].port:
must be between 1 and 65535, got 70000`.

Parsers that should report every mistake, not only the first, read each independent
field through `attempt(read, fallback)` (and `report(error)`); inside a `collecting()`
block these record the `ConfigError` and carry on with the fallback, and the block ends
by raising all of them at once (`ConfigErrors`, sorted by line, duplicates dropped).
Outside such a block they raise the first error, as plain accessors do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gossamer.durations import format_duration, parse_duration
from gossamer.errors import ConfigError, ConfigErrors

__all__ = ["format_duration", "parse_duration"]  # re-exported: config code reads them here

T = TypeVar("T")
_MISSING: Any = object()
_COLLECTED: ContextVar[list[ConfigError] | None] = ContextVar(
    "gossamer_config_errors", default=None
)


@dataclass(frozen=True)
class Node:
    """A value inside a loaded document, with where it came from."""

    value: Any
    path: str = ""
    line: int | None = None
    source: str | None = None

    # -- errors ----------------------------------------------------------------
    def error(self, message: str, *, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, field=self.path or None, source=self.source, line=self.line, hint=hint
        )

    # -- structure -------------------------------------------------------------
    @property
    def is_missing(self) -> bool:
        return self.value is _MISSING

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else str(key)

    def child(self, key: str, default: Any = _MISSING) -> Node:
        """The mapping entry `key`; a missing required key is an error on this node."""
        mapping = self.mapping()
        if key in mapping:
            line = self.line
            if isinstance(mapping, CommentedMap):
                try:
                    line = mapping.lc.key(key)[0] + 1
                except (KeyError, TypeError):
                    pass
            return Node(mapping[key], self._child_path(key), line, self.source)
        if default is _MISSING:
            raise self.error(f"missing required field {key!r}")
        return Node(default, self._child_path(key), self.line, self.source)

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {_kind(self.value)}")
        return self.value

    def items(self) -> Iterator[Node]:
        """The entries of a sequence, each as a Node (an absent/null value is empty)."""
        if self.value is None or self.value is _MISSING:
            return iter(())
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_kind(self.value)}")
        seq = self.value

        def gen() -> Iterator[Node]:
            for i, item in enumerate(seq):
                line = self.line
                if isinstance(seq, CommentedSeq):
                    try:
                        line = seq.lc.item(i)[0] + 1
                    except (KeyError, TypeError, IndexError):
                        pass
                yield Node(item, self._child_path(i), line, self.source)

        return gen()

    def entries(self) -> Iterator[tuple[str, Node]]:
        """The (key, Node) pairs of a mapping (an absent/null value is empty)."""
        if self.value is None or self.value is _MISSING:
            return
        for key in self.mapping():
            yield str(key), self.child(key)

    def check_keys(self, allowed: Sequence[str]) -> None:
        """Reject keys this mapping does not know (each one when collecting)."""
        for key in self.mapping():
            if key not in allowed:
                bad = self.child(str(key))
                report(
                    bad.error(
                        "unknown field", hint=f"known fields here: {', '.join(sorted(allowed))}"
                    )
                )

    # -- scalars ---------------------------------------------------------------
    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self.error(f"expected a string, got {_kind(self.value)}")
        return str(self.value)

    def optional_string(self) -> str | None:
        return None if self.value is None or self.is_missing else self.string()

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.error(f"expected an integer, got {_kind(self.value)}")
        value = int(self.value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            lo = "-inf" if minimum is None else str(minimum)
            hi = "inf" if maximum is None else str(maximum)
            raise self.error(f"must be between {lo} and {hi}, got {value}")
        return value

    def number(self, *, minimum: float | None = None, maximum: float | None = None) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.error(f"expected a number, got {_kind(self.value)}")
        value = float(self.value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.error(f"must be between {minimum} and {maximum}, got {value}")
        return value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {_kind(self.value)}")
        return bool(self.value)

    def duration(self) -> float:
        try:
            return parse_duration(self.value)
        except (ValueError, TypeError) as exc:
            raise self.error(str(exc)) from None

    def choice(self, choices: Sequence[str]) -> str:
        value = self.string()
        if value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def string_list(self) -> list[str]:
        return [item.string() for item in self.items()]


def _add(errors: list[ConfigError], exc: ConfigError) -> None:
    for one in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
        if all(one.message != seen.message for seen in errors):
            errors.append(one)


def report(exc: ConfigError) -> None:
    """Record `exc` when collecting (see `collecting`); raise it otherwise."""
    errors = _COLLECTED.get()
    if errors is None:
        raise exc
    _add(errors, exc)


def attempt(read: Callable[[], T], fallback: T) -> T:
    """`read()`; when collecting, a ConfigError is recorded and `fallback` returned."""
    if _COLLECTED.get() is None:
        return read()
    try:
        return read()
    except ConfigError as exc:
        report(exc)
        return fallback


@contextmanager
def collecting() -> Iterator[list[ConfigError]]:
    """Collect the errors `report`/`attempt` see inside the block, and a ConfigError that
    ends it; on leaving, raise them: the one error, or `ConfigErrors` sorted by line.
    A nested block shares the outermost one's list (the outermost raises)."""
    outer = _COLLECTED.get()
    if outer is not None:
        yield outer
        return
    errors: list[ConfigError] = []
    token = _COLLECTED.set(errors)
    try:
        yield errors
    except ConfigError as exc:
        _add(errors, exc)
    finally:
        _COLLECTED.reset(token)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda e: (e.source or "", e.line or 0)))


def _kind(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


# Limits on one configuration document: its size, how deep it nests and how many values
# it holds once aliases are followed (a "billion laughs" file is small but expands).
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000


def check_shape(data: Any, source: str | None) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or holding more than MAX_VALUES
    values (counting what aliases repeat); iterative, so it cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise ConfigError(
                f"more than {MAX_VALUES:,} values (with aliases expanded)",
                source=source,
                hint="anchors and aliases that repeat each other multiply the document",
            )
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=source)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


def check_flow_depth(text: str, source: str | None) -> None:
    """Refuse deeply nested flow collections (`[[[[...`) before the parser recurses into
    them (slowly, then RecursionError). Brackets inside quoted strings count too: a
    real file never has MAX_DEPTH of them open at once."""
    depth = 0
    for match in _FLOW_BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise ConfigError(
                    f"nested deeper than {MAX_DEPTH} levels", source=source, line=line
                )
        else:
            depth = max(depth - 1, 0)


def load_document(text: str, *, source: str | None = None) -> Node:
    """Parse YAML text; a syntax error becomes a ConfigError with its line, and so does a
    document beyond the size, depth or value limits above."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB ({len(text):,} characters)",
            source=source,
        )
    check_flow_depth(text, source)
    yaml = YAML(typ="rt")
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
    except Exception as exc:  # ruamel's constructors on odd input: IndexError on "-_",
        # TypeError on a mapping as a key; what the parser raises is about the text
        raise ConfigError(f"not valid YAML: {type(exc).__name__}: {exc}", source=source) from None
    check_shape(data, source)
    return Node({} if data is None else data, "", 1, source)


def load_file(path: str | Path) -> Node:
    """Read and parse a YAML file; a missing or unreadable file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {p}", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from None
    return load_document(text, source=str(p))
