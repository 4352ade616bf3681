"""PNG figures of the report: image grids (PIL) and training curves (matplotlib, headless).

Shape letters (docs/glossary.md): N images, H/W pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mindhier.data import layout
from mindhier.data.image_decode import read_rgb
from mindhier.fileio import atomic_path

ZOOM = 3  # nearest-neighbour upscaling of small images, so 32-px reconstructions are visible


def _save(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _load(path: Path, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(read_rgb(path)).resize((size, size), Image.Resampling.BILINEAR))


def comparison_grid(
    truths_NHW3: np.ndarray, columns: dict[str, Path], indices: np.ndarray, path: Path, per_row: int = 10
) -> None:
    """Blocks of (truth over each method's reconstruction) for every test image, `per_row` images a row."""
    size = max(32, min(96, truths_NHW3.shape[1]))
    blocks = []
    for k, index in enumerate(indices):
        cells = [np.asarray(Image.fromarray(truths_NHW3[k]).resize((size, size), Image.Resampling.BILINEAR))]
        cells += [_load(folder / layout.image_png_name(int(index)), size) for folder in columns.values()]
        block = np.concatenate(cells, axis=0)
        blocks.append(np.pad(block, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    while len(blocks) % per_row:
        blocks.append(np.full_like(blocks[0], 255))
    rows = [np.concatenate(blocks[i : i + per_row], axis=1) for i in range(0, len(blocks), per_row)]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    _save(grid.resize((grid.width * ZOOM // 2, grid.height * ZOOM // 2), Image.Resampling.NEAREST), path)


def strips_figure(strips_dir: Path, indices: np.ndarray, path: Path, limit: int = 12) -> None:
    """The image after every scale (left to right, coarse to fine) for the first `limit` test images."""
    rows = []
    for index in indices[:limit]:
        file = strips_dir / layout.image_png_name(int(index))
        if file.is_file():
            rows.append(read_rgb(file))
    if not rows:
        return
    grid = Image.fromarray(np.concatenate([np.pad(r, ((1, 1), (0, 0), (0, 0)), constant_values=255) for r in rows]))
    _save(grid.resize((grid.width * ZOOM, grid.height * ZOOM), Image.Resampling.NEAREST), path)


def training_curves(logs: dict[str, Path], path: Path) -> None:
    """Loss (and val score where logged) of every stage, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {name: log for name, log in logs.items() if log.is_file()}
    if not present:
        return
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.6), squeeze=False)
    for ax, (name, log) in zip(axes[0], present.items(), strict=True):
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        steps = [r["step"] for r in records]
        ax.plot(steps, [r["loss"] for r in records], lw=1, label="train loss")
        val_key = next((k for k in ("val_loss", "val_mse", "val_retrieval_top1") if any(k in r for r in records)), None)
        if val_key:
            val = [(r["step"], r[val_key]) for r in records if val_key in r]
            twin = ax.twinx()
            twin.plot(*zip(*val, strict=True), "o-", color="tab:orange", ms=3, lw=1)
            twin.set_ylabel(val_key, fontsize=7, color="tab:orange")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def per_scale_plot(records: dict[str, dict], path: Path) -> None:
    """Quality after every scale, one panel per metric, one line per row (method, oracle, control, ceiling)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {name: r["per_scale"] for name, r in records.items() if r.get("per_scale")}
    if not rows:
        return
    metrics = sorted({m for r in rows.values() for m in r["means"]})
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 2.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for name, record in rows.items():
            values = record["means"].get(metric)
            if values:
                scales = list(range(1, len(values) + 1))
                ax.plot(scales, [np.nan if v is None else v for v in values], "o-", ms=3, lw=1, label=name)
        first = next(iter(rows.values()))
        ax.set_xticks(range(1, len(first["resolution_px"]) + 1))
        ax.set_xticklabels([f"{k + 1}\n{px}px" for k, px in enumerate(first["resolution_px"])], fontsize=6)
        ax.set_title(metric, fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def consistency_histograms(records: dict[str, dict], path: Path) -> None:
    """Distribution of the pairwise SSIM of repeated samples of the same input, one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {name: r["consistency"] for name, r in records.items() if r.get("consistency")}
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    for name, record in rows.items():
        hist = record["pairwise_ssim_histogram"]
        counts = np.asarray(hist["counts"], dtype=float)
        centres = (np.asarray(hist["edges"][:-1]) + np.asarray(hist["edges"][1:])) / 2
        ax.plot(centres, counts / max(counts.sum(), 1), "o-", ms=3, lw=1, label=name)
    ax.set_xlabel("pairwise SSIM of samples of the same input", fontsize=7)
    ax.set_ylabel("share of pairs", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
