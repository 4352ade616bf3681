"""`mindhier bench simulate`: seconds per simulator stage, peak memory, and the semantic network's cost.

The pretrained network (EfficientNet-Lite2) dominates the simulator's time, so the benchmark also
sweeps its input size on one batch to show the trade-off behind `simulator.semantic_px`.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.config import MindhierConfig, to_dict
from mindhier.progress import ProgressFn
from mindhier.provenance import machine, provenance

SWEEP_SIZES = (64, 96, 128, 160)
SWEEP_BATCH = 128


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def semantic_network_sweep(sizes=SWEEP_SIZES, batch: int = SWEEP_BATCH) -> dict[str, float]:
    """Images per second of EfficientNet-Lite2 pooled features at each input size (one warm batch each)."""
    from mindhier.backbones import efficientnet_lite

    model = efficientnet_lite.cached("efficientnet-lite2")
    images = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rates = {}
    for size in sizes:
        efficientnet_lite.pooled_features(model, images[:8], size)  # warm-up
        start = time.perf_counter()
        efficientnet_lite.pooled_features(model, images, size)
        rates[str(size)] = round(batch / (time.perf_counter() - start), 1)
    return rates


def bench_simulate(cfg: MindhierConfig, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Simulate `cfg` into a temporary folder and report where the time goes."""
    from mindhier.data.simulator import simulate

    with tempfile.TemporaryDirectory(prefix="mindhier-bench-") as tmp:
        out = Path(tmp) / "data"
        start = time.perf_counter()
        result = simulate(cfg, out, progress=progress)
        total = time.perf_counter() - start
        size_bytes = _folder_bytes(out)
    stages = {k: round(v, 3) for k, v in result.stage_seconds.items()}
    n_images = len(result.train_images) + len(result.test_images)
    return {
        "benchmark": "simulate",
        "n_images": n_images,
        "image_size": cfg.stimuli.size,
        "subjects": {
            str(s): {"n_voxels": r.model.n_voxels, "n_trials": r.design.n_trials} for s, r in result.subjects.items()
        },
        "total_seconds": round(total, 3),
        "stage_seconds": stages,
        "stage_share": {k: round(v / total, 3) for k, v in result.stage_seconds.items()},
        "images_per_second": round(n_images / total, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "output_mib": round(size_bytes / 2**20, 1),
        "semantic_network": "efficientnet-lite2",
        "semantic_px": cfg.simulator.semantic_px,
        "semantic_images_per_second_by_input_px": semantic_network_sweep(),
        "median_noise_ceiling_measured": {
            str(s): round(float(np.median(r.noise_ceiling_measured_V)), 2) for s, r in result.subjects.items()
        },
        "machine": machine(),
        "provenance": provenance(),
        "config": to_dict(cfg),
    }
