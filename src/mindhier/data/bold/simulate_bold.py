"""The scanner runs that would have produced the synthetic brain's betas (`mindhier simulate --bold`).

Each run shows a sequence of the design's trials at NSD-like timing (`timing.RunTiming`). Every brain voxel's
signal is its baseline S0 times

    1 + signal_change · Σ_k β_kv h_v(t − onset_k) + drift_v(t) + physio_v(t) + ε_v(t)

where β_kv is the trial's beta from the dataset (so LSS on the run recovers those betas up to the added noise), h_v
nilearn's Glover HRF for a 3-s event, shifted by a per-voxel latency (sd `hrf_jitter_s`: the fitted canonical HRF is
never exactly right), drift_v a slow trend and half-cosine, physio_v respiratory (0.3 Hz) and cardiac (1.1 Hz)
fluctuations aliased by the TR, and ε_v AR(1) noise. Brain voxels outside the visual ROIs carry no task signal. The head
then moves rigidly (`head_motion`): a slow bounded wander with `jumps` brief sudden movements per run, continuing from
run to run within a session. Volumes are stored as int16, as scanners store magnitude images.

Which trials: `trials="test"` runs every test-image presentation, in design order, `run_trials` per run (held-out
images: what a real-time session should be scored on); `trials="session:N"` runs session N's trials in its 12 runs.

Shape letters (docs/glossary.md): F frames, K trials of a run, V visual voxels, N brain voxels, T trials.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindhier.config import ROI_NAMES
from mindhier.data.bold import bids
from mindhier.data.bold.geometry import BACKGROUND, BrainGeometry, make_geometry, roi_table
from mindhier.data.bold.head_motion import framewise_displacement_F, move_volume, random_motion_F6
from mindhier.data.bold.lss import trial_regressors_FK
from mindhier.data.bold.timing import RunTiming
from mindhier.data.simulator.design import TrialDesign
from mindhier.errors import ConfigError

HRF_LATENCY_BINS_S = (-1.0, -0.5, 0.0, 0.5, 1.0)  # per-voxel HRF shifts are drawn, then rounded to these
RESPIRATION_HZ, CARDIAC_HZ = 0.3, 1.1
BIDS_VERSION = "1.9.0"


@dataclass(frozen=True)
class BoldSimConfig:
    trials: str = "test"  # "test" or "session:N[,M...]"
    run_trials: int = 63  # trials per run for trials="test" (NSD: 62–63)
    tr: float = 1.5
    voxel_mm: float = 2.5
    signal_change: float = 0.02  # fractional signal change per unit (z-scored) beta
    noise_sd: float = 0.003  # AR(1) noise sd, fraction of S0 (temporal SNR ≈ 1 / noise_sd before physiology)
    ar1: float = 0.3
    physio_sd: float = 0.003  # amplitude sd of each physiological sinusoid, fraction of S0
    drift_sd: float = 0.01  # amplitude sd of the slow drift terms, fraction of S0
    hrf_jitter_s: float = 0.5
    motion_mm: float = 0.3  # sd of the head's slow wander (mm; rotations half as many degrees)
    jump_mm: float = 1.0  # size of a brief sudden movement (translation, plus a rotation of similar arc)
    jumps: int = 1  # brief sudden movements per run
    task: str = ""  # BIDS task label; default "test" or "nsd" by `trials`

    def __post_init__(self) -> None:
        self.selection()
        if self.run_trials < 4:
            raise ConfigError(f"--bold-run-trials must be at least 4, got {self.run_trials}; pass 4 or more")
        for name in ("signal_change", "noise_sd", "physio_sd", "drift_sd", "hrf_jitter_s", "motion_mm", "jump_mm"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"BOLD simulation: {name} must be >= 0, got {getattr(self, name)}; give a non-negative value"
                )
        if not 0 <= self.ar1 < 1:
            raise ConfigError(f"BOLD simulation: ar1 must lie in [0, 1), got {self.ar1}; e.g. 0.3")
        if self.voxel_mm <= 0:
            raise ConfigError(f"BOLD simulation: voxel_mm must be > 0, got {self.voxel_mm}; e.g. 2.5")
        RunTiming(tr=self.tr)

    def selection(self) -> tuple[str, tuple[int, ...]]:
        if self.trials == "test":
            return "test", ()
        if self.trials.startswith("session:"):
            try:
                sessions = tuple(int(s) for s in self.trials.split(":", 1)[1].split(","))
            except ValueError:
                sessions = ()
            if sessions and all(s >= 1 for s in sessions):
                return "session", sessions
        raise ConfigError(f"--bold takes 'test' or 'session:N[,M]', got {self.trials!r}; e.g. --bold test")

    @property
    def task_label(self) -> str:
        return self.task or ("test" if self.trials == "test" else "nsd")


def run_trial_groups(design: TrialDesign, cfg: BoldSimConfig) -> list[tuple[str, int, np.ndarray]]:
    """(session label, run number, betas rows) of every run to simulate."""
    kind, sessions = cfg.selection()
    if kind == "test":
        rows = np.flatnonzero(design.is_test_T)
        return [("", i + 1, rows[s : s + cfg.run_trials]) for i, s in enumerate(range(0, len(rows), cfg.run_trials))]
    groups = []
    for session in sessions:
        if session > design.n_sessions:
            raise ConfigError(
                f"--bold session:{session}: the design has {design.n_sessions} sessions; pick one of them"
            )
        for run in np.unique(design.run_T[design.session_T == session]):
            rows = np.flatnonzero((design.session_T == session) & (design.run_T == run))
            groups.append((f"{session:02d}", int(run), rows))
    return groups


def write_subject_bold(
    root: Path,
    subject: int,
    roi_V: np.ndarray,
    design: TrialDesign,
    betas_TV: np.ndarray,
    cfg: BoldSimConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Write one subject's runs, masks and the true head motion under `root`; returns a summary."""
    geometry = make_geometry(roi_V, cfg.voxel_mm, rng)
    _write_description(root)
    _write_masks(root, subject, geometry)
    timing = RunTiming(tr=cfg.tr)
    latency_N = _latency_per_brain_voxel(geometry, cfg, rng)
    motion_end: dict[str, np.ndarray] = {}
    runs = []
    for session, run, rows in run_trial_groups(design, cfg):
        start = motion_end.get(session)
        volumes_FABC, motion_F6 = _run_volumes(geometry, timing, betas_TV[rows], latency_N, cfg, rng, start)
        motion_end[session] = motion_F6[-1]
        name = bids.run_name(subject, cfg.task_label, run, session)
        folder = bids.func_dir(root, subject, session)
        bold = bids.BoldRun(folder / f"{name}_bold.nii.gz", subject, session, cfg.task_label, run)
        bids.write_nifti(bold.bold, np.moveaxis(volumes_FABC, 0, -1), geometry.affine, tr=cfg.tr, as_int16=True)
        bids.write_sidecar(bold, cfg.tr, cfg.task_label)
        onsets = timing.onsets_K(len(rows))
        events = bids.Events(onsets, np.full(len(rows), timing.on_s), design.image_T[rows], rows)
        bids.write_events(bold.events, events)
        _write_motion(
            bids.derivative_path(root, subject, f"{name[len(f'sub-{subject:02d}_') :]}_desc-motion_timeseries.tsv"),
            motion_F6,
        )
        runs.append(
            {
                "run": name,
                "trials": len(rows),
                "frames": len(volumes_FABC),
                "max_fd_mm": round(float(framewise_displacement_F(motion_F6).max()), 3),
            }
        )
    return {
        "subject": subject,
        "shape": list(geometry.shape),
        "voxel_mm": cfg.voxel_mm,
        "runs": runs,
        "config": asdict(cfg),
    }


