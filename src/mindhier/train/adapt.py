"""Adapt a shared encoder to a new subject with little data (`mindhier adapt`, docs/method.md §3.5).

The shared encoder (trained on other subjects, one input layer each) keeps everything after its input layers;
the new subject gets a new input layer for its own voxel count. Two phases in one schedule (`adapt` config):

1. the first `alone_steps`: only the new input layer learns — it learns to write the new subject's voxels into
   the hidden space the shared encoder already reads (the shared encoder's learning rate is 0);
2. the rest: the shared encoder is fine-tuned with it, at the lower `shared_lr`.

Why two phases rather than MindEye2's fine-tuning of everything at once from the start: the new layer starts
random, so its first gradients are noise to the shared encoder, and on one session (≈ 700 trials) fine-tuning
everything at once lets the shared part drift towards that session's noise before the new layer is any good.
Each rate warms up linearly from its phase's start and decays with a cosine to a tenth. Loss, validation and
checkpoint choice are Stage 1's (val retrieval on the new subject's held-out training images).

The result is an ordinary encoder run (kind `encoder`, one input layer: the new subject's): `reconstruct`,
`eval encoder` and `train generator` load it like any other. `inputs.json` records the shared run it came from.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.checkpoint import config_differences, unwrap
from mindhier.config import AdaptConfig, MindhierConfig, to_dict
from mindhier.data.nsd import open_dataset
from mindhier.data.teacher_targets import teacher_targets
from mindhier.errors import ConfigError, DataError
from mindhier.losses import supervised_levels
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes, subject_key
from mindhier.runs import load_encoder
from mindhier.teachers import build_teacher
from mindhier.train.batches import rank_batch
from mindhier.train.calibrate import write_calibration
from mindhier.train.encoder import accumulate_stage1, validation_score
from mindhier.train.encoder_data import load_encoder_data
from mindhier.train.low_level_fit import write_low_level
from mindhier.train.session import Launch, TrainingSession, TrainResult

KIND = "encoder"
SHARED_SECTIONS = ("teacher", "encoder", "alignment")  # what the adapted model must share with the shared run
RUN_SECTIONS = ("data", *SHARED_SECTIONS, "adapt")  # what a resumed adaptation must share


def shared_encoder_run(path: str | Path) -> Path:
    """The encoder run of a shared model: the run folder itself, or a pipeline folder's `encoder/`."""
    path = Path(path)
    if (path / run_layout.PIPELINE_MARKER).is_file() and (path / run_layout.PIPELINE_ENCODER).is_dir():
        path = path / run_layout.PIPELINE_ENCODER
    run_layout.expect_kind(path, KIND)
    return path


def check_same_model(cfg: MindhierConfig, shared_cfg: MindhierConfig, shared_run: Path) -> None:
    """The adapted run must have the shared run's architecture and teacher: another preset is refused."""
    differences = config_differences(
        {k: to_dict(getattr(shared_cfg, k)) for k in SHARED_SECTIONS},
        {k: to_dict(getattr(cfg, k)) for k in SHARED_SECTIONS},
    )
    if differences:
        raise ConfigError(
            f"the shared run {shared_run} is a {shared_cfg.preset!r} model and this config ({cfg.preset!r}) differs "
            f"({', '.join(differences[:3])}); adapt with the shared run's own config (drop --preset/--config)"
        )


def adapted_shapes(shared: EncoderShapes, subject: int, n_voxels: int) -> EncoderShapes:
    """The shared encoder's shapes with one input layer: the new subject's."""
    if subject in shared.voxels:
        if shared.voxels[subject] != n_voxels:
            raise DataError(
                f"subject {subject} has {n_voxels} voxels in this dataset but {shared.voxels[subject]} in the shared "
                "model; it is another person or another mask: give it a new --subject id"
            )
        raise ConfigError(
            f"subject {subject} is already in the shared model (trained on {list(shared.voxels)}); use the shared "
            "run for it directly, or give a new participant a new --subject id"
        )
    return EncoderShapes(((subject, n_voxels),), shared.level_dims, shared.queries, shared.text_tokens, shared.text_dim)


