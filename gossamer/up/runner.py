"""Start the demo mesh's processes in dependency order, watch them, stop them all.

Start-up, as parallel as the dependencies allow (Python start-up is most of the cost
on a small machine):
1. the control plane, every app and (isolated shape) the iptables set-up of every
   namespace, all at once;
2. every sidecar, once the control plane answers and the interception is in place;
3. ready when every sidecar's /ready answers (certificate, configuration, app) and a
   request through the mesh crossed web -> catalog -> inventory;
4. then the load generator.
A process that exits during start-up fails it at once, with the end of its log.

With `--nodes` (`start_nodes`): the etcd members and every app first; every node's
replica once etcd has a leader; every gateway and sidecar once the replicas answer;
then as above, the gateways' /ready included.

Every process runs under `gossamer.supervisor` (own process group, parent-death
signal); `stop` terminates them all and checks that no process group survived.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossamer.errors import GossamerError
from gossamer.supervisor import Child, Supervisor
from gossamer.up import commands, nodes, probes
from gossamer.up.layout import Instance, Layout
from gossamer.up.netns import Network
from gossamer.up.statedir import StateDir

# the children inherit the environment, but not what would redirect or confuse them
_DROPPED_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "gossamer_token")
_DROPPED_PREFIXES = ("GOSSAMER_API", "GOSSAMER_CONFIG")


def child_env(environ: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in environ.items()
        if k.lower() not in _DROPPED_ENV and not k.startswith(_DROPPED_PREFIXES)
    }
    env.update(PYTHONUNBUFFERED="1", GOSSAMER_LOG_FORMAT="json")
    return env


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DemoMesh:
    def __init__(
        self,
        layout: Layout,
        state: StateDir,
        settings: commands.Settings,
        network: Network | None = None,
    ) -> None:
        self.layout = layout
        self.state = state
        self.settings = settings
        self.network = network
        self.supervisor = Supervisor(state.logs)
        self.supervisor.base_env = child_env(dict(os.environ))
        self.control: Child | None = None
        self.apps: dict[str, Child] = {}
        self.sidecars: dict[str, Child] = {}
        self.replicas: dict[str, Child] = {}  # --nodes: by node
        self.gateways: dict[str, Child] = {}  # --nodes: by node
        self.etcd: list[Child] = []  # --nodes: the etcd members
        self.loadgen: Child | None = None
        self.last_answer: str = ""

    # -- start-up ------------------------------------------------------------------------
    def _wait(
        self,
        what: str | Callable[[], str],
        ready: Callable[[], bool],
        deadline: float,
        hint_log: Path | None = None,
    ) -> None:
        while True:
            for child in self.supervisor.children:
                if not child.running:
                    code = child.proc.returncode if child.proc else None
                    raise GossamerError(
                        f"{child.name} exited during start-up (code {code})",
                        hint=f"its log ({child.log_path}) ends with:\n{child.tail(12)}",
                    )
            with contextlib.suppress(Exception):  # not ready yet, whatever the probe raised
                if ready():
                    return
            if time.monotonic() > deadline:
                log = hint_log or self.state.logs
                detail = f" (last answer: {self.last_answer})" if self.last_answer else ""
                text = what() if callable(what) else what
                raise GossamerError(
                    f"the demo mesh was not up in time: {text}{detail}", hint=f"see {log}"
                )
            time.sleep(0.05)

    def _iptables(self) -> list[tuple[Instance, subprocess.Popen[bytes], Path]]:
        started = []
        for instance in self.layout.instances:
            log = self.state.logs / f"{instance.name}-iptables.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    commands.iptables_install(instance),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.supervisor.base_env,
                )
            started.append((instance, proc, log))
        return started

    def _check_iptables(
        self, started: list[tuple[Instance, subprocess.Popen[bytes], Path]], deadline: float
    ) -> None:
        for instance, proc, log in started:
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = -1
            if code != 0:
                raise GossamerError(
                    f"installing iptables rules in {instance.netns} failed (code {code})",
                    hint=log.read_text(errors="replace")[-800:],
                )

    def _mesh_answers(self) -> bool:
        answer = probes.through_mesh(self.layout)
        self.last_answer = f"HTTP {answer.status} {answer.body[:200]}"
        return answer.complete

    def start(self, timeout: float, progress: Callable[[str], None] = lambda _: None) -> None:
        if self.layout.nodes:
            self.start_nodes(timeout, progress)
            return
        deadline = time.monotonic() + timeout
        layout, sup = self.layout, self.supervisor
        iptables = self._iptables() if layout.isolated else []
        self.control = sup.start("control", commands.control_plane(layout, self.state))
        for instance in layout.apps:
            self.apps[instance.name] = sup.start(
                instance.name, commands.app(layout, instance, self.settings)
            )
        self._wait("the control plane's API did not answer", lambda: probes.control_ready(layout),
                   deadline, self.control.log_path)  # fmt: skip
        progress("control plane ready")
        self._check_iptables(iptables, deadline)
        for instance in layout.instances:
            self.sidecars[instance.name] = sup.start(
                f"{instance.name}-proxy",
                commands.sidecar(
                    layout,
                    instance,
                    None if layout.isolated else self.state.sidecar_state(instance.name),
                ),
                env=commands.sidecar_env(instance, self.state),
            )
        self._wait_sidecars(deadline, progress)
        self._finish(deadline, progress)

    def _wait_sidecars(self, deadline: float, progress: Callable[[str], None]) -> None:
        pending = set(self.sidecars)

        def sidecars_ready() -> bool:
            for name in sorted(pending):
                if probes.sidecar_ready(self.layout.get(name)):
                    pending.discard(name)
            return not pending

        self._wait(
            lambda: "sidecars not ready: " + ", ".join(sorted(pending)), sidecars_ready, deadline
        )
        progress(f"{len(self.sidecars)} sidecars ready (certificate, configuration, app)")

    def _finish(self, deadline: float, progress: Callable[[str], None]) -> None:
        self._wait("no complete answer through the mesh", self._mesh_answers, deadline)
        hops = (
            "across nodes through their gateways"
            if len(self.layout.nodes) > 1
            else "through the mesh"
        )
        progress(f"web -> catalog -> inventory answered {hops}")
        entry = self.layout.entry
        self.loadgen = self.supervisor.start(
            "loadgen", commands.loadgen(self.layout, entry, self.settings)
        )

    def _all(self, what: str, ready: Callable[[Any], bool], items: list[Any],
             deadline: float) -> None:  # fmt: skip
        pending = list(items)

        def done() -> bool:
            pending[:] = [item for item in pending if not ready(item)]
            return not pending

        self._wait(lambda: what + ", ".join(str(getattr(i, "name", i)) for i in pending),
                   done, deadline)  # fmt: skip

    def start_nodes(self, timeout: float, progress: Callable[[str], None]) -> None:
        deadline = time.monotonic() + timeout
        layout, sup = self.layout, self.supervisor
        members = list(nodes.etcd_members(layout))
        for node in members:
            self.etcd.append(
                sup.start(f"etcd-{node.name}", commands.etcd(layout, node, self.state))
            )
        for instance in layout.apps:
            self.apps[instance.name] = sup.start(
                instance.name, commands.app(layout, instance, self.settings)
            )
        self._all("etcd members without a leader: ", probes.etcd_ready, members, deadline)
        progress(f"etcd: {len(members)} member(s) with a leader")
        for node in layout.nodes:
            child = sup.start(
                f"control-{node.name}", commands.control_plane(layout, self.state, node)
            )
            self.replicas[node.name] = child
        self.control = self.replicas[layout.nodes[0].name]
        self._all("control-plane replicas not answering: ",
                  lambda node: probes.replica_ready(node.control), list(layout.nodes), deadline)  # fmt: skip
        progress(f"{len(layout.nodes)} control-plane replicas ready (one intermediate each)")
        for node in layout.nodes:
            self.gateways[node.name] = sup.start(
                f"gateway-{node.name}", commands.gateway(layout, node),
                env=commands.gateway_env(self.state),
            )  # fmt: skip
        for instance in layout.instances:
            self.sidecars[instance.name] = sup.start(
                f"{instance.name}-proxy",
                commands.sidecar(layout, instance),
                env=commands.sidecar_env(instance, self.state),
            )
        self._all("gateways not ready: ", probes.gateway_ready, list(layout.nodes), deadline)
        progress(f"{len(layout.nodes)} node gateways ready")
        self._wait_sidecars(deadline, progress)
        self._finish(deadline, progress)

    # -- while running -------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.supervisor.children if c.proc is not None}

    def running(self) -> int:
        return sum(1 for c in self.supervisor.children if c.running)

    def expected(self) -> int:
        return len(self.supervisor.children)

    # -- stop ----------------------------------------------------------------------------
    def stop(self, grace: float = 8.0) -> list[str]:
        """Stop every process (and tear the network down); returns what was left over.
        With --nodes the etcd members go last, so the replicas stop on a working store."""
        if self.etcd:
            members = set(map(id, self.etcd))
            rest = [c for c in self.supervisor.children if id(c) not in members]
            self.supervisor.stop(grace, rest)
        self.supervisor.stop(grace)
        problems = [
            f"process group {c.proc.pid} ({c.name}) still has processes"
            for c in self.supervisor.children
            if c.proc is not None and group_alive(c.proc.pid)
        ]
        for child in self.supervisor.children:
            if child.proc is not None and group_alive(child.proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
        if self.network is not None:
            problems += self.network.destroy()
        return problems
