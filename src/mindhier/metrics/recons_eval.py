"""`mindhier eval recons` and `mindhier eval compare`: the evaluator on a folder of reconstructions.

A reconstruction folder holds one image per test stimulus, `image_{index:06d}.png` (the stimulus index of
the dataset), and a `manifest.json` that says how they were made: at least `subject` and `split`, and a
`protocol` (samples N, selection rule, repetition averaging, guidance mode, seeds, ...) copied into the
record. Optional `determinism`: {"seeds": [...], "dirs": [...]} — folders of the same inputs reconstructed
under other seeds — adds the consistency scores (`metrics/consistency.py`); optional `strips` (with the
protocol's `scales`) adds the quality after every scale (`metrics/per_scale.py`); every record has the brain
correlation per ROI (`metrics/brain_correlation.py`) when an encoding model exists.

Outputs in `--out`: `metrics.json` (every metric with its bootstrap CI, which extractors are real, proxy or
absent, the judge's ceiling, the protocol, seeds, package version) and `per_image.csv`.
`compare` reads several `metrics.json` of the same images and prints paired differences against the first.

`--recons` may instead be another method's tensor file (MindEye2's `*_all_recons.pt`, or ours from
`mindhier export`): read and checked by `metrics/recons_tensor.py`; with no manifest, the subject and split are
given, N must be the split's, and the record names the file (path, sha256) and an external protocol.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier import run_layout
from mindhier.data import layout
from mindhier.data.image_decode import read_rgb
from mindhier.errors import DataError
from mindhier.fileio import atomic_path, read_json, write_json
from mindhier.metrics.brain_correlation import brain_correlation, describe
from mindhier.metrics.consistency import consistency
from mindhier.metrics.per_scale import per_scale_quality, scale_resolutions, split_strips, summarize_per_scale
from mindhier.metrics.recons_manifest import checked_manifest
from mindhier.metrics.recons_tensor import check_index_order, read_recons_tensor
from mindhier.metrics.statistics import N_RESAMPLES, bootstrap_ci, paired_difference
from mindhier.metrics.suite import evaluate
from mindhier.progress import ProgressFn, report
from mindhier.provenance import provenance
from mindhier.records import contained_path, parse_record

RECONS_MANIFEST = "manifest.json"
METRICS_FILE = "metrics.json"
PER_IMAGE_FILE = "per_image.csv"
# the metrics tables lead with, in this order: pixel, judge, the offline proxies, then MindEye2's networks
HEADLINE_METRICS = (
    "pixcorr",
    "ssim",
    "judge.category_f1",
    "judge.colour_f1",
    "lite0_late.two_way",
    "lite2_late.two_way",
    "lite0_early.two_way",
    "lite2_early.two_way",
    "alexnet_2.two_way",
    "alexnet_5.two_way",
    "inception.two_way",
    "clip.two_way",
    "effnet.corr_distance",
    "swav.corr_distance",
)
OFFLINE_HEADLINE_METRICS = HEADLINE_METRICS[:8]  # the ones this machine computes without downloaded weights


def load_images(folder: Path, indices: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] of `image_{index:06d}.png` for every index; missing or unreadable ones are an error."""
    missing = [int(i) for i in indices if not (folder / layout.image_png_name(int(i))).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} reconstructions are missing from {folder} (first: {layout.image_png_name(missing[0])}); "
            "reconstruct every test stimulus"
        )
    images = []
    for index in indices:
        images.append(read_rgb(folder / layout.image_png_name(int(index))))
    if len({im.shape for im in images}) > 1:
        raise DataError(f"reconstructions in {folder} have different sizes; write them all at one size")
    return np.stack(images)


def scene_labels(data_dir: Path, indices: np.ndarray) -> list[dict] | None:
    """Labels of `scenes` stimuli (for the judge), or None for other sources."""
    path = data_dir / layout.STIMULUS_LABELS
    if not path.is_file():
        return None
    record = read_json(path, "stimulus labels")
    if record.get("source") != "scenes":
        return None
    by_index = {int(r["index"]): r for r in record["images"]}
    return [by_index[int(i)] for i in indices]


