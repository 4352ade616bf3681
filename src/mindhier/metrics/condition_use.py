"""How much a scale-wise generator uses its condition, scale by scale (`mindhier eval condition`).

The true images' own token maps are scored teacher-forced — the generator sees the true f̂ of every earlier scale,
as in training — under three conditions of the same images:

    true       each image's own condition (brain levels, or the teacher's features of the image)
    null       the unconditional stream (what classifier-free guidance subtracts)
    shuffled   another image's condition (a seeded derangement over the whole set: no image keeps its own)

Per scale k: the mean negative log-likelihood of the true tokens (nats per token) and the top-1 token accuracy,
per condition; and the **condition use** = NLL(null) − NLL(true) and NLL(shuffled) − NLL(true), with bootstrap 95 %
intervals over images. A positive use means the scale's tokens are predicted better from the image's own condition:
the generator listens there. Use over null counts all information in the condition; use over shuffled counts only
what is specific to the image (a condition that only says "a scene like these" helps over null, not over shuffled).

No image is generated and nothing is selected: this scores the decoder's likelihood of the truth.

Shape letters (docs/glossary.md): B images, K scales, L all tokens, Z codebook size.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.metrics.statistics import N_RESAMPLES, bootstrap_ci
from mindhier.models.brain_condition import Condition
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.tokenizer import Tokenizer

CONDITIONS = ("true", "null", "shuffled")


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of n ≥ 2 items that moves every item (a random cyclic shift of a random order)."""
    if n < 2:
        raise ValueError("a shuffled condition needs at least 2 images")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    shift = int(torch.randint(1, n, (1,), generator=generator))
    result = torch.empty(n, dtype=torch.long)
    result[order] = order.roll(shift)
    return result


def take(condition: Condition, rows_B: torch.Tensor) -> Condition:
    """The condition of some rows; a condition of one row (the null stream) is expanded to them."""
    if condition.levels_BMQD.shape[0] == 1:
        return Condition(*(t.expand(len(rows_B), *t.shape[1:]) for t in condition))
    return Condition(*(t[rows_B] for t in condition))


@torch.no_grad()
def image_tokens(tokenizer: Tokenizer, images_NHWC: np.ndarray, batch_size: int = 64) -> list[torch.Tensor]:
    """The tokenizer's token maps [N, s_k²] of uint8 images (resized to its input size)."""
    device = next(tokenizer.parameters()).device
    per_scale: list[list[torch.Tensor]] = [[] for _ in tokenizer.cfg.scales]
    for start in range(0, len(images_NHWC), batch_size):
        images = resize_uint8(images_NHWC[start : start + batch_size], tokenizer.cfg.image_px)
        for k, tokens in enumerate(tokenizer.encode(to_model_input(images, device))):
            per_scale[k].append(tokens)
    return [torch.cat(parts) for parts in per_scale]


