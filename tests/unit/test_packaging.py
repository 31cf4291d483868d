"""pyproject.toml lists every package of the five top-level folders.

setuptools cannot discover packages below a renamed folder (`proxy/` is `gossamer.proxy`),
so `[tool.setuptools] packages` is an explicit list; a folder with an `__init__.py` that is
missing from it would be left out of the wheel (and out of what mypy and import-linter
check). This test is what keeps the list complete.
"""

from __future__ import annotations

import tomllib

from tests.conftest import REPO

# import name of each top-level folder (docs/architecture.md, "Layers")
FOLDERS = {
    "gossamer": "gossamer",
    "gossamer.certs": "certs",
    "gossamer.discovery": "discovery",
    "gossamer.control": "control",
    "gossamer.proxy": "proxy",
}


def setuptools_config() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f)["tool"]["setuptools"]
    assert isinstance(config, dict)
    return config


def packages_on_disk() -> set[str]:
    found: set[str] = set()
    for package, folder in FOLDERS.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]))
    return found


def test_folders_map_into_the_gossamer_namespace():
    assert setuptools_config()["package-dir"] == FOLDERS


def test_every_package_folder_is_listed():
    listed = setuptools_config()["packages"]
    assert isinstance(listed, list)
    on_disk = packages_on_disk()
    missing = sorted(on_disk - set(listed))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    gone = sorted(set(listed) - on_disk)
    assert not gone, f"listed in pyproject.toml but no folder with an __init__.py: {gone}"
    assert len(listed) == len(set(listed)), "a package is listed twice"
