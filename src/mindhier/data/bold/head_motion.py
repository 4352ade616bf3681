"""Rigid head motion: a slow bounded wander of the six parameters with occasional brief jumps, and its application to a
volume (the head moves in the scanner: the written volume is the head image seen through the motion).

Parameters per frame: rotations about the volume centre (degrees, three axes) and translations (mm), in array
order A, B, C. Framewise displacement (Power et al. 2012) turns them into one number: |Δtranslations| summed plus
|Δrotations| as arc length on a 50 mm sphere.

Shape letters (docs/glossary.md): F frames; A, B, C the volume's axes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

FD_RADIUS_MM = 50.0  # Power et al.'s head radius for rotations
WANDER_FRAMES = 40.0  # time constant of the slow wander, in volumes (a minute at TR 1.5 s)
JUMP_FRAMES = 3  # volumes a sudden movement lasts before the head settles back


def random_motion_F6(
    n_frames: int,
    wander_mm: float,
    jump_mm: float,
    jumps: int,
    rng: np.random.Generator,
    start_F6=None,
    wander_frames: float = WANDER_FRAMES,
    jump_frames: int = JUMP_FRAMES,
) -> np.ndarray:
    """[F, 6] (3 rotations in degrees, 3 translations in mm): a slow wander (an Ornstein–Uhlenbeck process with
    stationary sd `wander_mm` and time constant `wander_frames`, rotations half as many degrees: a padded head
    drifts but does not walk away) plus `jumps` brief movements of `jump_mm` (a swallow or a cough) that last
    `jump_frames` volumes, starting from `start_F6` (the end of the session's previous run)."""
    scale = np.array([0.5, 0.5, 0.5, 1.0, 1.0, 1.0])
    keep = 1.0 - 1.0 / wander_frames
    step_sd = wander_mm * np.sqrt(1.0 - keep**2)
    motion = np.zeros((n_frames, 6))
    if start_F6 is not None:
        motion[0] = np.asarray(start_F6)
    for f in range(1, n_frames):
        motion[f] = keep * motion[f - 1] + rng.normal(0.0, step_sd, size=6) * scale
    for frame in rng.choice(np.arange(1, max(n_frames - jump_frames, 2)), size=min(jumps, n_frames - 1), replace=False):
        direction = rng.normal(size=6) * scale
        motion[frame : frame + jump_frames] += jump_mm * direction / np.linalg.norm(direction[3:])
    return motion


def move_volume(volume_ABC: np.ndarray, motion_6: np.ndarray, voxel_mm: float, order: int = 1) -> np.ndarray:
    """The volume as the scanner sees a head moved by `motion_6`; background fills what moves in from outside."""
    rotation = Rotation.from_euler("xyz", motion_6[:3], degrees=True).as_matrix()
    centre = (np.asarray(volume_ABC.shape) - 1) / 2
    shift_vox = np.asarray(motion_6[3:]) / voxel_mm
    offset = centre - rotation @ centre - rotation @ shift_vox
    fill = float(np.percentile(volume_ABC, 1))
    return ndimage.affine_transform(volume_ABC, rotation, offset=offset, order=order, mode="constant", cval=fill)


def framewise_displacement_F(motion_F6: np.ndarray) -> np.ndarray:
    """Power's FD per frame (0 for the first), in mm, from rotations in degrees and translations in mm."""
    delta = np.abs(np.diff(np.asarray(motion_F6, dtype=np.float64), axis=0))
    fd = delta[:, 3:].sum(axis=1) + np.deg2rad(delta[:, :3]).sum(axis=1) * FD_RADIUS_MM
    return np.concatenate([[0.0], fd])
