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

Run folder: config.json, diffusion_model.json (the resolved backbone config), diffusion_shapes.json,
inputs.json, diffusion.safetensors (best val), diffusion_last.safetensors, train_state.pt, log.jsonl,
train_summary.json.

Shape letters: B batch, N stimuli, c_v latent channels, h/w latent side.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mindhier.checkpoint import check_run_folder, load_resume_point, save_resume_point, save_weights
from mindhier.config import DiffusionConfig, MindhierConfig, from_dict, resolved_record, to_dict
from mindhier.errors import ConfigError, DataError
from mindhier.fileio import read_json, write_json
from mindhier.models.brain_encoder import BrainEncoder
from mindhier.models.diffusion import DiffusionShapes, LatentDiT, match_parameters
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.progress import ProgressFn, report
from mindhier.runs import relative_input
from mindhier.sampling.ddim import NoiseSchedule
from mindhier.train.encoder_data import SubjectItems, subject_items
from mindhier.train.flops import diffusion_step_flops, generator_step_flops
from mindhier.train.generator import Conditioner, batch_groups, generator_shapes, load_frozen
from mindhier.train.sampling import rank_batch

DIFFUSION_WEIGHTS = "diffusion.safetensors"
LAST_WEIGHTS = "diffusion_last.safetensors"
MODEL_FILE = "diffusion_model.json"
SHAPES_FILE = "diffusion_shapes.json"
INPUTS_FILE = "inputs.json"
TRAIN_STATE = "train_state.pt"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "train_summary.json"
RUN_SECTIONS = ("diffusion", "train_diffusion")
VAL_SEED = 1234  # the fixed (noise, timestep) draws of the val loss


@dataclass(frozen=True)
class LatentLookup:
    """Tokenizer latents f [N, c_v, h, w] of stimuli, by stimulus index (the `TokenCache.get` interface)."""

    indices: np.ndarray  # sorted int64 stimulus indices
    latents_NChw: torch.Tensor

    def get(self, stimuli: np.ndarray) -> list[torch.Tensor]:
        rows = np.clip(np.searchsorted(self.indices, stimuli), 0, len(self.indices) - 1)
        if not np.array_equal(self.indices[rows], np.asarray(stimuli)):
            raise DataError("some requested stimuli have no tokenizer latent")
        return [self.latents_NChw[torch.from_numpy(rows)]]


@torch.no_grad()
def tokenizer_latents(dataset, tokenizer: Tokenizer, stimuli: np.ndarray, batch_size: int = 128) -> LatentLookup:
    """The pre-quantisation latent of every listed stimulus, at the tokenizer's image size."""
    from mindhier.train.tokenizer import resize_uint8, to_model_input

    indices = np.unique(stimuli)
    parts = []
    for start in range(0, len(indices), batch_size):
        images = resize_uint8(dataset.images.load(indices[start : start + batch_size]), tokenizer.cfg.image_px)
        parts.append(tokenizer.latent(to_model_input(images)))
    return LatentLookup(indices, torch.cat(parts))


def diffusion_shapes(tokenizer: Tokenizer, encoder: BrainEncoder) -> DiffusionShapes:
    return DiffusionShapes(
        latent_channels=tokenizer.cfg.latent_channels,
        latent_side=tokenizer.cfg.scales[-1],
        level_tokens=encoder.shapes.queries,
        context_width=encoder.cfg.width,
        pooled_width=encoder.shapes.level_dims[-1],
    )


@dataclass(frozen=True)
class Budget:
    """The baseline's size and training length, and how they were matched to the scale-wise generator."""

    model: DiffusionConfig
    steps: int
    record: dict