@dataclass(frozen=True)
class ReconsInput:
    """A reconstruction set checked against its dataset, before any network runs: what `evaluate_reconstructions`
    scores. Reading it is cheap (the images and betas of one split), so commands read it first and refuse a bad
    folder or tensor before they build metric networks or train the judge."""

    recons_dir: Path  # the folder, or the tensor file
    data_dir: Path
    manifest: dict[str, Any]  # the folder's manifest ({} for a tensor file)
    subject: int
    split: str
    indices: np.ndarray  # stimulus index of every row, the split's order
    truths: np.ndarray  # uint8 [N, H, W, 3]
    measured_NV: np.ndarray
    roi_labels: list
    recons: np.ndarray | torch.Tensor  # what the metrics score (uint8 NHWC, or a float tensor as given)
    recons_uint8: np.ndarray  # 8-bit [N, H, W, 3], for what reads 8-bit images only
    source: dict[str, Any]
    is_tensor: bool


def read_recons_input(
    recons_dir: str | Path,
    data_dir: str | Path,
    subject: int | None = None,
    split: str | None = None,
    indices_file: str | Path | None = None,
) -> ReconsInput:
    """Read and check a reconstruction folder or tensor file against subject `subject`'s split `split` of the
    dataset: a tensor needs `subject` and `split` and one row per test image; a folder needs its manifest and an
    image per test stimulus; `indices_file` is compared with the split's order. Every failure is one line."""
    from mindhier.data.nsd import open_dataset

    recons_dir, data_dir = Path(recons_dir), Path(data_dir)
    tensor = None
    if recons_dir.is_file():
        if subject is None or split is None:
            missing = " and ".join(f for f, v in (("--subject", subject), ("--split", split)) if v is None)
            raise DataError(
                f"{recons_dir} is a tensor file, with no manifest to say whose reconstructions they are; "
                f"pass {missing} (e.g. --subject 1 --split test)"
            )
        tensor = read_recons_tensor(recons_dir)
        manifest: dict[str, Any] = {}
    else:
        manifest = parse_record(
            recons_dir / RECONS_MANIFEST, "reconstruction manifest", lambda m: checked_manifest(m, recons_dir)
        )
    subject = subject if subject is not None else manifest.get("subject")
    split = split or manifest.get("split", "test")
    if subject is None:
        raise DataError(f"{recons_dir / RECONS_MANIFEST} names no subject; pass --subject")
    with open_dataset(data_dir, subjects=[int(subject)]) as dataset:
        items = dataset.split(int(subject), split)
        indices = np.asarray(items.image_index_N)
        if tensor is not None and len(tensor) != len(indices):  # before the split's images and betas are read
            raise DataError(
                f"{recons_dir} holds {len(tensor)} reconstructions but subject {subject}'s split {split} has "
                f"{len(indices)} images; pass the tensor of this subject and split (one row per test image)"
            )
        if indices_file is not None:
            check_index_order(indices_file, indices, split)
        truths = items.images()
        measured_NV = items.voxels()
        roi_labels = list(dataset.recording(int(subject)).roi_labels or ())
    if tensor is not None:
        recons, recons_uint8 = tensor.images, tensor.as_uint8_NHWC()
        source = tensor.source
    else:
        recons = recons_uint8 = load_images(recons_dir, indices)
        source = {"kind": "folder", "path": str(recons_dir)}
    return ReconsInput(
        recons_dir=recons_dir,
        data_dir=data_dir,
        manifest=manifest,
        subject=int(subject),
        split=split,
        indices=indices,
        truths=truths,
        measured_NV=measured_NV,
        roi_labels=roi_labels,
        recons=recons,
        recons_uint8=recons_uint8,
        source=source,
        is_tensor=tensor is not None,
    )


