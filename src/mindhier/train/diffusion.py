"""Train the latent diffusion baseline on the same frozen encoder and tokenizer as the scale-wise generator.

Per step: single-trial voxels of a batch; with probability `cfg_dropout` a sample's voxels are zeroed (its
condition becomes the encoder's null output, used by classifier-free guidance); the frozen encoder gives the
terminal level e_M and the pooled terminal feature; the seen images' tokenizer latents f (computed once, kept
in memory) are normalised per channel, noised at a uniform random timestep (DDPM eq. 4) and the model
predicts the noise (loss ‖ε − ε̂‖², DDPM eq. 14). AdamW, warm-up then a constant rate, clipping, bf16
autocast on CUDA. Every `eval_every` steps: the val loss on a fixed set of (noise, timestep) draws; the best
is kept. Resumable; rank-aware (only rank 0 writes; batches shard by rank).

Sizes: with `diffusion.matched`, the backbone is sized to the scale-wise generator of the same config
(`generator`, shapes from the same encoder and tokenizer) within 5 % of its parameters; with
`train_diffusion.steps = 0` it trains for as many steps as give the generator's training FLOPs
(`train_generator.steps` × its FLOPs per step, both counted by `train/flops.py`). Both are recorded.

Per-sample draws (CFG dropout, noise, timesteps) are made for the global batch from generators keyed by the
step, so N processes reproduce one process; DDP or FSDP (per DiT block) under torchrun.

Run folder (`run_layout`): config.json, diffusion_model.json (the resolved backbone config),
diffusion_shapes.json, inputs.json, diffusion.safetensors (best val), diffusion_last.safetensors, resume/,
log.jsonl, train_summary.json.

Shape letters (docs/glossary.md): B batch, N stimuli, V voxels, C latent channels, h/w latent side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.checkpoint import load_state_strict
from mindhier.config import DiffusionConfig, MindhierConfig, from_dict, to_dict
from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.data.subject_items import subject_items
from mindhier.errors import ConfigError, DataError
from mindhier.fileio import read_json
from mindhier.models.diffusion import DiffusionShapes, LatentDiT, match_parameters
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.ddim import NoiseSchedule
from mindhier.train.batches import rank_batch, rank_rows
from mindhier.train.condition_sources import BrainSource, ConditionSource, terminal_level
from mindhier.train.flops import diffusion_step_flops, generator_step_flops
from mindhier.train.frozen_stage1 import load_frozen
from mindhier.train.generator import generator_shapes, oracle_source
from mindhier.train.optim import adamw, warmup_schedule
from mindhier.train.random_streams import integer_draws, keep_mask, normal_draws
from mindhier.train.session import Launch, TrainingSession, TrainResult
from mindhier.train.warm_start import initial_weights

KIND = "diffusion"
RUN_SECTIONS = ("data", "diffusion", "train_diffusion")
VAL_SEED = 1234  # the fixed (noise, timestep) draws of the val loss


@dataclass(frozen=True)
class LatentLookup:
    """Tokenizer latents f [N, C, h, w] of stimuli, by stimulus index (the `TokenCache.get` interface)."""

    indices: np.ndarray  # sorted int64 stimulus indices
    latents_NChw: torch.Tensor

    def get(self, stimuli: np.ndarray) -> list[torch.Tensor]:
        rows = np.clip(np.searchsorted(self.indices, stimuli), 0, len(self.indices) - 1)
        if not np.array_equal(self.indices[rows], np.asarray(stimuli)):
            raise DataError(
                "some requested stimuli have no tokenizer latent;"
                " rebuild the token cache: mindhier tokenize --data DATA --overwrite"
            )
        return [self.latents_NChw[torch.from_numpy(rows)]]


@torch.no_grad()
def tokenizer_latents(dataset, tokenizer: Tokenizer, stimuli: np.ndarray, batch_size: int = 128) -> LatentLookup:
    """The pre-quantisation latent of every listed stimulus, at the tokenizer's image size (computed on the
    tokenizer's device, kept on the CPU)."""
    device = next(tokenizer.parameters()).device
    indices = np.unique(stimuli)
    parts = []
    for start in range(0, len(indices), batch_size):
        images = resize_uint8(dataset.images.load(indices[start : start + batch_size]), tokenizer.cfg.image_px)
        parts.append(tokenizer.latent(to_model_input(images, device)).float().cpu())
    return LatentLookup(indices, torch.cat(parts))


def diffusion_shapes(tokenizer: Tokenizer, source: ConditionSource) -> DiffusionShapes:
    return DiffusionShapes(
        latent_channels=tokenizer.cfg.latent_channels,
        latent_side=tokenizer.cfg.scales[-1],
        level_tokens=source.level_tokens,
        context_width=source.level_dims[-1],  # the terminal level, in the teacher's space
        pooled_width=source.pooled_width,
    )


@dataclass(frozen=True)
class Budget:
    """The baseline's size and training length, and how they were matched to the scale-wise generator."""

    model: DiffusionConfig
    steps: int
    record: dict


