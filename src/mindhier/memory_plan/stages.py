"""The trainable stages as the memory planner sees them: each one's model, built from the config (the planner
builds it on the meta device), its forward inputs and its blocks; and the teacher shapes the models are sized
with, read from the network or its architecture config, never from its weights.

Shape letters (docs/glossary.md): B batch, V voxels, L tokens, C latent channels, h/w latent side, M levels,
Q tokens per level, Y level width, P pooled width.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mindhier.config import MindhierConfig, TeacherConfig
from mindhier.errors import ConfigError
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.models.diffusion import DiffusionShapes, LatentDiT, match_parameters
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer

DEFAULT_VOXELS = 15724  # NSD subject 1's nsdgeneral voxels
BETA_BYTES = 4  # per voxel: MindEye2's betas HDF5 is float32
TOKEN_BYTES = 4  # per token: the token cache's int32
STIMULUS_BYTES = 3 * 224 * 224 * 2  # one stimulus in MindEye2's coco_images_224_float16.hdf5
PLAN_SUBJECT = 1  # the encoder's input layer is built for this subject (only its voxel count matters)


# ------------------------------------------------------------------------------------------- teacher shapes


@dataclass(frozen=True)
class TeacherShapes:
    """The teacher sizes the encoder and the generator are built with (no weights needed)."""

    queries: int  # Q: tokens per level
    level_dims: tuple[int, ...]  # D_m, shallow → deep
    text_tokens: int  # 0 = no text side
    text_dim: int


def teacher_shapes(teacher: TeacherConfig) -> TeacherShapes:
    """Level and text shapes of the configured teacher, without its weights where that is possible.

    EfficientNet-Lite0 ships with the package, so its levels are read from the network itself. CLIP's are
    derived from the open_clip architecture config (a plain ViT: (image / patch)² + 1 tokens, each projected to
    `embed_dim`; text: `context_length` tokens of the text width); only ViT-L-14 is known without open_clip.
    """
    if teacher.name == "efficientnet-lite0":
        from mindhier.teachers import build_teacher

        levels = build_teacher(teacher).levels
        return TeacherShapes(levels[0].tokens, tuple(level.dim for level in levels), 0, 0)
    if teacher.name == "clip":
        return _clip_shapes(teacher)
    raise ConfigError(f"the memory plan knows no teacher {teacher.name!r}; use efficientnet-lite0 or clip")


# open_clip's ViT-L-14 config (model_configs/ViT-L-14.json), for machines without open_clip
_VIT_L_14 = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12},
}


def open_clip_config(name: str) -> dict | None:
    """open_clip's architecture config `name`, read from its model_configs folder: importing open_clip takes
    seconds (it imports its CoCa and Hugging Face towers), and a config file is all the plan needs."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_configs" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return _VIT_L_14 if name in ("ViT-L-14", "ViT-L-14-quickgelu") else None


def _clip_shapes(teacher: TeacherConfig) -> TeacherShapes:
    from mindhier.teachers.base import resolve_layers
    from mindhier.teachers.clip import mappings_for_depth

    model_cfg = None if "/" in teacher.clip_model or ":" in teacher.clip_model else open_clip_config(teacher.clip_model)
    vision = (model_cfg or {}).get("vision_cfg", {})
    text = (model_cfg or {}).get("text_cfg", {})
    # CLIPTeacher reads all 1 + grid² tokens after ln_post and proj; other towers have no such layers
    plain_vit = all(isinstance(vision.get(key), int) for key in ("image_size", "patch_size", "layers", "width")) and (
        not any(vision.get(key) for key in _NOT_PLAIN_VIT)
    )
    text_ok = not teacher.text or (
        all(isinstance(text.get(key), int) for key in ("context_length", "width")) and not text.get("hf_model_name")
    )
    if model_cfg is None or not plain_vit or not text_ok:
        raise ConfigError(
            f"the memory plan cannot size teacher.clip_model={teacher.clip_model!r} without its weights; it knows "
            "open_clip's plain ViT architectures such as ViT-L-14"
        )
    layers = resolve_layers(teacher, vision["layers"], mappings_for_depth(vision["layers"]))
    grid = vision["image_size"] // vision["patch_size"]
    dim = int(model_cfg["embed_dim"])  # the visual projection's output
    text_tokens, text_dim = (text["context_length"], text["width"]) if teacher.text else (0, 0)
    return TeacherShapes(grid * grid + 1, (dim,) * len(layers), text_tokens, text_dim)


_NOT_PLAIN_VIT = ("timm_model_name", "attentional_pool")  # what `teachers/clip.py` refuses


