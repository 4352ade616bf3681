"""Train the multi-scale VQ tokenizer on stimulus images (no fMRI needed).

Images come from a dataset folder (the `train` split's stimuli for training, `val`'s for validation;
test stimuli are never used) or from any image folder (`folder:PATH`, its seeded train/test pools).
Loss per step:

    l1·|x − x̂| + l2·(x − x̂)² + perceptual·d(Lite0_{1..b}(x), Lite0_{1..b}(x̂)) + vq·L_VQ

where the perceptual distance compares channel-normalised features of EfficientNet-Lite0's first `b`
blocks at the images' native size (cheap at 32 px), and L_VQ is the quantizer's codebook + commitment
loss. AdamW, linear warm-up then constant rate, gradient clipping; every `dead_code_every` steps, codes
whose hit rate fell below the threshold are re-seeded from current encoder outputs. Every `eval_every`
steps: val MSE / PixCorr / SSIM, codebook usage and perplexity in the log, a reconstruction figure, and
the best-val weights in `tokenizer.safetensors`. Resumable like Stage 1; rank-aware (rank 0 writes).

Run folder: config.json, tokenizer.safetensors (best val MSE), tokenizer_last.safetensors,
train_state.pt, log.jsonl, val_recon_step{N}.png, train_summary.json.

Shape letters: N images, B batch, H/W pixels.
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

from mindhier.checkpoint import (
    check_run_folder,
    load_train_state,
    load_weights,
    save_train_state,
    save_weights,
)
from mindhier.config import MindhierConfig, resolved_record, to_dict
from mindhier.errors import ConfigError, DataError
from mindhier.fileio import write_json
from mindhier.metrics.image import pixcorr, ssim
from mindhier.models.tokenizer import Tokenizer
from mindhier.progress import ProgressFn, report
from mindhier.train.sampling import rank_batch

TOKENIZER_WEIGHTS = "tokenizer.safetensors"
LAST_WEIGHTS = "tokenizer_last.safetensors"
TRAIN_STATE = "train_state.pt"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "train_summary.json"
RUN_SECTIONS = ("tokenizer", "train_tokenizer")
FIGURE_IMAGES = 8


@dataclass(frozen=True)
class TokenizerImages:
    train_NHWC: np.ndarray  # uint8 at the tokenizer's size
    val_NHWC: np.ndarray
    source: str  # where they came from, for the log


def resize_uint8(images_NHWC: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of uint8 images."""
    if images_NHWC.shape[1] == size:
        return images_NHWC
    x = torch.from_numpy(images_NHWC).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def to_model_input(images_NHWC: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_NHWC)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images_B3HW: torch.Tensor) -> np.ndarray:
    return ((images_B3HW.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def load_tokenizer_images(source: str | Path, size: int, seed: int = 0) -> TokenizerImages:
    """Train/val images from a dataset folder, or from `folder:PATH` (any folder of images)."""
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
    model.eval()
    recons, hits = [], torch.zeros(model.cfg.vocab)
    for start in range(0, len(images_NHWC), batch_size):
        x = to_model_input(images_NHWC[start : start + batch_size])
        tokens = model.encode(x)
        recons.append(model.decode(tokens))
        hits += torch.cat([t.flatten() for t in tokens]).bincount(minlength=model.cfg.vocab).float()
    model.train()
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


def save_figure(path: Path, model: Tokenizer, images_NHWC: np.ndarray) -> None:
    """Rows: originals, reconstructions, then the image after each scale (coarse to fine)."""
    from PIL import Image

    from mindhier.fileio import atomic_path

    x = to_model_input(images_NHWC[:FIGURE_IMAGES])
    model.eval()
    with torch.no_grad():
        tokens = model.encode(x)
        rows = [images_NHWC[:FIGURE_IMAGES], to_uint8(model.decode(tokens))]
        rows += [to_uint8(img) for img in model.coarse_to_fine(tokens)]
    model.train()
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid)
    image = image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def train_tokenizer(
    cfg: MindhierConfig,
    source: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    progress: ProgressFn | None = None,
) -> Path:
    """Train (or resume) a tokenizer on the images of `source`; returns the run folder."""
    run_dir, tc, device = Path(out), cfg.train_tokenizer, torch.device(device)
    is_main = rank == 0
    check_run_folder(run_dir, to_dict(cfg), RUN_SECTIONS, resume)
    images = load_tokenizer_images(source, cfg.tokenizer.image_px, tc.seed)
    if len(images.train_NHWC) < tc.batch_size:
        raise DataError(
            f"{images.source} has {len(images.train_NHWC)} training images, fewer than the batch size "
            f"{tc.batch_size}; lower train_tokenizer.batch_size or add images"
        )

    torch.manual_seed(tc.seed)
    model = Tokenizer(cfg.tokenizer).to(device)
    perceptual = PerceptualDistance(tc.perceptual_blocks).to(device) if tc.perceptual_weight > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.5, 0.9), weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, tc.warmup_steps)))
    restart_rng = torch.Generator().manual_seed(tc.seed)
    start_step, best_mse = 0, float("inf")
    if resume:
        load_weights(run_dir / LAST_WEIGHTS, model)
        state = load_train_state(run_dir / TRAIN_STATE)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, best_mse = int(state["step"]), float(state["best_mse"])
        torch.set_rng_state(state["torch_rng"])
        restart_rng.set_state(state["restart_rng"])
    elif is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", resolved_record(cfg))

    wrapped = model
    if world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    train_images = images.train_NHWC
    started, log_every = time.perf_counter(), max(1, tc.steps // 200)
    for step in range(start_step, tc.steps):
        idx = rank_batch(len(train_images), tc.batch_size, step, tc.seed, rank, world_size)
        x = to_model_input(train_images[idx]).to(device)
        recon, vq_loss, _, latent = wrapped(x)
        terms = {
            "l1": tc.l1_weight * (recon - x).abs().mean(),
            "l2": tc.l2_weight * (recon - x).square().mean(),
            "vq": tc.vq_weight * vq_loss,
        }
        if perceptual is not None:
            terms["perceptual"] = tc.perceptual_weight * perceptual(recon, x)
        loss = torch.stack(list(terms.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record = {"step": done, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        if tc.dead_code_every and done % tc.dead_code_every == 0:
            vectors = latent.detach().permute(0, 2, 3, 1).reshape(-1, latent.shape[1]).cpu()
            if world_size > 1:  # every rank restarts the same codes with the same vectors
                torch.distributed.broadcast(vectors, src=0)
            record["restarted_codes"] = model.quantize.restart_dead_codes(
                vectors.to(device), tc.dead_code_threshold, restart_rng
            )
        report(progress, "train tokenizer", done, tc.steps, {"loss": record["loss"]})
        if is_main and (done % tc.eval_every == 0 or done == tc.steps) and len(images.val_NHWC):
            record.update(validation_metrics(model, images.val_NHWC))
            save_figure(run_dir / f"val_recon_step{done}.png", model, images.val_NHWC)
            if record["val_mse"] < best_mse:
                best_mse = record["val_mse"]
                save_weights(run_dir / TOKENIZER_WEIGHTS, model, {"step": str(done)})
        if is_main and (done % log_every == 0 or "val_mse" in record or done == tc.steps):
            with open(run_dir / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
        if is_main and (done % tc.checkpoint_every == 0 or done == tc.steps):
            save_weights(run_dir / LAST_WEIGHTS, model, {"step": str(done)})
            save_train_state(
                run_dir / TRAIN_STATE,
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": done,
                    "best_mse": best_mse,
                    "torch_rng": torch.get_rng_state(),
                    "restart_rng": restart_rng.get_state(),
                },
            )

    seconds = time.perf_counter() - started
    if is_main:
        if not (run_dir / TOKENIZER_WEIGHTS).exists():
            save_weights(run_dir / TOKENIZER_WEIGHTS, model, {"step": str(tc.steps)})
        final = validation_metrics(model, images.val_NHWC) if len(images.val_NHWC) else {}
        write_json(
            run_dir / SUMMARY_FILE,
            {
                "steps": tc.steps,
                "resumed_from": start_step,
                "seconds": round(seconds, 2),
                "images": {"source": images.source, "train": len(train_images), "val": len(images.val_NHWC)},
                "parameters": sum(p.numel() for p in model.parameters()),
                "best_val_mse": best_mse,
                "final_val": final,
                "device": str(device),
                "world_size": world_size,
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
        )
    if start_step > tc.steps:
        raise ConfigError(f"the run in {run_dir} is already past {tc.steps} steps")
    return run_dir
