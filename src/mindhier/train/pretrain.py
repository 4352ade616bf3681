"""Pretraining the embedded world's priors on the pretraining stream, exporting them, and verifying them.

    pretrain_tokenizer   the multi-scale VQ tokenizer on N stream images (validated on the stream's test split)
    pretrain_generator   the scale-wise generator on the same images' tokens (under a tokenizer, by default the
                         shipped tokenizer prior), conditioned on the teacher's feature hierarchy of each image —
                         the same space the brain encoder's levels are aligned to, so fine-tuning on brain data
                         (`train_generator.init=prior`) is a small step (docs/method.md §5.2)
    export_prior         a pretraining run → `mindhier/priors/<kind>.safetensors` + its model card (with a
                         generator's quality records, `train/prior_quality.py`: condition use, the stream oracle,
                         the direct decoder)
    verify_prior         reruns the first steps of a shipped prior's pretraining and compares every step's loss
                         with the card's, exactly (same code, config, seeds and thread count on a CPU)

Images, teacher features and tokens of the stream are computed in fixed chunks of consecutive stream indices
(`FEATURE_CHUNK`, `TOKEN_CHUNK`), so recomputing any subset (as `--verify` does) gives bit-identical numbers:
a batched forward pass on a CPU rounds the same way only for the same batch.

Shape letters (docs/glossary.md): N images, Q tokens per level, D_m level width, l tokens of a scale.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from typing_extensions import Unpack

from mindhier import priors, run_layout
from mindhier.checkpoint import save_state
from mindhier.config import MindhierConfig, from_dict
from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, sha256_file, write_json
from mindhier.models.tokenizer import Tokenizer
from mindhier.priors.stream import PRETRAIN_SEED, STIMULUS_PX, pretraining_images
from mindhier.progress import report
from mindhier.provenance import machine
from mindhier.runs import load_tokenizer
from mindhier.teachers import build_teacher
from mindhier.train.batches import global_batch
from mindhier.train.condition_sources import teacher_source
from mindhier.train.diffusion import fit_diffusion
from mindhier.train.generator import fit_generator
from mindhier.train.session import Launch, TrainingSession, TrainResult
from mindhier.train.tokenizer import TokenizerImages, train_tokenizer

FEATURE_CHUNK = 64  # stream images per teacher forward
TOKEN_CHUNK = 128  # stream images per tokenizer forward
VAL_OFFSET = 1 << 40  # keys of the stream's test-split images, apart from the train split's
VERIFY_STEPS = 20  # steps `--verify` reruns (within the warm-up, so the schedule is that of the full run)
# What `--verify` requires of the rerun losses. On the machine class the prior was trained on they are equal bit for
# bit. Another CPU's kernels sum in another order: the first step (the initial weights' forward pass on the first
# batch, before any update) still agrees to ~1e-7, and any change of code, config, seeds or data moves it far more;
# from the first update on the losses drift apart, and the tokenizer's nearest-code choices amplify the drift (seen
# here: 1e-6 at step 3, 0.9 % at step 20). So: the first step within VERIFY_FIRST_STEP, every step within
# VERIFY_DRIFT.
VERIFY_FIRST_STEP = 1e-5  # relative
VERIFY_DRIFT = 0.05  # relative, any step


# ------------------------------------------------------------------------------------------------ the stream


def stream_images(count: int, split: str, progress=None) -> np.ndarray:
    return pretraining_images(np.arange(count), split, progress)


def chunked_indices(needed: np.ndarray, chunk: int) -> np.ndarray:
    """Every index of the fixed chunks that hold `needed` (chunk c = indices c·chunk … c·chunk + chunk − 1)."""
    chunks = np.unique(np.asarray(needed) // chunk)
    return (chunks[:, None] * chunk + np.arange(chunk)[None]).reshape(-1)


@dataclass
class ArrayLookup:
    """Per-item tensors by key (stream index, or VAL_OFFSET + index for the test split): `get(keys)`."""

    keys_N: np.ndarray  # sorted int64
    tables: list[torch.Tensor]  # each [N, …]

    def get(self, keys_N: np.ndarray) -> list[torch.Tensor]:
        rows = np.searchsorted(self.keys_N, keys_N)
        if (rows >= len(self.keys_N)).any() or not np.array_equal(
            self.keys_N[np.minimum(rows, len(self.keys_N) - 1)], keys_N
        ):
            raise ConfigError(
                "a pretraining image has no cached features or tokens (a bug in the chunk selection);"
                " report this as a bug"
            )
        index = torch.from_numpy(rows)
        return [table[index].float() if table.is_floating_point() else table[index].long() for table in self.tables]


@torch.no_grad()
def stream_lookups(
    keys_N: np.ndarray, teacher, tokenizer: Tokenizer, device, progress=None, latents: bool = False
) -> tuple[ArrayLookup, ArrayLookup]:
    """Teacher features (fp16) and tokens of the stream images `keys_N` (computed chunk by chunk); with `latents`,
    the tokenizer's continuous latent [N, C, h, w] (fp32) instead of the tokens (what the diffusion prior denoises)."""
    keys_N = np.unique(keys_N)
    features: list[list[torch.Tensor]] = [[] for _ in teacher.levels]
    tokens: list[list[torch.Tensor]] = [[] for _ in (range(1) if latents else tokenizer.cfg.scales)]
    for split, offset in (("train", 0), ("test", VAL_OFFSET)):
        indices = keys_N[(keys_N >= offset) & (keys_N < offset + VAL_OFFSET)] - offset
        for start in range(0, len(indices), TOKEN_CHUNK):  # a token chunk holds whole feature chunks
            chunk = indices[start : start + TOKEN_CHUNK]
            images = pretraining_images(chunk, split)
            for f_start in range(0, len(chunk), FEATURE_CHUNK):
                part = torch.from_numpy(images[f_start : f_start + FEATURE_CHUNK]).permute(0, 3, 1, 2).float() / 255
                for m, level in enumerate(teacher(part.to(device))):
                    features[m].append(level.to("cpu", torch.float16))
            small = to_model_input(resize_uint8(images, tokenizer.cfg.image_px), device)
            if latents:
                tokens[0].append(tokenizer.latent(small).to("cpu", torch.float32))
            else:
                for k, t in enumerate(tokenizer.encode(small)):
                    tokens[k].append(t.to("cpu", torch.int32))
            report(
                progress, f"stream features and tokens ({split})", min(start + TOKEN_CHUNK, len(indices)), len(indices)
            )
    keys = np.concatenate([np.sort(keys_N[keys_N < VAL_OFFSET]), np.sort(keys_N[keys_N >= VAL_OFFSET])])
    return ArrayLookup(keys, [torch.cat(f) for f in features]), ArrayLookup(keys, [torch.cat(t) for t in tokens])


