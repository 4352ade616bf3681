"""Stage 1: train the hierarchical fMRI encoder against a frozen teacher hierarchy.

One explicit loop: deterministic rank-sharded batches → encoder → alignment loss → AdamW + OneCycle
with gradient clipping (bf16 autocast on CUDA). Every `eval_every` steps, brain→image / image→brain
retrieval on `val` picks the best checkpoint (`encoder.safetensors`, used by later stages); every
`checkpoint_every` steps, the last weights and the optimizer/scheduler/step/RNG state are written so
`resume=True` continues exactly. Written for `torchrun`: the caller initialises the process group and
passes device, rank and world size; only rank 0 writes files.

Run folder: config.json, encoder_shapes.json, encoder.safetensors (best on val),
encoder_last.safetensors, train_state.pt, log.jsonl, train_summary.json.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mindhier.checkpoint import (
    check_run_folder,
    load_train_state,
    load_weights,
    save_train_state,
    save_weights,
    unwrap,
)
from mindhier.config import MindhierConfig, resolved_record, to_dict
from mindhier.data.feature_cache import FeatureCache, build_feature_cache
from mindhier.data.nsd import open_dataset
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, write_json
from mindhier.losses import stage1_loss
from mindhier.metrics.retrieval import retrieval_top1
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes, encode_in_batches
from mindhier.progress import ProgressFn, report
from mindhier.teachers import build_teacher
from mindhier.train.encoder_data import EncoderData, load_encoder_data
from mindhier.train.optim import adamw, one_cycle
from mindhier.train.sampling import rank_batch

ENCODER_WEIGHTS = "encoder.safetensors"
LAST_WEIGHTS = "encoder_last.safetensors"
SHAPES_FILE = "encoder_shapes.json"
TRAIN_STATE = "train_state.pt"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "train_summary.json"
FEATURES_FILE = "features.json"  # where the teacher targets came from (path + key)
RUN_SECTIONS = ("data", "teacher", "encoder", "alignment", "train_encoder")  # what a resumed run must share


@dataclass(frozen=True)
class EncoderRun:
    run_dir: Path
    steps: int
    seconds: float  # wall time of the optimisation loop in this call
    best_val: float  # mean of val brain→image and image→brain top-1 at the best checkpoint
    best_step: int
    resumed_from: int  # 0 for a fresh run
    model: BrainEncoder  # the final (last-step) weights, in memory


def encoder_shapes(dataset, subjects: tuple[int, ...], cache: FeatureCache, cfg: MindhierConfig) -> EncoderShapes:
    tokens = {level.tokens for level in cache.levels}
    if len(tokens) != 1:
        raise ConfigError(f"teacher levels have different token counts {sorted(tokens)}; the encoder needs one Q")
    text_tokens = text_dim = 0
    if cfg.encoder.text_queries > 0 and cache.has_text:
        text_tokens, text_dim = cache.text_shape
    return EncoderShapes(
        subject_voxels=tuple((s, dataset.recording(s).n_voxels) for s in subjects),
        level_dims=tuple(level.dim for level in cache.levels),
        queries=tokens.pop(),
        text_tokens=text_tokens,
        text_dim=text_dim,
    )


@torch.no_grad()
def validation_score(model: BrainEncoder, data: EncoderData, device) -> dict[str, float]:
    """Mean val retrieval top-1 (brain→image and image→brain) over subjects, MindEye pools of ≤ 300."""
    scores = []
    for items in data.val:
        if len(items) < 2:
            continue
        out = encode_in_batches(unwrap(model), items.voxels_NV, items.subject, device=device)
        target = data.targets.get(items.images_N)[-1]
        result = retrieval_top1(out.terminal_BQD, target, generator=torch.Generator().manual_seed(0))
        scores.append((result["brain_to_image_top1"] + result["image_to_brain_top1"]) / 2)
    return {"val_retrieval_top1": float(np.mean(scores)) if scores else float("nan")}


def train_encoder(
    cfg: MindhierConfig,
    data_dir: str | Path,
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,
    features: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    progress: ProgressFn | None = None,
) -> EncoderRun:
    """Train (or resume) an encoder on `data_dir`; writes the run folder `out` (rank 0 only)."""
    run_dir, tc, device = Path(out), cfg.train_encoder, torch.device(device)
    is_main = rank == 0
    check_run_folder(run_dir, to_dict(cfg), RUN_SECTIONS, resume)

    dataset = open_dataset(data_dir, cfg.data, subjects=list(subjects) if subjects else None)
    subjects = tuple(dataset.subjects)
    teacher = build_teacher(cfg.teacher)
    if is_main:
        cache = build_feature_cache(data_dir, teacher, out=features, progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
    if not is_main:
        cache = build_feature_cache(data_dir, teacher, out=features)  # reuses rank 0's cache
    data = load_encoder_data(dataset, subjects, cache)
    shapes = encoder_shapes(dataset, subjects, cache, cfg)

    torch.manual_seed(tc.seed)
    model = BrainEncoder(cfg.encoder, shapes).to(device)
    optimizer = adamw(model, tc.lr, tc.weight_decay)
    scheduler = one_cycle(optimizer, tc.lr, tc.steps, tc.pct_start)
    start_step, best_val, best_step = 0, -float("inf"), 0
    if resume:
        saved_shapes = EncoderShapes.from_json(read_json(run_dir / SHAPES_FILE, "encoder shapes"))
        if saved_shapes != shapes:
            raise ConfigError(f"cannot resume {run_dir}: the data or teacher changed the encoder's shapes")
        load_weights(run_dir / LAST_WEIGHTS, model)
        state = load_train_state(run_dir / TRAIN_STATE)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, best_val, best_step = int(state["step"]), float(state["best_val"]), int(state["best_step"])
        torch.set_rng_state(state["torch_rng"])
    elif is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", resolved_record(cfg))
        write_json(run_dir / SHAPES_FILE, shapes.to_json())
        write_json(run_dir / FEATURES_FILE, {"path": str(cache.path), "key": cache.key, "teacher": cache.teacher})

    wrapped = model
    if world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # other subjects' input layers, and unsupervised heads, get no gradient in a step
            find_unused_parameters=len(subjects) > 1 or cfg.alignment.supervision != "cascaded",
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def checkpoint(step: int) -> None:
        save_weights(run_dir / LAST_WEIGHTS, model, {"step": str(step)})
        save_train_state(
            run_dir / TRAIN_STATE,
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "best_val": best_val,
                "best_step": best_step,
                "torch_rng": torch.get_rng_state(),
            },
        )

    log_every = max(1, tc.steps // 200)
    started = time.perf_counter()
    wrapped.train()
    for step in range(start_step, tc.steps):
        indices = rank_batch(data.n_train, tc.batch_size, step, tc.seed, rank, world_size)
        groups, _, targets, text_target = data.train_batch(indices)
        groups = [(s, v.to(device, non_blocking=True)) for s, v in groups]
        targets = [t.to(device, non_blocking=True) for t in targets]
        text_target = text_target.to(device) if text_target is not None else None
        with autocast:
            out = wrapped(groups)
        loss, terms = stage1_loss(out, targets, cfg.alignment, text_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record = {"step": done, "loss": float(loss.detach()), **terms, "lr": scheduler.get_last_lr()[0]}
        report(progress, "train encoder", done, tc.steps, {"loss": record["loss"]})

        if done % tc.eval_every == 0 or done == tc.steps:
            if is_main:
                record.update(validation_score(model, data, device))
                score = record["val_retrieval_top1"]
                if not score <= best_val:  # also true for the first finite score
                    best_val, best_step = score, done
                    save_weights(run_dir / ENCODER_WEIGHTS, model, {"step": str(done)})
                wrapped.train()
            if world_size > 1:
                torch.distributed.barrier()
        if is_main and (done % log_every == 0 or "val_retrieval_top1" in record or done == tc.steps):
            with open(run_dir / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
        if is_main and (done % tc.checkpoint_every == 0 or done == tc.steps):
            checkpoint(done)

    seconds = time.perf_counter() - started
    if is_main:
        if not (run_dir / ENCODER_WEIGHTS).exists():  # no usable val split: the last weights are the choice
            save_weights(run_dir / ENCODER_WEIGHTS, model, {"step": str(tc.steps)})
        write_json(
            run_dir / SUMMARY_FILE,
            {
                "steps": tc.steps,
                "resumed_from": start_step,
                "seconds": round(seconds, 2),
                "steps_per_second": round((tc.steps - start_step) / max(seconds, 1e-9), 2),
                "best_val_retrieval_top1": best_val,
                "best_step": best_step,
                "parameters": sum(p.numel() for p in model.parameters()),
                "subjects": list(subjects),
                "device": str(device),
                "world_size": world_size,
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
        )
    return EncoderRun(run_dir, tc.steps, seconds, best_val, best_step, start_step, model)
