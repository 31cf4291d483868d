"""One `gossamer up` run, from the command line to the last process stopped.

Order: (isolated and nodes shapes, under a host-wide lock) remove what crashed runs left, choose a
subnet; lay out addresses and ports; prepare the fresh state directory; create the
network; start the mesh; print the banner and write status.json; print the live
summary until SIGINT, SIGTERM or SIGHUP; stop every process and remove the network,
whatever happened before (a failed start-up included).

Start-up time is measured from the moment this process started (from /proc), so it
includes the Python start-up of `gossamer up` itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from gossamer.errors import UsageError
from gossamer.up import commands, netns, nodes, report, summary
from gossamer.up import layout as layouts
from gossamer.up.commands import Settings
from gossamer.up.runner import DemoMesh
from gossamer.up.statedir import (
    DEFAULT_STATE_DIR,
    StateDir,
    clear_status,
    prepare,
    token_summary,
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """A stop signal arrived."""


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    port_base: int | None = None
    isolate: bool = False
    nodes: int | None = None  # --nodes N: N simulated nodes (gossamer/up/nodes.py)
    settings: Settings = field(default_factory=Settings)
    timeout: float = 60.0
    interval: float = 5.0


def process_started_at() -> float:
    """`time.monotonic()` at the moment this process started (best effort)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - max(0.0, age)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def catch_signals() -> dict[int, object]:
    """Turn SIGINT/SIGTERM/SIGHUP into `Stop`; returns the handlers to restore."""
    return {s: signal.signal(s, _raise_stop) for s in STOP_SIGNALS}


def ignore_signals() -> None:
    """While stopping: a second Ctrl-C must not leave half the mesh running."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class Printer:
    """Lines to the terminal; on a TTY the live summary redraws in place."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0

    def say(self, line: str = "") -> None:
        self.drawn = 0
        self.out.write(line + "\n")
        self.out.flush()

    def block(self, lines: list[str]) -> None:
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.drawn = len(lines) if self.tty else 0


def _layout(options: UpOptions, run_id: str) -> tuple[layouts.Layout, Callable[[], None]]:
    if options.nodes is not None:
        return nodes.nodes_layout(netns.choose_subnet(), run_id, options.nodes), lambda: None
    if options.isolate:
        return layouts.isolated_layout(netns.choose_subnet(), run_id), lambda: None
    if options.port_base is not None:
        return layouts.loopback_layout(layouts.BasePorts(options.port_base)), lambda: None
    ports = layouts.FreePorts()
    return layouts.loopback_layout(ports), ports.release


def watch(mesh: DemoMesh, state: StateDir, printer: Printer, interval: float) -> None:
    """Print the live summary every `interval` seconds, and any process that exits."""
    token = state.admin_token()
    others = [
        (node.control.api_url, state.node_admin_token(node.name)) for node in mesh.layout.nodes[1:]
    ]
    reported: set[str] = set()
    next_at = time.monotonic()
    while True:
        for child in mesh.supervisor.exited():
            if child.name not in reported:
                reported.add(child.name)
                code = child.proc.returncode if child.proc else None
                printer.say(f"! {child.name} exited (code {code}); its log: {child.log_path}")
        if time.monotonic() >= next_at:
            snap = summary.fetch(mesh.layout.control.api_url, token, others=others)
            snap.running, snap.expected_processes = mesh.running(), mesh.expected()
            snap.expected_sidecars = len(mesh.sidecars)
            snap.expected_gateways = len(mesh.gateways)
            printer.block(summary.render(snap))
            next_at = time.monotonic() + interval
        time.sleep(0.2)


def check_options(
    options: UpOptions,
    euid: Callable[[], int] = os.geteuid,
    which: Callable[[str], str | None] = shutil.which,
) -> None:
    """Refuse what cannot run, before anything is made (one-line errors)."""
    if options.nodes is not None:
        nodes.check_count(options.nodes)
        if options.isolate:
            raise UsageError("--nodes and --isolate are two shapes: choose one")
        if options.port_base is not None:
            raise UsageError("--port-base applies to the loopback shape, not --nodes")
        netns.require_root("--nodes", euid)
        if which(commands.ETCD_BINARY) is None:
            raise UsageError(
                "--nodes needs etcd (the replicas share an etcd cluster), and it is not installed",
                hint="install it, e.g. apt-get install etcd-server",
            )
    if options.isolate:
        netns.require_root("--isolate", euid)
        if options.port_base is not None:
            raise UsageError("--port-base applies to the loopback shape, not --isolate")


def run(options: UpOptions, out: TextIO = sys.stdout) -> int:
    started = process_started_at()
    printer = Printer(out)
    check_options(options)
    namespaces = options.isolate or options.nodes is not None
    run_id = str(os.getpid())
    network: netns.Network | None = None
    mesh: DemoMesh | None = None
    previous = catch_signals()
    try:
        with netns.setup_lock() if namespaces else _nothing():
            if namespaces:
                for item in netns.cleanup_stale():
                    printer.say(f"removed {item} left by an earlier run")
            layout, release_ports = _layout(options, run_id)
            state = prepare(options.state_dir, layout)
            if namespaces:
                network = netns.Network(layout, run_id)
                network.create()
        release_ports()
        mesh = DemoMesh(layout, state, options.settings, network)
        printer.say(f"starting the demo mesh (logs in {state.logs}) ...")
        printer.say(f"  {token_summary(layout)}")
        mesh.start(
            options.timeout,
            lambda what: printer.say(f"  {time.monotonic() - started:5.1f} s  {what}"),
        )
        seconds = time.monotonic() - started
        token = state.admin_token()
        for line in report.banner(
            layout,
            state,
            options.settings,
            token=token,
            seconds=seconds,
            processes=mesh.expected(),
        ):
            printer.say(line)
        state.write_status(
            report.status(
                layout,
                state,
                token=token,
                seconds=seconds,
                pids=mesh.pids(),
                bridge=network.bridge if network else None,
            )
        )
        watch(mesh, state, printer, options.interval)
    except Stop:
        pass
    finally:
        ignore_signals()
        if mesh is not None or network is not None:
            printer.say("stopping ...")
            problems = mesh.stop() if mesh is not None else []
            if mesh is None and network is not None:
                problems += network.destroy()
            if mesh is not None:
                clear_status(mesh.state)
            for problem in problems:
                printer.say(f"! {problem}")
            printer.say("stopped" + (" (with the problems above)" if problems else ""))
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield
