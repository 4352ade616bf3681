"""Atomic writes: a crash or a bad input never leaves a half-written file or folder behind.

Files are written to a temporary sibling and renamed into place (`os.replace` is atomic on POSIX).
Folders are built under a temporary sibling and published with one rename; an existing folder is only
replaced when the caller asks for it, and only after the new one is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mindhier.errors import MindhierError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Read a JSON file, turning a missing or corrupt file into one clear error line."""
    p = Path(path)
    if not p.is_file():
        raise MindhierError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MindhierError(f"{what} {p} is not valid JSON ({err}); restore or regenerate it") from err


@contextlib.contextmanager
def staged_directory(out: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary sibling and publish it at `out` when the block succeeds.

    Refuses a non-empty `out` unless `overwrite`; with `overwrite`, the old folder is removed only
    after the new one is complete, so a failure leaves the old one untouched.
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise MindhierError(f"output path {target} exists and is not a folder; choose another --out")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise MindhierError(
            f"output folder {target} already exists and is not empty; choose another --out or pass --overwrite"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
