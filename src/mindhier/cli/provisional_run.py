"""A training call's run folder stays provisional until its first resume point: a user error before then takes
back what the call wrote, so a plain rerun (or `--resume`) of the corrected command is accepted.

Only paths this call created are removed (a listing before and after), and the folder itself only when this
call made it; a folder that holds a complete resume point or a finished run is kept as it is, for `--resume`."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from mindhier import run_layout
from mindhier.errors import MindhierError


def _listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.is_dir() else set()


def _resumable(folder: Path) -> bool:
    """A complete resume point or a finished run: what `--resume` continues from."""
    points = folder / run_layout.RESUME_DIR
    complete = points.is_dir() and any(not p.name.startswith(".") for p in points.iterdir())
    return complete or (folder / run_layout.SUMMARY).is_file()


@contextlib.contextmanager
def provisional_run(out: str | os.PathLike[str] | None) -> Iterator[None]:
    """Run the block; on a `MindhierError` before the run is resumable, remove what the block added to `out`."""
    if out is None or int(os.environ.get("RANK", "0")) != 0:  # rank 0 owns the folder under torchrun
        yield
        return
    folder = Path(out)
    existed, before = folder.exists(), _listing(folder)
    try:
        yield
    except MindhierError:
        if folder.is_dir() and not _resumable(folder):
            _take_back(folder, existed, before)
        raise


def _take_back(folder: Path, existed: bool, before: set[Path]) -> None:
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)
        return
    added = sorted(_listing(folder) - before, key=lambda p: len(p.parts), reverse=True)  # deepest first
    for path in added:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