def plan_budget(cfg: MindhierConfig, shapes: DiffusionShapes, tokenizer: Tokenizer, source: ConditionSource) -> Budget:
    gen_shapes = generator_shapes(tokenizer, source)
    with torch.device("meta"):
        gen_params = sum(p.numel() for p in ScaleAR(cfg.generator, gen_shapes).parameters())
    model = match_parameters(cfg.diffusion, shapes, gen_params) if cfg.diffusion.matched else cfg.diffusion
    with torch.device("meta"):
        params = sum(p.numel() for p in LatentDiT(model, shapes).parameters())
    tg, td = cfg.train_generator, cfg.train_diffusion
    gen_flops = generator_step_flops(cfg.generator, gen_shapes, tg.batch_size)
    step_flops = diffusion_step_flops(model, shapes, td.batch_size)
    gen_steps = td.match_generator_steps or tg.steps
    if td.steps:
        steps, rule = td.steps, "given (train_diffusion.steps)"
    elif gen_steps:
        steps = max(1, round(gen_steps * gen_flops / step_flops))
        where = "train_diffusion.match_generator_steps" if td.match_generator_steps else "train_generator.steps"
        rule = f"FLOP-matched to {gen_steps} generator steps ({where})"
    elif td.init:  # the generator is used as it starts (train_generator.steps=0): so is the baseline
        steps, rule = 0, "none: the start weights as they are, as the generator's (train_generator.steps=0)"
    else:
        raise ConfigError(
            "train_diffusion.steps=0 matches the generator's steps, and train_generator.steps=0 trains none: the "
            "baseline would keep random weights; set train_diffusion.init (e.g. prior), train_diffusion.steps or "
            "train_diffusion.match_generator_steps"
        )
    return Budget(
        model,
        steps,
        {
            "parameters": params,
            "generator_parameters": gen_params,
            "parameter_ratio": round(params / gen_params, 4),
            "matched": cfg.diffusion.matched,
            "width": model.width,
            "depth": model.depth,
            "flops_per_step": step_flops,
            "generator_flops_per_step": gen_flops,
            "training_flops": steps * step_flops,
            "generator_training_flops": gen_steps * gen_flops,
            "steps_rule": rule,
            "flops_counted": "torch.utils.flop_counter on the meta device: matmuls, convs, attention; fwd + bwd",
        },
    )


@torch.no_grad()
def val_loss(
    model: LatentDiT,
    schedule: NoiseSchedule,
    source: ConditionSource,
    latents: LatentLookup,
    device,
    batch_size: int = 128,
) -> float:
    """Mean noise-prediction error on `source`'s val items under fixed (noise, timestep) draws (conditional)."""
    was_training = model.training
    model.eval()
    rng = torch.Generator().manual_seed(VAL_SEED)
    total, count = 0.0, 0
    for (levels, pooled, _), images_N in source.val_batches(batch_size):
        z0 = model.normalize(latents.get(images_N)[0].to(device))
        noise = torch.randn(z0.shape, generator=rng).to(device)
        t = torch.randint(0, schedule.timesteps, (len(z0),), generator=rng).to(device)
        eps = model(schedule.add_noise(z0, noise, t), t, terminal_level(levels, source.level_dims), pooled)
        total += float(F.mse_loss(eps.float(), noise, reduction="sum"))
        count += noise.numel()
    model.train(was_training)
    return total / max(count, 1)


def train_diffusion(
    cfg: MindhierConfig,
    data_dir: str | Path,  # brain inputs, and the stimuli whose tokenizer latents are denoised
    encoder_run: str | Path,  # the frozen Stage-1 encoder: its terminal level is the one static condition
    tokenizer_run: str | Path,  # the frozen tokenizer (run, VQ-VAE file or name): latent space and decoder
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,  # default: the encoder's first subject
    **launch: Unpack[Launch],
) -> TrainResult:
    """Train (or resume) the latent diffusion baseline into the run folder `out` (size and steps matched),
    conditioned on the brain or, with `train_diffusion.condition=teacher`, on the teacher's features of the seen
    images (the oracle)."""
    tc = cfg.train_diffusion
    run = TrainingSession.start(out, KIND, cfg, tc, RUN_SECTIONS, **launch)
    world = run.world
    frozen = load_frozen(encoder_run, tokenizer_run, subjects, world.device, cfg.tokenizer)
    tokenizer, condition = frozen.tokenizer, frozen.condition
    with frozen.open_dataset(data_dir, cfg.data.sessions) as dataset:
        train_items = [subject_items(dataset, s, "train") for s in frozen.subjects]
        val_items = [subject_items(dataset, s, "val") for s in frozen.subjects]
        seen = np.concatenate([x.images_N for x in train_items + val_items])
        latents = tokenizer_latents(dataset, tokenizer, seen)
    if tc.condition == "brain":
        source: ConditionSource = BrainSource(condition, train_items, val_items)
    else:  # the oracle: the teacher's features of the seen images (feature cache or on the fly)
        source = oracle_source(data_dir, dataset, frozen, train_items, val_items, world)
    inputs = frozen.inputs_record(run.run_dir, cfg.data.sessions)
    run.check_inputs(inputs)
    return fit_diffusion(run, cfg, source, latents, tokenizer, {**inputs, "routing": "static_terminal"})