def plan_budget(cfg: MindhierConfig, shapes: DiffusionShapes, tokenizer: Tokenizer, encoder: BrainEncoder) -> Budget:
    gen_shapes = generator_shapes(tokenizer, encoder)
    with torch.device("meta"):
        gen_params = sum(p.numel() for p in ScaleAR(cfg.generator, gen_shapes).parameters())
    model = match_parameters(cfg.diffusion, shapes, gen_params) if cfg.diffusion.matched else cfg.diffusion
    with torch.device("meta"):
        params = sum(p.numel() for p in LatentDiT(model, shapes).parameters())
    tg, td = cfg.train_generator, cfg.train_diffusion
    gen_flops = generator_step_flops(cfg.generator, gen_shapes, tg.batch_size)
    step_flops = diffusion_step_flops(model, shapes, td.batch_size)
    steps = td.steps or max(1, round(tg.steps * gen_flops / step_flops))
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
            "generator_training_flops": tg.steps * gen_flops,
            "steps_rule": "given (train_diffusion.steps)" if td.steps else "FLOP-matched to train_generator.steps",
            "flops_counted": "torch.utils.flop_counter on the meta device: matmuls, convs, attention; fwd + bwd",
        },
    )


@torch.no_grad()
def val_loss(
    model: LatentDiT,
    schedule: NoiseSchedule,
    conditioner: Conditioner,
    items: list[SubjectItems],
    latents: LatentLookup,
    device,
    batch_size: int = 128,
) -> float:
    """Mean noise-prediction error on val items under fixed (noise, timestep) draws (conditional stream)."""
    model.eval()
    rng = torch.Generator().manual_seed(VAL_SEED)
    total, count = 0.0, 0
    for subject_items_ in items:
        for start in range(0, len(subject_items_), batch_size):
            voxels = subject_items_.voxels_NV[start : start + batch_size].to(device)
            z0 = model.normalize(latents.get(subject_items_.images_N[start : start + batch_size])[0].to(device))
            noise = torch.randn(z0.shape, generator=rng).to(device)
            t = torch.randint(0, schedule.timesteps, (len(z0),), generator=rng).to(device)
            levels, pooled = conditioner([(subject_items_.subject, voxels)])
            eps = model(schedule.add_noise(z0, noise, t), t, levels[:, -1], pooled)
            total += float(F.mse_loss(eps, noise, reduction="sum"))
            count += noise.numel()
    model.train()
    return total / max(count, 1)