def _latency_per_brain_voxel(geometry: BrainGeometry, cfg: BoldSimConfig, rng: np.random.Generator) -> np.ndarray:
    n_brain = int(geometry.mask_ABC.sum())
    drawn = rng.normal(0.0, cfg.hrf_jitter_s, size=n_brain)
    bins = np.asarray(HRF_LATENCY_BINS_S)
    return bins[np.abs(drawn[:, None] - bins[None]).argmin(axis=1)] if cfg.hrf_jitter_s > 0 else np.zeros(n_brain)


def _run_volumes(geometry, timing, betas_KV, latency_N, cfg, rng, motion_start):
    """Volumes [F, A, B, C] (float, scanner units) and the true motion [F, 6] of one run."""
    n_trials = len(betas_KV)
    n_frames = timing.n_frames(n_trials)
    t_F = timing.frame_times_F(n_frames)
    onsets = timing.onsets_K(n_trials)
    brain_flat = np.flatnonzero(geometry.mask_ABC)
    n_brain = len(brain_flat)
    # task: visual voxels get their trials' betas through their latency's HRF
    task_FN = np.zeros((n_frames, n_brain))
    visual_in_brain = np.searchsorted(brain_flat, geometry.visual_flat_V)
    latency_V = latency_N[visual_in_brain]
    for latency in np.unique(latency_V):
        columns = visual_in_brain[latency_V == latency]
        X_FK = trial_regressors_FK(t_F, onsets + latency, np.full(n_trials, timing.on_s))
        task_FN[:, columns] = X_FK @ betas_KV[:, latency_V == latency]
    span = t_F[-1] if n_frames > 1 else 1.0
    drift_FN = (
        rng.normal(0, cfg.drift_sd, n_brain)[None] * (t_F / span - 0.5)[:, None]
        + rng.normal(0, cfg.drift_sd, n_brain)[None] * np.cos(np.pi * t_F / span)[:, None]
    )
    physio_FN = np.zeros((n_frames, n_brain))
    for hz in (RESPIRATION_HZ, CARDIAC_HZ):
        phase = rng.uniform(0, 2 * np.pi)
        physio_FN += rng.normal(0, cfg.physio_sd, n_brain)[None] * np.sin(2 * np.pi * hz * t_F + phase)[:, None]
    noise_FN = np.empty((n_frames, n_brain))
    innovation = rng.normal(0, cfg.noise_sd * np.sqrt(1 - cfg.ar1**2), size=(n_frames, n_brain))
    noise_FN[0] = rng.normal(0, cfg.noise_sd, n_brain)
    for f in range(1, n_frames):
        noise_FN[f] = cfg.ar1 * noise_FN[f - 1] + innovation[f]
    s0_N = geometry.baseline_ABC.reshape(-1)[brain_flat].astype(np.float64)
    brain_FN = s0_N[None] * (1 + cfg.signal_change * task_FN + drift_FN + physio_FN + noise_FN)

    motion_F6 = random_motion_F6(n_frames, cfg.motion_mm, cfg.jump_mm, cfg.jumps, rng, motion_start)
    volumes = np.empty((n_frames, *geometry.shape), dtype=np.float32)
    head = geometry.baseline_ABC.astype(np.float64)
    outside = ~geometry.mask_ABC
    for f in range(n_frames):
        frame = head.copy()
        frame.reshape(-1)[brain_flat] = brain_FN[f]
        frame[outside] *= np.abs(rng.normal(1.0, 0.3, size=int(outside.sum())))
        moved = move_volume(frame, motion_F6[f], cfg.voxel_mm, order=3)
        volumes[f] = np.maximum(moved, 0.0) + np.abs(rng.normal(0.0, 0.2 * BACKGROUND, size=geometry.shape))
    return volumes, motion_F6


