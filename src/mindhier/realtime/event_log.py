"""The session's event log, `events.jsonl`: one JSON object per line, appended and flushed to disk as things
happen, so a crash loses at most the line being written. A restarted session reads it back to learn which trials
are done (their beta and image files were written, atomically, before their line) and continues after them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class EventLog:
    def __init__(self, out: Path) -> None:
        self.path = out / EVENTS_FILE
        self.records = self._read_complete()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 — held open for the session's life

    def _read_complete(self) -> list[dict[str, Any]]:
        """The complete lines already there; a torn last line (the process died writing it) is cut off."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        keep = raw[: raw.rfind(b"\n") + 1]
        if len(keep) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(keep))
        records = []
        for line in keep.decode("utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records.append(record)

    def done_trials(self) -> dict[int, dict[str, Any]]:
        return {int(r["trial"]): r for r in self.records if r.get("type") == "trial"}

    def close(self) -> None:
        self._file.close()
