"""The building blocks of the mesh.yaml schema (schema.py): `Field` (one key) and
`Section` (a mapping).

A `Field` names its key, its type as a reader sees it, its default (the YAML value an
absent key stands for; None: unset, the feature is off), a one-line doc, its allowed
values or bounds and, for a mapping or a list of mappings, the nested `Section`. The
parsers read simple values through `Field.read`/`integer`/`number`/`choice`, so the
bounds and defaults they enforce are the ones the reference documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gossamer.yamlconf import Node


@dataclass(frozen=True)
class Field:
    """One key of a mesh.yaml mapping."""

    name: str
    type: str  # as documented: string, integer, duration, host:port, list of mappings...
    doc: str
    default: Any = None  # the YAML value an absent key means; None: unset
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    section: Section | None = None  # a mapping's fields, or each list item's
    default_doc: str | None = None  # the default in words, when the value says too little

    def read(self, parent: Node) -> Node:
        """This field's node under `parent`: its default when absent (an error if required)."""
        if self.required:
            return parent.child(self.name)
        return parent.child(self.name, self.default)

    def present(self, parent: Node) -> Node | None:
        """This field's node when it is set (present and not null), else None."""
        if parent.has(self.name) and parent.child(self.name).value is not None:
            return parent.child(self.name)
        return None

    def integer(self, parent: Node) -> int:
        lo = None if self.minimum is None else int(self.minimum)
        hi = None if self.maximum is None else int(self.maximum)
        return self.read(parent).integer(minimum=lo, maximum=hi)

    def number(self, parent: Node) -> float:
        return self.read(parent).number(minimum=self.minimum, maximum=self.maximum)

    def choice(self, parent: Node) -> str:
        return self.read(parent).choice(self.choices)

    @property
    def bounds(self) -> str:
        """The allowed range in words ('0 to 10', 'at least 2s'), or ''."""
        unit = "s" if self.type == "duration" else ""
        lo, hi = _num(self.minimum, unit), _num(self.maximum, unit)
        if lo and hi:
            return f"{lo} to {hi}"
        if lo:
            return f"at least {lo}"
        return f"at most {hi}" if hi else ""


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return (str(int(value)) if float(value).is_integer() else str(value)) + unit


@dataclass(frozen=True)
class Section:
    """A mapping of mesh.yaml: where it is (`services[].retries`), what it is, its fields."""

    path: str
    doc: str
    fields: tuple[Field, ...]
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.fields}
        if len(by_name) != len(self.fields):
            raise ValueError(f"section {self.path!r} declares a field twice")
        object.__setattr__(self, "_by_name", by_name)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this mapping accepts, in declaration order (for `Node.check_keys`)."""
        return tuple(f.name for f in self.fields)

    def __getitem__(self, name: str) -> Field:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def walk(self) -> Iterator[Section]:
        """This section and every section nested below it, depth first."""
        yield self
        for f in self.fields:
            if f.section is not None:
                yield from f.section.walk()

    def field_paths(self) -> Iterator[str]:
        """Every field's path (`services[].retries.attempts`), depth first."""
        for section in self.walk():
            for f in section.fields:
                yield f"{section.path}.{f.name}" if section.path else f.name