def evaluate_reconstructions(
    recons_dir: str | Path | ReconsInput,
    data_dir: str | Path,
    out: str | Path,
    subject: int | None = None,
    split: str | None = None,
    extractors: list | None = None,
    judge=None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    progress: ProgressFn | None = None,
    truth_features: dict | None = None,
    encoding_model=None,
    indices_file: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a reconstruction folder, or a tensor file of another method's reconstructions (then `subject`
    and `split` are required) — or a `ReconsInput` already read by `read_recons_input` (then `data_dir`,
    `subject`, `split` and `indices_file` are its own); `truth_features` caches the truths' features across calls
    (same split). `encoding_model` ((images, categories) → voxel responses, with `roi_labels`) serves the brain
    correlation where the dataset has no simulator encoding model of its own (real NSD); without either it is
    reported absent. `indices_file` (the stimulus index of each reconstruction, as `mindhier export` writes it) is
    checked against the split's order."""
    inputs = (
        recons_dir
        if isinstance(recons_dir, ReconsInput)
        else read_recons_input(recons_dir, data_dir, subject, split, indices_file)
    )
    recons_dir, data_dir, manifest = inputs.recons_dir, inputs.data_dir, inputs.manifest
    subject, split, indices, truths = inputs.subject, inputs.split, inputs.indices, inputs.truths
    measured_NV, roi_labels, recons, recons_uint8 = (
        inputs.measured_NV,
        inputs.roi_labels,
        inputs.recons,
        inputs.recons_uint8,
    )
    source = inputs.source
    labels = scene_labels(data_dir, indices)
    report(progress, "evaluate reconstructions", 0, 4)
    result = evaluate(
        recons,
        truths,
        extractors,
        judge if labels is not None else None,
        labels,
        n_resamples,
        seed,
        truth_features=truth_features,
    )
    report(progress, "evaluate reconstructions", 1, 4)
    truth_features = truth_features if truth_features is not None else {}
    per_scale_record = _per_scale(recons_dir, manifest, indices, truths, extractors, truth_features, result.per_image)
    report(progress, "evaluate reconstructions", 2, 4)
    consistency_record = _consistency(
        recons_dir, manifest, indices, extractors, n_resamples, seed, result.per_image, result.recon_features
    )
    report(progress, "evaluate reconstructions", 3, 4)
    brain_record = _brain_correlation(
        data_dir,
        int(subject),
        recons_uint8,
        truths,
        measured_NV,
        roi_labels,
        judge if labels is not None else None,
        encoding_model,
        truth_features,
        n_resamples,
        seed,
        result.per_image,
    )
    report(progress, "evaluate reconstructions", 4, 4)

    record = {
        "recons": str(recons_dir),
        "recons_source": source,
        "data": str(data_dir),
        "protocol": {
            "subject": int(subject),
            "split": split,
            "n_images": len(indices),
            "bootstrap": {"resamples": n_resamples, "seed": seed, "interval": "percentile 95 %"},
            "identification": "exhaustive two-way over the full pool (chance 0.5), Pearson correlation",
            "pixel_metrics": "PixCorr and SSIM at 425 px as MindEye2",
            **({"reconstruction": source["protocol"]} if inputs.is_tensor else manifest.get("protocol", {})),
        },
        "metrics": result.summary,
        "extractors": result.extractors,
        "judge": result.judge,
        "per_scale": per_scale_record,
        "consistency": consistency_record,
        "condition_use": _condition_use(recons_dir, inputs.is_tensor),
        "brain_correlation": brain_record,
        "per_image": PER_IMAGE_FILE,
        "provenance": provenance(),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PER_IMAGE_FILE) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        names = list(result.per_image)
        writer.writerow(["stimulus_index", *names])
        for row, index in enumerate(indices):
            writer.writerow([int(index), *(f"{result.per_image[n][row]:.6g}" for n in names)])
    write_json(out / METRICS_FILE, record)
    return record


def _condition_use(recons_dir, is_tensor: bool) -> dict | None:
    """The decoder's condition use per scale that the reconstruction folder carries, without per-image arrays."""
    path = None if is_tensor else Path(recons_dir) / run_layout.RECONS_CONDITION_USE
    if path is None or not path.is_file():
        return None
    return {k: v for k, v in read_json(path, "condition-use record").items() if k != "per_image"}


PER_SCALE_PROXY = "lite2_early"  # the one proxy extractor of the per-scale identification (simulator-coupled)
CONSISTENCY_PROXY = "lite2_late"


def _proxy(extractors, name: str):
    return next((e for e in extractors or [] if e.info.kind == "proxy" and e.info.name == name), None)


