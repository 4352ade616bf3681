"""Stage 2: train the scale-wise generator on a frozen encoder and a frozen tokenizer (docs/method.md §5).

Per step: single-trial voxels of the global batch, split across processes; with probability `cfg_dropout` a
sample's voxels are zeroed (its condition becomes the encoder's null output, which classifier-free guidance
uses at sampling time) — drawn for the global batch from a generator keyed by the step, so a sample's draw
does not depend on the number of processes; the frozen encoder gives the brain levels and the pooled
terminal feature; the cached token maps of the seen images give the targets and, through the frozen
quantizer, the teacher-forcing inputs; the loss is the mean token cross-entropy over all scales.
AdamW(0.9, 0.95), warm-up then a constant rate, clipping. Every `eval_every` steps: val loss and per-scale
token accuracy (teacher-forced, conditional) in the log; the best val loss is kept as
`generator.safetensors`. Resumable; DDP or FSDP (per Switti block) under torchrun.

The routing (`generator.routing`) is part of the run: each routing is its own trained model.

Run folder (`run_layout`): config.json, generator_shapes.json, inputs.json, generator.safetensors (best val),
generator_last.safetensors, resume/, log.jsonl, train_summary.json.

Shape letters (docs/glossary.md): B batch, N items, V voxels, L tokens, K scales, Z codebook size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.config import MindhierConfig
from mindhier.data.subject_items import SubjectItems, pooled_batch, subject_items
from mindhier.data.token_cache import TokenCache, build_token_cache
from mindhier.errors import ConfigError
from mindhier.fileio import read_json
from mindhier.models.brain_condition import BrainCondition
from mindhier.models.brain_encoder import BrainEncoder
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.runs import relative_input
from mindhier.train.batches import rank_batch, rank_rows
from mindhier.train.frozen_stage1 import load_frozen
from mindhier.train.optim import adamw, warmup_constant
from mindhier.train.random_streams import keep_mask
from mindhier.train.session import Launch, TrainingSession, TrainResult

KIND = "generator"
RUN_SECTIONS = ("generator", "train_generator")


def generator_shapes(tokenizer: Tokenizer, encoder: BrainEncoder) -> GeneratorShapes:
    return GeneratorShapes(
        vocab=tokenizer.cfg.vocab,
        latent_channels=tokenizer.cfg.latent_channels,
        scales=tuple(tokenizer.cfg.scales),
        n_levels=encoder.cfg.depth,
        level_tokens=encoder.shapes.queries,
        context_width=encoder.cfg.width,
        pooled_width=encoder.shapes.level_dims[-1],
    )


@torch.no_grad()
def token_accuracy(
    model: ScaleAR,
    tokenizer: Tokenizer,
    condition: BrainCondition,
    items: list[SubjectItems],
    tokens: TokenCache,
    device,
    batch_size: int = 128,
) -> dict[str, object]:
    """Teacher-forced val loss and top-1 token accuracy per scale (conditional stream)."""
    was_training = model.training
    model.eval()
    offsets = np.cumsum([0] + [s * s for s in model.shapes.scales])
    correct = np.zeros(len(model.shapes.scales))
    count = np.zeros(len(model.shapes.scales))
    loss_sum, n_tokens = 0.0, 0
    for subject_items_ in items:
        for start in range(0, len(subject_items_), batch_size):
            voxels = subject_items_.voxels_NV[start : start + batch_size].to(device)
            target = [t.to(device) for t in tokens.get(subject_items_.images_N[start : start + batch_size])]
            levels, pooled, _ = condition([(subject_items_.subject, voxels)])
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
        "val_loss": loss_sum / max(n_tokens, 1),
        "val_token_accuracy": (correct / np.maximum(count, 1)).round(4).tolist(),
    }


def train_generator(
    cfg: MindhierConfig,
    data_dir: str | Path,  # brain inputs of every subject, and the stimuli whose token maps are the targets
    encoder_run: str | Path,  # the frozen Stage-1 encoder: the brain levels each scale is routed to
    tokenizer_run: str | Path,  # the frozen tokenizer: target tokens and teacher-forcing inputs
    out: str | Path,
    *,
    subjects: tuple[int, ...] | None = None,  # default: the encoder's first subject
    **launch: Unpack[Launch],
) -> TrainResult:
    """Train (or resume) the scale-wise generator into the run folder `out`."""
    tc, gc = cfg.train_generator, cfg.generator
    run = TrainingSession.start(out, KIND, cfg, tc, RUN_SECTIONS, **launch)
    world, progress = run.world, run.progress
    frozen = load_frozen(encoder_run, tokenizer_run, subjects, world.device)
    tokenizer, condition = frozen.tokenizer, frozen.condition
    dataset = frozen.open_dataset(data_dir)
    if world.is_main:  # rank 0 builds the token cache; the others then read it
        tokens = build_token_cache(data_dir, tokenizer_run, device=world.device, progress=progress)
    world.barrier()
    if not world.is_main:
        tokens = build_token_cache(data_dir, tokenizer_run)
    train_items = [subject_items(dataset, s, "train") for s in frozen.subjects]
    val_items = [subject_items(dataset, s, "val") for s in frozen.subjects]
    n_train = sum(len(x) for x in train_items)
    if n_train < tc.batch_size:
        raise ConfigError(f"{n_train} training trials, fewer than train_generator.batch_size {tc.batch_size}")
    shapes = generator_shapes(tokenizer, frozen.encoder)
    if run.resume:
        saved = GeneratorShapes.from_json(read_json(run.run_dir / run_layout.shapes_file(KIND), "generator shapes"))
        if saved != shapes:
            raise ConfigError(f"cannot resume {run.run_dir}: the encoder or tokenizer changed the generator's shapes")
    run.write_json(run_layout.shapes_file(KIND), shapes.to_json())
    token_cache = {"path": relative_input(run.run_dir, tokens.path), "key": tokens.key}
    run.write_json(
        run_layout.INPUTS, {**frozen.inputs_record(run.run_dir), "token_cache": token_cache, "routing": gc.routing}
    )

    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model = ScaleAR(gc, shapes)
    wrapped = run.attach(
        model,
        list(model.blocks),
        lambda m: adamw(m, tc.lr, tc.weight_decay, betas=(0.9, 0.95)),
        lambda opt: warmup_constant(opt, tc.warmup_steps),
        higher_is_better=False,
        fp32_units=[model.head],  # logits stay fp32 under bf16 mixed precision
    )
    mine = rank_rows(tc.batch_size, world.rank, world.world_size)
    for step in run.steps():
        indices = rank_batch(n_train, tc.batch_size, step, tc.seed, world.rank, world.world_size)
        keep = keep_mask(tc.seed, step, tc.batch_size, gc.cfg_dropout)[mine]  # CFG dropout, per sample
        wrapped.trained.train()
        for rows, last in run.micro_batches(len(indices)):
            batch = pooled_batch(train_items, indices[rows])
            share = len(batch) / len(indices)
            levels, pooled, _ = frozen.condition_with_dropout(batch, keep[rows][batch.order_N], world.device)
            target = [t.to(world.device) for t in tokens.get(batch.images_N)]
            with torch.no_grad():
                next_inputs = tokenizer.quantize.teacher_forcing_inputs(target)
            with run.accumulating(last):
                with run.autocast():
                    logits = wrapped.trained(next_inputs, levels, pooled)
                loss = F.cross_entropy(logits.float().flatten(0, 1), torch.cat(target, dim=1).flatten())
                run.backward(loss, share)
        extra = run.optimizer_step()
        done = step + 1
        extra |= run.evaluate(
            done,
            lambda: token_accuracy(wrapped.module, tokenizer, condition, val_items, tokens, world.device),
            "val_loss",
        )
        run.end_step(done, extra)

    summary = run.finish(
        {
            "routing": gc.routing,
            "tokens_per_sample": shapes.n_tokens,
            "subjects": list(frozen.subjects),
            "best_metric": "val_loss",
        }
    )
    return TrainResult(run.run_dir, summary, wrapped.module)
