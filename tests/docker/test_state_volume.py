"""The sidecar state volume `gossamer inject` generates, on a real Docker Engine.

`gossamer/compose/services.py` `state_volume()` declares a local tmpfs volume of the
sidecar's UID, and `S-netns` mounts it too because Docker's local driver unmounts such
a volume (its content gone) when the last container using it stops. This checks both
halves of that design with the generated options: the sidecar's user owns the volume
(mode 0700, what `gossamer proxy --state-dir` requires), what it writes survives the
sidecar container's end while the holder runs, and is gone once nothing mounts it.
"""

from __future__ import annotations

import os

import pytest

from gossamer.compose import names, services
from tests.helpers.docker_compose import docker, require_engine

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(300)]

IMAGE = "gossamer:latest"
UID = f"{services.PROXY_UID}:{services.PROXY_UID}"


def run_as_sidecar(volume: str, script: str) -> str:
    mount = f"{volume}:{names.CONTAINER_STATE_DIR}"
    done = docker(
        "run", "--rm", "--user", UID, "--entrypoint", "sh", "-v", mount, IMAGE, "-c", script,
        timeout=120,
    )  # fmt: skip
    return done.stdout


def test_the_state_volume_outlives_the_sidecar_while_its_namespace_holds_it():
    require_engine()
    volume = f"gossamer-test-state-{os.getpid()}"
    holder = f"{volume}-netns"
    spec = services.state_volume()
    opts = [f"--opt={k}={v}" for k, v in spec["driver_opts"].items()]
    docker("volume", "create", "--driver", spec["driver"], *opts, volume)
    try:
        docker(
            "run", "-d", "--name", holder, "--user", UID, "--entrypoint", "sleep",
            "-v", f"{volume}:{names.CONTAINER_STATE_DIR}:ro", IMAGE, "infinity",
        )  # fmt: skip
        owner = run_as_sidecar(volume, f"stat -c '%u %a' {names.CONTAINER_STATE_DIR}")
        assert owner.split() == [str(services.PROXY_UID), "700"]
        run_as_sidecar(volume, f"echo kept > {names.CONTAINER_STATE_DIR}/identity.json")
        # a new sidecar container (a restart) finds it
        assert run_as_sidecar(volume, f"cat {names.CONTAINER_STATE_DIR}/identity.json") == "kept\n"
        docker("rm", "-f", holder)
        # nothing mounts it any more: Docker unmounted the tmpfs, the content is gone
        left = run_as_sidecar(volume, f"ls -A {names.CONTAINER_STATE_DIR}")
        assert left == ""
    finally:
        docker("rm", "-f", holder, check=False)
        docker("volume", "rm", "-f", volume, check=False)
