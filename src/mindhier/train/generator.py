"""Stage 2: train the scale-wise generator on a frozen encoder and a frozen tokenizer (method.md §5.5).

Per step: single-trial voxels of a batch; with probability `cfg_dropout` a sample's voxels are zeroed (its
condition becomes the encoder's null output, which classifier-free guidance uses at sampling time); the
frozen encoder gives the brain levels and the pooled terminal feature; the cached token maps of the seen
images give the targets and, through the frozen quantizer, the teacher-forcing inputs; the loss is the
mean token cross-entropy over all scales. AdamW(0.9, 0.95), warm-up then a constant rate, clipping, bf16
autocast on CUDA. Every `eval_every` steps: val loss and per-scale token accuracy (teacher-forced,
conditional) in the log; the best val loss is kept as `generator.safetensors`. Resumable; rank-aware.

The routing (`generator.routing`) is part of the run: each routing is its own trained model.

Run folder: config.json, generator_shapes.json, inputs.json (encoder, tokenizer, token cache),
generator.safetensors (best val), generator_last.safetensors, train_state.pt, log.jsonl, train_summary.json.

Shape letters: B batch, V voxels, L tokens, K scales.
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
from mindhier.config import MindhierConfig, resolved_record, to_dict
from mindhier.data.nsd import open_dataset
from mindhier.data.token_cache import TokenCache, build_token_cache
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, write_json
from mindhier.models.brain_encoder import BrainEncoder, guidance_levels
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.progress import ProgressFn, report
from mindhier.runs import load_encoder, load_tokenizer, relative_input
from mindhier.train.encoder_data import SubjectItems, subject_items
from mindhier.train.sampling import rank_batch

GENERATOR_WEIGHTS = "generator.safetensors"
LAST_WEIGHTS = "generator_last.safetensors"
SHAPES_FILE = "generator_shapes.json"
INPUTS_FILE = "inputs.json"
TRAIN_STATE = "train_state.pt"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "train_summary.json"
RUN_SECTIONS = ("generator", "train_generator")


@dataclass(frozen=True)
class Conditioner:
    """The frozen encoder as the generator's condition: levels and pooled vector, and the null condition."""

    encoder: BrainEncoder
    supervision: str

    @torch.no_grad()
    def __call__(self, groups: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(groups)
        return guidance_levels(out, self.supervision), out.pooled_BD

    def null(self, subject: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output for all-zero voxels (the unconditional stream), [1, ...]."""
        voxels = torch.zeros(1, self.encoder.shapes.voxels[subject], device=device)
        return self([(subject, voxels)])


@dataclass(frozen=True)
class FrozenStage1:
    """What a Stage-2 decoder trains on: the frozen encoder (as a conditioner) and tokenizer, and its subjects."""

    encoder_run: Path
    encoder_cfg: MindhierConfig
    encoder: BrainEncoder
    tokenizer: Tokenizer
    conditioner: Conditioner
    subjects: tuple[int, ...]

    def open_dataset(self, data_dir: str | Path):
        expected = {s: self.encoder.shapes.voxels[s] for s in self.subjects}
        return open_dataset(data_dir, self.encoder_cfg.data, subjects=list(self.subjects), expected_voxels=expected)


def load_frozen(
    encoder_run: str | Path, tokenizer_run: str | Path, subjects: tuple[int, ...] | None, device
) -> FrozenStage1:
    """Load both frozen models; `subjects` (default: the encoder's first) must be ones the encoder knows."""
    encoder_files = load_encoder(encoder_run)
    encoder = encoder_files.model.to(device).requires_grad_(False)
    tokenizer = load_tokenizer(tokenizer_run).to(device).requires_grad_(False)
    trained_on = tuple(s for s, _ in encoder_files.shapes.subject_voxels)
    subjects = tuple(subjects or trained_on[:1])
    unknown = [s for s in subjects if s not in trained_on]
    if unknown:
        raise ConfigError(
            f"the encoder {encoder_run} was not trained on subject {unknown[0]}; it knows {list(trained_on)}"
        )
    conditioner = Conditioner(encoder, encoder_files.cfg.alignment.supervision)
    return FrozenStage1(Path(encoder_run), encoder_files.cfg, encoder, tokenizer, conditioner, subjects)


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


def batch_groups(items: list[SubjectItems], pooled: np.ndarray, tokens: TokenCache):
    """(subject, voxels) groups in subject order and the matching token maps."""
    offsets = np.cumsum([0] + [len(x) for x in items])
    groups, images = [], []
    for k, subject_items_ in enumerate(items):
        local = np.sort(pooled[(pooled >= offsets[k]) & (pooled < offsets[k + 1])] - offsets[k])
        if len(local):
            groups.append((subject_items_.subject, subject_items_.voxels_NV[torch.from_numpy(local)]))
            images.append(subject_items_.images_N[local])
    return groups, tokens.get(np.concatenate(images))


@torch.no_grad()
def token_accuracy(
    model: ScaleAR,
    tokenizer: Tokenizer,
    conditioner: Conditioner,
    items: list[SubjectItems],
    tokens: TokenCache,
    device,
    batch_size: int = 128,
) -> dict[str, object]:
    """Teacher-forced val loss and top-1 token accuracy per scale (conditional stream)."""
    model.eval()
    offsets = np.cumsum([0] + [s * s for s in model.shapes.scales])
    correct = np.zeros(len(model.shapes.scales))
    count = np.zeros(len(model.shapes.scales))
    loss_sum, n_tokens = 0.0, 0
    for subject_items_ in items:
        for start in range(0, len(subject_items_), batch_size):
            voxels = subject_items_.voxels_NV[start : start + batch_size].to(device)
            target = [t.to(device) for t in tokens.get(subject_items_.images_N[start : start + batch_size])]
            levels, pooled = conditioner([(subject_items_.subject, voxels)])
            logits = model(tokenizer.quantize.teacher_forcing_inputs(target), levels, pooled)
            flat = torch.cat(target, dim=1)
            loss_sum += float(F.cross_entropy(logits.flatten(0, 1), flat.flatten(), reduction="sum"))
            n_tokens += flat.numel()
            hits = (logits.argmax(-1) == flat).float()
            for k in range(len(model.shapes.scales)):
                correct[k] += float(hits[:, offsets[k] : offsets[k + 1]].sum())
                count[k] += hits[:, offsets[k] : offsets[k + 1]].numel()
    model.train()
    return {
        "val_loss": loss_sum / max(n_tokens, 1),
        "val_token_accuracy": (correct / np.maximum(count, 1)).round(4).tolist(),
    }


def train_generator(
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
    run_dir, tc, gc, device = Path(out), cfg.train_generator, cfg.generator, torch.device(device)
    is_main = rank == 0
    check_run_folder(run_dir, to_dict(cfg), RUN_SECTIONS, resume)
    frozen = load_frozen(encoder_run, tokenizer_run, subjects, device)
    encoder, tokenizer, conditioner, subjects = frozen.encoder, frozen.tokenizer, frozen.conditioner, frozen.subjects
    dataset = frozen.open_dataset(data_dir)
    tokens = build_token_cache(data_dir, tokenizer_run, progress=progress) if is_main else None
    if world_size > 1:
        torch.distributed.barrier()
    if not is_main:
        tokens = build_token_cache(data_dir, tokenizer_run)
    train_items = [subject_items(dataset, s, "train") for s in subjects]
    val_items = [subject_items(dataset, s, "val") for s in subjects]
    n_train = sum(len(x) for x in train_items)
    if n_train < tc.batch_size:
        raise ConfigError(f"{n_train} training trials, fewer than train_generator.batch_size {tc.batch_size}")
    shapes = generator_shapes(tokenizer, encoder)

    torch.manual_seed(tc.seed)
    model = ScaleAR(gc, shapes).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr,
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, tc.warmup_steps)))
    dropout_rng = torch.Generator().manual_seed(tc.seed + 1)
    start_step, best_loss = 0, float("inf")
    if resume:
        saved = GeneratorShapes.from_json(read_json(run_dir / SHAPES_FILE, "generator shapes"))
        if saved != shapes:
            raise ConfigError(f"cannot resume {run_dir}: the encoder or tokenizer changed the generator's shapes")
        start_step, best_loss = load_resume_point(
            run_dir, LAST_WEIGHTS, model, optimizer, scheduler, {"dropout": dropout_rng}
        )
    elif is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", resolved_record(cfg))
        write_json(run_dir / SHAPES_FILE, shapes.to_json())
        write_json(
            run_dir / INPUTS_FILE,
            {
                "encoder_run": relative_input(run_dir, encoder_run),
                "tokenizer_run": relative_input(run_dir, tokenizer_run),
                "token_cache": {"path": relative_input(run_dir, tokens.path), "key": tokens.key},
                "subjects": list(subjects),
                "routing": gc.routing,
                "encoder_supervision": conditioner.supervision,
            },
        )

    wrapped = model
    if world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    started, log_every = time.perf_counter(), max(1, tc.steps // 200)
    for step in range(start_step, tc.steps):
        indices = rank_batch(n_train, tc.batch_size, step, tc.seed, rank, world_size)
        groups, target = batch_groups(train_items, indices, tokens)
        groups = [(s, v.to(device)) for s, v in groups]
        # classifier-free guidance dropout: zeroed voxels give the encoder's null condition
        groups = [(s, v * (torch.rand(len(v), 1, generator=dropout_rng) >= gc.cfg_dropout).to(v)) for s, v in groups]
        target = [t.to(device) for t in target]
        levels, pooled = conditioner(groups)
        with torch.no_grad():
            next_inputs = tokenizer.quantize.teacher_forcing_inputs(target)
        with autocast:
            logits = wrapped(next_inputs, levels, pooled)
        loss = F.cross_entropy(logits.float().flatten(0, 1), torch.cat(target, dim=1).flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record: dict[str, object] = {"step": done, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]}
        report(progress, "train generator", done, tc.steps, {"loss": record["loss"]})
        if is_main and (done % tc.eval_every == 0 or done == tc.steps):
            record.update(token_accuracy(model, tokenizer, conditioner, val_items, tokens, device))
            if record["val_loss"] < best_loss:
                best_loss = float(record["val_loss"])
                save_weights(run_dir / GENERATOR_WEIGHTS, model, {"step": str(done)})
        if world_size > 1 and (done % tc.eval_every == 0 or done == tc.steps):
            torch.distributed.barrier()
        if is_main and (done % log_every == 0 or "val_loss" in record or done == tc.steps):
            with open(run_dir / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
        if is_main and (done % tc.checkpoint_every == 0 or done == tc.steps):
            save_resume_point(
                run_dir, LAST_WEIGHTS, model, optimizer, scheduler, done, best_loss, {"dropout": dropout_rng}
            )
    seconds = time.perf_counter() - started
    if is_main:
        if not (run_dir / GENERATOR_WEIGHTS).exists():
            save_weights(run_dir / GENERATOR_WEIGHTS, model, {"step": str(tc.steps)})
        write_json(
            run_dir / SUMMARY_FILE,
            {
                "steps": tc.steps,
                "resumed_from": start_step,
                "seconds": round(seconds, 2),
                "routing": gc.routing,
                "parameters": sum(p.numel() for p in model.parameters()),
                "tokens_per_sample": shapes.n_tokens,
                "best_val_loss": best_loss,
                "subjects": list(subjects),
                "device": str(device),
                "world_size": world_size,
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
        )
    return run_dir
