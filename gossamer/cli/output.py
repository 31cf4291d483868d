"""Printing command results: rich tables for people, `--output json` for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def output_option(func: F) -> F:
    """Add `--output table|json` (`-o`) to a command; the value arrives as `output`."""
    return click.option(
        "--output",
        "-o",
        "output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="How to print the result.",
    )(func)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table for a terminal (plain aligned text when stdout is not a TTY)."""
    from rich.console import Console
    from rich.table import Table

    # Piped output keeps whole rows on one line so it can be grepped.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 400)
    table = Table(title=title, show_edge=False, header_style="bold", box=None, pad_edge=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def emit(output: str, data: Any, render: Callable[[], None]) -> None:
    """Print `data` as JSON, or call `render` to draw it for a person."""
    if output == "json":
        print_json(data)
    else:
        render()