def _stream_record(images: int, val_images: int) -> dict[str, Any]:
    return {"seed": PRETRAIN_SEED, "images": images, "val_images": val_images, "stimulus_px": STIMULUS_PX}


# ---------------------------------------------------------------------------------------------- pretraining


def pretrain_tokenizer(
    cfg: MindhierConfig, out: str | Path, images: int, val_images: int, command: str = "", **launch: Unpack[Launch]
) -> TrainResult:
    """The tokenizer prior: `train_tokenizer` on `images` stream images (validated on `val_images` others)."""
    progress = launch.get("progress")
    source = TokenizerImages(
        stream_images(images, "train", progress),
        stream_images(val_images, "test", progress),
        f"pretraining stream (scenes, seed {PRETRAIN_SEED}): {images} train + {val_images} test images",
    )
    result = train_tokenizer(cfg, source, out, **launch)
    if launch.get("rank", 0) == 0:
        _add_inputs(result.run_dir, {"stream": _stream_record(images, val_images), "command": command})
    return result


def pretrain_generator(
    cfg: MindhierConfig,
    out: str | Path,
    images: int,
    val_images: int,
    tokenizer: str | Path = "prior",
    command: str = "",
    **launch: Unpack[Launch],
) -> TrainResult:
    """The generator prior, conditioned on the teacher's features of each stream image (the oracle)."""
    tc = cfg.train_generator
    if tc.condition != "teacher":
        raise ConfigError(
            "the generator prior is conditioned on the teacher's features; set train_generator.condition=teacher"
        )
    run = TrainingSession.start(
        out, "generator", cfg, tc, ("teacher", "tokenizer", "generator", "train_generator"), **launch
    )
    stream = _stream_inputs(run, cfg, images, val_images, tokenizer, command, latents=False)
    return fit_generator(run, cfg, stream.source, stream.targets, stream.tokenizer, stream.inputs)


