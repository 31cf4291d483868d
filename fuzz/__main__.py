"""Run fuzz targets: `python -m fuzz` lists them, `python -m fuzz NAME [--seconds N]`
runs one with atheris on a temporary copy of its seed corpus, `python -m fuzz --all`
runs them all, one per core at a time (a crash fails the run), and
`python -m fuzz NAME --replay FILE...` runs inputs through a target without atheris (to
debug a crash).

Crashes, timeouts and leaks go to `test-artifacts/fuzz/<name>/` (libFuzzer's
artifact prefix). Only Gossamer's modules are instrumented: they are imported inside
`atheris.instrument_imports`, before anything else loads them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
DEFAULT_SECONDS = 30


def available() -> list[str]:
    """The target names (modules of fuzz/targets/)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE / "targets")]))


def summary(name: str) -> str:
    """The first line of a target's docstring, read without importing it."""
    text = (HERE / "targets" / f"{name}.py").read_text()
    doc = text.split('"""', 2)[1] if text.count('"""') >= 2 else ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def load(name: str, *, instrument: bool) -> ModuleType:
    if not instrument:
        return importlib.import_module(f"fuzz.targets.{name}")
    import atheris

    with atheris.instrument_imports(include=["gossamer"]):
        return importlib.import_module(f"fuzz.targets.{name}")


def run(name: str, seconds: int, extra: list[str]) -> int:
    """Fuzz one target in this process (libFuzzer exits the process on a crash)."""
    import atheris

    module = load(name, instrument=True)
    artifacts = ARTIFACTS / name
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"gossamer-fuzz-{name}-"))
    corpus = work / "corpus"
    seeds = CORPUS / name
    if seeds.is_dir():
        shutil.copytree(seeds, corpus)
    else:
        corpus.mkdir()
    print(
        f"fuzz {name}: {seconds} s on a copy of {seeds.relative_to(ROOT)} in {corpus}; "
        f"crashes go to {artifacts.relative_to(ROOT)}/",
        flush=True,
    )
    args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={seconds}",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-max_len=65536",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        *extra,
    ]
    atheris.Setup(args, module.test_one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def replay(name: str, files: list[str]) -> int:
    """Run files through a target without atheris; a failing one prints its traceback."""
    module = load(name, instrument=False)
    for path in files:
        module.test_one_input(Path(path).read_bytes())
        print(f"{path}: ok")
    return 0


def run_all(seconds: int) -> int:
    """Each target for `seconds`, in its own process, as many at once as there are cores
    (each libFuzzer process is single-threaded); the exit code counts failures.

    libFuzzer's progress goes to `test-artifacts/fuzz/<name>/fuzz.log`, so the run prints
    one line a target (and the log's tail when one fails): a CI log's tail then still shows
    the test results printed before the campaign.
    """
    start = time.monotonic()
    names = available()
    # the cores this process may use; at most 4 at once (each may take up to 3 GB)
    with ThreadPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0))))) as pool:
        codes = dict(zip(names, pool.map(lambda n: fuzz_logged(n, seconds), names), strict=True))
    failed = [name for name, code in codes.items() if code != 0]
    took = time.monotonic() - start
    print(f"fuzz: {len(failed)} of {len(names)} targets failed in {took:.0f} s")
    print(f"fuzz: {len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def fuzz_logged(name: str, seconds: int) -> int:
    """One target in a child process, its output in its log; prints the outcome."""
    log = ARTIFACTS / name / "fuzz.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.call(
            [sys.executable, "-m", "fuzz", name, "--seconds", str(seconds)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    took = time.monotonic() - began
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join([*tail, f"fuzz {name}: FAILED (exit {code}) in {took:.0f} s; "
                         f"see {log.parent}/"]), flush=True)  # fmt: skip
    else:
        print(f"fuzz {name}: passed, {executed_runs(log)} runs in {took:.0f} s", flush=True)
    return code


def executed_runs(log: Path) -> str:
    """libFuzzer's count of executed inputs from its final stats, or '?' without them."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("stat::number_of_executed_units:"):
            return line.split(":", 3)[-1].strip()
    return "?"


def main(argv: list[str]) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="the target to run")
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    parser.add_argument(
        "--all", action="store_true", help="run every target, one per core at a time"
    )
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run inputs, no atheris")
    args, extra = parser.parse_known_args(argv)
    if args.all:
        return run_all(args.seconds)
    if args.name is None:
        print("usage: ./dev fuzz NAME [seconds]\n\ntargets:")
        for name in names:
            print(f"  {name:10} {summary(name)}")
        return 0
    if args.name not in names:
        print(f"error: no fuzz target {args.name!r}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    if args.replay:
        return replay(args.name, args.replay)
    return run(args.name, args.seconds, extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
