"""How good a generator prior is, on held-out images of the pretraining stream (never a dataset's images).

    stream_condition_use   per scale, teacher-forced NLL and accuracy under the true, null and shuffled condition
                           (`metrics/condition_use.py`) → `RUN/condition_use.json`
    stream_oracle          single-shot reconstructions of the stream's test images from their teacher features:
                           PixCorr, SSIM and the scene judge's colour / category F1, per routing, beside the
                           tokenizer's ceiling → `RUN/oracle.json`
    stream_direct_decoder  what the condition holds at all: a `DirectDecoder` trained by regression on the stream's
                           train images' teacher features, scored like the oracle → `RUN/direct_decoder.json`

These are the numbers of the prior ablation (docs/priors.md) and of the prior's model card (`export_prior` copies
them). Everything is on the stream's `test` split (keys `VAL_OFFSET + i`), which no training step reads; the demo's
test images are never used to choose a prior. Single shot: one sample per image, the first, no selection.

Shape letters (docs/glossary.md): N images, H/W pixels, K scales.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindhier import run_layout
from mindhier.config import SamplerConfig
from mindhier.data.image_tensors import resize_uint8
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, refuse_existing, write_json
from mindhier.metrics.image import pixcorr, ssim
from mindhier.metrics.statistics import bootstrap_ci
from mindhier.models.brain_condition import TeacherCondition
from mindhier.priors.stream import PRETRAIN_SEED
from mindhier.progress import report
from mindhier.teachers import build_teacher
from mindhier.train.pretrain import VAL_OFFSET, stream_images, stream_lookups, stream_tokenizer

CONDITION_USE = "condition_use.json"
ORACLE = "oracle.json"
DIRECT_DECODER = "direct_decoder.json"
ORACLE_ROUTINGS = ("coarse_to_fine", "fine_to_coarse", "all_levels", "static_terminal")


def stream_labels(count: int) -> list[dict[str, Any]]:
    """The scene labels (categories, colours) of the stream's first `count` test images, for the judge."""
    from mindhier.data.stimuli.scenes import ScenesSource

    source = ScenesSource()
    return [source.scene_labels("test", i, PRETRAIN_SEED) for i in range(count)]


def image_scores(images_NHWC: np.ndarray, truths_NHWC: np.ndarray, labels, judge) -> dict[str, Any]:
    """PixCorr, SSIM (means with bootstrap CIs) and, with a judge, its colour / category F1 of the images."""
    scores = {"pixcorr": pixcorr(images_NHWC, truths_NHWC), "ssim": ssim(images_NHWC, truths_NHWC)}
    if judge is not None:
        from mindhier.metrics.judge import judge_scores

        judged = judge_scores(judge, images_NHWC, labels)
        scores |= {"colour_f1": judged["colour_f1"], "category_f1": judged["category_f1"]}
    return {name: bootstrap_ci(np.asarray(values, dtype=np.float64)) for name, values in scores.items()}


class StreamImages:
    """The stream's first `count` test images with their teacher features and tokens, for one run's config."""

    def __init__(self, cfg, tokenizer_spec: str, count: int, device, progress=None):
        self.tokenizer, _ = stream_tokenizer(tokenizer_spec, cfg, device)
        self.teacher = build_teacher(cfg.teacher, device=device)
        self.images_NHWC = stream_images(count, "test", progress)
        self.keys = VAL_OFFSET + np.arange(count)
        self.features, self.tokens = stream_lookups(self.keys, self.teacher, self.tokenizer, device, progress)
        dims = [level.dim for level in self.teacher.levels]
        self.make = TeacherCondition(dims, self.teacher.levels[0].tokens, device)
        self.count = count

    def condition(self):
        return self.make(self.features.get(self.keys))

    def levels(self) -> list[torch.Tensor]:
        return self.features.get(self.keys)

    def ceiling(self) -> np.ndarray:
        """The tokenizer's reconstructions of the images from their true tokens, uint8 [N, h, w, 3]."""
        with torch.no_grad():
            decoded = self.tokenizer.decode([t.to(self.make.device) for t in self.tokens.get(self.keys)])
        return unit_to_uint8((decoded.float().clamp(-1, 1) + 1) / 2)


