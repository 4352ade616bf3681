"""Train the multi-scale VQ tokenizer on stimulus images (no fMRI needed; docs/method.md §5.1).

Images come from a dataset folder (the `train` split's stimuli for training, `val`'s for validation;
test stimuli are never used) or from any image folder (`folder:PATH`, its seeded train/test pools).
Loss per step:

    l1·|x − x̂| + l2·(x − x̂)² + perceptual·d(Lite0_{1..b}(x), Lite0_{1..b}(x̂)) + vq·L_VQ

where the perceptual distance compares channel-normalised features of EfficientNet-Lite0's first `b`
blocks at the images' native size (cheap at 32 px), and L_VQ is the quantizer's codebook + commitment
loss. AdamW(0.5, 0.9), linear warm-up then a constant rate, gradient clipping. Every `dead_code_every`
steps, codes whose hit rate fell below the threshold are re-seeded from encoder outputs of the whole
global batch (gathered from every process, drawn from a generator keyed by the step), and the code-hit
statistics are summed over processes, so every process keeps the same codebook. Every `eval_every`
steps: val MSE / PixCorr / SSIM, codebook usage and perplexity in the log, a reconstruction figure, and
the best-val weights in `tokenizer.safetensors`. Resumable; rank-aware (rank 0 writes). DDP only (FSDP is
refused: restarts write codebook rows in place, and the tokenizer fits on any GPU).

`train_tokenizer.init` starts from the embedded world's prior (`prior`), a run or a weights file.

Run folder (`run_layout`): config.json, inputs.json, tokenizer.safetensors (best val MSE), tokenizer_last.safetensors,
resume/, log.jsonl, val_recon_step{N}.png, train_summary.json.

Shape letters (docs/glossary.md): N images, B batch, H/W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from typing_extensions import Unpack

from mindhier import run_layout
from mindhier.checkpoint import load_state_strict
from mindhier.config import MindhierConfig
from mindhier.data.image_tensors import resize_uint8, to_model_input, to_uint8
from mindhier.distributed import all_gather_rows
from mindhier.errors import ConfigError, DataError
from mindhier.fileio import atomic_path
from mindhier.metrics.image import pixcorr, ssim
from mindhier.models.tokenizer import Tokenizer
from mindhier.train.batches import rank_batch
from mindhier.train.optim import adamw, warmup_schedule
from mindhier.train.random_streams import keyed_generator
from mindhier.train.session import Launch, TrainingSession, TrainResult
from mindhier.train.warm_start import initial_weights

KIND = "tokenizer"
RUN_SECTIONS = ("tokenizer", "train_tokenizer")
FIGURE_IMAGES = 8


@dataclass(frozen=True)
class TokenizerImages:
    train_NHWC: np.ndarray  # uint8 at the tokenizer's size
    val_NHWC: np.ndarray
    source: str  # where they came from, for the log


def load_tokenizer_images(source: str | Path | TokenizerImages, size: int, seed: int = 0) -> TokenizerImages:
    """Train/val images from a dataset folder, from `folder:PATH` (any folder of images), or given as they are."""
    if isinstance(source, TokenizerImages):
        return TokenizerImages(
            resize_uint8(source.train_NHWC, size), resize_uint8(source.val_NHWC, size), source.source
        )
    spec = str(source)
    if spec.startswith("folder:"):
        from mindhier.data.stimuli.folder import FolderSource

        folder = FolderSource(spec[len("folder:") :])
        pools = folder.pools(seed)
        train = folder.generate("train", len(pools["train"]), size, seed).images_NHWC
        val = folder.generate("test", len(pools["test"]), size, seed).images_NHWC
        return TokenizerImages(train, val, spec)
    from mindhier.data.nsd import open_dataset

    with open_dataset(source) as dataset:
        train_idx = np.unique(np.concatenate([dataset.split(s, "train").image_index_N for s in dataset.subjects]))
        val_idx = np.unique(np.concatenate([dataset.split(s, "val").image_index_N for s in dataset.subjects]))
        train = resize_uint8(dataset.images.load(train_idx), size)
        val = resize_uint8(dataset.images.load(val_idx), size) if len(val_idx) else train[:0]
    return TokenizerImages(train, val, str(source))


class PerceptualDistance(torch.nn.Module):
    """Mean squared distance of channel-normalised features of Lite0's first blocks (an LPIPS-like term)."""

    def __init__(self, blocks: int):
        super().__init__()
        from mindhier.backbones import efficientnet_lite

        network = efficientnet_lite.cached("efficientnet-lite0")
        self.stem = torch.nn.Sequential(network._conv_stem, network._bn0, network._swish)
        self.blocks = torch.nn.ModuleList(network._blocks[:blocks])
        self.requires_grad_(False)

    def features(self, x_B3HW: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.stem(x_B3HW), []
        for block in self.blocks:
            h = block(h)
            out.append(F.normalize(h, dim=1))
        return out

    def forward(self, a_B3HW: torch.Tensor, b_B3HW: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(b_B3HW)
        return sum((fa - fb).square().sum(1).mean() for fa, fb in zip(self.features(a_B3HW), target, strict=True))


@torch.no_grad()
def validation_metrics(model: Tokenizer, images_NHWC: np.ndarray, batch_size: int = 128) -> dict[str, float]:
    """MSE on [-1, 1], PixCorr and SSIM (MindEye2's definitions), codebook usage and perplexity."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recons, hits = [], torch.zeros(model.cfg.vocab)
    for start in range(0, len(images_NHWC), batch_size):
        x = to_model_input(images_NHWC[start : start + batch_size], device)
        tokens = model.encode(x)
        recons.append(model.decode(tokens).float().cpu())
        hits += torch.cat([t.flatten() for t in tokens]).bincount(minlength=model.cfg.vocab).float().cpu()
    model.train(was_training)
    recon = torch.cat(recons)
    truth = to_model_input(images_NHWC)
    p = hits / hits.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    recon_u8 = to_uint8(recon)
    return {
        "val_mse": float((recon - truth).square().mean()),
        "val_pixcorr": float(pixcorr(recon_u8, images_NHWC).mean()),
        "val_ssim": float(ssim(recon_u8, images_NHWC).mean()),
        "codebook_usage": float((hits > 0).float().mean()),
        "codebook_perplexity": float(entropy.exp()),
    }


@torch.no_grad()
def figure_rows(model: Tokenizer, images_NHWC: np.ndarray) -> np.ndarray:
    """Rows: originals, reconstructions, then the image after each scale (coarse to fine), as one uint8 grid."""
    was_training = model.training
    model.eval()
    x = to_model_input(images_NHWC[:FIGURE_IMAGES], next(model.parameters()).device)
    tokens = model.encode(x)
    rows = [images_NHWC[:FIGURE_IMAGES], to_uint8(model.decode(tokens))]
    rows += [to_uint8(img) for img in model.coarse_to_fine(tokens)]
    model.train(was_training)
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)


def save_figure(path: Path, grid_HW3: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(grid_HW3)
    image = image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def validate_and_draw(model: Tokenizer, images_NHWC: np.ndarray, figure: Path) -> dict[str, float]:
    """Validation metrics, and the reconstruction figure written to `figure`."""
    save_figure(figure, figure_rows(model, images_NHWC))
    return validation_metrics(model, images_NHWC)


def train_tokenizer(
    cfg: MindhierConfig,
    source: str | Path,
    out: str | Path,
    **launch: Unpack[Launch],
) -> TrainResult:
    """Train (or resume) a tokenizer on the images of `source` into the run folder `out`."""
    tc = cfg.train_tokenizer
    if tc.strategy == "fsdp":
        raise ConfigError(
            "train_tokenizer.strategy=fsdp is not supported: dead-code restarts write codebook rows in place, and the "
            "tokenizer (109 M parameters at paper scale) fits on every GPU; use ddp"
        )
    run = TrainingSession.start(out, KIND, cfg, tc, RUN_SECTIONS, **launch)
    world = run.world
    images = load_tokenizer_images(source, cfg.tokenizer.image_px, tc.seed)
    if len(images.train_NHWC) < tc.batch_size:
        raise DataError(
            f"{images.source} has {len(images.train_NHWC)} training images, fewer than the batch size "
            f"{tc.batch_size}; lower train_tokenizer.batch_size or add images"
        )

    start = initial_weights(tc.init, KIND, cfg)
    run.write_json(run_layout.INPUTS, {"images": images.source, "init": start.record})
    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model = Tokenizer(cfg.tokenizer)
    if start.state is not None:
        load_state_strict(model, start.state, start.record["source"])
    model.quantize.defer_usage = True  # code hits fold into the EMA once per optimiser step
    perceptual = PerceptualDistance(tc.perceptual_blocks).to(world.device) if tc.perceptual_weight > 0 else None
    wrapped = run.attach(
        model,
        [model.encoder, model.decoder],
        lambda m: adamw(m, tc.lr, tc.weight_decay, betas=(0.5, 0.9)),
        lambda opt: warmup_schedule(opt, tc.warmup_steps, tc.steps, tc.schedule),
        higher_is_better=False,
    )
    train_images = images.train_NHWC
    for step in run.steps():
        idx = rank_batch(len(train_images), tc.batch_size, step, tc.seed, world.rank, world.world_size)
        wrapped.trained.train()
        latents = []
        for rows, last in run.micro_batches(len(idx)):
            x = to_model_input(train_images[idx[rows]], world.device)
            share = len(x) / len(idx)
            with run.accumulating(last):
                with run.autocast():
                    recon, vq_loss, _, latent = wrapped.trained(x)
                recon = recon.float()
                terms = {
                    "l1": tc.l1_weight * (recon - x).abs().mean(),
                    "l2": tc.l2_weight * (recon - x).square().mean(),
                    "vq": tc.vq_weight * vq_loss,
                }
                if perceptual is not None:
                    terms["perceptual"] = tc.perceptual_weight * perceptual(recon, x)
                loss = torch.stack(list(terms.values())).sum()
                run.backward(loss, share, {k: float(v.detach()) for k, v in terms.items()})
            latents.append(latent.detach().float())
        model.quantize.update_usage()
        extra = run.optimizer_step()
        done = step + 1
        if tc.dead_code_every and done % tc.dead_code_every == 0:
            # the encoder outputs of the whole global batch, in its order, on every process
            vectors = all_gather_rows(rearrange(torch.cat(latents), "b c h w -> (b h w) c"))
            extra["restarted_codes"] = model.quantize.restart_dead_codes(
                vectors, tc.dead_code_threshold, keyed_generator(tc.seed, done, "dead_codes")
            )
        if len(images.val_NHWC):  # the tokenizer trains with DDP only: rank 0 validates and draws the figure
            figure = run.run_dir / run_layout.val_figure_file(done)
            extra |= run.evaluate(
                done, lambda f=figure: validate_and_draw(wrapped.module, images.val_NHWC, f), "val_mse"
            )
        run.end_step(done, extra)

    final = validation_metrics(wrapped.module, images.val_NHWC) if len(images.val_NHWC) and world.is_main else {}
    summary = run.finish(
        {
            "images": {"source": images.source, "train": len(train_images), "val": len(images.val_NHWC)},
            "init": start.record,
            "best_metric": "val_mse",
            "final_val": final,
        }
    )
    return TrainResult(run.run_dir, summary, wrapped.module)
