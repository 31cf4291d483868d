"""Shared pytest configuration: the repository root and the test artifact folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# real-server fixtures any test can ask for: etcd_server, etcd_cluster, shared_etcd
pytest_plugins = ["tests.helpers.etcd"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
