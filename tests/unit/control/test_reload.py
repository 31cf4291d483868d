from __future__ import annotations

import os

import pytest

from gossamer.control.config import MeshConfig
from gossamer.control.reload import ConfigWatcher
from gossamer.errors import ConfigError
from gossamer.yamlconf import Node

GOOD = "trust_domain: a.example\n"
GOOD2 = "trust_domain: b.example\n"
BAD = "trust_domain: a.example\nservices:\n  - name: x\n    lb_policy: nope\n"


def write(path, text):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def loaded():
    return []


def make(tmp_path, loaded, text=GOOD):
    path = tmp_path / "mesh.yaml"
    path.write_text(text)

    def on_load(root: Node, mesh: MeshConfig) -> None:
        loaded.append(mesh.trust_domain)

    return path, ConfigWatcher(path, on_load, interval=0.01)


def test_initial_load_errors_are_fatal(tmp_path, loaded):
    _path, watcher = make(tmp_path, loaded, BAD)
    with pytest.raises(ConfigError) as info:
        watcher.load_initial()
    assert info.value.line == 4 and info.value.field == "services[0].lb_policy"


def test_change_is_applied_and_identical_content_is_not(tmp_path, loaded):
    path, watcher = make(tmp_path, loaded)
    watcher.load_initial()
    assert not watcher.check()  # nothing changed
    write(path, GOOD)  # new inode and mtime, same bytes
    assert not watcher.check()
    write(path, GOOD2)
    assert watcher.check()
    assert loaded == ["a.example", "b.example"]


def test_invalid_file_keeps_the_last_good_config(tmp_path, loaded, caplog):
    path, watcher = make(tmp_path, loaded)
    watcher.load_initial()
    write(path, BAD)
    assert not watcher.check()
    assert watcher.last_error is not None
    assert "mesh.yaml:4: services[0].lb_policy: must be one of" in watcher.last_error.message
    assert loaded == ["a.example"]
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert not watcher.check(force=True)  # the same bad file is not reported again
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 1
    write(path, GOOD2)
    assert watcher.check()
    assert watcher.last_error is None and loaded == ["a.example", "b.example"]


def test_missing_file_is_reported_not_fatal(tmp_path, loaded):
    path, watcher = make(tmp_path, loaded)
    watcher.load_initial()
    path.unlink()
    assert not watcher.check()
    assert watcher.last_error is not None and "not found" in watcher.last_error.message


async def wait_for_loads(loaded, expected):
    import asyncio

    deadline = asyncio.get_running_loop().time() + 5
    while loaded != expected:
        assert asyncio.get_running_loop().time() < deadline, loaded
        await asyncio.sleep(0.01)


async def test_run_polls_for_changes(tmp_path, loaded):
    import asyncio

    path, watcher = make(tmp_path, loaded)
    watcher.load_initial()
    task = asyncio.create_task(watcher.run())
    try:
        write(path, GOOD2)
        await wait_for_loads(loaded, ["a.example", "b.example"])
    finally:
        task.cancel()


async def test_trigger_reloads_without_waiting_for_the_poll(tmp_path, loaded):
    import asyncio

    path, watcher = make(tmp_path, loaded)
    watcher.interval = 3600  # only a trigger (SIGHUP) can cause a reload here
    watcher.load_initial()
    task = asyncio.create_task(watcher.run())
    try:
        write(path, GOOD2)
        watcher.trigger()
        await wait_for_loads(loaded, ["a.example", "b.example"])
    finally:
        task.cancel()


def test_an_unexpected_exception_while_loading_is_reported_and_watching_goes_on(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(GOOD)
    applied: list[str] = []

    def on_load(root: Node, mesh: MeshConfig) -> None:
        if mesh.trust_domain == "b.example":
            raise RuntimeError("a bug in applying")
        applied.append(mesh.trust_domain)

    watcher = ConfigWatcher(path, on_load, interval=0.01)
    watcher.load_initial()
    write(path, GOOD2)
    assert not watcher.check()
    assert watcher.last_error is not None
    assert "RuntimeError: a bug in applying" in watcher.last_error.message
    write(path, "trust_domain: c.example\n")
    assert watcher.check()
    assert applied == ["a.example", "c.example"] and watcher.last_error is None
