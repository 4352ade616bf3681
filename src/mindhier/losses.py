"""Training objectives.

Stage 1 — hierarchy-to-hierarchy alignment (docs/method.md §3.3–4). With n(x) the L2 normalisation of a
sample's flattened token sequence:

    align(a, b)   = ‖n(a) − n(b)‖²  per sample, averaged over the batch. This is the paper's
                    s · MSE(n(a), n(b)) with s = the number of elements (2·10⁵ ≈ 257·768 for CLIP-L),
                    so every level weighs the same whatever its size.
    SoftCLIP_τ    = MindEye's soft contrastive loss: logits n(a)·n(b)ᵀ/τ against soft labels
                    softmax(n(b)·n(b)ᵀ/τ), cross-entropy in both directions, averaged. Under torchrun
                    the rows of every process are gathered (with gradients) first, so the negatives are
                    the whole global batch and the objective does not depend on the number of processes.

    cascaded       Σ_m align(head_m(e_m), v_m) + align(ê, v_M) + SoftCLIP(ê, v_M)        (the paper)
    terminal_only  align(head_M(e_M), v_M) + align(ê, v_M) + SoftCLIP(ê, v_M)
    single         the terminal_only loss; the encoder then exports one fixed terminal feature

plus, when the teacher has a text side, align(t̂, t) + SoftCLIP(t̂, t) weighted by `text_weight`
(the loss works without it). `terminal_only` and `single` differ only downstream: `terminal_only`
hands the generator all M (unsupervised) levels, `single` the terminal level alone (the paper's
"single feature" ablation, Table 2; docs/method.md §4).

Shape letters (docs/glossary.md): B batch, Q tokens, U text tokens, D width, F flattened features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mindhier.config import AlignmentConfig
from mindhier.distributed import gather_with_grad
from mindhier.models.brain_encoder import EncoderOutput


def flat_normalized(x_BQD: torch.Tensor) -> torch.Tensor:
    """[B, ...] → unit-norm [B, F] (float32 for a stable norm under autocast)."""
    return F.normalize(x_BQD.float().flatten(1), dim=-1)


def alignment_loss(pred_BQD: torch.Tensor, target_BQD: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖n(pred) − n(target)‖²."""
    return (flat_normalized(pred_BQD) - flat_normalized(target_BQD)).square().sum(-1).mean()


def soft_clip_loss(pred_BF: torch.Tensor, target_BF: torch.Tensor, temperature: float) -> torch.Tensor:
    """SoftCLIP on unit vectors: targets are the softmax of target–target similarities. The rows of all
    processes take part (a no-op in one process)."""
    pred_BF, target_BF = gather_with_grad(pred_BF), gather_with_grad(target_BF)
    logits = pred_BF @ target_BF.T / temperature
    soft_labels = (target_BF @ target_BF.T / temperature).softmax(dim=-1)
    forward = torch.sum(-soft_labels * logits.log_softmax(dim=-1), dim=-1).mean()
    backward = torch.sum(-soft_labels * logits.T.log_softmax(dim=-1), dim=-1).mean()
    return (forward + backward) / 2


def supervised_levels(supervision: str, depth: int) -> tuple[int, ...]:
    """The 0-based levels whose heads the Stage-1 loss aligns: every level when cascaded, else the terminal one."""
    return tuple(range(depth)) if supervision == "cascaded" else (depth - 1,)


def stage1_loss(
    out: EncoderOutput,
    targets: list[torch.Tensor],
    cfg: AlignmentConfig,
    text_target_BUD: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The total loss and its named terms (floats, for logging)."""
    terms: dict[str, torch.Tensor] = {}
    for m in supervised_levels(cfg.supervision, len(targets)):
        terms[f"align_level{m + 1}"] = cfg.mse_weight * alignment_loss(out.heads[m], targets[m])
    terms["align_terminal"] = cfg.mse_weight * alignment_loss(out.terminal_BQD, targets[-1])
    terms["softclip"] = cfg.softclip_weight * soft_clip_loss(
        flat_normalized(out.terminal_BQD), flat_normalized(targets[-1]), cfg.temperature
    )
    if out.text_BUD is not None and text_target_BUD is not None:
        terms["align_text"] = cfg.text_weight * cfg.mse_weight * alignment_loss(out.text_BUD, text_target_BUD)
        terms["softclip_text"] = (
            cfg.text_weight
            * cfg.softclip_weight
            * soft_clip_loss(flat_normalized(out.text_BUD), flat_normalized(text_target_BUD), cfg.temperature)
        )
    total = torch.stack(list(terms.values())).sum()
    return total, {name: float(value.detach()) for name, value in terms.items()}