def pretrain_diffusion(
    cfg: MindhierConfig,
    out: str | Path,
    images: int,
    val_images: int,
    tokenizer: str | Path = "prior",
    command: str = "",
    **launch: Unpack[Launch],
) -> TrainResult:
    """The diffusion prior: the latent diffusion baseline on the same stream, conditioned on the teacher's terminal
    level and pooled feature of each image (the generator prior's condition, in the same positions and grid), with
    the FLOPs of the generator prior's pretraining (`train_diffusion.match_generator_steps`, or
    `train_generator.steps`): both decoders start from a prior trained on equal terms."""
    run = TrainingSession.start(
        out, "diffusion", cfg, cfg.train_diffusion, ("teacher", "tokenizer", "diffusion", "train_diffusion"), **launch
    )
    stream = _stream_inputs(run, cfg, images, val_images, tokenizer, command, latents=True)
    return fit_diffusion(run, cfg, stream.source, stream.targets, stream.tokenizer, stream.inputs)


@dataclass
class StreamInputs:
    """What a decoder prior trains on: the teacher-feature source of the stream, its targets, the tokenizer."""

    source: Any  # TeacherSource over the stream's train and test-split images
    targets: ArrayLookup  # tokens per scale, or the tokenizer's continuous latent
    tokenizer: Tokenizer
    inputs: dict[str, Any]  # the run's inputs.json record


def _stream_inputs(run: TrainingSession, cfg, images, val_images, tokenizer, command, latents: bool) -> StreamInputs:
    device = run.world.device
    tokenizer_model, tokenizer_record = stream_tokenizer(tokenizer, cfg, device)
    teacher = build_teacher(cfg.teacher, device=device)
    keys = np.concatenate([np.arange(images), VAL_OFFSET + np.arange(val_images)])
    features, targets = stream_lookups(keys, teacher, tokenizer_model, device, run.progress, latents=latents)
    source = teacher_source(
        features,
        [level.dim for level in teacher.levels],
        teacher.levels[0].tokens,
        np.arange(images),
        VAL_OFFSET + np.arange(val_images),
        f"pretraining stream (scenes, seed {PRETRAIN_SEED})",
        device,
    )
    inputs = {"tokenizer": tokenizer_record, "stream": _stream_record(images, val_images), "command": command}
    return StreamInputs(source, targets, tokenizer_model, inputs)


def stream_tokenizer(spec: str | Path, cfg: MindhierConfig, device) -> tuple[Tokenizer, dict]:
    """The tokenizer whose tokens the generator prior learns: the shipped prior, or a tokenizer run."""
    if str(spec) == "prior":
        model = Tokenizer(cfg.tokenizer)
        from mindhier.checkpoint import load_state_strict

        load_state_strict(model, priors.state("tokenizer"), "the tokenizer prior")
        return model.to(device).eval().requires_grad_(False), {
            "source": "prior:tokenizer",
            "sha256": priors.card("tokenizer")["sha256"],
        }
    model = load_tokenizer(spec, expected=cfg.tokenizer, device=device).requires_grad_(False)
    weights = Path(spec) / run_layout.weights_file("tokenizer") if Path(spec).is_dir() else Path(spec)
    return model, {"source": str(spec), "sha256": sha256_file(weights)}


def _add_inputs(run_dir: Path, record: dict) -> None:
    inputs = read_json(run_dir / run_layout.INPUTS, "run inputs")
    write_json(run_dir / run_layout.INPUTS, {**inputs, **record})


# ----------------------------------------------------------------------------------------- export, verify


