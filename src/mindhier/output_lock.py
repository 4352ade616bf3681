"""One writer per output folder: an advisory file lock held for a command's life.

The lock is the file `.NAME.lock` beside the folder `NAME` (beside, not inside, so an empty `--out` stays
empty and a folder published by rename keeps its lock). It is taken with `fcntl.flock`, which the kernel
releases when the process dies, so a crash never leaves a folder locked; the file records the holder's pid
and command for the error a second writer sees. The file is removed on release; a writer that locked a file
another process removed in between sees the inode change and locks again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from mindhier.errors import MindhierError


class FolderBusyError(MindhierError):
    """Another process is writing to the same output folder."""


NAME_BYTES_LIMIT = 255  # a file name on Linux, macOS and Windows file systems
HIDDEN_NAME_BYTES = 30  # what the hidden siblings add to an output's name: `.NAME.lock`, `.NAME.XXXXXXXX.partial`


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock of the folder `out` is, not of the name it was given as: symlinks and `..` resolved, so two writers
    reaching one folder by different paths take one lock. The root, and names too long for the hidden siblings an
    output needs (its lock, its temporary and staging names), are refused up front."""
    target = Path(out).resolve()
    if not target.name:
        raise MindhierError(f"output {out} is the root of the file system; choose a folder below it")
    longest = NAME_BYTES_LIMIT - HIDDEN_NAME_BYTES
    if len(target.name.encode()) > longest:
        raise MindhierError(
            f"output name {target.name[:40]}… is {len(target.name.encode())} bytes; the file system allows "
            f"{NAME_BYTES_LIMIT} and the hidden lock and staging names add up to {HIDDEN_NAME_BYTES}; choose a name "
            f"of at most {longest} bytes"
        )
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def hold_output(out: str | os.PathLike[str], command: str = "") -> Iterator[Path]:
    """Hold the lock of the output folder `out` for the block; a second holder gets `FolderBusyError`."""
    path = lock_path(out)
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise MindhierError(f"{existing} is a file, so {Path(out)} cannot be made inside it; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderBusyError(
                f"{Path(out)} is being written by another mindhier process ({holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder before us removed the file after we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command or " ".join(sys.argv)}).encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {record['pid']}: {record['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"