def _per_scale(recons_dir, manifest, indices, truths, extractors, cache, per_image) -> dict | None:
    """Quality after each scale, from the strips (`metrics/per_scale.py`)."""
    strips = manifest.get("strips")
    scales = manifest.get("protocol", {}).get("scales")
    if not strips or not scales:
        return None
    strips_dir = contained_path(recons_dir, strips, "manifest.json strips folder")
    images = split_strips(load_images(strips_dir, indices), len(scales))
    resolutions = scale_resolutions(images.shape[2], tuple(scales))
    proxy = _proxy(extractors, PER_SCALE_PROXY)
    key = f"per_scale.truth.{PER_SCALE_PROXY}"
    if proxy is not None and key not in cache:
        cache[key] = proxy(torch.from_numpy(truths).permute(0, 3, 1, 2).float() / 255)
    scores = per_scale_quality(images, truths, resolutions, proxy, cache.get(key))
    per_image.update(scores)
    return {
        **summarize_per_scale(scores, resolutions),
        "scales": scales,
        "identification_extractor": None if proxy is None else f"{proxy.info.name} ({proxy.info.note})",
        "protocol": "image after scale k vs the true image, both at r_k = max(8, side·s_k/s_K) px; PixCorr, SSIM "
        "(greyscale, uniform 7×7 window); two-way identification with the proxy at its own input size",
    }


def _consistency(recons_dir, manifest, indices, extractors, n_resamples, seed, per_image, known) -> dict | None:
    """Spread of repeated samples of the same inputs (`metrics/consistency.py`)."""
    repeats = manifest.get("determinism")
    if not repeats:
        return None
    # folders the manifest names: inside the reconstruction folder, never elsewhere on the disk
    dirs = [contained_path(recons_dir, d, "manifest.json determinism folder") for d in repeats["dirs"]]
    stack = torch.stack([torch.from_numpy(load_images(d, indices)).permute(0, 3, 1, 2).float() / 255 for d in dirs])
    proxy = _proxy(extractors, CONSISTENCY_PROXY)
    first = known.get(CONSISTENCY_PROXY) if dirs[0].resolve() == recons_dir.resolve() else None  # its own images
    scores, distributions = consistency(stack, proxy, first)
    record: dict[str, Any] = {
        "repeats": len(dirs),
        "seeds": repeats.get("seeds"),
        "feature_extractor": None if proxy is None else f"{proxy.info.name} ({proxy.info.note})",
        **distributions,
    }
    for name, values in scores.items():
        per_image[f"consistency.{name}"] = values
        record[name] = bootstrap_ci(values, n_resamples, seed)
    return record


def _brain_correlation(
    data_dir,
    subject,
    recons,
    truths,
    measured_NV,
    roi_labels,
    judge,
    encoding_model,
    cache,
    n_resamples,
    seed,
    per_image,
) -> dict:
    """Per-ROI correlation of the response the reconstruction evokes with the measured one."""
    from mindhier.data.simulator.encoding_model import load_encoding_model

    simulated = load_encoding_model(Path(data_dir), subject)
    if simulated is not None:
        predict, source = simulated.predicted_signal, "the simulator's own encoding model (exact)"
    elif encoding_model is not None:
        predict, source = encoding_model, getattr(encoding_model, "describe", lambda: "user-supplied")()
        roi_labels = list(encoding_model.roi_labels)
    else:
        return {
            "kind": "absent",
            "missing": "no encoding model: real NSD needs one (evaluate_reconstructions("
            "encoding_model=…)); simulated datasets carry theirs",
        }
    categories = "judge" if judge is not None else "none"

    def categories_of(images):
        return judge.predict(images)[0] if judge is not None else None

    scores = brain_correlation(predict(recons, categories_of(recons)), measured_NV, roi_labels)
    key = f"brain_corr.truth.{categories}"
    if key not in cache:
        cache[key] = brain_correlation(predict(truths, categories_of(truths)), measured_NV, roi_labels)
    record = describe(
        source, "the scene judge's category probabilities of each image" if judge is not None else "left out (no judge)"
    )
    record["rois"] = {}
    for name, values in scores.items():
        per_image[name] = values
        record["rois"][name.removeprefix("brain_corr.")] = {
            **bootstrap_ci(values, n_resamples, seed),
            "on_true_images": float(np.mean(cache[key][name])),
        }
    return record


