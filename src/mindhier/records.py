"""Reading what files say, defensively: records checked against the keys and types we need, and paths
read from a file kept inside that file's folder. Every failure is one line naming the file and the fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mindhier.errors import MindhierError
from mindhier.fileio import read_json

T = TypeVar("T")


def read_record(path: str | os.PathLike[str], what: str, required: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object whose `required` keys exist with the given types; anything else is one line naming the file,
    the key and the fix."""
    record = read_json(path, what)
    if not isinstance(record, dict):
        raise MindhierError(f"{what} {path} holds a {type(record).__name__}, not an object; restore or regenerate it")
    for key, kind in required.items():
        if key not in record:
            raise MindhierError(f"{what} {path} lacks the key {key!r}; restore or regenerate it")
        if not isinstance(record[key], kind) or (kind is int and isinstance(record[key], bool)):
            names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise MindhierError(
                f"{what} {path}: {key!r} should be {names}, found {type(record[key]).__name__}; "
                "restore or regenerate it"
            )
    return record


def parse_record(path: str | os.PathLike[str], what: str, parse: Callable[[Any], T]) -> T:
    """`parse(read_json(path))`, with a missing key or a wrong type turned into one line naming the file."""
    record = read_json(path, what)
    try:
        return parse(record)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise MindhierError(
            f"{what} {path} is malformed ({type(err).__name__}: {err}); restore it or retrain the run"
        ) from err


MAX_DIMENSION = 10_000_000  # no size a run records (voxels, vocabulary, widths, tokens) comes near this


def dimension(value: Any, what: str, least: int = 1, most: int = MAX_DIMENSION) -> int:
    """A size read from a file, checked like a size on the command line: a whole number (not a string, a float or
    a boolean) in [least, most]; else `ValueError` naming it (`parse_record` turns that into one line)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} should be a whole number, found {value!r}")
    if not least <= value <= most:
        raise ValueError(f"{what} should be in {least}..{most:,}, found {value:,}")
    return value


def contained_path(folder: str | os.PathLike[str], stored: Any, what: str, flag: str = "") -> Path:
    """`folder / stored` for a path read from a file in `folder` (a manifest, a run record), refused unless it is
    relative and resolves inside `folder`: a file we read never sends us elsewhere on the disk. `flag` names the
    option with which the user can give such a path explicitly."""
    root = Path(folder).resolve()
    if not isinstance(stored, str) or not stored:
        raise MindhierError(f"{what} in {folder} is not a path ({stored!r}); restore the file that names it")
    target = (root / stored).resolve()
    if Path(stored).is_absolute() or not target.is_relative_to(root):
        fix = f"pass {flag} explicitly" if flag else "move it inside that folder and fix the file"
        raise MindhierError(f"{what} {stored!r} points outside {root}; {fix}")
    return target
