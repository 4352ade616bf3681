"""Result files: one small JSON per measurement, the source of every figure the README states.

A command given `--record FILE` (`mindhier demo`, `mindhier bench simulate|sampler|decoders`, `mindhier plan`)
writes, besides its usual outputs, one record:

    schema        RESULT_SCHEMA
    name          what was measured ("demo", "bench-sampler", ...): selects how the README renders it
    command       the command line, as typed after `mindhier`
    commit        the git revision of the code that ran (with `-dirty` for uncommitted changes)
    date          UTC, ISO 8601, when the measurement ended
    machine       cores, torch threads, processor, platform, CUDA, python, torch
    wall_seconds  the command's wall time
    peak_rss_gib  the process's peak resident memory
    source        "measured" (written by the command) or "transcribed" (copied from an older README whose
                  command output was not kept; `note` says from where) — the README names which
    numbers       the figures themselves (`result_numbers.py` says which, per name)

The repository keeps these under `results/`; `scripts/readme_tables.py` renders the README's tables from them and
its `--check` (run by the test suite) fails when a README table and its file disagree.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

from mindhier.errors import MindhierError
from mindhier.fileio import refuse_existing, write_json
from mindhier.records import read_record

RESULT_SCHEMA = "mindhier-result/1"
SOURCES = ("measured", "transcribed")
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "name": str,
    "command": str,
    "commit": str,
    "date": str,
    "machine": dict,
    "wall_seconds": (int, float),
    "source": str,
    "numbers": dict,
}


def peak_rss_gib() -> float:
    """This process's peak resident set size so far, GiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 30) if sys.platform == "darwin" else peak / (1 << 20)


def result_machine() -> dict[str, Any]:
    """Cores, threads, processor and library versions: enough to say which machine class a figure is from."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def result_record(name: str, argv: list[str], wall_seconds: float, numbers: dict[str, Any]) -> dict[str, Any]:
    """The record of one measurement just made by this process (`argv`: the arguments after `mindhier`)."""
    from mindhier.provenance import git_revision

    return {
        "schema": RESULT_SCHEMA,
        "name": name,
        "command": " ".join(["mindhier", *argv]),
        "commit": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": result_machine(),
        "wall_seconds": round(float(wall_seconds), 1),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "source": "measured",
        "numbers": numbers,
    }


def check_result_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse a `--record` target before the measurement starts: an existing file without `overwrite`, or a name
    that is not `.json`."""
    path = Path(path)
    if path.suffix != ".json":
        raise MindhierError(f"--record {path} is not a .json file; name the result file NAME.json")
    refuse_existing(path, overwrite, "result file")
    return path


def write_result(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a result record atomically (the target was checked by `check_result_path` before the run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """A result file checked against the schema; anything else is one line naming the file and the fix."""
    record = read_record(path, "result file", REQUIRED)
    if record["schema"] != RESULT_SCHEMA:
        raise MindhierError(
            f"result file {path} has schema {record['schema']!r}, not {RESULT_SCHEMA!r}; re-measure it with --record"
        )
    if record["source"] not in SOURCES:
        raise MindhierError(f"result file {path}: source {record['source']!r} is not one of {SOURCES}; fix the file")
    return record
