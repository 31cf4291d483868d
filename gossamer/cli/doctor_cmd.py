"""`gossamer doctor`: can the Docker here run what `gossamer inject` writes?

    gossamer doctor                  # the Engine and Compose here, for inject's files
    gossamer doctor compose.yaml     # ... for the features this compose file uses
    gossamer doctor -o json          # the same as JSON

Asks the local `docker` CLI for its versions (`gossamer.compose.engine_probe`) and
prints one line per finding (`gossamer.compose.engine_check`): what works, and for what
does not, what fails, why, and the fix. Exit 0 when usable (warnings allowed), 1 when
not. It writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import click

from gossamer.cli.output import output_option, print_json
from gossamer.compose.engine_check import Finding, Versions

COLOURS = {"error": "red", "warning": "yellow", "ok": "green"}


def echo_findings(findings: Sequence[Finding], *, err: bool = False) -> None:
    """Each finding as `severity feature: what` plus why/fix lines, the word coloured."""
    for finding in findings:
        first, *rest = finding.lines()
        word = finding.severity
        click.echo(click.style(word, fg=COLOURS[word]) + first[len(word) :], err=err)
        for line in rest:
            click.echo(line, err=err)


def _versions_dict(versions: Versions) -> dict[str, str | None]:
    return {
        "engine": versions.engine_text or (str(versions.engine) if versions.engine else None),
        "api": f"{versions.api.major}.{versions.api.minor}" if versions.api else None,
        "compose": versions.compose_text or None,
    }


@click.command("doctor")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@output_option
def doctor(file: Path | None, output: str) -> None:
    """Check the Docker Engine and Compose here for Gossamer (exit 1 if unusable).

    Without FILE: for every feature `gossamer inject` may write (Docker Engine 25 or
    later, Compose 2.24 or later). With FILE, a compose file (plain or injected): for
    the version-dependent features it uses. Nothing is written.
    """
    from gossamer.compose import engine_check, engine_probe

    features: Sequence[str] = engine_check.INJECT_FEATURES
    if file is not None:
        from gossamer.compose.document import load_compose
        from gossamer.compose.workflow import read_compose

        data = load_compose(read_compose(file), str(file)).data
        features = sorted(engine_check.features_used(data))
    versions = engine_probe.probe()
    findings = engine_check.check(versions, features)
    ok = engine_check.usable(findings)
    if output == "json":
        print_json(
            {
                "usable": ok,
                "file": None if file is None else str(file),
                **_versions_dict(versions),
                "findings": [asdict(f) for f in findings],
            }
        )
    else:
        echo_findings(findings)
        subject = f"{file}" if file is not None else "the files gossamer inject writes"
        if ok:
            click.echo(f"usable: the Docker here can run {subject}")
        else:
            bad = sum(f.severity == "error" for f in findings)
            click.secho(
                f"not usable: the Docker here cannot run {subject} ({bad} error(s) above)",
                fg="red",
            )
    if not ok:
        sys.exit(1)
