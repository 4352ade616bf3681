"""`mindhier eval recons` and `mindhier eval compare`: the evaluator on a folder of reconstructions.

A reconstruction folder holds one image per test stimulus, `image_{index:06d}.png` (the stimulus index of
the dataset), and a `manifest.json` that says how they were made: at least `subject` and `split`, and a
`protocol` (samples N, selection rule, repetition averaging, guidance mode, seeds, ...) copied into the
record. Optional `determinism`: {"seeds": [...], "dirs": [...]} — folders of the same inputs reconstructed
under other seeds — adds the determinism scores.

Outputs in `--out`: `metrics.json` (every metric with its bootstrap CI, which extractors are real, proxy or
absent, the judge's ceiling, the protocol, seeds, package version) and `per_image.csv`.
`compare` reads several `metrics.json` of the same images and prints paired differences against the first.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mindhier.data import layout
from mindhier.errors import DataError
from mindhier.fileio import atomic_path, read_json, write_json
from mindhier.metrics.statistics import N_RESAMPLES, bootstrap_ci, paired_difference
from mindhier.metrics.suite import determinism, evaluate
from mindhier.progress import ProgressFn, report
from mindhier.provenance import provenance

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
        path = folder / layout.image_png_name(int(index))
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read reconstruction {path} ({err}); regenerate it") from err
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


def evaluate_reconstructions(
    recons_dir: str | Path,
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
) -> dict[str, Any]:
    """Evaluate a reconstruction folder; `truth_features` caches the truths' features across calls (same split)."""
    from mindhier.data.nsd import open_dataset

    recons_dir, data_dir = Path(recons_dir), Path(data_dir)
    manifest = read_json(recons_dir / RECONS_MANIFEST, "reconstruction manifest")
    subject = subject if subject is not None else manifest.get("subject")
    split = split or manifest.get("split", "test")
    if subject is None:
        raise DataError(f"{recons_dir / RECONS_MANIFEST} names no subject; pass --subject")
    with open_dataset(data_dir, subjects=[int(subject)]) as dataset:
        items = dataset.split(int(subject), split)
        indices = np.asarray(items.image_index_N)
        truths = items.images()
    recons = load_images(recons_dir, indices)
    labels = scene_labels(data_dir, indices)
    report(progress, "evaluate reconstructions", 0, 2)
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
    report(progress, "evaluate reconstructions", 1, 2)

    determinism_record = None
    repeats = manifest.get("determinism")
    if repeats:
        dirs = [recons_dir / d for d in repeats["dirs"]]
        stack = torch.stack([torch.from_numpy(load_images(d, indices)).permute(0, 3, 1, 2).float() / 255 for d in dirs])
        proxy = next((e for e in extractors or [] if e.info.kind == "proxy" and e.info.name == "lite2_late"), None)
        scores = determinism(stack, proxy)
        determinism_record = {
            "repeats": len(dirs),
            "seeds": repeats.get("seeds"),
            "feature_extractor": None if proxy is None else f"{proxy.info.name} ({proxy.info.note})",
        }
        for name, values in scores.items():
            result.per_image[f"determinism.{name}"] = values
            determinism_record[name] = bootstrap_ci(values, n_resamples, seed)
    report(progress, "evaluate reconstructions", 2, 2)

    record = {
        "recons": str(recons_dir),
        "data": str(data_dir),
        "protocol": {
            "subject": int(subject),
            "split": split,
            "n_images": len(indices),
            "bootstrap": {"resamples": n_resamples, "seed": seed, "interval": "percentile 95 %"},
            "identification": "exhaustive two-way over the full pool (chance 0.5), Pearson correlation",
            "pixel_metrics": "PixCorr and SSIM at 425 px as MindEye2",
            **manifest.get("protocol", {}),
        },
        "metrics": result.summary,
        "extractors": result.extractors,
        "judge": result.judge,
        "determinism": determinism_record,
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
        raise DataError("compare needs at least two metrics.json files")
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
    if record.get("determinism"):
        d = record["determinism"]
        lines.append(f"  determinism over {d['repeats']} seeds: pairwise SSIM {d['pairwise_ssim']['mean']:.4f}")
    return "\n".join(lines)


def _headline(name: str) -> bool:
    return name in ("pixcorr", "ssim", "judge.category_f1", "judge.colour_f1") or name.endswith(".two_way")
