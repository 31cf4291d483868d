"""Two caches that make ruamel.yaml's round-trip dump of a large compose file faster,
with byte-identical output (`document.make_yaml` installs them).

An injected file of 5,000 services is about 8 MB of YAML and 1.3 million nodes, and the
pure-Python dumper spent a fifth of its time on work it repeats for every node:

- `CachedTagRepresenter`: the representer makes a new `Tag` for every scalar, and each
  new `Tag` decodes its URI suffix character by character; one `Tag` per tag string is
  shared instead (the dumper never changes a tag; only the parser does).
  Plain Python values (not ruamel's anchored ones) skip the anchor lookup, which
  raised and caught an AttributeError for each.
- `CachedAnalysisEmitter`: the emitter analyses each scalar's characters to choose its
  style; the analysis depends only on the text and the emitter's settings, fixed for a
  dump, and the same values (image names, commands, ports) recur thousands of times. A
  copy is handed out, because the emitter writes to it.
"""

from __future__ import annotations

import copy
from typing import Any

from ruamel.yaml.emitter import Emitter
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.tag import Tag

_MAX_CACHED = 100_000  # scalars kept per dump: bounded, whatever the file holds


_PLAIN = frozenset({str, int, float, bool, type(None)})


class CachedTagRepresenter(RoundTripRepresenter):
    """RoundTripRepresenter with one shared `Tag` per tag string."""

    _tags: dict[str, Tag] = {}

    def ignore_aliases(self, data: Any) -> bool:
        # the same answer as RoundTripRepresenter's, which first looks for an anchor on
        # every value and raises and catches AttributeError for each plain one
        if type(data) in _PLAIN:
            return True
        return bool(super().ignore_aliases(data))

    def represent_scalar(
        self, tag: Any, value: Any, style: Any = None, anchor: Any = None
    ) -> ScalarNode:
        if isinstance(tag, str):
            shared = self._tags.get(tag)
            if shared is None:
                shared = self._tags.setdefault(tag, Tag(suffix=tag))
            tag = shared
        node: ScalarNode = super().represent_scalar(tag, value, style=style, anchor=anchor)
        return node


class CachedAnalysisEmitter(Emitter):
    """Emitter that analyses each distinct scalar text once per dump."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._analyses: dict[str, Any] = {}

    def analyze_scalar(self, scalar: Any) -> Any:
        cached = self._analyses.get(scalar)
        if cached is None:
            cached = super().analyze_scalar(scalar)
            if len(self._analyses) < _MAX_CACHED:
                self._analyses[scalar] = cached
        return copy.copy(cached)