def unit_to_uint8(images_N3HW: torch.Tensor) -> np.ndarray:
    return (images_N3HW.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _generator_run(run_dir: Path, device):
    from mindhier.runs import load_generator

    inputs = read_json(run_dir / run_layout.INPUTS, "run inputs")
    if "stream" not in inputs:
        raise ConfigError(f"{run_dir} was not trained on the pretraining stream; use `mindhier eval condition`")
    source = inputs["tokenizer"]["source"]
    return load_generator(run_dir, device=device), "prior" if source == "prior:tokenizer" else source


@torch.no_grad()
def stream_condition_use(
    run_dir: str | Path, val_images: int = 512, device: str | torch.device = "cpu", progress=None, overwrite=False
) -> dict[str, Any]:
    """Condition use per scale of a generator pretraining run on the stream's first `val_images` test-split images
    (never trained on), conditioned on their teacher features against the null (zero) condition and a shuffled
    one; written to `RUN/condition_use.json`."""
    from mindhier.metrics.condition_use import condition_use

    run_dir = Path(run_dir)
    refuse_existing(run_dir / CONDITION_USE, overwrite, "condition-use record")
    run, tokenizer_spec = _generator_run(run_dir, device)
    stream = StreamImages(run.cfg, tokenizer_spec, val_images, device, progress)
    record = condition_use(run.model, stream.tokenizer, stream.condition(), stream.make.null(), stream.images_NHWC)
    record = {"run": str(run_dir), "images": f"stream test split, first {val_images}", "condition": "teacher", **record}
    write_json(run_dir / CONDITION_USE, record)
    return record


@torch.no_grad()
def stream_oracle(
    run_dir: str | Path,
    val_images: int = 256,
    routings: tuple[str, ...] = ORACLE_ROUTINGS,
    sampler: SamplerConfig | None = None,
    judge=None,
    device: str | torch.device = "cpu",
    progress=None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Single-shot reconstructions of the stream's first `val_images` test images from their teacher features under
    each routing (the run's sampler unless `sampler`), scored against the stimuli beside the tokenizer ceiling;
    written to `RUN/oracle.json`."""
    from mindhier.sampling.reconstruct import item_generator
    from mindhier.sampling.scale_ar import sample

    run_dir = Path(run_dir)
    refuse_existing(run_dir / ORACLE, overwrite, "stream oracle record")
    run, tokenizer_spec = _generator_run(run_dir, device)
    stream = StreamImages(run.cfg, tokenizer_spec, val_images, device, progress)
    labels = stream_labels(val_images) if judge is not None else None
    condition, null = stream.condition(), stream.make.null()
    sampler = sampler or run.cfg.sampler
    model = run.model.eval()
    rows: dict[str, Any] = {"tokenizer ceiling": image_scores(stream.ceiling(), stream.images_NHWC, labels, judge)}
    for done, routing in enumerate(routings):
        report(progress, "stream oracle", done, len(routings))
        model.set_routing(routing)
        generators = [item_generator(sampler.seed, i) for i in range(val_images)]
        out = sample(model, stream.tokenizer, condition.levels_BMQD, condition.pooled_BP, null.levels_BMQD,
                     null.pooled_BP, sampler, generators)  # fmt: skip
        rows[routing] = image_scores(unit_to_uint8(out.images_R3HW), stream.images_NHWC, labels, judge)
    model.set_routing(run.cfg.generator.routing)
    record = {
        "run": str(run_dir),
        "images": f"stream test split, first {val_images}",
        "protocol": "single shot (the first sample), teacher features of each image as the condition; PixCorr at "
        "425 px, SSIM greyscale; judge F1 of the scene judge's calls against the scene labels; bootstrap 95 % CI",
        "sampler": {k: getattr(sampler, k) for k in ("cfg_scale", "top_k", "top_p", "temperature", "seed")},
        "judge": None if judge is None else judge.validation,
        "rows": rows,
    }
    write_json(run_dir / ORACLE, record)
    return record


def stream_direct_decoder(
    run_dir: str | Path,
    images: int = 4000,
    val_images: int = 256,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    judge=None,
    device: str | torch.device = "cpu",
    progress=None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a `DirectDecoder` on the teacher features of the stream's first `images` train images (regression to
    the tokenizer-side image, AdamW, cosine rate), and score it on the first `val_images` test images; written to
    `RUN/direct_decoder.json`. Single process and seeded: a measuring instrument, like the judge."""
    from mindhier.models.direct_decoder import DirectDecoder

    run_dir = Path(run_dir)
    refuse_existing(run_dir / DIRECT_DECODER, overwrite, "direct-decoder record")
    run, tokenizer_spec = _generator_run(run_dir, device)
    cfg = run.cfg
    started = time.perf_counter()
    side = cfg.tokenizer.image_px
    stream = StreamImages(cfg, tokenizer_spec, val_images, device, progress)
    train_keys = np.arange(images)
    train_features, _ = stream_lookups(train_keys, stream.teacher, stream.tokenizer, device, progress)
    levels_train = train_features.get(train_keys)
    target_N3HW = torch.from_numpy(resize_uint8(stream_images(images, "train", progress), side)).permute(0, 3, 1, 2)
    target_N3HW = target_N3HW.float().div(255).to(device)
    torch.manual_seed(seed)
    dims = [level.dim for level in stream.teacher.levels]
    decoder = DirectDecoder(dims, stream.teacher.levels[0].tokens, side).to(device)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    loss_value = float("nan")
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        rows = torch.randint(0, images, (batch_size,), generator=generator)
        loss = F.mse_loss(decoder([level[rows].to(device) for level in levels_train]), target_N3HW[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            loss_value = float(loss.detach())
            report(progress, "direct decoder", step + 1, steps, {"loss": loss_value})
    decoder.eval()
    with torch.no_grad():
        painted = unit_to_uint8(decoder([level.to(device) for level in stream.levels()]))
    labels = stream_labels(val_images) if judge is not None else None
    record = {
        "run": str(run_dir),
        "images": f"trained on stream train images 0..{images - 1}, scored on the stream test split, first "
        f"{val_images}",
        "protocol": "a DirectDecoder (models/direct_decoder.py) from the teacher's levels to pixels at the "
        "tokenizer's side, MSE, no sampling; scored like the oracle",
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "parameters": sum(p.numel() for p in decoder.parameters()),
            "final_loss": round(loss_value, 6),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "judge": None if judge is None else judge.validation,
        "scores": image_scores(painted, stream.images_NHWC, labels, judge),
    }
    write_json(run_dir / DIRECT_DECODER, record)
    return record


def format_scores(name: str, rows: dict[str, dict[str, Any]]) -> str:
    """One line per row: each score's mean with its 95 % interval."""
    lines = [name]
    for row, scores in rows.items():
        cells = [f"{metric} {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" for metric, v in scores.items()]
        lines.append(f"  {row:18s} " + "   ".join(cells))
    return "\n".join(lines)
