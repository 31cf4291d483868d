"""Images built once for the container tests and reused while their inputs stay the same."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers.docker_compose import docker


def tree_hash(folder: Path) -> str:
    """16 hex digits over the relative names and contents of every file under `folder`
    (caches skipped), so an edit to any of them makes a new tag."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_image(repository: str, context: Path, target: str | None = None) -> str:
    """`repository:<tree_hash(context)>`, built from `context` (its Dockerfile, stage
    `target` if given) with `docker build -q` unless an image of that tag exists."""
    tag = f"{repository}:{tree_hash(context)}"
    if docker("image", "inspect", tag, timeout=30, check=False).returncode == 0:
        return tag
    args = ["build", "-q", "-t", tag] + (["--target", target] if target else [])
    docker(*args, str(context), timeout=600)
    return tag
