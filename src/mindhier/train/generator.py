"""Stage 2: train the scale-wise generator on a frozen encoder and a frozen tokenizer (docs/method.md §5).

Per step: the items of the global batch, split across processes, and their condition
(`train/condition_sources.py`, `train_generator.condition`): `brain` — single-trial voxels through the frozen
encoder, whose levels are read in the teacher's space — or `teacher` — the teacher's own features of the
seen image (the oracle). With probability `cfg_dropout` a sample's condition becomes the null condition,
which classifier-free guidance uses at sampling time; the draw is made for the global batch from a
generator keyed by the step, so it does not depend on the number of processes. The cached token maps of the
seen images give the targets and, through the frozen quantizer, the teacher-forcing inputs; the loss is the
mean token cross-entropy over all scales. `train_generator.init` starts from a trained generator (a run
folder, a weights file, or `prior`: the embedded world's pretrained generator that ships in the package) —
the paper's Stage 2 fine-tunes a pretrained generator the same way. AdamW(0.9, 0.95), warm-up then a
constant (or cosine-decaying) rate, clipping. Every `eval_every` steps: val loss and per-scale token accuracy
(teacher-forced, conditional) in the log; the best val loss is kept as
`generator.safetensors`. Resumable; DDP or FSDP (per Switti block) under torchrun.

The routing (`generator.routing`) is part of the run: each routing is its own trained model.

Run folder (`run_layout`): config.json, generator_shapes.json, inputs.json, generator.safetensors (best val),
generator_last.safetensors, resume/, log.jsonl, train_summary.json.

Shape letters (docs/glossary.md): B batch, N items, V voxels, L tokens, K scales, Z codebook size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.checkpoint import load_state_strict, unwrap
from mindhier.config import MindhierConfig
from mindhier.data.subject_items import subject_items
from mindhier.data.teacher_targets import teacher_targets
from mindhier.data.token_cache import build_token_cache
from mindhier.errors import ConfigError
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.runs import load_generator_init
from mindhier.teachers import build_teacher
from mindhier.train.batches import rank_batch, rank_rows
from mindhier.train.condition_sources import BrainSource, ConditionSource, TeacherSource, teacher_source
from mindhier.train.frozen_stage1 import FrozenStage1, load_frozen
from mindhier.train.optim import adamw, warmup_schedule
from mindhier.train.parallel import World
from mindhier.train.random_streams import integer_draws, keep_mask
from mindhier.train.session import Launch, TrainingSession, TrainResult
from mindhier.train.warm_start import initial_weights

KIND = "generator"
RUN_SECTIONS = ("data", "generator", "train_generator")


def generator_shapes(tokenizer: Tokenizer, source: ConditionSource) -> GeneratorShapes:
    return GeneratorShapes.for_levels(tokenizer.cfg, source.level_dims, source.level_tokens)


class TokenLookup(Protocol):
    def get(self, images_N: np.ndarray) -> list[torch.Tensor]: ...


@torch.no_grad()
def token_accuracy(
    model: ScaleAR, tokenizer: Tokenizer, source: ConditionSource, tokens: TokenLookup, batch_size: int = 128
) -> dict[str, object]:
    """Teacher-forced val loss and top-1 token accuracy per scale (conditional stream)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    offsets = np.cumsum([0] + [s * s for s in model.shapes.scales])
    correct = np.zeros(len(model.shapes.scales))
    count = np.zeros(len(model.shapes.scales))
    loss_sum, n_tokens = 0.0, 0
    for (levels, pooled, _), images_N in source.val_batches(batch_size):
        target = [t.to(device) for t in tokens.get(images_N)]
        logits = model(tokenizer.quantize.teacher_forcing_inputs(target), levels, pooled).float()
        flat = torch.cat(target, dim=1)
        loss_sum += float(F.cross_entropy(logits.flatten(0, 1), flat.flatten(), reduction="sum"))
        n_tokens += flat.numel()
        hits = (logits.argmax(-1) == flat).float()
        for k in range(len(model.shapes.scales)):
            correct[k] += float(hits[:, offsets[k] : offsets[k + 1]].sum())
            count[k] += hits[:, offsets[k] : offsets[k + 1]].numel()
    model.train(was_training)
    return {
        "val_loss": loss_sum / n_tokens if n_tokens else float("nan"),
        "val_token_accuracy": (correct / np.maximum(count, 1)).round(4).tolist(),
    }