def _write_description(root: Path) -> None:
    path = root / "dataset_description.json"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "Name": "mindhier synthetic BOLD",
                    "BIDSVersion": BIDS_VERSION,
                    "DatasetType": "raw",
                    "GeneratedBy": [{"Name": "mindhier simulate --bold"}],
                },
                indent=1,
            )
            + "\n"
        )


def _write_masks(root: Path, subject: int, geometry: BrainGeometry) -> None:
    bids.write_nifti(
        bids.visual_mask_path(root, subject),
        geometry.visual_mask_ABC().astype(np.int16),
        geometry.affine,
        as_int16=True,
    )
    bids.write_nifti(
        bids.derivative_path(root, subject, "space-bold_desc-brain_mask.nii.gz"),
        geometry.mask_ABC.astype(np.int16),
        geometry.affine,
        as_int16=True,
    )
    bids.write_nifti(bids.rois_path(root, subject), geometry.roi_ABC, geometry.affine, as_int16=True)
    table = bids.rois_path(root, subject).with_name(f"sub-{subject:02d}_space-bold_desc-rois_dseg.tsv")
    table.write_text("index\tname\n" + "".join(f"{i}\t{name}\n" for i, name in roi_table()))
    assert len(roi_table()) == len(ROI_NAMES)


def _write_motion(path: Path, motion_F6: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "rot_a_deg\trot_b_deg\trot_c_deg\ttrans_a_mm\ttrans_b_mm\ttrans_c_mm\tframewise_displacement_mm\n"
    fd = framewise_displacement_F(motion_F6)
    path.write_text(
        header + "".join("\t".join(f"{v:.5f}" for v in (*row, d)) + "\n" for row, d in zip(motion_F6, fd, strict=True))
    )