def read_per_image(metrics_file: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    record = read_json(metrics_file, "metrics record")
    path = metrics_file.parent / record.get("per_image", PER_IMAGE_FILE)
    if not path.is_file():
        raise DataError(f"{path} is missing; re-run `mindhier eval recons`")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    indices = np.array([int(r["stimulus_index"]) for r in rows])
    columns = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "stimulus_index"}
    return indices, columns


def compare(metrics_files: list[str | Path], n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Means of every shared metric per method, and paired differences of each method against the first."""
    if len(metrics_files) < 2:
        raise DataError("compare needs at least two metrics.json files; pass two or more metrics.json files")
    loaded = [(Path(p), *read_per_image(Path(p))) for p in metrics_files]
    base_path, base_indices, base = loaded[0]
    for path, indices, _ in loaded[1:]:
        if not np.array_equal(indices, base_indices):
            raise DataError(f"{path} was computed on other images than {base_path}; compare needs the same test images")
    shared = [k for k in base if all(k in cols for _, _, cols in loaded[1:])]
    table: dict[str, Any] = {"methods": [str(p) for p, _, _ in loaded], "metrics": {}}
    for metric in shared:
        entry = {"means": [float(cols[metric].mean()) for _, _, cols in loaded], "paired_vs_first": []}
        for _, _, cols in loaded[1:]:
            entry["paired_vs_first"].append(paired_difference(cols[metric], base[metric], n_resamples, seed))
        table["metrics"][metric] = entry
    return table


def format_comparison(table: dict[str, Any]) -> str:
    names = [Path(m).parent.name or m for m in table["methods"]]
    width = 50  # "mean (Δ [lo, hi] p=…)" of a compared method
    lines = ["metric".ljust(28) + names[0][:16].rjust(16) + "".join("  " + n[:width].rjust(width) for n in names[1:])]
    for metric, entry in table["metrics"].items():
        cells = [f"{entry['means'][0]:.4f}".rjust(16)]
        for mean, diff in zip(entry["means"][1:], entry["paired_vs_first"], strict=True):
            lo, hi = diff["ci95"]
            cell = f"{mean:.4f} ({diff['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}] p={diff['p_wilcoxon']:.3g})"
            cells.append("  " + cell.rjust(width))
        lines.append(metric.ljust(28) + "".join(cells))
    return "\n".join(lines)


def format_metrics(record: dict[str, Any], brief: bool = False) -> str:
    """One line per metric: mean [95 % CI], and its kind (real / proxy / absent / judge).

    `brief`: only the headline metrics, and the absent networks named on one line.
    """
    lines = [
        f"{record['protocol']['n_images']} images, subject {record['protocol']['subject']}, "
        f"split {record['protocol']['split']}"
    ]
    source = record.get("recons_source") or {}
    if source.get("kind") == "tensor":
        lines[0] += f"; external tensor {Path(source['path']).name} (sha256 {source['sha256'][:12]})"

    absent = [n for n, e in record["metrics"].items() if e.get("kind") == "absent"]
    for name, entry in record["metrics"].items():
        if brief and (entry.get("kind") == "absent" or not _headline(name)):
            continue
        if entry.get("kind") == "absent":
            lines.append(f"  {name:<28} absent — {entry['missing'].removeprefix('absent: ')}")
            continue
        lo, hi = entry["ci95"]
        tag = entry.get("note") or entry.get("kind", "")
        extra = f"  (true images: {entry['on_true_images']:.3f})" if "on_true_images" in entry else ""
        lines.append(f"  {name:<28} {entry['mean']:.4f} [{lo:.4f}, {hi:.4f}]  {tag}{extra}")
    if brief and absent:
        lines.append(f"  absent (weights not on this machine): {', '.join(absent)}")
    if record.get("consistency"):
        c = record["consistency"]
        lines.append(
            f"  consistency over {c['repeats']} seeds: pairwise SSIM {c['pairwise_ssim']['mean']:.4f}, "
            f"pixel variance {c['pixel_variance']['mean']:.5f}"
        )
    brain = record.get("brain_correlation") or {}
    if brain.get("rois"):
        rois = ", ".join(f"{k} {v['mean']:.3f}" for k, v in brain["rois"].items())
        lines.append(f"  brain correlation: {rois}")
    return "\n".join(lines)


def _headline(name: str) -> bool:
    return name in ("pixcorr", "ssim", "judge.category_f1", "judge.colour_f1") or name.endswith(".two_way")
