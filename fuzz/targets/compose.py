"""Compose-file injection: text -> `inject_text` (parse, check, plan, rewrite, record,
dump), then the round trip; only Gossamer's own errors are allowed.

Input: one control byte choosing the options (0x01 explicit mode, 0x02 volumes
bootstrap, 0x04 observability, 0x08 no proxy environment), then the compose file as
UTF-8 (with replacement). Rules, besides the error types: inject's own output check
never fails ("internal error"), injecting the result again with the same options
changes nothing, and `uninject_text` gives the original back byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fuzz.harness import FuzzBug, Reader
from gossamer.compose.inject import inject_text, uninject_text
from gossamer.compose.plan import InjectOptions
from gossamer.errors import GossamerError

SOURCE = "compose.yaml"
T = TypeVar("T")


def options(control: int) -> InjectOptions:
    """The inject options a control byte names."""
    return InjectOptions(
        mode="explicit" if control & 0x01 else "transparent",
        bootstrap="volumes" if control & 0x02 else "files",
        observability=bool(control & 0x04),
        proxy_env=not control & 0x08,
    )


def _call(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(...)`; a GossamerError passes (unless it is inject's internal error), any
    other exception is a bug."""
    try:
        return call(*args, **kwargs)
    except GossamerError as exc:
        if exc.message.startswith("internal error"):
            raise FuzzBug(f"{what}: {exc.message}") from exc
        raise
    except Exception as exc:
        raise FuzzBug(f"{what} raised {type(exc).__name__}: {exc}") from exc


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    opts = options(reader.byte())
    text = reader.rest().decode("utf-8", "replace")
    try:
        result = _call("inject_text", inject_text, text, opts, source=SOURCE)
    except GossamerError:
        return
    injected = result.text
    if not result.changed:
        return  # (the input already was an injection)
    again = _call("inject_text (again)", inject_text, injected, opts, source=SOURCE)
    if again.text != injected or again.changed:
        raise FuzzBug("injecting an injected file again with the same options changed it")
    original = _call("uninject_text", uninject_text, injected, source=SOURCE)
    if original != text:
        raise FuzzBug("uninject did not give the original back")
