"""The hierarchical fMRI encoder (HFE) of MindHier (docs/method.md §3.1).

    voxels_BV ─ per-subject Linear(V_s → hidden_dims[0]) ─ GELU ─ shared MLP ─ Linear(→ X·D) ─ + position embedding
              → memory [B, X, D]
    Q learned queries ─ M cascaded post-norm decoder layers (self-attn, cross-attn to memory, FFN)
              → levels e_1 … e_M, each [B, Q, D] (shallow → deep; e_M is the terminal level)
    heads_m:  Linear(D → D_m) per level, token-wise (identity when D_m = D, as in the paper)
    terminal: ê = P(e_M), Linear(D → D_M)                       — contrastive space and pooled condition
    text:     an optional parallel decoder over its own queries → Linear(D → D_text)

The generator cross-attends to the head outputs head_m(e_m) — the encoder's prediction of teacher level m, in the
teacher's space — not to the raw levels e_m (`models/brain_condition.py`, docs/method.md §5.2); with the paper's
CLIP targets the heads are identities, so the two coincide. Multi-subject: one input layer per subject (each with
its own voxel count), everything after it shared.

Shape letters (docs/glossary.md): B batch, V voxels, X latent memory tokens, Q queries, D width, M levels,
D_m the teacher's dim at level m, U text tokens.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from mindhier.config import BrainEncoderConfig
from mindhier.layers.decoder_block import DecoderBlock
from mindhier.records import dimension


@dataclass(frozen=True)
class EncoderShapes:
    """Sizes the encoder takes from the data and the teacher (not from the config)."""

    subject_voxels: tuple[tuple[int, int], ...]  # (subject, voxel count) pairs
    level_dims: tuple[int, ...]  # D_m of every teacher level, shallow → deep
    queries: int  # Q: tokens per teacher level
    text_tokens: int = 0  # tokens of the teacher's text features (0 = no text side)
    text_dim: int = 0

    @property
    def voxels(self) -> dict[int, int]:
        return dict(self.subject_voxels)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> EncoderShapes:
        return cls(
            subject_voxels=tuple(
                (dimension(s, "a subject id"), dimension(v, f"subject {s}'s voxel count"))
                for s, v in data["subject_voxels"]
            ),
            level_dims=tuple(dimension(d, "a level width") for d in data["level_dims"]),
            queries=dimension(data["queries"], "queries"),
            text_tokens=dimension(data.get("text_tokens", 0), "text_tokens", least=0),
            text_dim=dimension(data.get("text_dim", 0), "text_dim", least=0),
        )

    def describe(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass
class EncoderOutput:
    levels_BMQD: torch.Tensor  # raw e_1..e_M (in the encoder's width D; probes and diagnostics read them)
    heads: list[torch.Tensor]  # head_m(e_m) [B, Q, D_m]: aligned to teacher level m; the generator's context
    terminal_BQD: torch.Tensor  # ê = P(e_M): [B, Q, D_M]
    text_BUD: torch.Tensor | None  # text branch output [B, U, D_text], or None

    @property
    def pooled_BD(self) -> torch.Tensor:
        """Mean of ê over tokens: the generator's start token / AdaLN condition (docs/method.md §5.2)."""
        return self.terminal_BQD.mean(dim=1)


def subject_key(subject: int) -> str:
    return f"subj{subject:02d}"


