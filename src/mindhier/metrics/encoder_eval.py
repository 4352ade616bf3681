"""`mindhier eval encoder`: how well a trained encoder's levels match the teacher hierarchy on held-out data.

Per subject, on the `test` split (one item per image, repetitions averaged as MindEye2 does):

* retrieval — brain→image and image→brain top-1 among random pools of 300 items (all N when fewer),
  30 draws (MindEye's protocol), in the contrastive space: the projected terminal output ê against the
  teacher's terminal level, both flattened; chance = 1 / pool;
* per level m — exhaustive two-way identification (Pearson) and mean cosine between the level's
  readout and the teacher's level m:
  - `head`: the trained head_m(e_m), for levels the loss supervised (all for `cascaded`, the terminal
    one otherwise);
  - `probe`: a token-wise ridge probe from e_m to the teacher level, fitted on `train` (at most
    `PROBE_ROWS` token rows), ridge strength chosen on `val` — the fair readout of levels that were
    never supervised, reported for every level so modes can be compared like for like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.data.nsd import open_dataset
from mindhier.data.subject_items import subject_items
from mindhier.data.teacher_targets import teacher_targets
from mindhier.errors import ConfigError
from mindhier.metrics.identification import cosine_per_item, two_way_identification
from mindhier.metrics.probes import fit_probe
from mindhier.metrics.retrieval import MINDEYE_DRAWS, MINDEYE_POOL, retrieval_top1
from mindhier.models.brain_encoder import encode_in_batches
from mindhier.progress import ProgressFn, report
from mindhier.runs import load_encoder
from mindhier.teachers import build_teacher

PROBE_ROWS = 200_000  # token rows used to fit a probe (items × Q), to bound memory at paper scale


def _level_scores(pred_NQD: torch.Tensor, target_NQD: torch.Tensor) -> dict[str, float]:
    return {
        "two_way_identification": float(two_way_identification(pred_NQD, target_NQD).mean()),
        "cosine": float(cosine_per_item(pred_NQD, target_NQD).mean()),
    }


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def evaluate_encoder(
    run_dir: str | Path,
    data_dir: str | Path,
    subjects: tuple[int, ...] | None = None,
    split: str = "test",
    features: str | Path | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> dict[str, Any]:
    run = load_encoder(run_dir, device=device)
    cfg, model = run.cfg, run.model
    trained = run.shapes.voxels
    wanted = subjects or tuple(trained)
    missing = [s for s in wanted if s not in trained]
    if missing:
        raise ConfigError(f"the encoder in {run_dir} was not trained on subject {missing[0]}; it knows {list(trained)}")
    expected = {s: trained[s] for s in wanted}
    dataset = open_dataset(data_dir, cfg.data, subjects=list(wanted), expected_voxels=expected)
    teacher = build_teacher(cfg.teacher, device=device)
    lookup = teacher_targets(cfg.teacher, data_dir, dataset, teacher, features=features, progress=progress)
    if lookup.record()["teacher"] != run.features.get("teacher"):
        raise ConfigError(
            f"the teacher features ({lookup.record()['path'] or 'on the fly'}) come from another teacher configuration"
            f" than the run {run_dir}; rebuild the cache: mindhier features --data DATA --overwrite with the run's"
            " --preset"
        )
    supervised = set(range(cfg.encoder.depth)) if cfg.alignment.supervision == "cascaded" else {cfg.encoder.depth - 1}
    probe_items = max(2, PROBE_ROWS // run.shapes.queries)

    results: dict[str, Any] = {}
    for k, subject in enumerate(wanted):
        report(progress, "evaluate encoder", k, len(wanted))
        test = subject_items(dataset, subject, split)
        train = subject_items(dataset, subject, "train")
        val = subject_items(dataset, subject, "val")
        chosen = _subsample(len(train), probe_items, seed)
        out = {
            name: encode_in_batches(model, items.voxels_NV, subject, batch_size, device)
            for name, items in (("test", test), ("train", train.take(chosen)), ("val", val))
        }
        targets = {
            "test": lookup.get(test.images_N),
            "train": lookup.get(train.images_N[chosen]),
            "val": lookup.get(val.images_N),
        }
        retrieval = retrieval_top1(
            out["test"].terminal_BQD,
            targets["test"][-1],
            MINDEYE_POOL,
            MINDEYE_DRAWS,
            torch.Generator().manual_seed(seed),
        )
        levels = []
        for m, level in enumerate(lookup.levels):
            probe = fit_probe(
                out["train"].levels_BMQD[:, m], targets["train"][m], out["val"].levels_BMQD[:, m], targets["val"][m]
            )
            entry = {
                "level": m + 1,
                "name": level.name,
                "teacher_layer": level.layer,
                "supervised": m in supervised,
                "head": _level_scores(out["test"].heads[m], targets["test"][m]) if m in supervised else None,
                "probe": {
                    **_level_scores(probe(out["test"].levels_BMQD[:, m]), targets["test"][m]),
                    "ridge": probe.ridge,
                },
            }
            levels.append(entry)
        results[str(subject)] = {"n_items": len(test), "retrieval": retrieval, "levels": levels}
    report(progress, "evaluate encoder", len(wanted), len(wanted))
    return {
        "run": str(run_dir),
        "data": str(data_dir),
        "protocol": {
            "split": split,
            "averaging": "voxels: each image's repetitions averaged (MindEye2 duplicates missing repeats)",
            "retrieval": f"top-1 among random pools of {MINDEYE_POOL} items (all when fewer), {MINDEYE_DRAWS} "
            "draws; cosine of flattened projected terminal output vs teacher terminal level",
            "identification": "exhaustive two-way, Pearson correlation of flattened level tokens, chance 50 %",
            "probe": f"token-wise ridge fitted on train (≤ {probe_items} items), ridge chosen on val",
            "teacher": lookup.record()["teacher"],
            "supervision": cfg.alignment.supervision,
            "seed": seed,
        },
        "subjects": results,
    }


def format_encoder_eval(result: dict[str, Any]) -> str:
    """A small text table for the CLI."""
    lines = [f"encoder {result['run']} on {result['protocol']['split']} ({result['protocol']['supervision']})"]
    for subject, entry in result["subjects"].items():
        r = entry["retrieval"]
        lines.append(
            f"subject {subject}: {entry['n_items']} items; retrieval top-1 brain→image "
            f"{r['brain_to_image_top1']:.3f}, image→brain {r['image_to_brain_top1']:.3f} (chance {r['chance']:.3f})"
        )
        for level in entry["levels"]:
            head = level["head"]
            head_text = f"head id {head['two_way_identification']:.3f} cos {head['cosine']:.3f}; " if head else ""
            probe = level["probe"]
            lines.append(
                f"  level {level['level']} ({level['name']}): {head_text}"
                f"probe id {probe['two_way_identification']:.3f} cos {probe['cosine']:.3f}"
            )
    return "\n".join(lines)
