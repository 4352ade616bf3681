"""NSD in MindEye2's layout — simulated or real — as splits of (stimulus, brain response) items.

Splits (docs/method.md §2.2):

* `train` — single trials of the training images, minus the `val` images. Trials of any image that
  is also in the test split are dropped (and counted), so training can never see a test image. With
  `data.sessions`, only the trials of those scan sessions (behav column 2) are kept — for `train` and
  `val`; the test splits never change with the sessions.
* `val`   — a seeded `val_fraction` of the unique training images, held out for periodic evaluation
  and checkpoint choice; one item per image, its trials averaged.
* `test`  — MindEye2's `new_test` shards: one item per unique image in ascending index order (as
  `numpy.unique` gives), its repetitions averaged. An image with fewer than `test_repeats` trials has
  its available trials duplicated first, as MindEye2 does (2 trials a, b → a, a, b), which weights
  them unequally; `repetitions="separate"` keeps every trial as its own item instead.
* `test_old` — the older 982-image split (`wds/subjXX/test/`), when present.

Everything is validated when a subject is opened: missing files, wrong dataset keys or dtypes, NaN or
inf betas, behav indices out of range, a voxel count that differs from the manifest or from what the
caller expects, missing stimulus images. Betas and images stay on disk until asked for.

Shape letters (docs/glossary.md): N items, T trials, V voxels, H/W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mindhier.config import DataConfig, describe_sessions
from mindhier.data import layout
from mindhier.data.nsd.betas import BetasFile
from mindhier.data.nsd.images import ImageStore, find_image_store
from mindhier.data.nsd.shards import TrialTable, read_trials
from mindhier.errors import DataError
from mindhier.fileio import read_json

SPLIT_NAMES = ("train", "val", "test", "test_old")
Repetitions = Literal["average", "separate"]


@dataclass(frozen=True)
class SubjectRecording:
    """One subject's validated files: betas, trial tables per shard folder, optional ROI labels."""

    subject: int
    betas: BetasFile
    train_trials: TrialTable  # all trials of the train shards, test images removed
    test_trials: TrialTable
    test_old_trials: TrialTable | None
    roi_labels: tuple[str, ...] | None
    dropped_train_trials: int  # trials in train shards whose image is a test image
    sessions: tuple[int, ...]  # the scan sessions of the train shards (all, whatever `data.sessions` keeps)

    @property
    def n_voxels(self) -> int:
        return self.betas.n_voxels


@dataclass(frozen=True)
class Split:
    """Items of one split of one subject; `voxels` and `images` read lazily."""

    dataset: NSDDataset
    subject: int
    name: str
    image_index_N: np.ndarray  # int64 stimulus index of each item
    rows_N: tuple[np.ndarray, ...]  # betas rows averaged into each item (after MindEye2 duplication)
    columns: np.ndarray | None  # voxel columns kept (ROI subset), None for all

    def __len__(self) -> int:
        return int(self.image_index_N.shape[0])

    @property
    def n_voxels(self) -> int:
        recording = self.dataset.recording(self.subject)
        return recording.n_voxels if self.columns is None else len(self.columns)

    def _items(self, items) -> np.ndarray:
        return np.arange(len(self)) if items is None else np.asarray(items, dtype=np.int64).reshape(-1)

    def voxels(self, items=None) -> np.ndarray:
        """float32 [N, V]: each item's rows averaged (single trials for `train`)."""
        items = self._items(items)
        per_item = [self.rows_N[i] for i in items]
        flat = np.concatenate(per_item) if per_item else np.empty(0, np.int64)
        betas = self.dataset.recording(self.subject).betas.read_rows(flat, self.columns)
        counts = np.array([len(r) for r in per_item], dtype=np.int64)
        if np.all(counts == 1):
            return betas
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        return (np.add.reduceat(betas, starts, axis=0) / counts[:, None]).astype(np.float32)

    def voxels_per_repeat(self, items=None) -> np.ndarray:
        """float32 [N, T, V]: the (duplicated) repetitions of each item, not averaged.

        Used to average model outputs instead of voxels; needs every item to have the same T.
        """
        items = self._items(items)
        counts = {len(self.rows_N[i]) for i in items}
        if len(counts) > 1:
            raise DataError(
                f"items of split {self.name} have different repeat counts {sorted(counts)};"
                " give every item of a split the same number of repeats"
            )
        flat = np.concatenate([self.rows_N[i] for i in items])
        betas = self.dataset.recording(self.subject).betas.read_rows(flat, self.columns)
        return betas.reshape(len(items), -1, betas.shape[-1])

    def images(self, items=None) -> np.ndarray:
        """uint8 [N, H, W, 3] stimuli of these items."""
        return self.dataset.images.load(self.image_index_N[self._items(items)])

    def captions(self, items=None) -> list[str]:
        return self.dataset.captions(self.image_index_N[self._items(items)])


