"""Stage 1: train the hierarchical fMRI encoder against a frozen teacher hierarchy (docs/method.md §3).

One explicit loop: deterministic global batches split across processes → encoder → alignment loss
(SoftCLIP negatives gathered from every process) → AdamW + OneCycle with gradient clipping. Every
`eval_every` steps, brain→image / image→brain retrieval on `val` picks the best weights
(`encoder.safetensors`, used by later stages); every `checkpoint_every` steps a resume point is written.
The teacher's features come from the feature cache (computed once, on the training device) or, with
`teacher.cache=false`, from the teacher run inside each step (`data/teacher_targets.py`). Written for
`torchrun`: the caller starts the process group and passes device, rank and world size.

Run folder (`run_layout`): config.json, encoder_shapes.json, features.json, encoder.safetensors,
encoder_last.safetensors, resume/, log.jsonl, train_summary.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.config import AlignmentConfig, MindhierConfig
from mindhier.data.nsd import open_dataset
from mindhier.data.teacher_targets import TeacherTargets, teacher_targets
from mindhier.errors import ConfigError
from mindhier.losses import stage1_loss, supervised_levels
from mindhier.metrics.retrieval import retrieval_top1
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes, encode_in_batches
from mindhier.teachers import build_teacher
from mindhier.train.batches import rank_batch
from mindhier.train.calibrate import write_calibration
from mindhier.train.encoder_data import EncoderData, load_encoder_data
from mindhier.train.low_level_fit import write_low_level
from mindhier.train.optim import adamw, one_cycle
from mindhier.train.session import Launch, TrainingSession, TrainResult

KIND = "encoder"
RUN_SECTIONS = ("data", "teacher", "encoder", "alignment", "train_encoder")  # what a resumed run must share


def encoder_shapes(dataset, subjects: tuple[int, ...], targets: TeacherTargets, cfg: MindhierConfig) -> EncoderShapes:
    tokens = {level.tokens for level in targets.levels}
    if len(tokens) != 1:
        raise ConfigError(f"teacher levels have different token counts {sorted(tokens)}; the encoder needs one Q")
    text_tokens = text_dim = 0
    if cfg.encoder.text_queries > 0 and targets.has_text:
        text_tokens, text_dim = targets.text_shape
    return EncoderShapes(
        subject_voxels=tuple((s, dataset.recording(s).n_voxels) for s in subjects),
        level_dims=tuple(level.dim for level in targets.levels),
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
        out = encode_in_batches(model, items.voxels_NV, items.subject, device=device)
        target = data.targets.get(items.images_N)[-1]
        result = retrieval_top1(out.terminal_BQD, target, generator=torch.Generator().manual_seed(0))
        scores.append((result["brain_to_image_top1"] + result["image_to_brain_top1"]) / 2)
    return {"val_retrieval_top1": float(np.mean(scores)) if scores else float("nan")}


def accumulate_stage1(run: TrainingSession, data: EncoderData, indices: np.ndarray, alignment: AlignmentConfig) -> None:
    """Forward and backward of this process's share `indices` of one global batch, micro-batch by micro-batch
    (gradients accumulate; the caller steps the optimiser). Shared with `mindhier adapt`."""
    device = run.world.device
    run.wrapped.trained.train()
    for rows, last in run.micro_batches(len(indices)):
        batch = data.train_batch(indices[rows])
        share = len(batch.rows) / len(indices)
        groups = [(s, v.to(device, non_blocking=True)) for s, v in batch.rows.groups]
        targets = [t.to(device, non_blocking=True) for t in batch.targets]
        text = batch.text_NUD.to(device) if batch.text_NUD is not None else None
        with run.accumulating(last):
            with run.autocast():
                out = run.wrapped.trained(groups)
            loss, terms = stage1_loss(out, targets, alignment, text)
            run.backward(loss, share, terms)


def train_encoder(
    cfg: MindhierConfig,
    data_dir: str | Path,
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,
    features: str | Path | None = None,
    **launch: Unpack[Launch],
) -> TrainResult:
    """Train (or resume) an encoder on `data_dir` into the run folder `out`."""
    tc = cfg.train_encoder
    run = TrainingSession.start(out, KIND, cfg, tc, RUN_SECTIONS, **launch)
    world, progress = run.world, run.progress

    dataset = open_dataset(data_dir, cfg.data, subjects=list(subjects) if subjects else None)
    subjects = tuple(dataset.subjects)
    teacher = build_teacher(cfg.teacher, device=world.device)
    if world.is_main:  # rank 0 builds the cache (if one is used); the others then read it
        targets = teacher_targets(cfg.teacher, data_dir, dataset, teacher, features=features, progress=progress)
    world.barrier()
    if not world.is_main:
        targets = teacher_targets(cfg.teacher, data_dir, dataset, teacher, features=features)
    data = load_encoder_data(dataset, subjects, targets)
    shapes = encoder_shapes(dataset, subjects, targets, cfg)
    saved = run.saved_json(run_layout.shapes_file(KIND), "encoder shapes", EncoderShapes.from_json)
    if saved is not None and saved != shapes:
        raise ConfigError(
            f"cannot resume {run.run_dir}: the data or teacher changed the encoder's shapes;"
            " rerun with the original data and config, or start a new --out"
        )
    run.write_json(run_layout.shapes_file(KIND), shapes.to_json())
    run.write_json(run_layout.FEATURES, targets.record())

    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model = BrainEncoder(cfg.encoder, shapes)
    model.trained_heads = supervised_levels(cfg.alignment.supervision, cfg.encoder.depth)
    units = [*model.blocks, *(model.text_blocks if model.has_text else [])]
    wrapped = run.attach(
        model,
        units,
        lambda m: adamw(m, tc.lr, tc.weight_decay),
        lambda opt: one_cycle(opt, tc.lr, tc.steps, tc.pct_start),
        higher_is_better=True,
        # other subjects' input layers, and unsupervised heads, get no gradient in a step
        find_unused_parameters=len(subjects) > 1 or cfg.alignment.supervision != "cascaded",
    )

    for step in run.steps():
        indices = rank_batch(data.n_train, tc.batch_size, step, tc.seed, world.rank, world.world_size)
        accumulate_stage1(run, data, indices, cfg.alignment)
        extra = run.optimizer_step()
        done = step + 1
        extra |= run.evaluate(done, lambda: validation_score(wrapped.module, data, world.device), "val_retrieval_top1")
        run.end_step(done, extra)

    calibration = write_calibration(run, cfg, shapes, data)
    low_level = write_low_level(run, cfg, dataset, data)
    summary = run.finish(
        {
            **({"calibration": calibration} if calibration else {}),
            **({"low_level": low_level} if low_level else {}),
            "subjects": list(subjects),
            "sessions": cfg.data.describe_sessions(),
            "train_trials": {str(items.subject): len(items) for items in data.train},
            "best_metric": "val_retrieval_top1",
        }
    )
    return TrainResult(run.run_dir, summary, wrapped.module)