def fit_diffusion(
    run: TrainingSession,
    cfg: MindhierConfig,
    source: ConditionSource,
    latents: LatentLookup,
    tokenizer: Tokenizer,
    inputs: dict,
) -> TrainResult:
    """The loop: a latent DiT for `source`'s condition (its terminal level and pooled vector), denoising the
    tokenizer `latents` of its items (the shared core of the brain baseline and the stream prior)."""
    tc, world = cfg.train_diffusion, run.world
    n_train = source.n_train
    if n_train < tc.batch_size:
        raise ConfigError(
            f"{n_train} training items, fewer than train_diffusion.batch_size {tc.batch_size};"
            " lower train_diffusion.batch_size"
        )
    shapes = diffusion_shapes(tokenizer, source)
    budget = plan_budget(cfg, shapes, tokenizer, source)
    schedule = NoiseSchedule.linear(budget.model.timesteps, budget.model.beta_start, budget.model.beta_end)
    saved = run.saved_json(run_layout.shapes_file(KIND), "diffusion shapes", DiffusionShapes.from_json)
    saved_model = run.saved_json(run_layout.DIFFUSION_MODEL, "diffusion model")
    if (saved is not None and saved != shapes) or (
        saved_model is not None and resolved_model(run.run_dir) != budget.model
    ):
        raise ConfigError(
            f"cannot resume {run.run_dir}: the encoder, tokenizer or matched size changed;"
            " rerun with the original inputs, or start a new --out"
        )
    run.write_json(run_layout.DIFFUSION_MODEL, to_dict(budget.model))
    run.write_json(run_layout.shapes_file(KIND), shapes.to_json())
    start = initial_weights(tc.init, KIND, cfg)
    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model = LatentDiT(budget.model, shapes)
    if start.state is not None:  # a prior's weights carry the latent statistics it was trained with
        load_state_strict(model, start.state, start.record["source"])
    else:
        model.set_latent_statistics(latents.get(np.unique(source.train_images_N))[0])
    # the unconditional stream sampling guides against: the one these weights learnt — the start's, when no step
    # trains them (the prior as it is reads the brain, but its null is the teacher's)
    trained_on = source.record()
    null_condition = (start.record.get("condition") if budget.steps == 0 else None) or trained_on["condition"]
    run.write_json(
        run_layout.INPUTS,
        {**inputs, **trained_on, "null_condition": null_condition, "budget": budget.record, "init": start.record},
    )
    wrapped = run.attach(
        model,
        list(model.blocks),
        lambda m: adamw(m, tc.lr, tc.weight_decay),
        lambda opt: warmup_schedule(opt, tc.warmup_steps, tc.steps),
        higher_is_better=False,
    )
    run.set_total_steps(budget.steps)
    mine = rank_rows(tc.batch_size, world.rank, world.world_size)
    latent_shape = (shapes.latent_channels, shapes.latent_side, shapes.latent_side)
    for step in run.steps():
        indices = rank_batch(n_train, tc.batch_size, step, tc.seed, world.rank, world.world_size)
        # per-sample draws for the global batch (the same whatever the number of processes), this process's rows
        keep = keep_mask(tc.seed, step, tc.batch_size, budget.model.cfg_dropout)[mine]
        noise_all = normal_draws(tc.seed, step, (tc.batch_size, *latent_shape))[mine]
        t_all = integer_draws(tc.seed, step, schedule.timesteps, tc.batch_size)[mine]
        wrapped.trained.train()
        for rows, last in run.micro_batches(len(indices)):
            (levels, pooled, _), images_N, order_N = source.batch(indices[rows], keep[rows])
            share = len(images_N) / len(indices)
            z0 = wrapped.module.normalize(latents.get(images_N)[0].to(world.device))
            noise = noise_all[rows][order_N].to(world.device)
            t = t_all[rows][order_N].to(world.device)
            with run.accumulating(last):
                with run.autocast():
                    terminal = terminal_level(levels, source.level_dims)
                    eps = wrapped.trained(schedule.add_noise(z0, noise, t), t, terminal, pooled)
                loss = F.mse_loss(eps.float(), noise)
                run.backward(loss, share)
        extra = run.optimizer_step()
        done = step + 1
        extra |= run.evaluate(
            done, lambda: {"val_loss": val_loss(wrapped.module, schedule, source, latents, world.device)}, "val_loss"
        )
        run.end_step(done, extra)

    summary = run.finish({**budget.record, **source.record(), "init": start.record, "best_metric": "val_loss"})
    return TrainResult(run.run_dir, summary, wrapped.module)


def resolved_model(run_dir: str | Path) -> DiffusionConfig:
    """The backbone a run trained (after the `matched` search)."""
    return from_dict(DiffusionConfig, read_json(Path(run_dir) / run_layout.DIFFUSION_MODEL, "diffusion model config"))
