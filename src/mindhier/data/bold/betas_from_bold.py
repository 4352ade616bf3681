"""`mindhier betas --bold DIR --out DATA`: BOLD runs → single-trial betas in MindEye2's layout.

Per subject and session: every volume is motion-corrected to the session's first volume (`motion_correction`),
the visual voxels are read (`voxel_selection`), and each run's trials get LSS betas (`lss`) against drift terms,
in percent of the voxel's mean signal; each session's betas are then z-scored per voxel, as NSD's are. Stimuli,
captions and labels are copied from the dataset the events index (`--stimuli`, by default the BOLD folder's
parent when it is a dataset), so every other command reads the output unchanged.

The output also holds `bold_trials_subjXX.tsv` (row, session, run, onset, stimulus_index, source_row) and each
run's estimated head motion.

Shape letters (docs/glossary.md): F frames, K trials, V voxels, T trials of a subject.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindhier.data import layout
from mindhier.data.bold import bids
from mindhier.data.bold.head_motion import framewise_displacement_F
from mindhier.data.bold.lss import drift_basis_FP, lss_betas_KV, percent_signal_change, trial_regressors_FK
from mindhier.data.bold.motion_correction import MotionCorrector
from mindhier.data.bold.voxel_selection import VoxelSelection, load_selection
from mindhier.data.simulator import writer
from mindhier.data.simulator.design import TrialDesign
from mindhier.errors import DataError
from mindhier.fileio import read_json, staged_directory, write_json
from mindhier.progress import ProgressFn, report


@dataclass
class RunBetas:
    run: bids.BoldRun
    events: bids.Events
    betas_KV: np.ndarray  # percent signal change, not yet z-scored
    motion_F6: np.ndarray


@dataclass
class SubjectBetas:
    subject: int
    selection: VoxelSelection
    runs: list[RunBetas] = field(default_factory=list)


def session_z_scored(runs: list[RunBetas]) -> np.ndarray:
    """Each session's betas z-scored per voxel (NSD's convention); rows in run order."""
    out = []
    by_session: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in runs:
        by_session[r.run.session].append(r.betas_KV)
    for session in dict.fromkeys(r.run.session for r in runs):
        betas = np.concatenate(by_session[session])
        std = betas.std(axis=0, keepdims=True)
        out.append((betas - betas.mean(axis=0, keepdims=True)) / np.where(std > 0, std, 1.0))
    return np.concatenate(out).astype(np.float32)


def run_betas(
    run: bids.BoldRun,
    corrector: MotionCorrector | None,
    selection: VoxelSelection,
    n_images: int | None,
    progress: ProgressFn | None = None,
) -> tuple[RunBetas, MotionCorrector]:
    """One run's LSS betas; the first run of a session makes the session's motion corrector."""
    image, data = bids.load_volume(run.bold, "BOLD run")
    if data.ndim != 4 or data.shape[-1] < 2:
        raise DataError(f"BOLD run {run.bold} has shape {data.shape}; a run is a 4-D series of volumes")
    tr = bids.read_tr(run)
    n_frames = data.shape[-1]
    events = bids.read_events(run.events, n_images=n_images, run_seconds=n_frames * tr)
    if corrector is None:
        corrector = MotionCorrector(data[..., 0], tuple(float(z) for z in image.header.get_zooms()[:3]))
    Y_FV = np.empty((n_frames, selection.n_voxels), dtype=np.float32)
    motion = np.empty((n_frames, 6))
    for f in range(n_frames):
        corrected = corrector.correct(data[..., f])
        Y_FV[f] = selection.take(corrected.volume_ABC)
        motion[f] = corrected.motion_6
        report(progress, f"motion correction {run.stem}", f + 1, n_frames)
    frame_times = tr * np.arange(n_frames)
    X = trial_regressors_FK(frame_times, events.onset_K, events.duration_K)
    betas = lss_betas_KV(Y_FV, X, drift_basis_FP(frame_times))
    return RunBetas(run, events, percent_signal_change(betas, Y_FV.mean(axis=0)), motion), corrector


def estimate_subject(
    bold_dir: Path,
    subject: int,
    mask: Path | None = None,
    rois: Path | None = None,
    n_images: int | None = None,
    progress: ProgressFn | None = None,
) -> SubjectBetas:
    selection = load_selection(
        mask or bids.visual_mask_path(bold_dir, subject), rois or bids.rois_path(bold_dir, subject)
    )
    result = SubjectBetas(subject, selection)
    corrector, session = None, None
    for run in bids.find_runs(bold_dir, subject):
        if run.session != session:
            corrector, session = None, run.session
        betas, corrector = run_betas(run, corrector, selection, n_images, progress)
        result.runs.append(betas)
    return result


def write_betas_dataset(
    bold_dir: str | Path,
    out: str | Path,
    stimuli: str | Path | None = None,
    mask: Path | None = None,
    rois: Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    bold_dir = Path(bold_dir)
    source = Path(stimuli) if stimuli is not None else bold_dir.parent
    if not (source / layout.MANIFEST).is_file():
        raise DataError(
            f"no stimulus dataset at {source} (no {layout.MANIFEST}); pass --stimuli DATASET, the "
            "dataset whose images the events' stimulus_index counts"
        )
    source_manifest = read_json(source / layout.MANIFEST, "dataset manifest")
    n_images = int(source_manifest["n_images"])
    splits = stimulus_splits(source, n_images)
    subjects = sorted({r.subject for r in bids.find_runs(bold_dir)})
    estimated = [estimate_subject(bold_dir, s, mask, rois, n_images, progress) for s in subjects]
    with staged_directory(out, overwrite=overwrite) as staging:
        _copy_stimuli(source, source_manifest, staging)
        entries = {}
        for subject_betas in estimated:
            entries[str(subject_betas.subject)] = _write_subject(staging, subject_betas, splits)
        manifest = {
            **{k: v for k, v in source_manifest.items() if k not in ("subjects", "bold", "config")},
            "created_by": "mindhier betas",
            "betas_from_bold": {"bold": str(bold_dir), "stimuli": str(source), "method": METHOD},
            "subjects": entries,
        }
        write_json(staging / layout.MANIFEST, manifest)
        if (source / layout.CONFIG).is_file():
            shutil.copy2(source / layout.CONFIG, staging / layout.CONFIG)
    return {"out": str(out), "subjects": entries}


METHOD = (
    "SimpleITK rigid motion correction to each session's first volume; LSS per trial, the two nearest trials on "
    "either side modelled separately (nilearn Glover HRF; confounds: cosine drifts to 0.01 Hz); percent signal "
    "change by the run's voxel mean; z-scored per voxel within each session"
)


def _write_subject(root: Path, subject_betas: SubjectBetas, splits: np.ndarray) -> dict[str, Any]:
    runs = subject_betas.runs
    betas_TV = session_z_scored(runs)
    sessions = list(dict.fromkeys(r.run.session for r in runs))
    image_T = np.concatenate([r.events.stimulus_K for r in runs])
    session_T = np.concatenate([np.full(len(r.events), sessions.index(r.run.session) + 1) for r in runs])
    run_T = np.concatenate([np.full(len(r.events), r.run.run) for r in runs])
    trial_in_run_T = np.concatenate([np.arange(1, len(r.events) + 1) for r in runs])
    _, first = np.unique(image_T, return_index=True)
    is_old_T = np.ones(len(image_T), bool)
    is_old_T[first] = False
    design = TrialDesign(
        image_T.astype(np.int64),
        session_T.astype(np.int64),
        run_T.astype(np.int64),
        trial_in_run_T.astype(np.int64),
        splits[image_T] == "test",
        is_old_T,
    )
    subject = subject_betas.subject
    sink = writer.BetasWriter(root, subject, design.n_trials, subject_betas.selection.n_voxels)
    try:
        sink.write_rows(np.arange(design.n_trials), betas_TV)
    finally:
        sink.close()
    writer.write_shards(root, subject, design)
    lines = ["row\tsession\trun\tonset\tstimulus_index\tsource_row\tframewise_displacement_max_mm"]
    row = 0
    for r in runs:
        fd = framewise_displacement_F(r.motion_F6).max()
        for k in range(len(r.events)):
            source_row = -1 if r.events.source_row_K is None else int(r.events.source_row_K[k])
            lines.append(
                f"{row}\t{r.run.session or '-'}\t{r.run.run}\t{r.events.onset_K[k]:.3f}\t"
                f"{int(r.events.stimulus_K[k])}\t{source_row}\t{fd:.3f}"
            )
            row += 1
    (root / f"bold_trials_subj{subject:02d}.tsv").write_text("\n".join(lines) + "\n")
    entry: dict[str, Any] = {
        "subject": subject,
        "n_voxels": subject_betas.selection.n_voxels,
        "n_trials": design.n_trials,
        "n_sessions": len(sessions),
        "runs": [r.run.stem for r in runs],
    }
    if subject_betas.selection.roi_labels is not None:
        entry["roi_labels"] = list(subject_betas.selection.roi_labels)
    return entry


def stimulus_splits(source: Path, n_images: int) -> np.ndarray:
    """ "train" / "test" per image, from the source's labels (unknown = train)."""
    splits = np.full(n_images, "train", dtype=object)
    labels = source / layout.STIMULUS_LABELS
    if labels.is_file():
        for record in read_json(labels, "stimulus labels").get("images", []):
            if "index" in record and record.get("split") == "test":
                splits[int(record["index"])] = "test"
    return splits


def _copy_stimuli(source: Path, manifest: dict[str, Any], staging: Path) -> None:
    store = str(manifest.get("image_store", layout.IMAGE_DIR + "/"))
    if store.endswith("/"):
        shutil.copytree(source / store.rstrip("/"), staging / store.rstrip("/"))
    else:
        shutil.copy2(source / store, staging / store)
    for name in (manifest.get("captions", layout.CAPTIONS_NPY), layout.STIMULUS_LABELS):
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