def export_prior(kind: str, run_dir: str | Path, to: str | Path | None = None, metrics: dict | None = None) -> Path:
    """Write a pretraining run's weights (tokenizer fp32, generator fp16) and model card into the priors folder."""
    run_dir = Path(run_dir)
    run_layout.expect_kind(run_dir, kind)
    record = run_layout.read_run_record(run_dir)
    summary = read_json(run_dir / run_layout.SUMMARY, "training summary")
    inputs = read_json(run_dir / run_layout.INPUTS, "run inputs")
    if "stream" not in inputs:
        raise ConfigError(f"{run_dir} was not trained on the pretraining stream; only `mindhier pretrain` runs export")
    from safetensors.torch import load_file

    state = load_file(str(run_dir / run_layout.weights_file(kind)))
    if kind != "tokenizer":  # fp16 storage; the tokenizer stays fp32, its tokens must be exactly the trained ones
        state = {k: v.half() if v.is_floating_point() and k not in FP32_KEYS else v for k, v in state.items()}
    folder = Path(to) if to is not None else priors.FOLDER
    weights = folder / f"{kind}.safetensors"
    save_state(weights, state, {"format": "mindhier-prior", "kind": kind})
    log = [r for r in _log(run_dir) if r["step"] <= VERIFY_STEPS]
    quality = _quality_records(run_dir) if kind == "generator" else {}
    card = {
        "kind": kind,
        "file": weights.name,
        "dtype": "float32" if kind == "tokenizer" else "float16",
        "sha256": sha256_file(weights),
        "parameters": summary["parameters"],
        "command": inputs.get("command", ""),
        "config": {k: record["config"][k] for k in _CARD_SECTIONS[kind]},
        "config_full": record["config"],
        "stream": inputs["stream"],
        "inputs": {k: v for k, v in inputs.items() if k not in ("stream", "command")},
        "seeds": {"train": record["config"][f"train_{kind}"]["seed"], "stream": inputs["stream"]["seed"]},
        "steps": summary["steps"],
        "wall_seconds": summary["seconds"],
        "threads": summary["torch_threads"],
        "device": summary["device"],
        "machine": {k: v for k, v in machine().items() if k != "torch_threads"},  # "threads": the run's
        "best_step": summary["best_step"],
        "metrics": metrics
        if metrics is not None
        else {"best_val": summary["best_val"], **summary.get("final_val", {})},
        "verify": {"steps": VERIFY_STEPS, "losses": [r["loss"] for r in log]},
        "provenance": record["provenance"],
    }
    card |= quality
    write_json(folder / f"{kind}.json", card)
    return weights


def _quality_records(run_dir: Path) -> dict[str, Any]:
    """The run's quality records that exist (`train/prior_quality.py`), without per-image arrays or paths."""
    records = {}
    for key in ("condition_use", "oracle", "direct_decoder"):
        path = run_dir / f"{key}.json"
        if path.is_file():
            record = read_json(path, f"{key.replace('_', ' ')} record")
            records[key] = {k: v for k, v in record.items() if k not in ("per_image", "run")}
    return records


_CARD_SECTIONS = {
    "tokenizer": ("tokenizer", "train_tokenizer"),
    "generator": ("teacher", "tokenizer", "generator", "train_generator"),
    # the generator sections too: the diffusion prior's size and FLOPs are matched to that generator's
    "diffusion": ("teacher", "tokenizer", "generator", "train_generator", "diffusion", "train_diffusion"),
}
FP32_KEYS = ("latent_mean_C", "latent_std_C")  # the diffusion prior's latent statistics keep their precision


def _log(run_dir: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run_dir / run_layout.LOG).read_text().splitlines()]


