"""Lazy access to `betas_all_subjXX_fp32_renorm.hdf5` (dataset "betas", float32 [T, V]).

The file stays on disk: rows are read on demand, in increasing order as h5py requires, and the handle
is reopened after a fork so DataLoader workers each get their own. Shape letters (docs/glossary.md): T trials, V voxels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mindhier.data import layout
from mindhier.errors import DataError

_BLOCK_ROWS = 1024  # contiguous block size for large reads and the finiteness scan
MAX_ABS_BETA = 1000.0  # z-scoring a session of n trials bounds |z| by sqrt(n): about 27 for NSD's 750


class BetasFile:
    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        if not path.is_file():
            raise DataError(
                f"betas file not found: {path}; download it from MindEye2 (pscotti/mindeyev2) "
                "or run `mindhier simulate`"
            )
        try:
            with h5py.File(path, "r") as f:
                if layout.BETAS_KEY not in f:
                    raise DataError(
                        f"betas file {path} has no dataset '{layout.BETAS_KEY}' "
                        f"(found: {', '.join(f.keys()) or 'none'}); it is not a MindEye2 betas file"
                    )
                dset = f[layout.BETAS_KEY]
                if dset.ndim != 2:
                    raise DataError(f"betas in {path} have shape {dset.shape}; expected [n_trials, n_voxels]")
                if dset.dtype != np.float32:
                    raise DataError(f"betas in {path} are {dset.dtype}; expected float32 (MindEye2's fp32 renorm)")
                self.n_trials, self.n_voxels = (int(d) for d in dset.shape)
        except OSError as err:
            raise DataError(f"cannot open betas file {path} as HDF5 ({err}); re-download or regenerate it") from err
        self._file = None
        self._pid = -1

    def _dataset(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[layout.BETAS_KEY]

    def read_rows(self, rows: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Rows in the order given: float32 [len(rows), V or len(columns)]."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(rows, return_inverse=True)
        dset = self._dataset()
        if len(unique) > self.n_trials // 4:  # many rows: contiguous blocks beat h5py point selection
            out = np.empty((len(unique), self.n_voxels), dtype=np.float32)
            position = 0
            for start in range(0, self.n_trials, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, self.n_trials)
                take = unique[(unique >= start) & (unique < stop)]
                if len(take):
                    block = dset[start:stop]
                    out[position : position + len(take)] = block[take - start]
                    position += len(take)
        else:
            out = dset[unique] if len(unique) else np.empty((0, self.n_voxels), np.float32)
        out = out[inverse]
        return out if columns is None else out[:, columns]

    def check_finite(self, rows: np.ndarray) -> None:
        """Raise `DataError` if any of these rows holds NaN or inf, or a value no z-scored beta can take (scanned
        block by block): z-scoring n trials bounds |z| by √n, so |z| > MAX_ABS_BETA is a broken file."""
        wanted = np.zeros(self.n_trials, dtype=bool)
        wanted[np.asarray(rows, dtype=np.int64)] = True
        dset = self._dataset()
        bad, absurd = [], []
        for start in range(0, self.n_trials, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, self.n_trials)
            if not wanted[start:stop].any():
                continue
            block = dset[start:stop]
            finite_rows = np.isfinite(block).all(axis=1)
            bad.extend((np.flatnonzero(~finite_rows & wanted[start:stop]) + start).tolist())
            huge_rows = (np.abs(np.where(np.isfinite(block), block, 0.0)) > MAX_ABS_BETA).any(axis=1)
            absurd.extend((np.flatnonzero(huge_rows & wanted[start:stop]) + start).tolist())
        if bad:
            raise DataError(
                f"betas file {self.path} holds NaN or inf in {len(bad)} trials (first: row {bad[0]}); "
                "re-export the betas, or drop those trials from the behav shards"
            )
        if absurd:
            largest = float(np.abs(dset[absurd[0]]).max())
            raise DataError(
                f"betas file {self.path} holds values far outside a z-scored range in {len(absurd)} trials (first: "
                f"row {absurd[0]}, |beta| {largest:.3g} > {MAX_ABS_BETA:g}); z-score each session's betas (as "
                "MindEye2's files are) or re-export them"
            )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
