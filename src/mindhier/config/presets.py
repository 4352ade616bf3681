"""Named presets, plain Python: `tiny` (tests), `demo` (the embedded default), `demo-long` (the routing study),
`adapt` (the adaptation study), `pretrain` (the priors), `nsd-paper`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mindhier.config.baseline import DdimConfig, DiffusionConfig, DiffusionTrainConfig
from mindhier.config.encoder import AlignmentConfig, BrainEncoderConfig, EncoderTrainConfig
from mindhier.config.generation import (
    ROUTING_MODES,
    GeneratorConfig,
    GeneratorTrainConfig,
    SamplerConfig,
    TokenizerConfig,
    TokenizerTrainConfig,
)
from mindhier.config.pipeline import DemoConfig, MindhierConfig
from mindhier.config.teacher import TeacherConfig
from mindhier.config.world import SimulatorConfig, StimulusConfig
from mindhier.errors import ConfigError

# The embedded world's generators read a condition with a place (docs/method.md §5.2; the paper's defaults, none and
# none, stay GeneratorConfig's and nsd-paper's): RoPE on the context keys and the routed grids added at each token.
EMBEDDED_CONTEXT = {"context_positions": "rope", "context_maps": "add"}
# ... and a brain condition calibrated to the teacher's feature statistics (models/condition_calibration.py): the
# teacher-trained prior reads the encoder's predictions on the scale it was trained on.
EMBEDDED_ALIGNMENT = AlignmentConfig(calibration="moments")


def tiny() -> MindhierConfig:
    """Seconds-scale settings for tests: the same code paths as `demo`, far smaller."""
    return MindhierConfig(
        preset="tiny",
        stimuli=StimulusConfig(size=32),
        teacher=TeacherConfig(grid=2, input_px=64),
        encoder=BrainEncoderConfig(hidden_dims=(64,), latent_tokens=4, width=32, heads=2, ffn_dim=64, low_level_px=8),
        alignment=EMBEDDED_ALIGNMENT,
        demo=DemoConfig(low_level_scales=2),
        train_encoder=EncoderTrainConfig(steps=60, batch_size=32, lr=2e-3, eval_every=30, checkpoint_every=30),
        tokenizer=TokenizerConfig(
            image_px=16, channels=16, channel_mult=(1, 2), latent_channels=8, vocab=64, scales=(1, 2, 4, 8)
        ),
        generator=GeneratorConfig(depth=2, width=32, heads=2, **EMBEDDED_CONTEXT),
        train_generator=GeneratorTrainConfig(
            steps=40, batch_size=16, eval_every=20, checkpoint_every=20, warmup_steps=5
        ),
        train_tokenizer=TokenizerTrainConfig(
            steps=40, batch_size=16, eval_every=20, checkpoint_every=20, dead_code_every=20, warmup_steps=5
        ),
        diffusion=DiffusionConfig(depth=2, width=32, heads=2),
        train_diffusion=DiffusionTrainConfig(batch_size=16, eval_every=20, checkpoint_every=20, warmup_steps=5),
        simulator=SimulatorConfig(
            n_train=240,
            n_test=24,
            session_trials=100,
            voxels_min=300,
            voxels_max=400,
            retina_px=32,
            feature_grid=16,
            semantic_px=64,
        ),
    )


# the sampler of the studies measured before the demo's guidance was swept on the validation split (guidance 3)
STUDY_SAMPLER = SamplerConfig(cfg_scale=3.0)


def demo() -> MindhierConfig:
    """The embedded default: one simulated subject on procedural scenes, sized for 2 CPU cores.

    As the paper does with VAR's VQ-VAE and Switti, the tokenizer and the generator start from priors
    pretrained on scenes no dataset shows (`mindhier.priors`, `pretrain` preset). Both are used as they are
    (`train_generator.steps=0`): the encoder's predictions, calibrated to the teacher's statistics, are read by
    the teacher-trained prior. On the validation split this beat fine-tuning it on the brain for 150 steps on
    PixCorr and colour (0.299 and 0.289 against 0.236 and 0.277), not on category F1 (0.128 against 0.184;
    results/brain_row_probe.json, docs/method.md §5.2); `--set train_generator.steps=150` fine-tunes as the paper
    does (the routing study, `demo-long`, fine-tunes).

    The diffusion baseline (`--with-diffusion`) gets the same choice: its prior as it is, or fine-tuned on the
    brain with the FLOPs of 150 generator steps; and both decoders' guidance is swept on the validation split
    (results/decoder_val_probe.json, one rule for both: the best mean of PixCorr, SSIM, colour and category F1):
    the generator prior as it is with guidance 6 (the paper's), the diffusion prior fine-tuned with guidance 8."""
    base = MindhierConfig(preset="demo")
    return dataclasses.replace(
        base,
        alignment=EMBEDDED_ALIGNMENT,
        # a ridge low-level decoder, and a row whose first four of six scales take its image's tokens (k chosen on
        # the validation split: results/brain_row_probe.json)
        encoder=dataclasses.replace(base.encoder, low_level_px=32),
        demo=dataclasses.replace(base.demo, low_level_scales=4),
        generator=dataclasses.replace(base.generator, **EMBEDDED_CONTEXT),
        train_tokenizer=dataclasses.replace(base.train_tokenizer, steps=0, init="prior"),
        train_diffusion=dataclasses.replace(base.train_diffusion, init="prior", match_generator_steps=150),
        sampler=dataclasses.replace(base.sampler, cfg_scale=6.0),
        ddim=dataclasses.replace(base.ddim, cfg_scale=8.0),
        train_generator=dataclasses.replace(
            base.train_generator,
            steps=0,
            batch_size=32,
            lr=1e-3,
            warmup_steps=20,
            eval_every=75,
            checkpoint_every=75,
            init="prior",
        ),
    )


def pretrain() -> MindhierConfig:
    """The demo's architecture with the pretraining schedules of its priors (`mindhier pretrain`): the tokenizer
    on 40,000 stream scenes (2,000 steps), then the generator conditioned on the teacher's features of the first
    20,000 of them (3,000 steps of 64; `mindhier pretrain generator --images 20000`)."""
    base = demo()
    return dataclasses.replace(
        base,
        preset="pretrain",
        sampler=STUDY_SAMPLER,  # the priors' quality records (their cards) were sampled with it
        train_diffusion=dataclasses.replace(base.train_diffusion, init=""),  # `pretrain diffusion` starts from random
        train_tokenizer=dataclasses.replace(
            base.train_tokenizer,
            steps=2000,
            init="",
            batch_size=32,
            lr=2e-3,
            warmup_steps=200,
            schedule="cosine",
            eval_every=1000,
            checkpoint_every=500,
            dead_code_every=50,
        ),
        train_generator=dataclasses.replace(
            base.train_generator,
            steps=3000,
            init="",
            batch_size=64,
            lr=2e-3,
            warmup_steps=60,
            schedule="cosine",
            eval_every=500,
            checkpoint_every=250,
            condition="teacher",
            routings=ROUTING_MODES,  # one drawn per step: a prior for every routing the demo compares
        ),
    )


def from_scratch(cfg: MindhierConfig) -> MindhierConfig:
    """`cfg` without the priors: the tokenizer and the generator trained from random weights (`--from-scratch`),
    with the budgets the demo had before it had priors."""
    return dataclasses.replace(
        cfg,
        train_tokenizer=dataclasses.replace(cfg.train_tokenizer, init="", steps=max(cfg.train_tokenizer.steps, 600)),
        train_generator=dataclasses.replace(
            cfg.train_generator, init="", steps=max(cfg.train_generator.steps, 250), batch_size=64, lr=2e-3
        ),
    )


def nsd_paper() -> MindhierConfig:
    """The paper's sizes and schedule on real NSD (docs/method.md §3): CLIP ViT-L/14 layers 12/16/20/24.

    Stage 1: V → 4096 → 2048 → 100×768, 4 decoder layers over 257 queries, 8 heads, FFN 3072,
    dropout 0.1, a 77-query text branch; AdamW lr 1e-4, wd 0.01, OneCycle with pct_start 2/300, global
    batch 512 for 300 epochs of 30,000 trials (300 · 30,000 / 512 ≈ 17,578 steps).
    """
    return MindhierConfig(
        preset="nsd-paper",
        # the teacher runs inside the training step, as MindEye2 and the authors run it: a cache of its four levels
        # would hold 1.6 MB per image (≈ 60 GB for four subjects) and bind every step on reading it
        teacher=TeacherConfig(name="clip", layers=(12, 16, 20, 24), clip_model="ViT-L-14", text=True, cache=False),
        encoder=BrainEncoderConfig(
            hidden_dims=(4096, 2048),
            latent_tokens=100,
            width=768,
            depth=4,
            heads=8,
            ffn_dim=3072,
            dropout=0.1,
            text_queries=77,
        ),
        alignment=AlignmentConfig(supervision="cascaded", temperature=0.005),
        # the VQ-VAE VAR and Switti publish (108,948,355 parameters; loads with `mindhier.load_tokenizer`)
        tokenizer=TokenizerConfig(
            image_px=512,
            channels=160,
            channel_mult=(1, 1, 2, 2, 4),
            res_blocks=2,
            attention=True,
            norm_groups=32,
            latent_channels=32,
            vocab=4096,
            scales=(1, 2, 3, 4, 6, 9, 13, 18, 24, 32),
            phi_convs=4,
            phi_ratio=0.5,
            beta=0.25,
        ),
        # Switti-512 with MindHier's changes: 2,318,294,656 parameters (context and pooled width 768)
        generator=GeneratorConfig(
            depth=30,
            width=1920,
            heads=30,
            routing="coarse_to_fine",
            positions="rope",
            rope_theta=10_000.0,
            rope_size=128.0,
            cfg_dropout=0.1,
        ),
        # paper: global batch 80, 9,000 iterations from pretrained Switti; AdamW(0.9, 0.95), lr 1e-4, clip 1
        # FSDP per Switti block with activation checkpointing: `mindhier plan --preset nsd-paper --gpus 8
        # --gpu-memory 80` fits a micro-batch of 92 per GPU (DDP would fit 1 without checkpointing)
        train_generator=GeneratorTrainConfig(
            steps=9000,
            batch_size=80,
            lr=1e-4,
            warmup_steps=0,
            eval_every=500,
            checkpoint_every=500,
            strategy="fsdp",
            activation_checkpointing=True,
        ),
        sampler=SamplerConfig(cfg_scale=6.0, top_k=400, top_p=0.95, samples=1, seed=59, precision="bf16"),
        ddim=DdimConfig(precision="bf16"),  # the same precision as the generator's sampler
        # the baseline at DiT-XL's depth and heads, width matched to the generator's parameters; FLOP-matched steps
        diffusion=DiffusionConfig(depth=28, width=1152, heads=16),
        train_diffusion=DiffusionTrainConfig(
            batch_size=80,
            lr=1e-4,
            warmup_steps=0,
            eval_every=500,
            checkpoint_every=500,
            strategy="fsdp",
            activation_checkpointing=True,
        ),
        train_encoder=EncoderTrainConfig(
            steps=17_578,
            batch_size=512,
            lr=1e-4,
            weight_decay=0.01,
            pct_start=2 / 300,
            grad_clip=1.0,
            eval_every=1000,
            checkpoint_every=1000,
        ),
    )


def demo_long() -> MindhierConfig:
    """The routing study: coarse_to_fine, fine_to_coarse (the paper's Table 4), all_levels and static_terminal
    fine-tuned from the same prior with the same budget, over three seeds, each on brain data and on the teacher's
    features of the images (the oracle arm); paired differences in the report. 24 fine-tunes: each gets 60 steps
    of 32 (the demo's one generator 150) so that the study fits about half an hour on 2 cores."""
    base = demo()
    return dataclasses.replace(
        base,
        preset="demo-long",
        sampler=STUDY_SAMPLER,  # as results/routing_study.json was measured
        # every arm is fine-tuned (the paper's recipe), so it learns the scale of the brain's predictions itself:
        # no calibration (the study as measured before the demo read the prior as it is)
        alignment=dataclasses.replace(base.alignment, calibration="none"),
        encoder=dataclasses.replace(base.encoder, low_level_px=0),
        train_diffusion=dataclasses.replace(base.train_diffusion, match_generator_steps=0),
        train_generator=dataclasses.replace(
            base.train_generator, steps=60, warmup_steps=10, eval_every=30, checkpoint_every=30
        ),
        demo=DemoConfig(  # no low-level row (low_level_scales=0)
            routings=("coarse_to_fine", "fine_to_coarse", "all_levels", "static_terminal"),
            seeds=(0, 1, 2),
            conditions=("brain", "teacher"),
            oracle_row=False,
            consistency_samples=0,
        ),
    )


def adapt() -> MindhierConfig:
    """The adaptation study (`mindhier eval adaptation`): five simulated subjects of the demo's world; a shared
    encoder and generator on subjects 1-4, subject 5 adapted with its first 1, 2 and 4 sessions and with all of
    them, against the demo's single-subject encoder trained from scratch on the same sessions."""
    base = demo()
    return dataclasses.replace(
        base,
        preset="adapt",
        sampler=STUDY_SAMPLER,  # as results/adaptation_study.json was measured
        simulator=dataclasses.replace(base.simulator, subjects=(1, 2, 3, 4, 5)),
        demo=dataclasses.replace(base.demo, consistency_samples=0),
    )


PRESETS: dict[str, Callable[[], MindhierConfig]] = {
    "tiny": tiny,
    "demo": demo,
    "demo-long": demo_long,
    "adapt": adapt,
    "pretrain": pretrain,
    "nsd-paper": nsd_paper,
}


def preset(name: str) -> MindhierConfig:
    """The named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]()
