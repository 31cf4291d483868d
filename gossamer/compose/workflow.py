"""`gossamer inject` and `gossamer uninject` on files: read, decide, bootstrap, write.

Where the output goes (what the CLI documents):

- inject writes `NAME.meshed.yaml` beside `NAME.yaml` unless `-o` says otherwise (`-o -`
  for standard output, as `istioctl kube-inject` and `linkerd inject` print theirs);
  the input is never modified unless it is also the output. An input that already is
  an injected `*.meshed.yaml` is its own default output, so re-running is a no-op.
- uninject restores the file in place unless `-o` says otherwise.
- Nothing is written when anything fails, and an existing output is only replaced if
  gossamer wrote it and nobody edited it since (or with `force`).

`.gossamer/` goes beside the output (Compose resolves the secret files against the
compose file's directory), or beside the input when printing to standard output.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from gossamer.compose import bootstrap, join_files, marker
from gossamer.compose.document import load_compose
from gossamer.compose.inject import InjectResult, inject_text, render, uninject_text
from gossamer.compose.options import InjectOptions
from gossamer.errors import ConfigError, GossamerError
from gossamer.fsutil import atomic_write

MESHED_SUFFIX = ".meshed"


@dataclass
class InjectOutcome:
    result: InjectResult
    output: Path | None  # None: standard output
    written: bool
    bootstrap: bootstrap.BootstrapReport | None
    joined: join_files.JoinReport | None = None


def read_compose(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a compose file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not a text file (not UTF-8 at byte {exc.start})",
            source=str(path),
            hint="gossamer inject reads a compose YAML file",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def default_output(path: Path) -> Path:
    """`compose.yaml` -> `compose.meshed.yaml`; an injected `x.meshed.yaml` stays itself."""
    suffix = path.suffix if path.suffix in (".yaml", ".yml") else ".yaml"
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    if stem.endswith(MESHED_SUFFIX):
        return path
    return path.with_name(f"{stem}{MESHED_SUFFIX}{suffix}")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_overwrite(output: Path, source: Path) -> None:
    """Refuse to replace a file gossamer did not write, or one edited since."""
    if _same(output, source) or not output.exists():
        return
    if output.is_dir():
        raise ConfigError(f"{output} is a directory", hint="give -o a file name")
    hint = "choose another -o, or pass --force to replace it"
    try:
        text = output.read_text(encoding="utf-8")
        doc = load_compose(text, str(output))
        found = marker.read(doc)
    except (GossamerError, OSError, UnicodeDecodeError):
        found = None
    if found is None:
        raise ConfigError(f"{output} exists and was not written by gossamer inject", hint=hint)
    previous, _, _ = render(found.original, found.options, source=str(output), blob=found.blob)
    if previous != text:
        raise ConfigError(f"{output} was edited after gossamer inject wrote it", hint=hint)


def write_text(path: Path, text: str) -> None:
    """Atomically replace `path`, keeping its permission bits if it exists."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    try:
        atomic_write(path, text, mode=mode)
    except OSError as exc:
        raise GossamerError(f"cannot write {path}: {exc.strerror or exc}") from None


def inject_file(
    path: Path,
    output: Path | None,
    options: InjectOptions,
    *,
    stdout: bool = False,
    force: bool = False,
    trust_domain: str | None = None,
    token_ttl: float = bootstrap.DEFAULT_TOKEN_TTL,
    with_bootstrap: bool = True,
    join_inputs: join_files.JoinInputs | None = None,
) -> InjectOutcome:
    """Inject `path` into `output` (default: `default_output(path)`), or into nothing
    when `stdout` is set (the caller prints `outcome.result.text`)."""
    text = read_compose(path)
    inputs = join_inputs or join_files.JoinInputs()
    join_files.check_inputs(options, inputs)
    result = inject_text(text, options, source=path.name)
    target = None if stdout else (output or default_output(path))
    if target is not None and not force:
        _check_overwrite(target, path)
    base = (target or path).parent
    report = None
    joined = None
    if with_bootstrap and result.options.join:
        joined = join_files.write_join_bootstrap(base, result.plan, result.options, inputs)
    elif with_bootstrap and result.options.bootstrap == "files":
        report = bootstrap.write_bootstrap(
            base,
            result.plan,
            result.options,
            source=path.name,
            trust_domain=trust_domain,
            token_ttl=token_ttl,
            declared=join_files.services_of(inputs.services_of, result.options),
        )
    written = False
    if target is not None:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != result.text:
            write_text(target, result.text)
            written = True
    return InjectOutcome(
        result=result, output=target, written=written, bootstrap=report, joined=joined
    )


def uninject_file(
    path: Path, output: Path | None, *, stdout: bool = False, force: bool = False
) -> tuple[str, Path | None]:
    """Restore the original of `path` into `output` (default: `path` itself)."""
    text = read_compose(path)
    original = uninject_text(text, source=path.name, force=force)
    if stdout:
        return original, None
    target = output or path
    if not _same(target, path) and target.exists() and not force:
        raise ConfigError(
            f"{target} exists", hint="choose another -o, or pass --force to replace it"
        )
    write_text(target, original)
    return original, target


def relative_paths_warning(source: Path, target: Path | None) -> str | None:
    """Compose resolves relative paths against the file's folder: warn if it moves."""
    if target is None or _same(source.parent, target.parent):
        return None
    return (
        f"{target} is not in the folder of {source}: relative paths in the file "
        "(build contexts, bind mounts, env files) will resolve from its new folder"
    )
