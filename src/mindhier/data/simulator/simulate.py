"""`simulate`: stimuli → features → subjects → single-trial betas → a dataset in MindEye2's layout.

Randomness: every draw follows from `SimulatorConfig.seed` through independent streams —
stimuli (inside the source, per split and image), image-index assignment, and per subject its voxel
model, its trial order and its noise — so the same seed writes identical files and changing the
subject list does not change any other subject.

Shape letters (docs/glossary.md): N images, T trials, V voxels, J categories.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mindhier.config import ROI_NAMES, MindhierConfig, to_dict
from mindhier.data import layout
from mindhier.data.noise_ceiling import ncsnr_from_trials, noise_ceiling
from mindhier.data.simulator import writer
from mindhier.data.simulator.betas import session_betas
from mindhier.data.simulator.design import TrialDesign, make_design
from mindhier.data.simulator.encoding_model import save_encoding_model
from mindhier.data.simulator.features import SemanticFn, StimulusFeatures, compute_features, lite2_semantic_fn
from mindhier.data.simulator.voxels import SubjectModel, SubjectTraits, random_subject, subject_traits
from mindhier.data.stimuli import StimulusSet, make_source
from mindhier.fileio import staged_directory, write_json
from mindhier.progress import ProgressFn

if TYPE_CHECKING:  # data.bold reads the simulator's design: imported where used, not at load (no import cycle)
    from mindhier.data.bold.simulate_bold import BoldSimConfig

NOISE_CEILING_DEFINITION = "NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n), n = test_repeats (NSD, Allen et al. 2022)"

# independent random streams, keyed by purpose
_STREAM_INDEX, _STREAM_MODEL, _STREAM_DESIGN, _STREAM_NOISE, _STREAM_TRAITS, _STREAM_BOLD = 1, 2, 3, 4, 5, 6
BOLD_DIR = "bold"  # the scanner runs of `--bold`, a BIDS folder inside the dataset


@dataclass(frozen=True)
class SubjectResult:
    subject: int
    model: SubjectModel
    design: TrialDesign
    noise_ceiling_measured_V: np.ndarray  # from the test repetitions of the written betas
    traits: SubjectTraits

    def summary(self) -> dict[str, Any]:
        labels = np.asarray(self.model.roi_labels())
        return {
            "subject": self.subject,
            "n_voxels": self.model.n_voxels,
            "n_trials": self.design.n_trials,
            "n_sessions": self.design.n_sessions,
            "roi_counts": {name: int((labels == name).sum()) for name in ROI_NAMES},
            "traits": self.traits.describe(),
        }


@dataclass(frozen=True)
class SimulationResult:
    root: Path
    train_images: np.ndarray  # stimulus indices of the training images (generation order)
    test_images: np.ndarray  # stimulus indices of the test images (generation order)
    subjects: dict[int, SubjectResult]
    stage_seconds: dict[str, float] = field(default_factory=dict)


def stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def simulate(
    cfg: MindhierConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    semantic_fn: SemanticFn | None = None,
    bold: BoldSimConfig | None = None,
) -> SimulationResult:
    """Simulate `cfg.simulator.subjects` viewing `cfg.stimuli` and write the dataset to `out`.

    `semantic_fn` replaces EfficientNet-Lite2 for the semantic voxels (tests use it for speed). `bold`: also
    write the scanner runs that would have produced the betas, as a BIDS folder `bold/` (`data/bold`).
    The folder appears at `out` only when complete; an existing non-empty `out` is kept unless
    `overwrite`.
    """
    sim, stim = cfg.simulator, cfg.stimuli
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    with staged_directory(out, overwrite=overwrite) as staging:
        source = make_source(stim.source)
        train = source.generate("train", sim.n_train, stim.size, sim.seed, progress=progress)
        test = source.generate("test", sim.n_test, stim.size, sim.seed, progress=progress)
        n_images = len(train) + len(test)
        index_of = stream(sim.seed, _STREAM_INDEX).permutation(n_images)  # generation order -> stimulus index
        train_images, test_images = index_of[: len(train)], index_of[len(train) :]
        images_NHWC, captions, records, categories_NJ = _by_index(train, test, index_of)
        seconds["stimuli"] = time.perf_counter() - clock

        if semantic_fn is None:
            semantic_fn = lite2_semantic_fn(sim.semantic_px)
        features = compute_features(
            images_NHWC,
            categories_NJ,
            sim.retina_px,
            sim.feature_grid,
            semantic_fn,
            progress=progress,
            timings=seconds,
        )

        clock = time.perf_counter()
        store = writer.write_images(staging, images_NHWC, sim.image_store, progress=progress)
        writer.write_captions(staging, captions)
        writer.write_stimulus_labels(staging, source.name, train.category_names, records)
        seconds["write"] = time.perf_counter() - clock

        subjects = {}
        subject_entries = {}
        for subject in sim.subjects:
            result, entry = _simulate_subject(
                staging, subject, cfg, features, train_images, test_images, seconds, progress, bold
            )
            subjects[subject] = result
            subject_entries[str(subject)] = entry

        clock = time.perf_counter()
        manifest = {
            "format": "mindeye2",
            "created_by": "mindhier simulate",
            "seed": sim.seed,
            "n_images": n_images,
            "image_size": stim.size,
            "image_store": store,
            "captions": layout.CAPTIONS_NPY,
            "stimulus_labels": layout.STIMULUS_LABELS,
            "stimuli": {**source.describe(), "n_train": len(train), "n_test": len(test)},
            "test_repeats": sim.test_repeats,
            "session_trials": sim.session_trials,
            "roi_names": list(ROI_NAMES),
            "noise_ceiling_definition": NOISE_CEILING_DEFINITION,
            "subjects": subject_entries,
            **({"bold": BOLD_DIR + "/"} if bold is not None else {}),
            "config": to_dict(cfg),
        }
        write_json(staging / layout.MANIFEST, manifest)
        from mindhier.config import save_resolved

        save_resolved(cfg, staging / layout.CONFIG)
        seconds["write"] += time.perf_counter() - clock
    return SimulationResult(Path(out), train_images, test_images, subjects, seconds)


def _by_index(train: StimulusSet, test: StimulusSet, index_of: np.ndarray):
    """Reorder the two generated sets into stimulus-index order."""
    n = len(train) + len(test)
    images = np.empty((n, *train.images_NHWC.shape[1:]), dtype=np.uint8)
    images[index_of[: len(train)]] = train.images_NHWC
    images[index_of[len(train) :]] = test.images_NHWC
    captions: list[str] = [""] * n
    records: list[dict[str, Any]] = [{}] * n
    for split, stimuli, offset in (("train", train, 0), ("test", test, len(train))):
        for i in range(len(stimuli)):
            index = int(index_of[offset + i])
            captions[index] = stimuli.captions[i]
            records[index] = {
                "index": index,
                "split": split,
                "caption": stimuli.captions[i],
                **stimuli.labels[i],
            }
    categories = None
    if train.categories_NJ is not None and test.categories_NJ is not None:
        categories = np.empty((n, train.categories_NJ.shape[1]), dtype=np.float32)
        categories[index_of[: len(train)]] = train.categories_NJ
        categories[index_of[len(train) :]] = test.categories_NJ
    return images, captions, records, categories


def _simulate_subject(
    root: Path,
    subject: int,
    cfg: MindhierConfig,
    features: StimulusFeatures,
    train_images: np.ndarray,
    test_images: np.ndarray,
    seconds: dict[str, float],
    progress: ProgressFn | None,
    bold: BoldSimConfig | None = None,
) -> tuple[SubjectResult, dict[str, Any]]:
    sim = cfg.simulator
    clock = time.perf_counter()
    n_categories = 0 if features.categories_NJ is None else int(features.categories_NJ.shape[1])
    traits = subject_traits(sim, stream(sim.seed, subject, _STREAM_TRAITS))
    model = random_subject(
        subject,
        sim,
        n_early_channels=features.early_NCGG.shape[1],
        n_mid_channels=features.mid_NCGG.shape[1],
        n_deep=features.deep_ND.shape[1],
        n_categories=n_categories,
        rng=stream(sim.seed, subject, _STREAM_MODEL),
        traits=traits,
    ).calibrated(features)
    signal_NV = model.signal(features).numpy()
    seconds["voxel_models"] = seconds.get("voxel_models", 0.0) + time.perf_counter() - clock

    clock = time.perf_counter()
    design = make_design(
        train_images,
        test_images,
        sim.test_repeats,
        sim.session_trials,
        stream(sim.seed, subject, _STREAM_DESIGN),
    )
    noise_rng = stream(sim.seed, subject, _STREAM_NOISE)
    betas_TV = np.empty((design.n_trials, model.n_voxels), dtype=np.float32)
    for session in range(1, design.n_sessions + 1):
        rows = np.flatnonzero(design.session_T == session)
        betas_TV[rows] = session_betas(signal_NV, design, session, model.ncsnr_V, sim.drift_sd, noise_rng)
        if progress is not None:
            progress(f"subject {subject} sessions", session, design.n_sessions)
    test_rows = np.flatnonzero(design.is_test_T)
    measured = noise_ceiling(ncsnr_from_trials(betas_TV[test_rows], design.image_T[test_rows]), sim.test_repeats)
    configured = noise_ceiling(model.ncsnr_V, sim.test_repeats)
    seconds["betas"] = seconds.get("betas", 0.0) + time.perf_counter() - clock

    clock = time.perf_counter()
    betas_file = writer.BetasWriter(root, subject, design.n_trials, model.n_voxels)
    try:
        betas_file.write_rows(np.arange(design.n_trials), betas_TV)
    finally:
        betas_file.close()
    writer.write_shards(root, subject, design)
    voxel_table = writer.write_voxel_table(
        root,
        subject,
        {
            "roi": model.roi_V,
            "prf_xy": model.prf_xy_V2,
            "prf_sd": model.prf_sd_V,
            "ncsnr": model.ncsnr_V,
            "noise_ceiling": configured.astype(np.float32),
            "noise_ceiling_measured": measured.astype(np.float32),
        },
    )
    encoding_model = save_encoding_model(root, model, sim)
    seconds["write"] = seconds.get("write", 0.0) + time.perf_counter() - clock

    bold_summary = None
    if bold is not None:
        from mindhier.data.bold.simulate_bold import write_subject_bold

        clock = time.perf_counter()
        bold_rng = stream(sim.seed, subject, _STREAM_BOLD)
        bold_summary = write_subject_bold(root / BOLD_DIR, subject, model.roi_V, design, betas_TV, bold, bold_rng)
        seconds["bold"] = seconds.get("bold", 0.0) + time.perf_counter() - clock

    result = SubjectResult(subject, model, design, measured, traits)
    entry = {
        **result.summary(),
        "voxel_table": voxel_table,
        "encoding_model": encoding_model,
        "roi_labels": model.roi_labels(),
        "ncsnr": _rounded(model.ncsnr_V),
        "noise_ceiling": _rounded(configured),
        "noise_ceiling_measured": _rounded(measured),
        "median_noise_ceiling": round(float(np.median(configured)), 2),
        "median_noise_ceiling_measured": round(float(np.median(measured)), 2),
        **({"bold": bold_summary} if bold_summary is not None else {}),
    }
    return result, entry


def _rounded(values: np.ndarray, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]
