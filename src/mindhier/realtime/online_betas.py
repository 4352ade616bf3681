"""A trial's beta from the data so far, and its z-score from earlier trials' statistics — no future data.

`OnlineRun` keeps the motion-corrected visual voxels of every volume processed so far with its acquisition time. A
trial's beta is the LSS fit (`data/bold/lss.py`) on those frames alone: regressors of the trials whose onset has passed
and drifts over the frames so far (online detrending), in percent of each voxel's running mean signal. Lost volumes are
simply absent rows.

`TrialStatistics` z-scores each trial's beta per voxel with the mean and sd of the betas of earlier trials,
shrunk towards a prior of `PRIOR_TRIALS` pseudo-trials (mean 0 — z-scored betas average 0 over a session — and
the variance pooled over voxels), so the first trials of a run are usable and the statistics become the plain
running ones as the run goes on.

Shape letters (docs/glossary.md): F frames so far, K trials, V voxels.
"""

from __future__ import annotations

import numpy as np

from mindhier.data.bold.lss import drift_basis_FP, lss_betas_KV, percent_signal_change, trial_regressors_FK

PRIOR_TRIALS = 5.0


class OnlineRun:
    def __init__(self, n_voxels: int, onsets_K: np.ndarray, durations_K: np.ndarray) -> None:
        self.onsets_K, self.durations_K = np.asarray(onsets_K, float), np.asarray(durations_K, float)
        self._rows: list[np.ndarray] = []
        self._times: list[float] = []
        self.n_voxels = n_voxels

    @property
    def n_frames(self) -> int:
        return len(self._rows)

    def add(self, time_s: float, voxels_V: np.ndarray) -> None:
        self._rows.append(np.asarray(voxels_V, dtype=np.float32))
        self._times.append(float(time_s))

    def beta(self, trial: int) -> np.ndarray:
        """Trial `trial`'s beta (percent signal change) from the frames so far: float32 [V]."""
        times = np.asarray(self._times)
        Y = np.stack(self._rows)
        started = np.flatnonzero(self.onsets_K <= times[-1])
        X = trial_regressors_FK(times, self.onsets_K[started], self.durations_K[started])
        confounds = drift_basis_FP(times)
        k = int(np.flatnonzero(started == trial)[0])
        beta = lss_betas_KV(Y, X, confounds, trials=np.asarray([k]))[0]
        return percent_signal_change(beta[None], Y.mean(axis=0))[0]


class TrialStatistics:
    """Per-voxel running mean and sd of the trials' raw betas (Welford), and the z-score they give."""

    def __init__(self, n_voxels: int) -> None:
        self.count = 0
        self.mean_V = np.zeros(n_voxels)
        self.m2_V = np.zeros(n_voxels)

    def z_score(self, beta_V: np.ndarray) -> np.ndarray:
        """z-score with the statistics of the trials added so far (not this one), shrunk to the prior."""
        beta = np.asarray(beta_V, dtype=np.float64)
        n = self.count
        if n >= 2:
            var_V = self.m2_V / (n - 1)
            pooled = float(np.mean(var_V))
        else:
            var_V = np.zeros_like(beta)
            pooled = float(np.mean(beta**2)) if n == 0 else float(np.mean((beta - self.mean_V) ** 2))
        mean = n * self.mean_V / (n + PRIOR_TRIALS)
        var = (max(n - 1, 0) * var_V + PRIOR_TRIALS * pooled) / (max(n - 1, 0) + PRIOR_TRIALS)
        return ((beta - mean) / np.sqrt(np.maximum(var, 1e-12))).astype(np.float32)

    def add(self, beta_V: np.ndarray) -> None:
        beta = np.asarray(beta_V, dtype=np.float64)
        self.count += 1
        delta = beta - self.mean_V
        self.mean_V += delta / self.count
        self.m2_V += delta * (beta - self.mean_V)
