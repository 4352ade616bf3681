"""`mindhier.metrics.evaluate`: every image metric of the field on one set of reconstructions.

Per image, on the full pool of N test images (MindEye2's protocol, docs/method.md §7):

* `pixcorr`, `ssim` — at 425 px, MindEye2's definitions (`metrics/image.py`);
* for each feature extractor (`metrics/extractors.py`): `<name>.two_way` — exhaustive two-way
  identification (the share of the other N − 1 truths a reconstruction's features correlate with less
  than with its own truth; chance 0.5) — and/or `<name>.corr_distance` — 1 − Pearson r between the
  reconstruction's and its truth's features. Real networks follow the paper's table; offline proxies are
  labelled `proxy` with what they are coupled to; absent networks are listed with the file to fetch;
* with a judge and scene labels: `judge.category_f1`, `judge.colour_f1`, ... — and the judge's own scores
  on the true images, reported beside them, so a reader sees the ceiling.

Each mean carries a bootstrap 95 % interval over images (`metrics/statistics.py`).

Shape letters (docs/glossary.md): N images, F features, S reconstructions under different seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mindhier.metrics.identification import correlation_matrix, two_way_identification
from mindhier.metrics.image import pixcorr, ssim, to_float_NCHW
from mindhier.metrics.statistics import N_RESAMPLES, bootstrap_ci

HIGHER_IS_BETTER = {"two_way": True, "corr_distance": False}


@dataclass
class Evaluation:
    per_image: dict[str, np.ndarray]  # metric → [N] per-image scores
    summary: dict[str, dict[str, Any]]  # metric → mean, ci95, direction, kind, ...
    extractors: list[dict[str, Any]] = field(default_factory=list)  # info of every extractor, absent ones too
    judge: dict[str, Any] | None = None  # the judge's identity and its scores on the true images
    recon_features: dict[str, torch.Tensor] = field(default_factory=dict)  # extractor → [N, F] of the reconstructions


def _features(extractor, images_N3HW: torch.Tensor, batch_size: int) -> torch.Tensor:
    parts = [extractor(images_N3HW[i : i + batch_size]) for i in range(0, len(images_N3HW), batch_size)]
    return torch.cat(parts).float().flatten(1)


def correlation_distance(pred_NF: torch.Tensor, target_NF: torch.Tensor) -> np.ndarray:
    """Per-item 1 − Pearson r between a prediction's and its own target's features."""
    return (1.0 - correlation_matrix(target_NF, pred_NF).diagonal()).numpy()


def _summarise(values: np.ndarray, higher_is_better: bool, n_resamples: int, seed: int, **extra) -> dict[str, Any]:
    return {**bootstrap_ci(values, n_resamples, seed), "higher_is_better": higher_is_better, **extra}


def evaluate(
    recons,
    truths,
    extractors: list | None = None,
    judge=None,
    labels: list[dict] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    batch_size: int = 64,
    truth_features: dict[str, torch.Tensor] | None = None,
) -> Evaluation:
    """Score reconstructions against their truths (same order; any sizes; uint8 NHWC or float NCHW in [0, 1]).

    `truth_features`, when given, is a cache of the truths' features by extractor name, filled and reused
    across calls on the same truths (several methods evaluated on one test set).
    """
    recon_N3HW, truth_N3HW = to_float_NCHW(recons), to_float_NCHW(truths)
    if len(recon_N3HW) != len(truth_N3HW) or len(recon_N3HW) < 2:
        raise ValueError(
            f"need the same number (≥ 2) of reconstructions and truths, got {len(recon_N3HW)} and {len(truth_N3HW)}"
        )
    per_image: dict[str, np.ndarray] = {
        "pixcorr": pixcorr(recon_N3HW, truth_N3HW),
        "ssim": ssim(recon_N3HW, truth_N3HW),
    }
    summary = {
        name: _summarise(per_image[name], True, n_resamples, seed, kind="pixel", protocol="425 px, MindEye2")
        for name in ("pixcorr", "ssim")
    }
    infos, recon_features = [], {}
    for extractor in extractors or []:
        info = extractor.info
        infos.append(_info_dict(info))
        if info.kind == "absent":
            summary[info.name] = {"kind": "absent", "missing": info.missing}
            continue
        f_recon = recon_features[info.name] = _features(extractor, recon_N3HW, batch_size)
        if truth_features is not None and info.name in truth_features:
            f_truth = truth_features[info.name]
        else:
            f_truth = _features(extractor, truth_N3HW, batch_size)
            if truth_features is not None:
                truth_features[info.name] = f_truth
        wanted = (
            ("two_way", "corr_distance")
            if info.metric == "both"
            else (("two_way",) if info.metric == "two_way" else ("corr_distance",))
        )
        for metric in wanted:
            scores = (
                two_way_identification(f_recon, f_truth)
                if metric == "two_way"
                else correlation_distance(f_recon, f_truth)
            )
            key = f"{info.name}.{metric}"
            per_image[key] = scores
            summary[key] = _summarise(
                scores,
                HIGHER_IS_BETTER[metric],
                n_resamples,
                seed,
                kind=info.kind,
                note=info.note,
                network=info.network,
                layer=info.layer,
                weights=info.weights,
            )
    judge_record = None
    if judge is not None and labels is not None:
        from mindhier.metrics.judge import judge_scores

        on_recons = judge_scores(judge, recon_N3HW, labels)
        on_truths = judge_scores(judge, truth_N3HW, labels)
        for name, values in on_recons.items():
            key = f"judge.{name}"
            per_image[key] = np.asarray(values, dtype=np.float64)
            summary[key] = _summarise(
                per_image[key],
                True,
                n_resamples,
                seed,
                kind="judge",
                on_true_images=float(np.mean(on_truths[name])),
            )
        judge_record = {
            "identity": getattr(judge, "describe", lambda: {})(),
            "on_true_images": {name: float(np.mean(v)) for name, v in on_truths.items()},
        }
    return Evaluation(per_image, summary, infos, judge_record, recon_features)


def _info_dict(info) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(info)