@torch.no_grad()
def per_scale_scores(
    model: ScaleAR, tokenizer: Tokenizer, condition: Condition, tokens: list[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced NLL (nats per token) and top-1 accuracy of the given tokens, per image and scale: two
    arrays [B, K]."""
    next_inputs = tokenizer.quantize.teacher_forcing_inputs(tokens)
    logits_BLZ = model(next_inputs, condition.levels_BMQD, condition.pooled_BP).float()
    target_BL = torch.cat(tokens, dim=1)
    nll_BL = F.cross_entropy(logits_BLZ.transpose(1, 2), target_BL, reduction="none")
    hit_BL = (logits_BLZ.argmax(-1) == target_BL).float()
    spans = list(itertools.pairwise(np.cumsum([0] + [t.shape[1] for t in tokens])))  # each scale's tokens
    nll = torch.stack([nll_BL[:, a:b].mean(1) for a, b in spans], dim=1)
    hit = torch.stack([hit_BL[:, a:b].mean(1) for a, b in spans], dim=1)
    return nll.cpu().numpy(), hit.cpu().numpy()


@torch.no_grad()
def condition_use(
    model: ScaleAR,
    tokenizer: Tokenizer,
    condition: Condition,
    null: Condition,
    images_NHWC: np.ndarray,
    batch_size: int = 64,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> dict[str, Any]:
    """Condition use per scale of `model` on these images (`condition`: their own, row i for image i; `null`: one
    row). Returns the per-scale table (means, and the two uses with bootstrap CIs) and per-image arrays."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tokens = [t.to(device) for t in image_tokens(tokenizer, images_NHWC, batch_size)]
    n = len(images_NHWC)
    moved = derangement(n, seed)
    condition = Condition(*(t.to(device) for t in condition))
    null = Condition(*(t.to(device) for t in null))
    scores: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {c: ([], []) for c in CONDITIONS}
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n))
        batch_tokens = [t[rows] for t in tokens]
        variants = {"true": take(condition, rows), "null": take(null, rows), "shuffled": take(condition, moved[rows])}
        for name, variant in variants.items():
            nll, hit = per_scale_scores(model, tokenizer, variant, batch_tokens)
            scores[name][0].append(nll)
            scores[name][1].append(hit)
    model.train(was_training)
    nll_NK = {c: np.concatenate(scores[c][0]) for c in CONDITIONS}
    accuracy_NK = {c: np.concatenate(scores[c][1]) for c in CONDITIONS}
    scales = []
    for k, side in enumerate(tokenizer.cfg.scales):
        use_null = nll_NK["null"][:, k] - nll_NK["true"][:, k]
        use_shuffled = nll_NK["shuffled"][:, k] - nll_NK["true"][:, k]
        scales.append(
            {
                "scale": k + 1,
                "side": int(side),
                "nll": {c: round(float(nll_NK[c][:, k].mean()), 4) for c in CONDITIONS},
                "accuracy": {c: round(float(accuracy_NK[c][:, k].mean()), 4) for c in CONDITIONS},
                "use_over_null": bootstrap_ci(use_null, n_resamples, seed),
                "use_over_shuffled": bootstrap_ci(use_shuffled, n_resamples, seed),
            }
        )
    return {
        "n_images": n,
        "protocol": "teacher-forced NLL (nats per token) and top-1 accuracy of the true images' tokens per scale, "
        "under the true, the null (unconditional stream) and a shuffled condition (seeded derangement); use = "
        "NLL(other) − NLL(true), bootstrap 95 % CI over images",
        "shuffle_seed": seed,
        "scales": scales,
        "per_image": {
            **{f"nll.{c}": np.round(nll_NK[c], 5).tolist() for c in CONDITIONS},
            **{f"accuracy.{c}": np.round(accuracy_NK[c], 5).tolist() for c in CONDITIONS},
        },
    }


def format_condition_use(name: str, record: dict[str, Any]) -> str:
    """A printable table: one line per scale."""
    lines = [
        f"{name}: condition use per scale ({record['n_images']} images; NLL in nats/token, accuracy top-1)",
        "scale side   NLL true  null  shuffled   acc true  null  shuffled   use vs null [CI]        vs shuffled [CI]",
    ]
    for row in record["scales"]:
        nll, acc, un, us = row["nll"], row["accuracy"], row["use_over_null"], row["use_over_shuffled"]
        lines.append(
            f"{row['scale']:>5} {row['side']:>4}   {nll['true']:8.3f} {nll['null']:5.3f} {nll['shuffled']:9.3f}"
            f"   {acc['true']:8.3f} {acc['null']:5.3f} {acc['shuffled']:9.3f}"
            f"   {un['mean']:+.3f} [{un['ci95'][0]:+.3f}, {un['ci95'][1]:+.3f}]"
            f"   {us['mean']:+.3f} [{us['ci95'][0]:+.3f}, {us['ci95'][1]:+.3f}]"
        )
    return "\n".join(lines)
