"""Atomic writes: a crash or a bad input never leaves a half-written file or folder behind.

Files are written to a temporary sibling and renamed into place (`os.replace` is atomic on POSIX).
Folders are built under a temporary sibling and published with one rename; an existing folder is only
replaced when the caller asks for it, and only after the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mindhier import fault_points
from mindhier.errors import MindhierError

_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # what `tempfile.mkstemp` names for `atomic_path`


def current_umask() -> int:
    """The process's umask, read when needed (a umask set after import counts); Linux reports it in
    /proc/self/status, elsewhere it is read by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_OS_CODE = re.compile(r"(?:Os \{ code: |os error |\[Errno )(\d+)")


def write_failure(err: BaseException, path: str | os.PathLike[str]) -> OSError:
    """A failed write as an `OSError` that names `path` (the CLI prints it as one line with the fix): its errno taken
    from the error, from the causes it wraps (a DCP failure's), or from the text of a library's message
    (safetensors' `Os { code: 28 … }`); EIO when none says."""
    found: list[BaseException] = [err]
    found += list(getattr(err, "failures", {}).values())  # torch.distributed.checkpoint's CheckpointException
    for cause in found:
        if isinstance(cause, OSError) and cause.errno:
            return OSError(cause.errno, cause.strerror or str(cause), str(path))
    for cause in found:
        match = _OS_CODE.search(str(cause))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code), str(path))
    return OSError(errno.EIO, f"the write failed ({' '.join(str(err).split())[:160]})", str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OSError as err:
            if err.filename is None:  # a failed write() names no file: name the one being written
                raise write_failure(err, target) from err
            raise
        tmp.chmod(0o666 & ~current_umask())  # mkstemp (and safetensors) make 0600: publish with the usual permissions
        fault_points.reach("atomic-write.before-rename")
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
        raise MindhierError(f"{what} not found: {p}; check the path")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MindhierError(f"{what} {p} is not valid JSON ({err}); restore or regenerate it") from err


def refuse_existing(path: str | os.PathLike[str], overwrite: bool, what: str = "output file") -> None:
    """Refuse to replace an existing file unless the user passed `--overwrite`."""
    p = Path(path)
    if p.is_dir():
        raise MindhierError(f"{what} {p} is a folder; choose a file path")
    if p.exists() and not overwrite:
        raise MindhierError(f"{what} {p} exists already; choose another path or pass --overwrite to replace it")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files `atomic_path` leaves when a process dies mid-write (`.NAME.XXXX.tmp`), in
    `folder` and below; call it only while holding the folder's lock. Returns the removed names."""
    removed: list[str] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        if path.is_file() and _TEMPORARY.fullmatch(path.name):
            path.unlink()
            removed.append(str(path.relative_to(root)))
    return removed


def _remove_stale_stagings(target: Path) -> None:
    """Staging and retired siblings of `target` a crashed earlier writer left (the caller holds the lock)."""
    for path in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if path.is_dir() and (path.name.endswith(".partial") or ".old-" in path.name):
            shutil.rmtree(path, ignore_errors=True)


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
    _remove_stale_stagings(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; the published folder gets the usual permissions
    try:
        yield staging
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(retired, target)  # the new folder could not be published: the old one stays
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
