"""The scale-wise autoregressive generator with scale-aware neural guidance (MindHier Stage 2, docs/method.md §5).

    c      = fmri_pooler(p)                      p: the encoder's pooled terminal feature (mean of ê)
    x_1    = c + pos_start + lvl_embed[1]        the start token: "seeding the forest" with e_M
    x_k    = word_embed(f̂_{<k} at s_k) + lvl_embed[k]        teacher forcing / the sampler's next input
    blocks = Switti AdaLN blocks (condition c): self-attention (within a scale, or block-causal), RoPE,
             cross-attention to the brain levels head_m(e_m) routed per scale (`models/routing.py`; with
             generator.context_positions=rope the context tokens carry their grid place), SwiGLU; with
             generator.context_maps=add the routed levels' grids, resampled to the scale, are added to x_k first
    logits = head(LN(x)·(1 + scale) + shift),    (scale, shift) = head_nm.ada_lin(c)

`forward` is the teacher-forced pass over all L tokens (training); `prepare` + `step` run one scale at a
time for the sampler, reusing the per-sample work (AdaLN modulations, context keys/values) across scales.
Both route with the same function of the scale index (`models/routing.py`): the forward pass as a mask, the
step as the slice of context tokens the mask allows (every routing allows one contiguous run of levels), so
a step attends to the routed tokens only; the step rotates with real RoPE tables (what a compiler fuses).
A step may run its blocks on the pivotal tokens only (`models/token_pruning.py`). Names follow Switti's
checkpoints; the modules MindHier adds are `fmri_pooler`, every block's `cross_attn.to_kv` and
`attention_y_norm` (other context width), see `SWITTI_NEW_MODULES`.

Shape letters (docs/glossary.md): B batch, L all tokens, l tokens of one scale, D width, Z codebook size,
C latent channels, M levels, Q tokens per level, Y context width, P pooled width, X = M·Q context tokens.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from mindhier.config import GeneratorConfig, TokenizerConfig
from mindhier.errors import ConfigError
from mindhier.layers.condition_maps import ConditionMaps
from mindhier.layers.rope import context_frequencies, rotation_tables, sequence_frequencies
from mindhier.layers.switti_block import AdaLNSelfCrossBlock
from mindhier.models.routing import levels_for_scale, routing_weights, sequence_cross_mask, sequence_self_mask
from mindhier.models.token_pruning import gather_rotations, gather_tokens, pivotal_tokens, restore_tokens
from mindhier.records import dimension

SWITTI_NEW_MODULES = ("fmri_pooler.", "cross_attn.to_kv.", "attention_y_norm.", "level_in.", "condition_maps.")


LIST_FIELDS = ("scales", "level_dims")


@dataclass(frozen=True)
class GeneratorShapes:
    """Sizes taken from the tokenizer and the encoder (not from the generator config)."""

    vocab: int  # Z
    latent_channels: int  # C, the tokenizer's code dimension
    scales: tuple[int, ...]  # token-map sides, coarse to fine
    n_levels: int  # M
    level_tokens: int  # Q
    context_width: int  # Y: width of the (zero-padded) condition levels, the widest level's
    pooled_width: int  # P: width of the pooled terminal feature
    level_dims: tuple[int, ...] = ()  # D_m: real channels of each level (empty: all Y)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GeneratorShapes:
        if "level_dims" not in data:
            raise ConfigError(
                "this generator was trained by mindhier 0.1 on the encoder's raw levels; generators now read the "
                "levels in the teacher's space — retrain it with this version"
            )
        sizes = {name: dimension(data[name], name) for name in cls.__dataclass_fields__ if name not in LIST_FIELDS}
        lists = {name: tuple(dimension(v, f"an entry of {name}") for v in data[name]) for name in LIST_FIELDS}
        return cls(**sizes, **lists)

    @classmethod
    def for_levels(cls, tokenizer: TokenizerConfig, level_dims: Sequence[int], level_tokens: int) -> GeneratorShapes:
        """The shapes of a generator over this tokenizer, conditioned on levels of these widths (teacher space;
        the pooled vector has the terminal level's width)."""
        return cls(
            vocab=tokenizer.vocab,
            latent_channels=tokenizer.latent_channels,
            scales=tuple(tokenizer.scales),
            n_levels=len(level_dims),
            level_tokens=level_tokens,
            context_width=max(level_dims),
            pooled_width=level_dims[-1],
            level_dims=tuple(level_dims),
        )

    @property
    def adapted(self) -> bool:
        """Whether the levels differ in width, so each level enters through its own linear adapter."""
        return any(d != self.context_width for d in self.level_dims)

    @property
    def n_tokens(self) -> int:
        return sum(s * s for s in self.scales)


@dataclass
class StepState:
    """Per-sample work reused by every scale while sampling."""

    cond_BD: torch.Tensor
    modulations: list[torch.Tensor]  # per block [B, 1, 6, D]
    context_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block keys/values of the context
    head_modulation: tuple[torch.Tensor, torch.Tensor]  # (scale, shift) [B, 1, D]
    past_kv: list[tuple[torch.Tensor, torch.Tensor] | None]  # block-causal: earlier scales' keys/values
    hidden_BlD: torch.Tensor | None = None  # the last scale's final hidden states (token pruning restores from them)
    maps_BLD: torch.Tensor | None = None  # condition maps of every scale (generator.context_maps=add), else None

    def keep(self, batch: int) -> StepState:
        """The first `batch` rows (the conditional stream, when guidance switches off), as views."""
        return StepState(
            self.cond_BD[:batch],
            [m[:batch] for m in self.modulations],
            [(k[:batch], v[:batch]) for k, v in self.context_kv],
            tuple(t[:batch] for t in self.head_modulation),
            [None if kv is None else (kv[0][:batch], kv[1][:batch]) for kv in self.past_kv],
            None if self.hidden_BlD is None else self.hidden_BlD[:batch],
            None if self.maps_BLD is None else self.maps_BLD[:batch],
        )


class ScaleAR(nn.Module):
    def __init__(self, cfg: GeneratorConfig, shapes: GeneratorShapes):
        super().__init__()
        self.cfg, self.shapes = cfg, shapes
        width, scales = cfg.width, shapes.scales
        self.first_l = scales[0] ** 2
        self.word_embed = nn.Linear(shapes.latent_channels, width)
        self.fmri_pooler = nn.Linear(shapes.pooled_width, width)
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, width))
        self.lvl_embed = nn.Embedding(len(scales), width)
        if cfg.positions == "learned":  # VAR's parameter name: a checkpoint key, so it keeps VAR's spelling
            self.pos_1LC = nn.Parameter(torch.empty(1, shapes.n_tokens, width))
        # levels of different widths enter through one linear adapter each (not in Switti: its context is one width)
        self.level_in = nn.ModuleList(nn.Linear(d, width) for d in shapes.level_dims) if shapes.adapted else None
        context_width = width if shapes.adapted else shapes.context_width
        self.blocks = nn.ModuleList(
            AdaLNSelfCrossBlock(
                width,
                cfg.heads,
                context_width,
                width,
                int(width * cfg.ffn_mult),
                cfg.norm_eps,
                context_positions=cfg.context_positions == "rope",
            )
            for _ in range(cfg.depth)
        )
        self.head_nm = _AdaLNBeforeHead(width, cfg.norm_eps)
        self.head = nn.Linear(width, shapes.vocab)
        if cfg.context_maps == "add":
            try:
                self.condition_maps = ConditionMaps(
                    shapes.level_dims or (shapes.context_width,) * shapes.n_levels,
                    shapes.level_tokens,
                    width,
                    scales,
                    routing_weights(cfg.routing, scales, shapes.n_levels),
                )
            except ValueError as err:
                raise ConfigError(f"generator.context_maps=add: {err}; use context_maps=none") from err
        else:
            self.condition_maps = None

        # derived tensors: not part of any checkpoint
        scale_of = torch.cat([torch.full((s * s,), k) for k, s in enumerate(scales)])
        self.register_buffer("scale_of_L", scale_of, persistent=False)
        self.register_buffer("self_mask_LL", sequence_self_mask(scales, cfg.block_causal), persistent=False)
        self.routing = cfg.routing
        self.register_buffer(
            "cross_mask_LX",
            sequence_cross_mask(cfg.routing, scales, shapes.n_levels, shapes.level_tokens),
            persistent=False,
        )
        if cfg.positions == "rope":
            freqs = sequence_frequencies(scales, width // cfg.heads, cfg.rope_theta, cfg.rope_size)
            self.register_buffer("freqs_Le", freqs, persistent=False)
            cos_LE, sin_LE = rotation_tables(freqs)
            self.register_buffer("rope_cos_LE", cos_LE, persistent=False)
            self.register_buffer("rope_sin_LE", sin_LE, persistent=False)
        else:
            self.freqs_Le = self.rope_cos_LE = self.rope_sin_LE = None
        if cfg.context_positions == "rope":
            try:
                context_freqs = context_frequencies(
                    shapes.n_levels, shapes.level_tokens, width // cfg.heads, cfg.rope_theta, cfg.rope_size
                )
            except ValueError as err:
                raise ConfigError(f"generator.context_positions=rope: {err}; use context_positions=none") from err
            self.register_buffer("context_freqs_Xe", context_freqs, persistent=False)
            cos_XE, sin_XE = rotation_tables(context_freqs)
            self.register_buffer("context_cos_XE", cos_XE, persistent=False)
            self.register_buffer("context_sin_XE", sin_XE, persistent=False)
        else:
            self.context_freqs_Xe = self.context_cos_XE = self.context_sin_XE = None
        self.context_spans = self.routed_spans(cfg.routing)
        self.offsets = [0]
        for s in scales:
            self.offsets.append(self.offsets[-1] + s * s)
        self.init_weights()

    def set_routing(self, routing: str) -> None:
        """Route the scales to other levels (the mask is no parameter: a prior trained under several routings
        draws one per step)."""
        shapes = self.shapes
        mask = sequence_cross_mask(routing, shapes.scales, shapes.n_levels, shapes.level_tokens)
        self.cross_mask_LX.copy_(mask.to(self.cross_mask_LX.device))
        self.routing = routing
        self.context_spans = self.routed_spans(routing)
        if self.condition_maps is not None:
            self.condition_maps.set_weights(routing_weights(routing, shapes.scales, shapes.n_levels))

    def routed_spans(self, routing: str) -> list[slice]:
        """Per scale, the context tokens its routing allows, as one slice (the levels are contiguous)."""
        shapes, spans = self.shapes, []
        for k in range(len(shapes.scales)):
            levels = levels_for_scale(routing, k + 1, len(shapes.scales), shapes.n_levels)
            if list(levels) != list(range(levels[0], levels[-1] + 1)):
                raise ConfigError(
                    f"routing {routing!r} sends scale {k + 1} to non-contiguous levels {levels};"
                    " choose a routing that sends each scale to neighbouring levels"
                )
            spans.append(slice((levels[0] - 1) * shapes.level_tokens, levels[-1] * shapes.level_tokens))
        return spans

    def init_weights(self, adaln: float = 0.5, adaln_gamma: float = 1e-5, head: float = 0.02) -> None:
        """Switti's initialisation: every Linear and embedding truncated-normal with sd √(1/(3D)), biases 0;
        the head ×0.02; AdaLN weights ×0.5 with their γ rows ×1e-5 (blocks start near the identity); the
        attention output projections ÷ √(2·depth)."""
        std = math.sqrt(1 / self.cfg.width / 3)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=std)
        nn.init.trunc_normal_(self.pos_start, std=std)
        if self.cfg.positions == "learned":
            nn.init.trunc_normal_(self.pos_1LC, std=std)
        with torch.no_grad():
            self.head.weight.mul_(head)
            self.head_nm.ada_lin[-1].weight.mul_(adaln)
            width = self.cfg.width
            for block in self.blocks:
                block.attn.proj.weight.div_(math.sqrt(2 * self.cfg.depth))
                block.cross_attn.proj.weight.div_(math.sqrt(2 * self.cfg.depth))
                block.ada_lin[-1].weight[2 * width :].mul_(adaln)
                block.ada_lin[-1].weight[: 2 * width].mul_(adaln_gamma)

    # ------------------------------------------------------------------------------------ helpers

    def context(self, levels_BMQY: torch.Tensor) -> torch.Tensor:
        """The condition levels concatenated along tokens, [B, M·Q, Y] (each through its adapter when widths differ)."""
        if self.level_in is None:
            return rearrange(levels_BMQY, "b m q y -> b (m q) y")
        dims = self.shapes.level_dims
        return torch.cat([adapter(levels_BMQY[:, m, :, : dims[m]]) for m, adapter in enumerate(self.level_in)], dim=1)

    def context_rotation(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The context tokens' RoPE as real tables (cos, sin) [X, E], or None without context positions."""
        return None if self.context_cos_XE is None else (self.context_cos_XE, self.context_sin_XE)

    def start_tokens(self, cond_BD: torch.Tensor) -> torch.Tensor:
        return cond_BD[:, None].expand(-1, self.first_l, -1) + self.pos_start

    def scale_embedding(self, k: int) -> torch.Tensor:
        """Level (scale) embedding, plus learned positions when used, for scale k (0-based): [1, l, D]."""
        a, b = self.offsets[k], self.offsets[k + 1]
        embedding = self.lvl_embed(self.scale_of_L[a:b])[None]
        if self.cfg.positions == "learned":
            embedding = embedding + self.pos_1LC[:, a:b]
        return embedding

    def logits(self, x_BlD: torch.Tensor, head_modulation) -> torch.Tensor:
        """Always in fp32, also under bf16 autocast: sampling filters and draws from these numbers."""
        scale, shift = head_modulation
        device_type = x_BlD.device.type
        full_precision = (
            torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else contextlib.nullcontext()  # the meta device (FLOP counting) has no autocast
        )
        with full_precision:
            return self.head(self.head_nm.norm(x_BlD.float()) * (1 + scale.float()) + shift.float())

    # ------------------------------------------------------------------------- teacher forcing

    def forward(self, next_inputs_BLC: torch.Tensor, levels_BMQY: torch.Tensor, pooled_BP: torch.Tensor):
        """Logits [B, L, Z] for all scales from the teacher-forcing inputs [B, L − first_l, C]."""
        cond = self.fmri_pooler(pooled_BP.float())
        x = torch.cat([self.start_tokens(cond), self.word_embed(next_inputs_BLC.float())], dim=1)
        x = x + self.lvl_embed(self.scale_of_L)[None]
        if self.cfg.positions == "learned":
            x = x + self.pos_1LC
        if self.condition_maps is not None:
            x = x + self.condition_maps(levels_BMQY)
        context = self.context(levels_BMQY)
        for block in self.blocks:
            x, _ = block(
                x,
                None,
                None,
                self.freqs_Le,
                self.self_mask_LL,
                self.cross_mask_LX,
                cond_BD=cond,
                context_BXY=context,
                context_freqs=self.context_freqs_Xe,
            )
        return self.logits(x, self.head_nm.modulation(cond))

    # --------------------------------------------------------------------------- scale by scale

    def prepare(self, levels_BMQY: torch.Tensor, pooled_BP: torch.Tensor) -> StepState:
        cond = self.fmri_pooler(pooled_BP.float())
        context = self.context(levels_BMQY)
        return StepState(
            cond_BD=cond,
            modulations=[block.modulation(cond) for block in self.blocks],
            context_kv=[tuple(block.context_kv(context, self.context_rotation())) for block in self.blocks],
            head_modulation=self.head_nm.modulation(cond),
            past_kv=[None] * len(self.blocks),
            maps_BLD=None if self.condition_maps is None else self.condition_maps(levels_BMQY),
        )

    def step(self, state: StepState, k: int, next_input_BlC: torch.Tensor | None, kept: int = 0) -> torch.Tensor:
        """Logits [B, s_k², Z] of scale k (0-based); `next_input` is f̂ at s_k (None for the first scale).
        With `kept` > 0 the blocks run on that many pivotal tokens only and the others are restored from the
        previous scale's hidden states (`models/token_pruning.py`); `state.hidden_BlD` keeps this scale's."""
        x = self.start_tokens(state.cond_BD) if k == 0 else self.word_embed(next_input_BlC.float())
        x = x + self.scale_embedding(k)
        a, b = self.offsets[k], self.offsets[k + 1]
        if state.maps_BLD is not None:
            x = x + state.maps_BLD[:, a:b]
        rotation = None if self.rope_cos_LE is None else (self.rope_cos_LE[a:b], self.rope_sin_LE[a:b])
        pruned = 0 < kept < b - a
        if pruned:
            if k == 0 or self.cfg.block_causal:
                raise ValueError("token pruning needs a previous scale and within-scale attention")
            index_Bn = pivotal_tokens(next_input_BlC.float(), kept)
            x = gather_tokens(x, index_Bn)
            if rotation is not None:
                rotation = tuple(gather_rotations(table, index_Bn) for table in rotation)
        span = self.context_spans[k]
        for i, block in enumerate(self.blocks):
            past = state.past_kv[i] if self.cfg.block_causal else None
            keys, values = state.context_kv[i]
            routed = (keys[:, :, span], values[:, :, span])
            x, new_kv = block(x, state.modulations[i], routed, rotation, None, None, past)
            if self.cfg.block_causal:
                state.past_kv[i] = new_kv
        if pruned:
            x = restore_tokens(state.hidden_BlD, self.shapes.scales[k], x, index_Bn)
        state.hidden_BlD = x
        return self.logits(x, state.head_modulation)


class _AdaLNBeforeHead(nn.Module):
    """Non-affine LayerNorm modulated by (1 + scale, shift) from the condition (Switti's `head_nm`)."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.width = width
        self.norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def modulation(self, cond_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = rearrange(self.ada_lin(cond_BD), "b (two d) -> two b 1 d", two=2)
        return scale, shift