class BrainEncoder(nn.Module):
    def __init__(self, cfg: BrainEncoderConfig, shapes: EncoderShapes):
        super().__init__()
        if len(shapes.level_dims) != cfg.depth:
            raise ValueError(f"{len(shapes.level_dims)} teacher levels for an encoder of depth {cfg.depth}")
        self.cfg, self.shapes = cfg, shapes
        hidden = cfg.hidden_dims
        self.input_layers = nn.ModuleDict({subject_key(s): nn.Linear(v, hidden[0]) for s, v in shapes.subject_voxels})
        trunk: list[nn.Module] = [nn.GELU()]
        for a, b in itertools.pairwise(hidden):
            trunk += [nn.Linear(a, b), nn.GELU()]
        trunk.append(nn.Linear(hidden[-1], cfg.latent_tokens * cfg.width))
        self.trunk = nn.Sequential(*trunk)
        self.latent_pos = nn.Parameter(torch.empty(cfg.latent_tokens, cfg.width))
        self.queries = nn.Parameter(torch.empty(shapes.queries, cfg.width))
        self.blocks = nn.ModuleList(
            DecoderBlock(cfg.width, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.depth)
        )
        self.heads = nn.ModuleList(
            nn.Identity() if dim == cfg.width else nn.Linear(cfg.width, dim) for dim in shapes.level_dims
        )
        self.terminal_proj = nn.Linear(cfg.width, shapes.level_dims[-1])
        # the heads the training loss supervises (None: all); in training mode the others run without autograd, so
        # DDP does not wait for gradients their parameters never get (alignment.supervision=terminal_only|single)
        self.trained_heads: tuple[int, ...] | None = None
        self.has_text = cfg.text_queries > 0 and shapes.text_tokens > 0
        if self.has_text:
            self.text_queries = nn.Parameter(torch.empty(cfg.text_queries, cfg.width))
            self.text_blocks = nn.ModuleList(
                DecoderBlock(cfg.width, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.depth)
            )
            self.text_proj = nn.Linear(cfg.width, shapes.text_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Linear weights: truncated normal (sd 0.02), biases 0; LayerNorms 1/0; position embedding and
        queries N(0, 1), as the authors initialise them."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.latent_pos)
        nn.init.normal_(self.queries)
        if self.has_text:
            nn.init.normal_(self.text_queries)

    @property
    def subjects(self) -> tuple[int, ...]:
        return tuple(s for s, _ in self.shapes.subject_voxels)

    def memory(self, voxels: torch.Tensor | Sequence[tuple[int, torch.Tensor]], subject: int | None = None):
        """Latent tokens [B, X, D] from one subject's voxels, or from (subject, voxels) groups in order."""
        groups = [(subject, voxels)] if isinstance(voxels, torch.Tensor) else list(voxels)
        hidden = []
        for s, voxels_BV in groups:
            key = subject_key(int(s)) if s is not None else None
            if key not in self.input_layers:
                raise KeyError(f"encoder has no input layer for subject {s}; it was trained on {self.subjects}")
            layer = self.input_layers[key]
            if voxels_BV.shape[-1] != layer.in_features:
                raise ValueError(
                    f"subject {s}: got {voxels_BV.shape[-1]} voxels, the encoder expects {layer.in_features}"
                )
            hidden.append(layer(voxels_BV))
        latent = self.trunk(torch.cat(hidden))
        return rearrange(latent, "b (x d) -> b x d", x=self.cfg.latent_tokens) + self.latent_pos

    def _head(self, m: int, level_BQD: torch.Tensor) -> torch.Tensor:
        if self.training and self.trained_heads is not None and m not in self.trained_heads:
            with torch.no_grad():
                return self.heads[m](level_BQD)
        return self.heads[m](level_BQD)

    def forward(
        self, voxels: torch.Tensor | Sequence[tuple[int, torch.Tensor]], subject: int | None = None
    ) -> EncoderOutput:
        memory_BXD = self.memory(voxels, subject)
        batch = memory_BXD.shape[0]
        x = self.queries.expand(batch, -1, -1)
        levels = []
        for block in self.blocks:
            x = block(x, memory_BXD)
            levels.append(x)
        heads = [self._head(m, level) for m, level in enumerate(levels)]
        text = None
        if self.has_text:
            t = self.text_queries.expand(batch, -1, -1)
            for block in self.text_blocks:
                t = block(t, memory_BXD)
            text = self.text_proj(t)
        return EncoderOutput(torch.stack(levels, dim=1), heads, self.terminal_proj(levels[-1]), text)


@torch.no_grad()
def encode_in_batches(
    encoder: BrainEncoder, voxels_NV: torch.Tensor, subject: int, batch_size: int = 256, device="cpu"
) -> EncoderOutput:
    """Eval-mode outputs for many voxel vectors (computed on `device`), concatenated on the CPU."""
    was_training = encoder.training
    encoder.eval()
    parts = [encoder(voxels_NV[i : i + batch_size].to(device), subject) for i in range(0, len(voxels_NV), batch_size)]
    encoder.train(was_training)
    text = [p.text_BUD for p in parts]
    return EncoderOutput(
        levels_BMQD=torch.cat([p.levels_BMQD.float().cpu() for p in parts]),
        heads=[torch.cat([p.heads[m].float().cpu() for p in parts]) for m in range(len(parts[0].heads))],
        terminal_BQD=torch.cat([p.terminal_BQD.float().cpu() for p in parts]),
        text_BUD=None if text[0] is None else torch.cat([t.float().cpu() for t in text]),
    )
