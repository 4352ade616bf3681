"""What the file system refuses, as one line for the user; and which folders a command writes (to lock them)."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

_FIXES = {
    errno.ENOSPC: "the disk is full: free space or choose --out on another disk, then rerun (training: --resume)",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose --out elsewhere, then rerun",
    errno.EROFS: "the file system is read-only: choose a writable --out",
    errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write, or fix its permissions",
    errno.ENOTDIR: "a path component is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder where a file is expected: choose another path",
    errno.EEXIST: "the path exists already: choose another path or pass --overwrite",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and rerun",
}


def os_error_line(err: OSError) -> str:
    """One line naming the path, what the system said and the fix."""
    where = err.filename if err.filename is not None else "a file"
    code = errno.errorcode.get(err.errno or 0, "")
    fix = _FIXES.get(err.errno or 0, "check the path and the disk, then rerun")
    reason = err.strerror or str(err)
    return f"cannot use {where}: {reason}{f' ({code})' if code else ''}; {fix}"


def output_folders(args: argparse.Namespace) -> list[Path]:
    """The folders (or result files) `args`'s command writes, to hold their locks; none on torchrun ranks > 0,
    whose rank 0 holds them for the whole job."""
    if int(os.environ.get("RANK", "0")) != 0:
        return []
    out = getattr(args, "out", None)
    if out is not None:
        return [Path(out)]
    command, data = getattr(args, "command", ""), getattr(args, "data", None)
    if command in ("tokenize", "features") and data is not None and Path(data).is_dir():  # the default cache folder
        return [Path(data) / ("tokens" if command == "tokenize" else "features")]
    if getattr(args, "eval_command", None) == "encoder":
        return [Path(args.run)]
    return []
