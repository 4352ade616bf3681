"""A BIDS-style folder of BOLD runs: naming, the JSON sidecar, the events table, and reading them with one clear
error line for each way they can be wrong.

    DIR/dataset_description.json
    DIR/sub-01[/ses-01]/func/sub-01[_ses-01]_task-<task>_run-01_bold.nii.gz   (4-D, int16 or float)
    DIR/sub-01[/ses-01]/func/..._bold.json        {"RepetitionTime": 1.5, "TaskName": ...}
    DIR/sub-01[/ses-01]/func/..._events.tsv       onset, duration, trial_type, stimulus_index[, source_row]
    DIR/derivatives/mindhier/sub-01/sub-01_space-bold_desc-visual_mask.nii.gz   the voxels of the betas (C order)
    DIR/derivatives/mindhier/sub-01/sub-01_space-bold_desc-rois_dseg.nii.gz + .tsv   ROI labels

`stimulus_index` is the image index in the stimulus store; `source_row` (the simulator's) is the trial's row in
the betas file whose values drove the run, so recovered betas can be checked against the truth.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindhier.errors import DataError

EVENTS_COLUMNS = ("onset", "duration", "trial_type", "stimulus_index")
DERIVATIVES = Path("derivatives") / "mindhier"
_RUN_NAME = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)(_ses-(?P<ses>[A-Za-z0-9]+))?_task-(?P<task>[A-Za-z0-9]+)"
    r"(_run-(?P<run>\d+))?_bold\.nii(\.gz)?$"
)


@dataclass(frozen=True)
class BoldRun:
    bold: Path
    subject: int
    session: str  # "" when the folder has no session level
    task: str
    run: int

    @property
    def stem(self) -> str:
        return self.bold.name.split("_bold.nii")[0]

    @property
    def sidecar(self) -> Path:
        return self.bold.with_name(self.stem + "_bold.json")

    @property
    def events(self) -> Path:
        return self.bold.with_name(self.stem + "_events.tsv")


@dataclass(frozen=True)
class Events:
    onset_K: np.ndarray  # float64 seconds from the run's first volume
    duration_K: np.ndarray  # float64 seconds
    stimulus_K: np.ndarray  # int64 image index
    source_row_K: np.ndarray | None  # int64 row of the betas that drove the run (simulated runs only)

    def __len__(self) -> int:
        return int(self.onset_K.shape[0])


def run_name(subject: int, task: str, run: int, session: str = "") -> str:
    ses = f"_ses-{session}" if session else ""
    return f"sub-{subject:02d}{ses}_task-{task}_run-{run:02d}"


def func_dir(root: Path, subject: int, session: str = "") -> Path:
    base = root / f"sub-{subject:02d}"
    return (base / f"ses-{session}" / "func") if session else base / "func"


def derivative_path(root: Path, subject: int, suffix: str) -> Path:
    return root / DERIVATIVES / f"sub-{subject:02d}" / f"sub-{subject:02d}_{suffix}"


def visual_mask_path(root: Path, subject: int) -> Path:
    return derivative_path(root, subject, "space-bold_desc-visual_mask.nii.gz")


def rois_path(root: Path, subject: int) -> Path:
    return derivative_path(root, subject, "space-bold_desc-rois_dseg.nii.gz")


def parse_run(path: Path) -> BoldRun:
    match = _RUN_NAME.match(path.name)
    if match is None:
        raise DataError(
            f"{path.name} is not a BIDS BOLD file name; name it "
            "sub-<label>[_ses-<label>]_task-<label>_run-<n>_bold.nii.gz"
        )
    sub = match["sub"]
    if not sub.isdigit():
        raise DataError(f"{path.name}: subject label {sub!r} is not a number; mindhier numbers subjects (sub-01)")
    return BoldRun(path, int(sub), match["ses"] or "", match["task"], int(match["run"] or 1))


def find_runs(root: Path, subject: int | None = None) -> list[BoldRun]:
    """Every BOLD run under `root` (sorted by subject, session, run)."""
    if not root.is_dir():
        raise DataError(f"BOLD folder not found: {root}; pass a BIDS folder (e.g. from `mindhier simulate --bold`)")
    runs = [parse_run(p) for p in sorted(root.glob("sub-*/**/func/*_bold.nii*")) if "derivatives" not in p.parts]
    runs = [r for r in runs if subject is None or r.subject == subject]
    if not runs:
        raise DataError(f"no sub-*/func/*_bold.nii[.gz] runs under {root}; is it a BIDS folder of BOLD runs?")
    return sorted(runs, key=lambda r: (r.subject, r.session, r.run))


def write_sidecar(run: BoldRun, tr: float, task: str) -> None:
    run.sidecar.write_text(json.dumps({"RepetitionTime": tr, "TaskName": task}, indent=1) + "\n")


def read_tr(run: BoldRun) -> float:
    try:
        tr = json.loads(run.sidecar.read_text())["RepetitionTime"]
    except FileNotFoundError:
        raise DataError(
            f"{run.sidecar} is missing; every BOLD run needs its JSON sidecar with RepetitionTime"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{run.sidecar} has no readable RepetitionTime (seconds); fix the sidecar") from None
    if not isinstance(tr, (int, float)) or not 0.2 <= tr <= 5.0:
        raise DataError(f"{run.sidecar}: RepetitionTime {tr!r} is not a TR in seconds (0.2–5); fix the sidecar")
    return float(tr)


def write_events(path: Path, events: Events, trial_type: str = "stimulus") -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow([*EVENTS_COLUMNS, *(["source_row"] if events.source_row_K is not None else [])])
        for k in range(len(events)):
            row = [f"{events.onset_K[k]:.3f}", f"{events.duration_K[k]:.3f}", trial_type, int(events.stimulus_K[k])]
            if events.source_row_K is not None:
                row.append(int(events.source_row_K[k]))
            out.writerow(row)


def read_events(path: Path, n_images: int | None = None, run_seconds: float | None = None) -> Events:
    """The run's trials (rows sorted by onset); one error line when the table cannot be this run's."""
    if not path.is_file():
        raise DataError(
            f"events file not found: {path}; every run needs its _events.tsv (onset, duration, stimulus_index)"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    header = set(rows[0].keys()) if rows else set()
    missing = [c for c in ("onset", "duration", "stimulus_index") if c not in header]
    if not rows or missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing) or 'rows'}; it needs onset, duration and "
            "stimulus_index per trial"
        )
    try:
        onset = np.asarray([float(r["onset"]) for r in rows])
        duration = np.asarray([float(r["duration"]) for r in rows])
        stimulus = np.asarray([int(r["stimulus_index"]) for r in rows], dtype=np.int64)
        source = np.asarray([int(r["source_row"]) for r in rows], dtype=np.int64) if "source_row" in header else None
    except (TypeError, ValueError) as err:
        raise DataError(f"{path} holds a value that is not a number ({err}); fix the events table") from None
    if not np.all(np.isfinite(onset)) or np.any(onset < 0) or np.any(duration <= 0):
        raise DataError(f"{path}: onsets must be finite and >= 0 s and durations > 0 s; fix the events table")
    if run_seconds is not None and onset.max() >= run_seconds:
        raise DataError(
            f"{path}: a trial starts at {onset.max():.1f} s but the run lasts {run_seconds:.1f} s; "
            "the events file does not belong to this run"
        )
    if n_images is not None and (stimulus.min() < 0 or stimulus.max() >= n_images):
        raise DataError(
            f"{path}: stimulus_index {int(stimulus.max())} is outside the {n_images} stimuli; "
            "the events file does not match the stimulus set"
        )
    order = np.argsort(onset, kind="stable")
    return Events(onset[order], duration[order], stimulus[order], None if source is None else source[order])


def load_volume(path: Path, what: str = "volume"):
    """A NIfTI image, loaded fully (so a truncated file fails here, not later), with one error line."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}; check the path, or wait for the file to be written") from None
    except Exception as err:  # nibabel raises many types for damaged files (ImageFileError, EOFError, zlib.error)
        raise DataError(
            f"{what} {path} is not a readable NIfTI file ({type(err).__name__}: {err}); re-export or re-copy it"
        ) from None
    if not np.all(np.isfinite(data)):
        raise DataError(f"{what} {path} holds NaN or inf; re-export it from the scanner's images")
    return image, data


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None, as_int16: bool = False):
    """Write atomically (temp file + rename); int16 as scanners store magnitude images."""
    import nibabel as nib

    from mindhier.fileio import atomic_path

    if as_int16:
        data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    if tr is not None and data.ndim == 4:
        zooms = list(image.header.get_zooms())
        zooms[3] = tr
        image.header.set_zooms(zooms)
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=4, mtime=0)  # fixed header time: reproducible files
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