def train_generator(
    cfg: MindhierConfig,
    data_dir: str | Path,  # brain inputs of every subject, and the stimuli whose token maps are the targets
    encoder_run: str | Path,  # the frozen Stage-1 encoder: the brain levels each scale is routed to
    tokenizer_run: str | Path,  # the frozen tokenizer (run, VQ-VAE file or name): targets and teacher-forcing inputs
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,  # default: the encoder's first subject
    **launch: Unpack[Launch],
) -> TrainResult:
    """Train (or resume) the scale-wise generator on a dataset into the run folder `out`, conditioned on the
    brain or, with `train_generator.condition=teacher`, on the teacher's features of the seen images."""
    tc = cfg.train_generator
    run = TrainingSession.start(out, KIND, cfg, tc, RUN_SECTIONS, **launch)
    world, progress = run.world, run.progress
    frozen = load_frozen(encoder_run, tokenizer_run, subjects, world.device, cfg.tokenizer)
    dataset = frozen.open_dataset(data_dir, cfg.data.sessions)
    identity = frozen.tokenizer_source.identity()
    if world.is_main:  # rank 0 builds the caches; the others then read them
        tokens = build_token_cache(data_dir, frozen.tokenizer, identity, progress=progress)
    world.barrier()
    if not world.is_main:
        tokens = build_token_cache(data_dir, frozen.tokenizer, identity)
    tokens.check_vocabulary(frozen.tokenizer.cfg.vocab)
    train_items = [subject_items(dataset, s, "train") for s in frozen.subjects]
    val_items = [subject_items(dataset, s, "val") for s in frozen.subjects]
    if tc.condition == "brain":
        source: ConditionSource = BrainSource(frozen.condition, train_items, val_items)
    else:
        source = oracle_source(data_dir, dataset, frozen, train_items, val_items, world)
    frozen_inputs = frozen.inputs_record(run.run_dir, cfg.data.sessions)
    run.check_inputs(frozen_inputs)  # a resumed run is given the encoder and tokenizer it started with
    record = {
        **frozen_inputs,
        **source.record(),
        "token_cache": {"path": run_layout.relative_input(run.run_dir, tokens.path), "key": tokens.key},
    }
    return fit_generator(run, cfg, source, tokens, frozen.tokenizer, record)


def oracle_source(data_dir, dataset, frozen: FrozenStage1, train_items, val_items, world: World) -> TeacherSource:
    """The teacher's features of the dataset's train/val images (the encoder's teacher), from its feature cache
    or, with `teacher.cache=false`, computed on the fly."""
    teacher_cfg = frozen.encoder_cfg.teacher
    teacher = build_teacher(teacher_cfg, device=world.device)
    if world.is_main:  # rank 0 builds the cache (if one is used); the others then read it
        targets = teacher_targets(teacher_cfg, data_dir, dataset, teacher)
    world.barrier()
    if not world.is_main:
        targets = teacher_targets(teacher_cfg, data_dir, dataset, teacher)
    level_dims = tuple(level.dim for level in targets.levels)
    if level_dims != tuple(frozen.encoder.shapes.level_dims):
        raise ConfigError(
            f"the teacher features ({targets.record()['path'] or 'on the fly'}) have levels {level_dims}, the"
            " encoder's teacher another; rebuild the cache: mindhier features --data DATA --overwrite with the"
            " encoder's --preset"
        )
    unique = lambda items: np.unique(np.concatenate([x.images_N for x in items]))  # noqa: E731 - once per split
    return teacher_source(
        targets,
        level_dims,
        targets.levels[0].tokens,
        unique(train_items),
        unique(val_items),
        f"teacher features of {data_dir}",
        world.device,
    )