def train_diffusion(
    cfg: MindhierConfig,
    data_dir: str | Path,
    encoder_run: str | Path,
    tokenizer_run: str | Path,
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    progress: ProgressFn | None = None,
) -> Path:
    run_dir, tc, device = Path(out), cfg.train_diffusion, torch.device(device)
    is_main = rank == 0
    check_run_folder(run_dir, to_dict(cfg), RUN_SECTIONS, resume)
    frozen = load_frozen(encoder_run, tokenizer_run, subjects, "cpu")  # the latents are computed once, on the CPU
    encoder, tokenizer, conditioner, subjects = frozen.encoder, frozen.tokenizer, frozen.conditioner, frozen.subjects
    encoder.to(device)
    with frozen.open_dataset(data_dir) as dataset:
        train_items = [subject_items(dataset, s, "train") for s in subjects]
        val_items = [subject_items(dataset, s, "val") for s in subjects]
        seen = np.concatenate([x.images_N for x in train_items + val_items])
        latents = tokenizer_latents(dataset, tokenizer, seen)
    n_train = sum(len(x) for x in train_items)
    if n_train < tc.batch_size:
        raise ConfigError(f"{n_train} training trials, fewer than train_diffusion.batch_size {tc.batch_size}")
    shapes = diffusion_shapes(tokenizer, encoder)
    budget = plan_budget(cfg, shapes, tokenizer, encoder)
    schedule = NoiseSchedule.linear(budget.model.timesteps, budget.model.beta_start, budget.model.beta_end)

    torch.manual_seed(tc.seed)
    model = LatentDiT(budget.model, shapes)
    train_images = np.concatenate([x.images_N for x in train_items])
    model.set_latent_statistics(latents.get(np.unique(train_images))[0])
    model = model.to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, tc.warmup_steps)))
    noise_rng = torch.Generator().manual_seed(tc.seed + 1)
    start_step, best_loss = 0, float("inf")
    if resume:
        saved = DiffusionShapes.from_json(read_json(run_dir / SHAPES_FILE, "diffusion shapes"))
        saved_model = from_dict(DiffusionConfig, read_json(run_dir / MODEL_FILE, "diffusion model config"))
        if saved != shapes or saved_model != budget.model:
            raise ConfigError(f"cannot resume {run_dir}: the encoder, tokenizer or matched size changed")
        start_step, best_loss = load_resume_point(
            run_dir, LAST_WEIGHTS, model, optimizer, scheduler, {"noise": noise_rng}
        )
    elif is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", resolved_record(cfg))
        write_json(run_dir / MODEL_FILE, to_dict(budget.model))
        write_json(run_dir / SHAPES_FILE, shapes.to_json())
        write_json(
            run_dir / INPUTS_FILE,
            {
                "encoder_run": relative_input(run_dir, encoder_run),
                "tokenizer_run": relative_input(run_dir, tokenizer_run),
                "subjects": list(subjects),
                "routing": "static_terminal",
                "encoder_supervision": conditioner.supervision,
                "budget": budget.record,
            },
        )

    wrapped = model
    if world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    started, log_every, steps = time.perf_counter(), max(1, budget.steps // 200), budget.steps
    for step in range(start_step, steps):
        indices = rank_batch(n_train, tc.batch_size, step, tc.seed, rank, world_size)
        groups, (f,) = batch_groups(train_items, indices, latents)
        keep = [(torch.rand(len(v), 1, generator=noise_rng) >= budget.model.cfg_dropout) for _, v in groups]
        groups = [(s, (v * k.to(v)).to(device)) for (s, v), k in zip(groups, keep, strict=True)]  # CFG dropout
        z0 = model.normalize(f.to(device))
        noise = torch.randn(z0.shape, generator=noise_rng).to(device)
        t = torch.randint(0, schedule.timesteps, (len(z0),), generator=noise_rng).to(device)
        levels, pooled = conditioner(groups)
        with autocast:
            eps = wrapped(schedule.add_noise(z0, noise, t), t, levels[:, -1], pooled)
        loss = F.mse_loss(eps.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record: dict[str, object] = {"step": done, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]}
        report(progress, "train diffusion", done, steps, {"loss": record["loss"]})
        if is_main and (done % tc.eval_every == 0 or done == steps):
            record["val_loss"] = val_loss(model, schedule, conditioner, val_items, latents, device)
            if record["val_loss"] < best_loss:
                best_loss = float(record["val_loss"])
                save_weights(run_dir / DIFFUSION_WEIGHTS, model, {"step": str(done)})
        if world_size > 1 and (done % tc.eval_every == 0 or done == steps):
            torch.distributed.barrier()
        if is_main and (done % log_every == 0 or "val_loss" in record or done == steps):
            with open(run_dir / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
        if is_main and (done % tc.checkpoint_every == 0 or done == steps):
            save_resume_point(run_dir, LAST_WEIGHTS, model, optimizer, scheduler, done, best_loss, {"noise": noise_rng})
    seconds = time.perf_counter() - started
    if is_main:
        write_json(
            run_dir / SUMMARY_FILE,
            {
                "steps": steps,
                "resumed_from": start_step,
                "seconds": round(seconds, 2),
                **budget.record,
                "best_val_loss": best_loss,
                "subjects": list(subjects),
                "device": str(device),
                "world_size": world_size,
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
        )
    return run_dir


def resolved_model(run_dir: str | Path) -> DiffusionConfig:
    """The backbone a run trained (after the `matched` search)."""
    return from_dict(DiffusionConfig, read_json(Path(run_dir) / MODEL_FILE, "diffusion model config"))