def adapted_start(model: BrainEncoder, shared: BrainEncoder, subject: int) -> None:
    """Copy every shared weight into `model`; only the new input layer keeps its fresh initialisation."""
    new_layer = f"input_layers.{subject_key(subject)}."
    state = {k: v for k, v in shared.state_dict().items() if not k.startswith("input_layers.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    stray = [k for k in missing if not k.startswith(new_layer)] + list(unexpected)
    if stray:
        raise ConfigError(
            f"the shared encoder does not fit the adapted one: {stray[:3]};"
            " pass the shared run the adapted one was started from"
        )


def two_phase_optimizer(model: BrainEncoder, subject: int, cfg: AdaptConfig) -> torch.optim.AdamW:
    """AdamW over four groups (new layer / shared, each decayed or not); the schedule sets their rates."""
    new_layer = f"input_layers.{subject_key(subject)}."
    groups = []
    for is_new, lr in ((True, cfg.lr), (False, cfg.shared_lr)):
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n.startswith(new_layer) == is_new]
        for decayed in (True, False):
            chosen = [p for _, p in params if (p.ndim >= 2) == decayed]
            if chosen:
                groups.append(
                    {"params": chosen, "lr": lr, "weight_decay": cfg.weight_decay if decayed else 0.0, "new": is_new}
                )
    return torch.optim.AdamW(groups, betas=(0.9, 0.999))


def phase_factor(step: int, start: int, total: int, warmup: int) -> float:
    """0 before `start`; a linear warm-up over `warmup` steps; then a cosine from 1 to 0.1 at `total`."""
    if step < start:
        return 0.0
    into = step - start
    if into < warmup:
        return (into + 1) / warmup
    progress = min(1.0, (into - warmup) / max(1, total - start - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def two_phase_schedule(optimizer: torch.optim.AdamW, cfg: AdaptConfig) -> torch.optim.lr_scheduler.LambdaLR:
    factors = [
        (lambda step: phase_factor(step, 0, cfg.steps, cfg.warmup_steps))
        if group["new"]
        else (lambda step: phase_factor(step, cfg.alone_steps, cfg.steps, cfg.warmup_steps))
        for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def adapt_encoder(
    cfg: MindhierConfig,
    shared_run: str | Path,
    data_dir: str | Path,
    subject: int,
    out: str | Path,
    *,
    features: str | Path | None = None,
    **launch: Unpack[Launch],
) -> TrainResult:
    """Adapt the shared encoder in `shared_run` (an encoder run or a pipeline folder) to `subject` of `data_dir`,
    with `cfg.data.sessions` of its data, into the encoder run folder `out`."""
    shared_run = shared_encoder_run(shared_run)
    shared = load_encoder(shared_run)
    check_same_model(cfg, shared.cfg, shared_run)
    ac = cfg.adapt
    run = TrainingSession.start(out, KIND, cfg, ac, RUN_SECTIONS, **launch)
    world, progress = run.world, run.progress
    run.task = f"adapt encoder to subject {subject}"

    dataset = open_dataset(data_dir, cfg.data, subjects=[subject])
    teacher = build_teacher(cfg.teacher, device=world.device)
    if world.is_main:  # rank 0 builds the cache (if one is used); the others then read it
        targets = teacher_targets(cfg.teacher, data_dir, dataset, teacher, features=features, progress=progress)
    world.barrier()
    if not world.is_main:
        targets = teacher_targets(cfg.teacher, data_dir, dataset, teacher, features=features)
    if targets.record()["teacher"] != shared.features.get("teacher"):
        raise ConfigError(
            f"the teacher features ({targets.record()['path'] or 'on the fly'}) come from another teacher than the"
            " shared run's; rebuild the cache (mindhier features --data DATA --overwrite) with its --preset"
        )
    shapes = adapted_shapes(shared.shapes, subject, dataset.recording(subject).n_voxels)
    saved = run.saved_json(run_layout.shapes_file(KIND), "encoder shapes", EncoderShapes.from_json)
    if saved is not None and saved != shapes:
        raise ConfigError(
            f"cannot resume {run.run_dir}: the data changed the adapted encoder's shapes;"
            " rerun with the original data, or start a new --out"
        )
    data = load_encoder_data(dataset, (subject,), targets)
    if data.n_train < ac.batch_size:
        raise DataError(
            f"subject {subject} has {data.n_train} training trials in sessions {cfg.data.describe_sessions()}, fewer "
            f"than adapt.batch_size {ac.batch_size}; use more sessions or a smaller batch"
        )
    run.write_json(run_layout.shapes_file(KIND), shapes.to_json())
    run.write_json(run_layout.FEATURES, targets.record())
    run.write_json(
        run_layout.INPUTS,
        {
            "adapted_from": run_layout.relative_input(run.run_dir, shared_run),
            "shared_subjects": list(shared.shapes.voxels),
            "subject": subject,
            "sessions": cfg.data.describe_sessions(),
        },
    )

    torch.manual_seed(ac.seed)  # the same new layer on every process
    model = BrainEncoder(cfg.encoder, shapes)
    model.trained_heads = supervised_levels(cfg.alignment.supervision, cfg.encoder.depth)
    adapted_start(model, shared.model, subject)
    if ac.shared_lr == 0:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(f"input_layers.{subject_key(subject)}."))
    units = [*model.blocks, *(model.text_blocks if model.has_text else [])]
    wrapped = run.attach(
        model,
        units,
        lambda m: two_phase_optimizer(unwrap(m), subject, ac),
        lambda opt: two_phase_schedule(opt, ac),
        higher_is_better=True,
        find_unused_parameters=cfg.alignment.supervision != "cascaded",
    )

    for step in run.steps():
        indices = rank_batch(data.n_train, ac.batch_size, step, ac.seed, world.rank, world.world_size)
        accumulate_stage1(run, data, indices, cfg.alignment)
        used = [group["lr"] for group in run.optimizer.param_groups if not group["new"]]  # this step's rate
        extra = run.optimizer_step() | {"shared_lr": used[0] if used else 0.0}
        done = step + 1
        extra |= run.evaluate(done, lambda: validation_score(wrapped.module, data, world.device), "val_retrieval_top1")
        run.end_step(done, extra)

    calibration = write_calibration(run, cfg, shapes, data)
    low_level = write_low_level(run, cfg, dataset, data)
    summary = run.finish(
        {
            **({"calibration": calibration} if calibration else {}),
            **({"low_level": low_level} if low_level else {}),
            "subjects": [subject],
            "sessions": cfg.data.describe_sessions(),
            "train_trials": {str(subject): data.n_train},
            "adapted_from": str(shared_run),
            "shared_subjects": list(shared.shapes.voxels),
            "best_metric": "val_retrieval_top1",
        }
    )
    return TrainResult(run.run_dir, summary, wrapped.module)