def fit_generator(
    run: TrainingSession,
    cfg: MindhierConfig,
    source: ConditionSource,
    tokens: TokenLookup,
    tokenizer: Tokenizer,
    inputs: dict,
) -> TrainResult:
    """The loop: a generator for `source`'s condition, trained on `tokens` of its items (the shared core)."""
    tc, gc, world = cfg.train_generator, cfg.generator, run.world
    if source.n_train < tc.batch_size:
        raise ConfigError(
            f"{source.n_train} training items, fewer than train_generator.batch_size {tc.batch_size};"
            " lower train_generator.batch_size"
        )
    shapes = generator_shapes(tokenizer, source)
    saved = run.saved_json(run_layout.shapes_file(KIND), "generator shapes", GeneratorShapes.from_json)
    if saved is not None and saved != shapes:
        raise ConfigError(
            f"cannot resume {run.run_dir}: the encoder or tokenizer changed the generator's shapes;"
            " rerun with the original inputs, or start a new --out"
        )
    run.write_json(run_layout.shapes_file(KIND), shapes.to_json())
    start = initial_weights(tc.init, KIND, cfg)
    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model = ScaleAR(gc, shapes)
    init = start.record
    if start.switti:
        init = {**init, **load_generator_init(model, start.state, init["source"]).record()}
    elif start.state is not None:
        load_state_strict(model, start.state, init["source"])
    # the unconditional stream sampling guides against: the one these weights learnt — the start's, when no step
    # trains them (the prior as it is reads the brain, but its null is the teacher's)
    trained_on = source.record()
    null_condition = (init.get("condition") if tc.steps == 0 else None) or trained_on["condition"]
    run.write_json(
        run_layout.INPUTS,
        {**inputs, **trained_on, "null_condition": null_condition, "routing": gc.routing, "init": init},
    )
    wrapped = run.attach(
        model,
        list(model.blocks),
        lambda m: adamw(m, tc.lr, tc.weight_decay, betas=(0.9, 0.95)),
        lambda opt: warmup_schedule(opt, tc.warmup_steps, tc.steps, tc.schedule),
        higher_is_better=False,
        fp32_units=[model.head],  # logits stay fp32 under bf16 mixed precision
    )
    mine = rank_rows(tc.batch_size, world.rank, world.world_size)
    for step in run.steps():
        indices = rank_batch(source.n_train, tc.batch_size, step, tc.seed, world.rank, world.world_size)
        keep = keep_mask(tc.seed, step, tc.batch_size, gc.cfg_dropout)[mine]  # CFG dropout, per sample
        if tc.routings:  # one routing per step, the same on every process
            pick = int(integer_draws(tc.seed, step, len(tc.routings), 1, "routing")[0])
            unwrap(wrapped.module).set_routing(tc.routings[pick])
        wrapped.trained.train()
        for rows, last in run.micro_batches(len(indices)):
            (levels, pooled, _), images_N, _ = source.batch(indices[rows], keep[rows])
            share = len(images_N) / len(indices)
            target = [t.to(world.device) for t in tokens.get(images_N)]
            with torch.no_grad():
                next_inputs = tokenizer.quantize.teacher_forcing_inputs(target)
            with run.accumulating(last):
                with run.autocast():
                    logits = wrapped.trained(next_inputs, levels, pooled)
                loss = F.cross_entropy(logits.float().flatten(0, 1), torch.cat(target, dim=1).flatten())
                run.backward(loss, share)
        extra = run.optimizer_step()
        done = step + 1
        if tc.routings:
            extra["routing"] = unwrap(wrapped.module).routing
            unwrap(wrapped.module).set_routing(gc.routing)  # validation and the saved model: the configured one
        extra |= run.evaluate(done, lambda: token_accuracy(wrapped.module, tokenizer, source, tokens), "val_loss")
        run.end_step(done, extra)

    summary = run.finish(
        {
            "routing": gc.routing,
            "tokens_per_sample": shapes.n_tokens,
            **source.record(),
            "init": init,
            "best_metric": "val_loss",
        }
    )
    return TrainResult(run.run_dir, summary, wrapped.module)