class NSDDataset:
    """A dataset folder in MindEye2's layout. Use `open_dataset(root)`."""

    def __init__(
        self,
        root: str | Path,
        data_cfg: DataConfig | None = None,
        subjects: list[int] | tuple[int, ...] | None = None,
        expected_voxels: dict[int, int] | None = None,
        check_finite: bool = True,
        check_images: bool = True,
    ) -> None:
        self.root = Path(root)
        self.cfg = data_cfg or DataConfig()
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}; run `mindhier simulate --out {self.root}` first")
        manifest_path = self.root / layout.MANIFEST
        self.manifest: dict[str, Any] | None = (
            read_json(manifest_path, "dataset manifest") if manifest_path.exists() else None
        )
        found = layout.find_subjects(self.root)
        listed = sorted(int(s) for s in (self.manifest or {}).get("subjects", {}))
        wanted = subjects if subjects is not None else listed
        for subject in wanted:
            if subject in listed and subject not in found:
                raise DataError(
                    f"betas file for subject {subject} (listed in manifest.json) is missing: "
                    f"{layout.betas_path(self.root, subject)}; restore it or re-run `mindhier simulate`"
                )
        if not found:
            raise DataError(
                f"no betas_all_subjXX_fp32_renorm.hdf5 in {self.root}; this is not a MindEye2-layout dataset"
            )
        if subjects is not None:
            absent = [s for s in subjects if s not in found]
            if absent:
                raise DataError(
                    f"subject {absent[0]} has no betas in {self.root}; available subjects: {', '.join(map(str, found))}"
                )
        self.subjects: tuple[int, ...] = tuple(subjects if subjects is not None else found)
        self.images: ImageStore = find_image_store(self.root, self.manifest, self.cfg.max_image_pixels)
        self._expected_voxels = expected_voxels or {}
        self._check_finite = check_finite
        self._check_images = check_images  # False: brain data only (reconstruction never reads the stimuli)
        self._recordings: dict[int, SubjectRecording] = {}
        self._captions: np.ndarray | None = None
        for subject in self.subjects:
            self.recording(subject)

    # ------------------------------------------------------------------------------ validation

    def recording(self, subject: int) -> SubjectRecording:
        if subject not in self._recordings:
            if subject not in self.subjects:
                raise DataError(f"subject {subject} is not open; available subjects: {self.subjects}")
            self._recordings[subject] = self._open_subject(subject)
        return self._recordings[subject]

    def _open_subject(self, subject: int) -> SubjectRecording:
        betas = BetasFile(layout.betas_path(self.root, subject))
        entry = (self.manifest or {}).get("subjects", {}).get(str(subject))
        if entry is not None and int(entry.get("n_voxels", betas.n_voxels)) != betas.n_voxels:
            raise DataError(
                f"subject {subject}: betas have {betas.n_voxels} voxels but manifest.json says {entry['n_voxels']}; "
                "the files do not belong together"
            )
        expected = self._expected_voxels.get(subject)
        if expected is not None and expected != betas.n_voxels:
            raise DataError(
                f"subject {subject}: betas have {betas.n_voxels} voxels but the model expects {expected}; "
                "use the checkpoint trained on this dataset or retrain"
            )
        shard_root = layout.shard_dir(self.root, subject, "train").parent
        if not shard_root.is_dir():
            raise DataError(f"subject {subject}: WebDataset folder {shard_root} not found; download MindEye2's wds/")
        test = read_trials(layout.shard_dir(self.root, subject, "test"))
        train_all = read_trials(layout.shard_dir(self.root, subject, "train"))
        old_dir = layout.shard_dir(self.root, subject, "test_old")
        test_old = read_trials(old_dir) if old_dir.is_dir() else None

        tables = [("train", train_all), ("test", test)] + ([("test_old", test_old)] if test_old else [])
        for name, table in tables:
            self._check_table(subject, name, table, betas)
        leaked = np.isin(train_all.image_T, test.image_T)
        sessions = tuple(int(x) for x in np.unique(train_all.session_T) if x >= 0)
        train = train_all.subset(~leaked & self._in_sessions(subject, train_all, sessions))
        if self._check_finite:
            betas.check_finite(np.concatenate([t.row_T for _, t in tables]))
        roi_labels = tuple(entry["roi_labels"]) if entry and "roi_labels" in entry else None
        if roi_labels is not None and len(roi_labels) != betas.n_voxels:
            raise DataError(
                f"subject {subject}: manifest has {len(roi_labels)} ROI labels for {betas.n_voxels} voxels;"
                " write one ROI label per voxel in the manifest"
            )
        return SubjectRecording(subject, betas, train, test, test_old, roi_labels, int(leaked.sum()), sessions)

    def _in_sessions(self, subject: int, table: TrialTable, available: tuple[int, ...]) -> np.ndarray:
        """Which training trials `data.sessions` keeps; asking for sessions the subject lacks is an error."""
        wanted = self.cfg.sessions
        if not wanted:
            return np.ones(len(table), dtype=bool)
        if not available:
            raise DataError(
                f"subject {subject}: the train shards record no session (behav column {layout.BEHAV_SESSION}), so "
                "--sessions cannot choose trials; drop --sessions"
            )
        missing = [s for s in wanted if s not in available]
        if missing:
            first_n = sorted(wanted) == list(range(1, len(wanted) + 1))
            asked = f"--sessions {len(wanted)}" if first_n else f"--sessions {','.join(map(str, wanted))}"
            raise DataError(
                f"subject {subject} has {len(available)} training sessions ({describe_sessions(available)}) but "
                f"{asked} asks for session {missing[0]}; pass at most {len(available)} or a list of its sessions"
            )
        return np.isin(table.session_T, wanted)

    def _check_table(self, subject: int, name: str, table: TrialTable, betas: BetasFile) -> None:
        where = f"subject {subject} {name} shards"
        if len(table.row_T) and (table.row_T.min() < 0 or table.row_T.max() >= betas.n_trials):
            bad = int(table.row_T.max() if table.row_T.max() >= betas.n_trials else table.row_T.min())
            raise DataError(
                f"{where}: behav column 5 points at betas row {bad}, outside 0..{betas.n_trials - 1}; "
                "the shards and the betas file do not belong together"
            )
        if len(table.image_T) and table.image_T.min() < 0:
            raise DataError(
                f"{where}: behav column 0 holds a negative image index {int(table.image_T.min())};"
                " fix the behav arrays (indices start at 0)"
            )
        n_images = (self.manifest or {}).get("n_images")
        if n_images is not None and table.image_T.max() >= n_images:
            raise DataError(
                f"{where}: image index {int(table.image_T.max())} is out of range "
                f"(the manifest lists {n_images} images); fix the behav arrays or the stimulus manifest"
            )
        if self._check_images:
            self.images.check_indices(table.image_T)

    # ----------------------------------------------------------------------------------- splits

    def split(
        self,
        subject: int,
        name: str,
        repetitions: Repetitions = "average",
        rois: tuple[str, ...] | list[str] | None = None,
    ) -> Split:
        """Items of `name` in {train, val, test, test_old} for `subject`, optionally an ROI subset."""
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; valid splits: {', '.join(SPLIT_NAMES)}")
        if repetitions not in ("average", "separate"):
            raise DataError(
                f"repetitions must be 'average' or 'separate', got {repetitions!r}; use average or separate"
            )
        recording = self.recording(subject)
        columns = self._roi_columns(recording, rois)
        if name in ("train", "val"):
            val_images = self.val_images(subject)
            in_val = np.isin(recording.train_trials.image_T, val_images)
            if name == "train":
                table = recording.train_trials.subset(~in_val)
                return Split(self, subject, name, table.image_T, tuple(table.row_T[:, None]), columns)
            table = recording.train_trials.subset(in_val)
            return self._grouped(subject, name, table, columns, repetitions, pad_to=None)
        table = recording.test_trials if name == "test" else recording.test_old_trials
        if table is None:
            raise DataError(
                f"subject {subject} has no test_old split: {layout.shard_dir(self.root, subject, 'test_old')} not "
                "found; use demo.split=test, or a dataset with test_old"
            )
        return self._grouped(subject, name, table, columns, repetitions, pad_to=self.cfg.test_repeats)

    def val_images(self, subject: int) -> np.ndarray:
        """The held-out training images (seeded by `data.split_seed`), sorted."""
        unique = np.unique(self.recording(subject).train_trials.image_T)
        n_val = round(self.cfg.val_fraction * len(unique))
        if self.cfg.val_fraction > 0 and len(unique) >= 2:
            n_val = max(n_val, 1)
        rng = np.random.default_rng([self.cfg.split_seed, 7919])
        return np.sort(rng.choice(unique, size=n_val, replace=False)) if n_val else np.empty(0, np.int64)

    def _grouped(self, subject, name, table: TrialTable, columns, repetitions, pad_to: int | None) -> Split:
        if repetitions == "separate":
            order = np.lexsort((table.row_T, table.image_T))
            return Split(self, subject, name, table.image_T[order], tuple(table.row_T[order][:, None]), columns)
        images = np.unique(table.image_T)
        order = np.lexsort((table.row_T, table.image_T))
        sorted_images, sorted_rows = table.image_T[order], table.row_T[order]
        starts = np.searchsorted(sorted_images, images, side="left")
        stops = np.searchsorted(sorted_images, images, side="right")
        rows = tuple(_pad_repeats(sorted_rows[a:b], pad_to) for a, b in zip(starts, stops, strict=True))
        return Split(self, subject, name, images, rows, columns)

    def _roi_columns(self, recording: SubjectRecording, rois) -> np.ndarray | None:
        if not rois:
            return None
        if recording.roi_labels is None:
            raise DataError(
                f"subject {recording.subject} has no per-voxel ROI labels (manifest.json subjects.N.roi_labels); "
                "ROI subsets need them — MindEye2's real NSD betas are nsdgeneral only"
            )
        labels = np.asarray(recording.roi_labels)
        unknown = [r for r in rois if r not in set(labels)]
        if unknown:
            raise DataError(f"unknown ROI {unknown[0]!r}; available: {', '.join(dict.fromkeys(labels))}")
        return np.flatnonzero(np.isin(labels, list(rois)))

    # ---------------------------------------------------------------------------------- captions

    def captions(self, indices: np.ndarray) -> list[str]:
        """First caption of each stimulus ("" where none)."""
        if self._captions is None:
            self._captions = self._load_captions()
        table = self._captions
        out = []
        for i in np.asarray(indices).reshape(-1):
            if table.size == 0 or i >= table.shape[0]:
                out.append("")
            else:
                out.append(str(table[i, 0]))
        return out

    def _load_captions(self) -> np.ndarray:
        for name in (layout.CAPTIONS_NPY, layout.NSD_CAPTIONS_NPY):
            path = self.root / name
            if path.is_file():
                try:
                    table = np.load(path, allow_pickle=False)
                except ValueError as err:
                    raise DataError(
                        f"captions file {path} holds Python objects, which we do not unpickle; "
                        "convert it to a string array (np.asarray(x, dtype=str))"
                    ) from err
                except OSError as err:
                    raise DataError(f"cannot read captions file {path} ({err}); regenerate it") from err
                return table.reshape(table.shape[0], -1)
        return np.empty((0, 1), dtype=str)

    def close(self) -> None:
        for recording in self._recordings.values():
            recording.betas.close()

    def __enter__(self) -> NSDDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pad_repeats(rows: np.ndarray, pad_to: int | None) -> np.ndarray:
    """MindEye2's duplication of missing repetitions: [a] -> [a, a, a], [a, b] -> [a, a, b]."""
    if pad_to is None or len(rows) >= pad_to:
        return rows
    return np.repeat(rows, -(-pad_to // len(rows)))[:pad_to]


def open_dataset(
    root: str | Path,
    data_cfg: DataConfig | None = None,
    subjects: list[int] | tuple[int, ...] | None = None,
    expected_voxels: dict[int, int] | None = None,
    check_finite: bool = True,
    check_images: bool = True,
) -> NSDDataset:
    """Open and validate a dataset folder (all subjects found, or the ones named)."""
    return NSDDataset(root, data_cfg, subjects, expected_voxels, check_finite, check_images)