# ------------------------------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageSpec:
    """A trainable stage as the planner sees it: a meta-device model, its forward inputs, its blocks."""

    name: str
    title: str
    build: Callable[[], nn.Module]  # on the current default device (the planner calls it under meta)
    inputs: Callable[[int], tuple]  # batch → forward arguments (built under meta)
    describe: Callable[[nn.Module], str]
    frozen: tuple[tuple[str, Callable[[], nn.Module]], ...]
    global_batch: int
    steps: int  # optimiser steps of the stage's training run (diffusion: 0 = matched to the generator's FLOPs)
    read_bytes_per_sample: int = 0  # what one sample of a step reads from disk (betas, targets or images, tokens)
    target_bytes_per_sample: int = 0  # the teacher's targets held in the step (float32; the encoder stage)
    teacher_on_the_fly: bool = False  # the encoder stage with `teacher.cache=false`: the teacher runs in the step


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks each wrapped by `fully_shard` and by a checkpoint: every `blocks` and `text_blocks`."""
    blocks: list[nn.Module] = []
    for name in ("blocks", "text_blocks"):
        blocks += list(getattr(model, name, None) or [])
    return blocks


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def stage_specs(cfg: MindhierConfig, voxels: int = DEFAULT_VOXELS) -> tuple[StageSpec, ...]:
    """Stage 1 (encoder), Stage 2 (generator) and the diffusion baseline, sized from the config."""
    if voxels < 1:
        raise ConfigError(f"--voxels must be at least 1, got {voxels}; pass 1 or more")
    teacher = teacher_shapes(cfg.teacher)
    if len(teacher.level_dims) != cfg.encoder.depth:
        raise ConfigError(
            f"teacher gives {len(teacher.level_dims)} levels for an encoder of depth {cfg.encoder.depth}; "
            "set teacher.layers to encoder.depth layers"
        )
    enc_shapes = EncoderShapes(
        subject_voxels=((PLAN_SUBJECT, voxels),),
        level_dims=teacher.level_dims,
        queries=teacher.queries,
        text_tokens=teacher.text_tokens,
        text_dim=teacher.text_dim,
    )
    tc = cfg.tokenizer
    gen_shapes = GeneratorShapes.for_levels(tc, teacher.level_dims, teacher.queries)
    dif_shapes = DiffusionShapes(
        latent_channels=tc.latent_channels,
        latent_side=tc.scales[-1],
        level_tokens=teacher.queries,
        context_width=teacher.level_dims[-1],  # the terminal level, in the teacher's space
        pooled_width=teacher.level_dims[-1],
    )
    dif_cfg = cfg.diffusion
    if dif_cfg.matched:  # as `train/diffusion.plan_budget` sizes it: to the generator's parameter count
        with torch.device("meta"):
            gen_params = count_parameters(ScaleAR(cfg.generator, gen_shapes))
        dif_cfg = match_parameters(cfg.diffusion, dif_shapes, gen_params)

    def encoder() -> nn.Module:
        return BrainEncoder(cfg.encoder, enc_shapes)

    frozen = (("brain encoder", encoder), ("tokenizer", lambda: Tokenizer(tc)))
    Q, Y, P, M = teacher.queries, cfg.encoder.width, teacher.level_dims[-1], cfg.encoder.depth
    betas = BETA_BYTES * voxels  # one trial's betas (MindEye2's float32 HDF5)
    targets = 4 * (Q * sum(teacher.level_dims) + teacher.text_tokens * teacher.text_dim)  # float32 in the step
    # the encoder's step reads the cached targets (float16) or, with the teacher on the fly, the stimulus
    encoder_reads = betas + (targets // 2 if cfg.teacher.cache else STIMULUS_BYTES)
    return (
        StageSpec(
            name="encoder",
            title="Stage 1: brain encoder",
            build=encoder,
            inputs=lambda b: ([(PLAN_SUBJECT, torch.randn(b, voxels))],),  # [(subject, voxels_BV)]
            describe=lambda m: (
                f"BrainEncoder {voxels} voxels → {'/'.join(map(str, cfg.encoder.hidden_dims))} → "
                f"{cfg.encoder.latent_tokens}×{Y}, {M} levels × {Q} queries"
                + (f", text {cfg.encoder.text_queries} queries" if m.has_text else "")
            ),
            frozen=(),
            global_batch=cfg.train_encoder.batch_size,
            steps=cfg.train_encoder.steps,
            read_bytes_per_sample=encoder_reads,
            target_bytes_per_sample=targets,
            teacher_on_the_fly=not cfg.teacher.cache,
        ),
        StageSpec(
            name="generator",
            title="Stage 2: scale-wise generator",
            build=lambda: ScaleAR(cfg.generator, gen_shapes),
            inputs=lambda b: (
                torch.randn(b, gen_shapes.n_tokens - gen_shapes.scales[0] ** 2, tc.latent_channels),  # [B, L − 1, C]
                torch.randn(b, M, Q, gen_shapes.context_width),  # [B, M, Q, Y] (levels zero-padded to the widest)
                torch.randn(b, P),  # [B, P]
            ),
            describe=lambda m: (
                f"ScaleAR depth {cfg.generator.depth} width {cfg.generator.width}, {gen_shapes.n_tokens} tokens"
            ),
            frozen=frozen,
            global_batch=cfg.train_generator.batch_size,
            steps=cfg.train_generator.steps,
            read_bytes_per_sample=betas + TOKEN_BYTES * gen_shapes.n_tokens,  # betas + the image's cached tokens
        ),
        StageSpec(
            name="diffusion",
            title="Baseline: latent diffusion",
            build=lambda: LatentDiT(dif_cfg, dif_shapes),
            inputs=lambda b: (
                torch.randn(b, tc.latent_channels, tc.scales[-1], tc.scales[-1]),  # [B, C, h, w]
                torch.zeros(b, dtype=torch.long),  # timesteps [B]
                torch.randn(b, Q, dif_shapes.context_width),  # terminal level [B, Q, D_M]
                torch.randn(b, P),  # [B, P]
            ),
            describe=lambda m: (
                f"LatentDiT depth {dif_cfg.depth} width {dif_cfg.width}"
                + (" (matched to the generator)" if cfg.diffusion.matched else "")
                + f", {tc.scales[-1] ** 2} tokens"
            ),
            frozen=frozen,
            global_batch=cfg.train_diffusion.batch_size,
            steps=cfg.train_diffusion.steps,
            read_bytes_per_sample=betas,  # the images' latents are computed once and held in memory
        ),
    )
