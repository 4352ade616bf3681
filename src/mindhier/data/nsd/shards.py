"""Trial tables from MindEye2's WebDataset shards (`wds/subjXX/<split>/*.tar`, one `behav.npy` per sample).

Only the `behav` arrays are read (column 0: image index, column 5: row of the betas file, column 2:
session); the other per-sample arrays MindEye2 ships (`past_behav`, `future_behav`, `olds_behav`) are
ignored. A split's table is parsed once per process and kept while none of its shards changed (path, size,
modification time and inode compared on every read): a pipeline opens a dataset many times. Shape letters
(docs/glossary.md): T trials.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindhier.data import layout
from mindhier.errors import DataError


@dataclass(frozen=True)
class TrialTable:
    image_T: np.ndarray  # int64 stimulus index
    row_T: np.ndarray  # int64 row of the betas file
    session_T: np.ndarray  # int64 (-1 when unknown)

    def __len__(self) -> int:
        return int(self.image_T.shape[0])

    def subset(self, mask: np.ndarray) -> TrialTable:
        return TrialTable(self.image_T[mask], self.row_T[mask], self.session_T[mask])


def shard_paths(folder: Path) -> list[Path]:
    """The .tar shards of a split folder in numeric order (0.tar, 1.tar, ..., 10.tar)."""

    def key(p: Path):
        m = re.match(r"^(\d+)", p.stem)
        return (0, int(m.group(1)), p.name) if m else (1, 0, p.name)

    return sorted(folder.glob("*.tar"), key=key)


def read_trials(folder: Path) -> TrialTable:
    """All trials of a split folder (read-only arrays); corrupt shards and malformed behav arrays raise `DataError`."""
    paths = shard_paths(folder)
    if not paths:
        raise DataError(f"no WebDataset shards (*.tar) in {folder}; download MindEye2's wds/ or re-run simulate")
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return _parsed_trials(tuple(stamps))


@functools.lru_cache(maxsize=32)
def _parsed_trials(stamps: tuple[tuple[str, int, int, int], ...]) -> TrialTable:
    import webdataset as wds

    folder = Path(stamps[0][0]).parent
    paths = [Path(stamp[0]) for stamp in stamps]
    rows = []
    for path in paths:
        try:
            # every rank and worker reads the whole trial table: no node or worker splitting
            shard = wds.WebDataset(
                str(path), shardshuffle=False, empty_check=False, nodesplitter=_all, workersplitter=_all
            )
            for sample in shard:
                rows.append(_behav_row(sample, path))
        except DataError:
            raise
        except Exception as err:
            # webdataset wraps tarfile errors as (message, stream, url) tuples
            reason = err.args[0][0] if err.args and isinstance(err.args[0], tuple) else err
            raise DataError(f"cannot read WebDataset shard {path} ({reason}); re-download or regenerate it") from err
    if not rows:
        raise DataError(f"the shards in {folder} hold no samples; re-download or regenerate them")
    table = np.stack(rows)  # (T, 3): image, row, session
    table.setflags(write=False)  # shared by every later read of the same shards
    return TrialTable(image_T=table[:, 0], row_T=table[:, 1], session_T=table[:, 2])


def _all(urls):
    return urls


def _behav_row(sample: dict, path: Path) -> np.ndarray:
    key = sample.get("__key__", "?")
    raw = sample.get("behav.npy")
    if raw is None:
        raise DataError(f"sample {key} in {path} has no behav.npy; this is not a MindEye2 shard")
    try:
        behav = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as err:
        raise DataError(f"behav.npy of sample {key} in {path} is unreadable ({err}); regenerate the shard") from err
    behav = np.asarray(behav).reshape(-1)
    if behav.shape[0] <= layout.BEHAV_ROW:
        raise DataError(
            f"behav.npy of sample {key} in {path} has {behav.shape[0]} columns; MindEye2's has 17 "
            "(column 0 image index, column 5 betas row)"
        )
    needed = behav[: layout.BEHAV_ROW + 1].astype(np.float64)
    if not np.all(np.isfinite(needed)) or np.any(needed != np.round(needed)):
        raise DataError(
            f"behav.npy of sample {key} in {path} has non-integer indices {needed.tolist()};"
            " rewrite the shard with whole-number indices"
        )
    session = behav[layout.BEHAV_SESSION]
    return np.array(
        [needed[layout.BEHAV_IMAGE], needed[layout.BEHAV_ROW], session if np.isfinite(session) else -1],
        dtype=np.int64,
    )
