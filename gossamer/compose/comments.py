"""Structural edits of a ruamel.yaml round-trip tree that keep every comment.

Theory of operation. ruamel.yaml stores a comment *after* the node it follows: the
end-of-line comment of a scalar, and every blank line and full-line comment below it
up to the next node, live in one `CommentToken` attached to that scalar's slot in its
container (`mapping.ca.items[key][2]`, `sequence.ca.items[index][0]`). So the comment
lines that visually sit between two services belong to the *last leaf* of the first
one. Moving, removing or appending keys naively therefore drags those lines to odd
places or drops them with a deleted key.

The helpers here keep them where a reader expects:

- `detach_tail` / `attach_tail` split a container's trailing text (everything after
  the end of its last line) from its last leaf and put it back on whatever is last
  after an edit; `kept_tail` wraps an edit in both.
- `move_key` moves a key with its value *and* the comments attached to the key.
- `seq_to_map` turns a block list (`depends_on: [a, b]`) into a mapping, carrying each
  item's comment onto the new entry.

None of these lose a comment: a comment either stays in place or travels with the
value it followed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

Container = CommentedMap | CommentedSeq


def _is_block(node: Any) -> bool:
    if not isinstance(node, CommentedMap | CommentedSeq) or len(node) == 0:
        return False
    return not node.fa.flow_style()


def _own_keys(mapping: CommentedMap) -> list[Any]:
    """Keys written in this mapping itself (not pulled in by a `<<:` merge)."""
    return [k for k, _ in mapping.non_merged_items()]


def _slot_index(container: Container) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def last_leaf(node: Any) -> tuple[Container, Any] | None:
    """The container and key (or index) of the last scalar-ish entry under `node`."""
    if not _is_block(node):
        return None
    if isinstance(node, CommentedMap):
        keys = _own_keys(node)
        if not keys:
            return None
        key = keys[-1]
        value = node[key]
    else:
        key = len(node) - 1
        value = node[key]
    if _is_block(value):
        inner = last_leaf(value)
        if inner is not None:
            return inner
    return node, key


def _token_at(container: Container, key: Any) -> CommentToken | None:
    entry = container.ca.items.get(key)
    if not entry:
        return None
    token = entry[_slot_index(container)]
    return token if isinstance(token, CommentToken) else None


def detach_tail(node: Any) -> str | None:
    """Remove and return the text after the end of `node`'s last line, if any.

    For `- 5432   # db\\n\\n# volumes below\\n` that is `\\n# volumes below\\n`; the
    end-of-line comment `# db` stays with its item.
    """
    leaf = last_leaf(node)
    if leaf is None:
        return None
    container, key = leaf
    token = _token_at(container, key)
    if token is None:
        return None
    value = token.value
    cut = value.find("\n")
    if cut < 0 or cut == len(value) - 1:
        return None
    token.value = value[: cut + 1]
    return value[cut + 1 :]


def attach_comment_text(container: Container, key: Any, text: str) -> None:
    """Append raw comment text (ending in a newline) after the entry `key`.

    If the entry has no comment yet, `text` is written after the entry's own line.
    """
    token = _token_at(container, key)
    if token is not None:
        token.value = token.value + text
        return
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    while len(entry) < 4:
        entry.append(None)
    entry[_slot_index(container)] = CommentToken("\n" + text, CommentMark(0))


def attach_tail(node: Any, tail: str | None) -> None:
    """Put `tail` (from `detach_tail`) after the current last line of `node`."""
    if not tail:
        return
    leaf = last_leaf(node)
    if leaf is None:
        # nothing to hang it on; an empty block cannot be emitted anyway
        raise ValueError("cannot attach trailing comments to an empty node")
    attach_comment_text(leaf[0], leaf[1], tail)


@contextmanager
def kept_tail(node: Any) -> Iterator[None]:
    """Keep the text after `node`'s last line at its end across an edit."""
    tail = detach_tail(node)
    try:
        yield
    finally:
        attach_tail(node, tail)


def append(mapping: CommentedMap, key: Any, value: Any) -> None:
    """Add `key: value` at the end of a mapping, below its trailing comments' owner."""
    with kept_tail(mapping):
        mapping[key] = value


def move_key(
    src: CommentedMap,
    key: Any,
    dst: CommentedMap,
    dst_key: Any = None,
    *,
    keep_dst_tail: bool = True,
) -> Any:
    """Move `src[key]` to the end of `dst` (as `dst_key`), with the key's comments.

    With `keep_dst_tail`, the lines after `dst`'s last entry stay at its end; without,
    for a mapping being built from moved entries, comment lines that followed a moved
    value stay right after it, as they were in the text.
    """
    new_key = key if dst_key is None else dst_key
    with kept_tail(src):
        value = src[key]
        entry = src.ca.items.pop(key, None)
        del src[key]
    tail = detach_tail(dst) if keep_dst_tail else None
    dst[new_key] = value
    if entry is not None:
        dst.ca.items[new_key] = entry
    attach_tail(dst, tail)
    return value


def seq_to_map(
    seq: CommentedSeq,
    make_value: Callable[[Any], Any],
) -> CommentedMap:
    """A mapping `{item: make_value(item)}` from a list, keeping every item's comment."""
    result = CommentedMap()
    tail = detach_tail(seq)
    for index, item in enumerate(seq):
        key = str(item)
        result[key] = make_value(item)
        token = _token_at(seq, index)
        if token is not None:
            leaf = last_leaf(result[key])
            container, slot_key = leaf if leaf is not None else (result, key)
            entry = container.ca.items.setdefault(slot_key, [None, None, None, None])
            entry[_slot_index(container)] = CommentToken(token.value, CommentMark(0))
    if seq.ca.comment:
        result.ca.comment = seq.ca.comment
    attach_tail(result, tail)
    return result


def _ends_with_blank_line(mapping: CommentedMap, key: Any) -> bool:
    keys = _own_keys(mapping)
    index = keys.index(key)
    if index == 0:
        return True
    previous = keys[index - 1]
    leaf = last_leaf(mapping[previous]) or (mapping, previous)
    token = _token_at(leaf[0], leaf[1])
    return token is not None and token.value.endswith("\n\n")


def set_before(
    mapping: CommentedMap, key: Any, comment: str | None = None, indent: int = 0
) -> None:
    """Put a blank line (unless there already is one) and `comment` above `key`."""
    lines = [] if _ends_with_blank_line(mapping, key) else [""]
    if comment:
        lines += comment.splitlines()
    if lines:
        mapping.yaml_set_comment_before_after_key(key, before="\n".join(lines), indent=indent)
