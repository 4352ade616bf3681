"""Single-trial betas: signal + independent trial noise + slow session drift, z-scored per session.

For voxel v with configured ncsnr s_v and standardised signal x (unit variance over stimuli):

    β_t = s_v · x_{image(t)} + ε_t + d_{session(t)}(t),    ε_t ~ N(0, 1)

where the drift d is a per-session offset plus a linear trend over the session (both N(0, drift_sd²)
per voxel and session). Each voxel is then z-scored within each session, as NSD's betas are, so the
offsets vanish and the signal-to-noise ratio is (up to the residual trend) the configured one.

Shape letters (docs/glossary.md): T trials, N images, V voxels.
"""

from __future__ import annotations

import numpy as np

from mindhier.data.simulator.design import TrialDesign


def session_betas(
    signal_NV: np.ndarray,
    design: TrialDesign,
    session: int,
    ncsnr_V: np.ndarray,
    drift_sd: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The z-scored betas of one session's trials: float32 [T_session, V]."""
    rows = np.flatnonzero(design.session_T == session)
    n_rows, n_voxels = len(rows), signal_NV.shape[1]
    betas = signal_NV[design.image_T[rows]].astype(np.float32) * ncsnr_V[None, :]
    betas += rng.standard_normal((n_rows, n_voxels), dtype=np.float32)
    if drift_sd > 0:
        position = np.linspace(-1.0, 1.0, n_rows, dtype=np.float32)[:, None]
        offset = rng.normal(0.0, drift_sd, size=(1, n_voxels)).astype(np.float32)
        trend = rng.normal(0.0, drift_sd, size=(1, n_voxels)).astype(np.float32)
        betas += offset + trend * position
    mean = betas.mean(axis=0, keepdims=True)
    std = betas.std(axis=0, keepdims=True)
    std[std == 0] = 1.0
    return ((betas - mean) / std).astype(np.float32)
