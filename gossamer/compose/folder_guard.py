"""The `.gossamer/` folder: refuse one that would send the mesh's secrets elsewhere, make it.

`gossamer inject` writes the CA's private keys and the join tokens under `.gossamer/`.
A symbolic link there — the folder itself, `ca/`, `tokens/` or any file inside, left by
a checked-out repository or another user — would make those writes land wherever the
link points. Gossamer never creates links, so `check_folder` refuses any it finds, and
a folder that is not a directory or belongs to another user, before anything is
written. Inside a folder that is ours and mode 0700 nobody else can add one later; the
temporary files of `fsutil.atomic_write` are opened with O_NOFOLLOW besides.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gossamer.errors import GossamerError
from gossamer.fsutil import atomic_write

_HINT = (
    "gossamer inject writes the mesh's CA key and join tokens there and follows no link "
    "it did not create: remove the link (inject creates the folder itself)"
)


def _link_error(path: Path) -> GossamerError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return GossamerError(
        f"refusing to write the bootstrap files: {path} is a symbolic link (to {target})",
        hint=_HINT,
    )


def check_folder(folder: Path) -> None:
    """Raise GossamerError if `folder` or anything inside it is a symbolic link, or if
    it is not a directory of this user. A missing folder is fine (it gets created)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _link_error(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise GossamerError(
            f"refusing to write the bootstrap files: {folder} is not a directory",
            hint="move that file away; inject creates the folder itself",
        )
    if info.st_uid != os.geteuid():
        raise GossamerError(
            f"refusing to write the bootstrap files: {folder} belongs to another user "
            f"(uid {info.st_uid})",
            hint="the folder holds the mesh's secrets: remove it, or run as its owner",
        )
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise _link_error(Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))


def make_folder(folder: Path) -> None:
    """Create `folder` (0700, also when it existed) with a `.gitignore` that keeps its
    secrets out of the user's repository; call `check_folder` first."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, "# secrets of the mesh: never commit them\n*\n")
