"""Where volumes come from during a real-time session: a folder the scanner writes one file per TR into (as
rt-cloud's file watcher sees a scanner's converted output), or a recorded run replayed at 1× or maximum speed.
Both yield the same `Arrival`s, in frame order, to the same processing path.

The watcher polls (no platform file-event API to depend on) and copes with what scanners and network shares do:
- half-written files: a file is read only once its size has stayed the same for one poll and it loads completely;
- duplicates: a frame already taken is ignored (noted once);
- out of order: frames are handed on in order; a later frame waits in a buffer for the earlier ones;
- late or lost: a frame still missing `missing_after_s` after a later one arrived is given up (an `Arrival` with
  no volume and an error line), and the stream goes on;
- corrupt: a file whose size has not changed for `corrupt_after_s` (default one TR) and still does not load gives
  an error `Arrival` (a copy that stalls half-way is waited for that long).
The frame number is the last number in the file name (rt-cloud: `001_000013_000005.dcm` → 5), 1-based by default.

Shape letters (docs/glossary.md): A, B, C the volume's axes; F frames.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mindhier.data.bold import bids
from mindhier.errors import DataError

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
VOLUME_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Arrival:
    frame: int  # 0-based
    arrived: float  # time.time() when the volume was complete and read
    volume_ABC: np.ndarray | None  # None when the frame was lost or unreadable
    error: str | None = None
    source: str = ""


def frame_number(name: str, first: int = 1) -> int | None:
    match = _LAST_NUMBER.search(name.split(".nii")[0])
    return None if match is None else int(match.group(1)) - first


class ReplaySource:
    """A recorded 4-D run, one volume per TR (`speed` 1.0 = real time, None = as fast as they are taken)."""

    def __init__(self, bold: Path, tr: float, speed: float | None = 1.0, start_frame: int = 0) -> None:
        _, self._data = bids.load_volume(bold, "BOLD run")
        if self._data.ndim != 4:
            raise DataError(f"BOLD run {bold} has shape {self._data.shape}; --replay needs a 4-D run")
        self.tr, self.speed, self.start_frame, self.source = tr, speed, start_frame, str(bold)

    @property
    def n_frames(self) -> int:
        return int(self._data.shape[-1])

    def __iter__(self) -> Iterator[Arrival]:
        start = time.time()
        for f in range(self.start_frame, self.n_frames):
            if self.speed is not None:
                due = start + (f - self.start_frame + 1) * self.tr / self.speed  # a volume exists after its TR
                time.sleep(max(0.0, due - time.time()))
            yield Arrival(f, time.time(), np.ascontiguousarray(self._data[..., f]), source=f"{self.source}[{f}]")


@dataclass
class _Seen:
    size: int
    since: float = 0.0  # when the size was last seen to change


@dataclass
class FolderSource:
    """Volumes written one file per TR into `folder` (3-D NIfTI each)."""

    folder: Path
    n_frames: int
    tr: float
    first_number: int = 1
    poll_s: float = 0.05
    missing_after_s: float | None = None  # default: 2 TRs
    idle_timeout_s: float | None = None  # stop when nothing arrives this long (default: 10 TRs)
    corrupt_after_s: float | None = None  # a file unreadable at the same size this long is corrupt (default: 1 TR)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Arrival]:
        missing_after = self.missing_after_s if self.missing_after_s is not None else 2 * self.tr
        idle_timeout = self.idle_timeout_s if self.idle_timeout_s is not None else 10 * self.tr
        ready: dict[int, Arrival] = {}
        seen: dict[str, _Seen] = {}
        taken: set[int] = set()
        next_frame, last_progress = 0, time.time()
        first_later: float | None = None
        while next_frame < self.n_frames:
            for path in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
                arrival = self._poll(path, seen, taken, ready)
                if arrival is not None:
                    ready[arrival.frame] = arrival
                    taken.add(arrival.frame)
                    last_progress = time.time()
            while next_frame in ready:
                yield ready.pop(next_frame)
                next_frame += 1
                first_later = None
            if next_frame >= self.n_frames:
                break
            now = time.time()
            if ready:
                first_later = first_later or now
                if now - first_later > missing_after:
                    taken.add(next_frame)
                    yield Arrival(
                        next_frame,
                        now,
                        None,
                        f"volume {next_frame + self.first_number} never arrived; decoding goes on without it",
                    )
                    next_frame += 1
                    first_later = None
                    continue
            elif now - last_progress > idle_timeout:
                raise DataError(
                    f"no volume arrived in {self.folder} for {idle_timeout:.0f} s (waiting for volume "
                    f"{next_frame + self.first_number} of {self.n_frames}); is the scanner export running?"
                )
            time.sleep(self.poll_s)

    def _poll(self, path: Path, seen: dict[str, _Seen], taken: set[int], ready: dict[int, Arrival]):
        if not path.name.endswith(VOLUME_SUFFIXES) or path.name.startswith("."):
            return None
        frame = frame_number(path.name, self.first_number)
        if frame is None or not 0 <= frame < self.n_frames:
            if path.name not in seen:
                seen[path.name] = _Seen(-1)
                self.notes.append(f"{path.name}: no volume number in range 1..{self.n_frames}; ignored")
            return None
        state = seen.get(path.name)
        if state is not None and state.size == -2:
            return None  # finished with this file
        if frame in taken:
            if state is None:
                seen[path.name] = _Seen(-2)
                self.notes.append(f"{path.name}: volume {frame + self.first_number} arrived twice; the first is kept")
            return None
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        if state is None or state.size != size:
            seen[path.name] = _Seen(size, time.time())
            return None  # wait for one poll with the same size
        try:
            _, volume = bids.load_volume(path, "volume")
        except DataError as err:
            patience = self.corrupt_after_s if self.corrupt_after_s is not None else self.tr
            if time.time() - state.since < patience:
                return None  # perhaps a copy that stalled: wait
            seen[path.name] = _Seen(-2)
            return Arrival(frame, time.time(), None, str(err), str(path))
        seen[path.name] = _Seen(-2)
        if volume.ndim == 4 and volume.shape[-1] == 1:
            volume = volume[..., 0]
        return Arrival(frame, time.time(), volume, None, str(path))