def verify_prior(kind: str, steps: int | None = None, card: dict | None = None, progress=None) -> dict[str, Any]:
    """Rerun the first steps of a prior's pretraining from its card; `matches` says whether every loss is equal bit
    for bit, `within_tolerance` whether the first step agrees within `VERIFY_FIRST_STEP` and every step within
    `VERIFY_DRIFT` (relative) — what another CPU's summation order allows."""
    card = card or priors.card(kind)
    steps = min(steps or card["verify"]["steps"], len(card["verify"]["losses"]))
    cfg = from_dict(MindhierConfig, card["config_full"])
    section = f"train_{kind}"
    short = dataclasses.replace(
        getattr(cfg, section), steps=steps, eval_every=10**6, checkpoint_every=10**6, log_sinks=(), micro_batch=0
    )
    cfg = dataclasses.replace(cfg, **{section: short})
    threads = torch.get_num_threads()
    torch.set_num_threads(card["threads"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stream = card["stream"]
            if kind == "tokenizer":
                run = _verify_tokenizer(cfg, Path(tmp) / "run", stream, steps, progress)
            else:
                tokenizer_source = card["inputs"]["tokenizer"]["source"]
                run = _verify_decoder(kind, cfg, Path(tmp) / "run", stream, steps, tokenizer_source, progress)
            losses = [r["loss"] for r in _log(run.run_dir)][:steps]
    finally:
        torch.set_num_threads(threads)
    expected = card["verify"]["losses"][:steps]
    first_difference = next((i + 1 for i, (a, b) in enumerate(zip(losses, expected, strict=True)) if a != b), None)
    differences = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, expected, strict=True)]
    return {
        "kind": kind,
        "steps": steps,
        "matches": first_difference is None,  # bit for bit
        "first_step_difference": differences[0],
        "max_relative_difference": max(differences),
        # what `--verify` requires (see VERIFY_FIRST_STEP, VERIFY_DRIFT)
        "within_tolerance": differences[0] <= VERIFY_FIRST_STEP and max(differences) <= VERIFY_DRIFT,
        "tolerance": {"first_step": VERIFY_FIRST_STEP, "drift": VERIFY_DRIFT},
        "first_different_step": first_difference,
        "losses": losses,
        "expected": expected,
        "threads": card["threads"],
    }


def _verify_tokenizer(cfg: MindhierConfig, out: Path, stream: dict, steps: int, progress) -> TrainResult:
    """The tokenizer's first steps: only the stream images those steps draw are rendered (the others, never
    read, stay black), so a check of a 40,000-image run renders a few hundred."""
    tc = cfg.train_tokenizer
    needed = np.unique(
        np.concatenate([global_batch(stream["images"], tc.batch_size, s, tc.seed) for s in range(steps)])
    )
    train = np.zeros((stream["images"], STIMULUS_PX, STIMULUS_PX, 3), dtype=np.uint8)
    train[needed] = pretraining_images(needed, "train")
    source = TokenizerImages(train, stream_images(stream["val_images"], "test"), "verify")
    return train_tokenizer(cfg, source, out, progress=progress)


def _verify_decoder(
    kind: str, cfg: MindhierConfig, out: Path, stream: dict, steps: int, tokenizer_source: str, progress
) -> TrainResult:
    """The generator's or diffusion prior's first steps, with features and tokens (latents) computed only for the
    chunks those steps see."""
    tc = getattr(cfg, f"train_{kind}")
    needed = np.unique(
        np.concatenate([global_batch(stream["images"], tc.batch_size, s, tc.seed) for s in range(steps)])
    )
    keys = chunked_indices(needed, TOKEN_CHUNK)
    keys = keys[keys < stream["images"]]
    run = TrainingSession.start(out, kind, cfg, tc, (), progress=progress)
    source_spec = tokenizer_source.removeprefix("prior:tokenizer") or "prior"
    tokenizer, record = stream_tokenizer(source_spec, cfg, run.world.device)
    teacher = build_teacher(cfg.teacher)
    features, targets = stream_lookups(keys, teacher, tokenizer, run.world.device, latents=kind == "diffusion")
    source = teacher_source(
        features,
        [lvl.dim for lvl in teacher.levels],
        teacher.levels[0].tokens,
        np.arange(stream["images"]),
        np.array([], dtype=np.int64),
        "verify",
        run.world.device,
    )
    fit = fit_generator if kind == "generator" else fit_diffusion
    return fit(run, cfg, source, targets, tokenizer, {"tokenizer": record})
