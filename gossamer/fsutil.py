"""Crash-safe file writes: write a temporary file, fsync, rename over, fsync the folder.

A reader sees either the old content or the new, never a torn file, whatever moment the
writer dies at. Files holding secrets are created with mode 0600 from the start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path


def _write_temporary(target: Path, data: bytes | str, mode: int, *, sync: bool) -> Path:
    """Write `data` to a temporary file beside `target` (a link there is refused, never
    followed) and return its path; fsync it if `sync`."""
    payload = data.encode() if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: str | Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably, with permission bits `mode`."""
    target = Path(path)
    tmp = _write_temporary(target, data, mode, sync=True)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def atomic_write_many(files: Sequence[tuple[Path, bytes | str]], *, mode: int = 0o644) -> None:
    """`atomic_write` for many files at once: every file is written first, then each is
    fsynced (the kernel has most of them on disk by then), renamed into place, and each
    folder fsynced once: a few ms per file less than one `atomic_write` each."""
    written: list[tuple[Path, Path]] = []
    try:
        for target, data in files:
            written.append((_write_temporary(target, data, mode, sync=False), target))
        for tmp, _target in written:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        for tmp, _target in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, target in written:
        os.replace(tmp, target)
    for folder in {target.parent for _tmp, target in written}:
        fsync_dir(folder)


def fsync_dir(directory: str | Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (created if needed) for a block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
