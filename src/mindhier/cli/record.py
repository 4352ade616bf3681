"""`--record FILE`: a command that measures something also writes its result file (`mindhier/result_files.py`).

The target is checked before the measurement starts (a `.json` name; an existing file only with `--overwrite`), so
a long run never ends in a refusal; the record is written last, atomically, with the command line, the commit,
the machine and the wall time since the command started.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ResultRecorder:
    """Started when the command starts; `finish(numbers)` writes the record when `--record` was given."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        from mindhier.result_files import check_result_path

        self.name = name
        self.argv = [str(a) for a in getattr(args, "argv", sys.argv[1:])]
        self.started = time.perf_counter()
        target = getattr(args, "record", None)
        self.path: Path | None = (
            None if target is None else check_result_path(target, bool(getattr(args, "overwrite", False)))
        )

    def finish(self, numbers: dict[str, Any] | Callable[[], dict[str, Any]]) -> Path | None:
        """Write the record (`numbers`, or what the callable returns: only computed when recording)."""
        from mindhier.result_files import result_record, write_result

        if self.path is None:
            return None
        figures = numbers() if callable(numbers) else numbers
        record = result_record(self.name, self.argv, time.perf_counter() - self.started, figures)
        return write_result(self.path, record)
