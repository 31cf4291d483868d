"""`inject` and `uninject` on compose text: load, check, plan, rewrite, record, dump.

Idempotence: an injected file carries its original and its options (`marker`). The
output is a pure function of (original text, options), so:

- injecting an injected file with the same options returns it unchanged;
- with other options, it is re-injected from the recorded original — unless the file
  was edited since its injection (it no longer equals what the recorded injection
  produces), which would lose those edits: that is refused with a hint;
- `uninject` returns the recorded original byte for byte, and refuses (unless forced)
  when the injected file was edited since, for the same reason.

Before anything is returned for writing, the output is checked
(`validate.semantic_problems`, on the tree it was dumped from: parsing megabytes of
output again took most of the time for thousands of services); a failure there is a bug
in gossamer, reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gossamer.compose import marker
from gossamer.compose.document import ComposeDocument, dump, load_compose
from gossamer.compose.plan import InjectOptions, Plan, make_plan
from gossamer.compose.rewrite import rewrite
from gossamer.compose.validate import SECTIONS, semantic_problems, structure_problems
from gossamer.errors import ConfigError, GossamerError


@dataclass(frozen=True)
class InjectResult:
    text: str
    plan: Plan
    options: InjectOptions
    changed: bool  # False: the input already is this injection (nothing to write)
    notes: tuple[str, ...] = ()
    original: str = ""


@dataclass(frozen=True)
class _Rendered:
    text: str
    plan: Plan
    notes: list[str]
    tree: CommentedMap  # what `text` was dumped from
    sections: dict[str, list[Any]]  # the original's entries per section, for the check


def _render_tree(
    original: str,
    options: InjectOptions,
    *,
    source: str,
    blob: str | None = None,
    doc: ComposeDocument | None = None,
) -> _Rendered:
    """`render`, plus what the check needs; `doc` is `original` already loaded (it is
    rewritten in place: parsing a file of thousands of services once is enough)."""
    doc = doc if doc is not None else load_compose(original, source)
    sections = {name: list(doc.data.get(name) or {}) for name in SECTIONS}
    plan = make_plan(doc, options)
    notes = rewrite(doc, plan, options)
    marker.add_block(doc, options, plan, blob or marker.encode_original(original))
    return _Rendered(dump(doc), plan, notes, doc.data, sections)


def render(
    original: str, options: InjectOptions, *, source: str, blob: str | None = None
) -> tuple[str, Plan, list[str]]:
    """The injected text for an original file (pure and deterministic)."""
    done = _render_tree(original, options, source=source, blob=blob)
    return done.text, done.plan, done.notes


def _checked(original: str, done: _Rendered, source: str) -> None:
    problems = semantic_problems(
        original, done.text, output_data=done.tree, original_sections=done.sections
    )
    if problems:
        raise GossamerError(
            f"internal error: the injected version of {source} fails its own check: "
            + "; ".join(problems[:5]),
            hint="nothing was written; please report this with the input file",
        )


def _edited(source: str, action: str, hint: str) -> ConfigError:
    return ConfigError(
        f"{source} was edited after it was injected; {action} would lose those edits",
        source=source,
        hint=hint,
    )


def _refuse_broken(doc: ComposeDocument, source: str) -> None:
    """A dangling reference or a cycle in the original (Compose refuses the file too) is
    the user's to fix: reported as such, not as inject's output failing its check."""
    problems = structure_problems(doc.data)
    if problems:
        raise ConfigError(
            "; ".join(problems[:5]),
            source=source,
            hint="docker compose refuses this file as well; fix it, then inject",
        )


def inject_text(text: str, options: InjectOptions, *, source: str) -> InjectResult:
    """Inject `text`, or return it as it is when it already is that injection."""
    doc = load_compose(text, source)
    found = marker.read(doc)
    if found is None:
        _refuse_broken(doc, source)
        done = _render_tree(text, options, source=source, doc=doc)
        _checked(text, done, source)
        return InjectResult(done.text, done.plan, options, True, tuple(done.notes), original=text)
    previous, old_plan, notes = render(
        found.original, found.options, source=source, blob=found.blob
    )
    if previous != text:
        if options == found.options:
            return InjectResult(
                text,
                old_plan,
                options,
                False,
                (f"{source} is already injected (and edited since); left as it is",),
                original=found.original,
            )
        raise _edited(
            source,
            "re-injecting it with other options",
            "run gossamer uninject --force, carry your edits over to the original, inject again",
        )
    if options == found.options:
        return InjectResult(text, old_plan, options, False, tuple(notes), found.original)
    done = _render_tree(found.original, options, source=source, blob=found.blob)
    _checked(found.original, done, source)
    return InjectResult(
        done.text, done.plan, options, True, tuple(done.notes), original=found.original
    )


def uninject_text(text: str, *, source: str, force: bool = False) -> str:
    """The original of an injected file, byte for byte."""
    doc = load_compose(text, source)
    found = marker.read(doc)
    if found is None:
        raise ConfigError(
            "not an injected file: it has no x-gossamer record",
            source=source,
            hint="gossamer uninject takes a file written by gossamer inject",
        )
    if not force:
        previous, _, _ = render(found.original, found.options, source=source, blob=found.blob)
        if previous != text:
            raise _edited(
                source,
                "restoring the original",
                "use --force to restore the original anyway (keep a copy of your edits)",
            )
    return found.original
