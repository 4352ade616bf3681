"""Everything a real-time session needs before its first volume, from the paths a user gives: the run's timing
and events, the voxel mask and ROIs, the stimuli and retrieval candidates, the model, and the volume source —
shared by `mindhier realtime` and `mindhier bench realtime`.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindhier.data import layout
from mindhier.data.bold import bids
from mindhier.data.bold.timing import RESPONSE_WINDOW_S, check_window
from mindhier.data.bold.voxel_selection import load_selection
from mindhier.errors import ConfigError, DataError
from mindhier.realtime.session import RealtimeSession, SessionPlan, write_png
from mindhier.realtime.trial_decoder import TrialDecoder
from mindhier.realtime.volume_source import FolderSource, ReplaySource

CANDIDATE_SETS = ("test", "run", "none")
OWN_OUTPUTS = ("events.jsonl", "trials", "stimuli", "candidates")  # what a session writes into its folder


@dataclass
class SessionRequest:
    model: Path
    out: Path
    replay: Path | None = None  # a recorded 4-D run, or
    watch: Path | None = None  # a folder receiving one volume file per TR
    speed: float | None = 1.0  # replay speed (None: as fast as possible)
    events: Path | None = None  # with `watch`
    tr: float | None = None  # with `watch`
    frames: int | None = None  # with `watch` (default: from the events)
    first_volume: int = 1
    bids_root: Path | None = None
    mask: Path | None = None
    rois: Path | None = None
    data: Path | None = None
    subject: int | None = None
    candidates: str = "test"
    seed: int = 0
    overwrite: bool = False
    window_s: float = RESPONSE_WINDOW_S


def bids_root_of(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / "dataset_description.json").is_file():
            return parent
    raise DataError(f"no BIDS folder (dataset_description.json) above {path}; pass --bids, or --mask and --rois")


def open_session(request: SessionRequest):
    """(the session, its volume source)."""
    r = request
    if r.candidates not in CANDIDATE_SETS:
        raise ConfigError(
            f"candidates must be one of {', '.join(CANDIDATE_SETS)}, got {r.candidates!r}; pick one of them"
        )
    if r.replay is not None:
        run = bids.parse_run(r.replay)
        tr, events_path, name, subject = bids.read_tr(run), run.events, run.stem, run.subject
        root = r.bids_root or bids_root_of(r.replay)
    else:
        if r.watch is None or r.events is None or r.tr is None:
            raise ConfigError("--watch needs the session's timing; pass --events (its events.tsv) and --tr (seconds)")
        tr, events_path, name, subject, root = r.tr, r.events, r.watch.name, 1, r.bids_root
    subject = r.subject or subject
    if r.mask is None and root is None:
        raise ConfigError("--watch needs the voxel mask; pass --bids (the BIDS folder) or --mask and --rois")
    mask = r.mask or bids.visual_mask_path(root, subject)
    rois = r.rois or (bids.rois_path(root, subject) if root else None)
    selection = load_selection(mask, rois)
    data = r.data or (root.parent if root and (root.parent / layout.MANIFEST).is_file() else None)
    images, n_images, test_images = stimulus_store(data)
    if r.replay is not None:
        source = ReplaySource(r.replay, tr, r.speed)
        n_frames = source.n_frames
        events = bids.read_events(events_path, n_images=n_images, run_seconds=n_frames * tr)
        voxel_mm = zooms(r.replay)
    else:
        events = bids.read_events(events_path, n_images=n_images)
        n_frames = r.frames or math.ceil((events.onset_K[-1] + r.window_s) / tr) + 1
        if events.onset_K[-1] >= n_frames * tr:
            raise DataError(
                f"{events_path}: a trial starts at {events.onset_K[-1]:.1f} s, after the run's {n_frames} "
                "volumes; the events file does not match --frames"
            )
        source = FolderSource(r.watch, n_frames, tr, first_number=r.first_volume)
        voxel_mm = zooms(mask)
    candidates = {"test": test_images, "run": sorted(set(events.stimulus_K.tolist())), "none": []}[r.candidates]
    if r.candidates != "none" and images is None:
        raise ConfigError("retrieval needs the stimuli; pass --data DATASET, or --candidates none")
    if r.overwrite:
        for own in OWN_OUTPUTS:
            target = r.out / own
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    r.out.mkdir(parents=True, exist_ok=True)
    plan = SessionPlan(
        name,
        subject,
        tr,
        n_frames,
        events,
        selection,
        voxel_mm,
        images,
        np.asarray(candidates, dtype=np.int64),
        check_window(r.window_s),
    )
    decoder = TrialDecoder(r.model, subject, seed=r.seed)
    if len(candidates):
        decoder.set_candidates(plan.candidates, images.load(plan.candidates))
        for index in plan.candidates:
            path = r.out / "candidates" / f"stimulus_{int(index):06d}.png"
            if not path.exists():
                write_png(path, images.load(np.asarray([int(index)]))[0])
    return RealtimeSession(r.out, plan, decoder), source


def zooms(path: Path) -> tuple[float, float, float]:
    import nibabel as nib

    try:
        sizes = nib.load(str(path)).header.get_zooms()[:3]
    except Exception as err:  # nibabel raises many types for damaged files
        raise DataError(f"{path} is not a readable NIfTI file ({type(err).__name__}); re-export it") from None
    return tuple(float(z) for z in sizes)


def stimulus_store(data: Path | None):
    """The dataset's image store, its image count and its test images (None, None, [] without a dataset)."""
    if data is None:
        return None, None, []
    from mindhier.data.bold.betas_from_bold import stimulus_splits
    from mindhier.data.nsd.images import find_image_store
    from mindhier.fileio import read_json

    manifest = read_json(data / layout.MANIFEST, "dataset manifest")
    n_images = int(manifest["n_images"])
    splits = stimulus_splits(data, n_images)
    return find_image_store(data, manifest), n_images, [i for i in range(n_images) if splits[i] == "test"]
