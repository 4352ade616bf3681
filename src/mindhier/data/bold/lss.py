"""Single-trial betas by least-squares-separate (LSS, Mumford et al. 2012), with nilearn's HRFs and drift terms.

For trial k the model is Y = x_k β_k + Σ_j x_j γ_j + s_k γ + D δ + ε, where x_k is trial k's regressor (its boxcar
convolved with the canonical HRF), the x_j the regressors of its `NEIGHBOURS` nearest trials on either side (each its
own column), s_k the sum of every other trial's regressor, and D the confounds: a constant and cosines down to
`high_pass` Hz (nilearn's `cosine` model). β_k is trial k's beta. The six estimated motion parameters are not confounds:
after motion correction they lowered the recovery of the simulator's betas (median V1–V3 r 0.854 → 0.811 on the demo's
first run), as they share variance with the task at this trial rate. Plain LSS (one column for all other trials) lets
the neighbours' varying amplitudes leak into β_k at a 4-s trial rate — on noise-free data at NSD timing it recovers
betas at r ≈ 0.86 only; modelling the two nearest on each side separately (an LSS-N variant, Abdulrahman & Henson 2016)
gives 0.94, and stays ahead of fitting every trial at once (LSA) as soon as there is noise (tests/data/test_bold.py).

All K fits share one cross-product of [X D] with itself and with Y, so a pass costs O(F·(K+P)·V) plus K small
solves.

Shape letters (docs/glossary.md): F frames, K trials, V voxels, P drift columns.
"""

from __future__ import annotations

import numpy as np

HRF_MODEL = "glover"
HIGH_PASS_HZ = 0.01  # nilearn's default: cosine drifts slower than 100 s
OVERSAMPLING = 16  # the HRF convolution's time resolution: TR / 16
NEIGHBOURS = 2  # trials on either side of trial k modelled by their own regressors


def trial_regressors_FK(
    frame_times_F: np.ndarray, onsets_K: np.ndarray, durations_K: np.ndarray, hrf_model: str = HRF_MODEL
) -> np.ndarray:
    """One column per trial: its boxcar convolved with the HRF, sampled at the frames (nilearn)."""
    from nilearn.glm.first_level import compute_regressor

    columns = []
    for onset, duration in zip(onsets_K, durations_K, strict=True):
        condition = (np.asarray([onset]), np.asarray([duration]), np.asarray([1.0]))
        regressor, _ = compute_regressor(condition, hrf_model, np.asarray(frame_times_F), oversampling=OVERSAMPLING)
        columns.append(regressor[:, 0])
    return np.stack(columns, axis=1) if columns else np.zeros((len(frame_times_F), 0))


def drift_basis_FP(frame_times_F: np.ndarray, high_pass: float = HIGH_PASS_HZ) -> np.ndarray:
    """Cosine drifts and a constant (nilearn's first-level design without events)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    design = make_first_level_design_matrix(
        np.asarray(frame_times_F), events=None, drift_model="cosine", high_pass=high_pass
    )
    return design.to_numpy(dtype=np.float64)


def lss_betas_KV(
    Y_FV: np.ndarray,
    X_FK: np.ndarray,
    D_FP: np.ndarray,
    trials: np.ndarray | None = None,
    neighbours: int = NEIGHBOURS,
) -> np.ndarray:
    """LSS betas of the `trials` (default all K) from data Y; rows of Y may be any subset of frames as long as X
    and D hold the same rows. Trial k's design: its regressor, each of its `neighbours` nearest trials on either
    side alone, the sum of all other trials, and the confounds D."""
    XD = np.concatenate([np.asarray(X_FK, np.float64), np.asarray(D_FP, np.float64)], axis=1)
    n_trials, n_confounds = X_FK.shape[1], D_FP.shape[1]
    gram, cross = XD.T @ XD, XD.T @ np.asarray(Y_FV, np.float64)
    trials = np.arange(n_trials) if trials is None else np.asarray(trials)
    out = np.empty((len(trials), cross.shape[1]))
    for row, k in enumerate(trials):
        # the design as a combination of X's and D's columns: [x_k, x_j for each neighbour j, Σ others, D]
        near = [j for j in range(k - neighbours, k + neighbours + 1) if 0 <= j < n_trials and j != k]
        others = np.ones(n_trials, bool)
        others[[k, *near]] = False
        columns = [np.eye(n_trials)[k], *(np.eye(n_trials)[j] for j in near)]
        if others.any():
            columns.append(others.astype(np.float64))
        W = np.zeros((n_trials + n_confounds, len(columns) + n_confounds))
        W[:n_trials, : len(columns)] = np.stack(columns, axis=1)
        W[n_trials:, len(columns) :] = np.eye(n_confounds)
        out[row] = np.linalg.lstsq(W.T @ gram @ W, W.T @ cross, rcond=None)[0][0]
    return out.astype(np.float32)


def percent_signal_change(betas_KV: np.ndarray, mean_V: np.ndarray) -> np.ndarray:
    """Betas in percent of each voxel's mean signal (voxels whose mean is ~0 give 0)."""
    mean = np.where(np.abs(mean_V) > 1e-6, mean_V, np.inf)
    return (100.0 * betas_KV / mean[None]).astype(np.float32)
