"""Brain → image: the reconstruction pipeline (encoder → scale-wise generator, or the diffusion baseline →
tokenizer decoder).

`Reconstructor.reconstruct(voxels, subject, samples, seed)` encodes the voxels with the frozen encoder
(the conditional stream) and all-zero voxels (the unconditional stream of classifier-free guidance), samples
N candidates per input scale by scale, and keeps the first — or, with `select="brain"`, the candidate whose
teacher embedding agrees best with the encoder's own predicted terminal embedding (never the test image).
Repetitions of a test image are averaged as voxels (default) or as encoder outputs (`[B, R, V]` input with
`average="outputs"`, MindEye2's choice).

Randomness: every input gets its own `torch.Generator`, seeded from (seed, key) — the stimulus index in the
CLI, the row otherwise — so an image does not depend on what else is in the batch.

`write_reconstructions` runs the pipeline over a split and writes `image_{index:06d}.png` files, optional
coarse-to-fine strips and a `manifest.json` with inputs, configs, seeds and protocol. It never reads the
test images (a test deletes them and checks the output is unchanged).

Shape letters: B inputs, R repetitions, V voxels, N samples, H/W pixels, K scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.config import DdimConfig, SamplerConfig
from mindhier.data import layout
from mindhier.errors import ConfigError
from mindhier.fileio import atomic_path, staged_directory, write_json
from mindhier.models.brain_encoder import BrainEncoder, guidance_levels
from mindhier.models.tokenizer import Tokenizer
from mindhier.progress import ProgressFn, report
from mindhier.provenance import provenance
from mindhier.sampling.decoders import DiffusionDecoder, ImageDecoder, ScaleWiseDecoder
from mindhier.sampling.selection import select_by_brain

SELECTIONS = ("first", "brain")
AVERAGING = ("voxels", "outputs")


@dataclass
class Reconstruction:
    images_BHW3: np.ndarray  # uint8, the kept sample of every input
    chosen_B: np.ndarray  # index of the kept sample
    strips_BKHW3: np.ndarray | None  # uint8, the kept sample after every scale


def item_generator(seed: int, key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(key)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def _uint8(images_B3HW: torch.Tensor) -> np.ndarray:
    return (images_B3HW.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Reconstructor:
    encoder: BrainEncoder
    supervision: str  # the encoder's `alignment.supervision` (for `single`: one fixed terminal feature)
    decoder: ImageDecoder  # the scale-wise generator, or the diffusion baseline
    teacher: Any  # the Stage-1 teacher, for brain-only selection
    runs: dict[str, str]  # where the models came from

    @property
    def tokenizer(self) -> Tokenizer:
        return self.decoder.tokenizer

    @classmethod
    def from_runs(
        cls,
        generator_run: str | Path,
        encoder_run: str | Path | None = None,
        tokenizer_run: str | Path | None = None,
        sampler: SamplerConfig | DdimConfig | None = None,
    ) -> Reconstructor:
        """Load a generator (or diffusion baseline) run and, unless given, the encoder and tokenizer it was
        trained with. `sampler`: a `SamplerConfig` for a generator, a `DdimConfig` for the baseline."""
        from mindhier.runs import (
            is_diffusion_run,
            load_diffusion,
            load_encoder,
            load_generator,
            load_tokenizer,
            resolve_input,
        )
        from mindhier.teachers import build_teacher

        diffusion = is_diffusion_run(generator_run)
        run = load_diffusion(generator_run) if diffusion else load_generator(generator_run)
        encoder_run = encoder_run or resolve_input(run.run_dir, run.inputs["encoder_run"])
        tokenizer_run = tokenizer_run or resolve_input(run.run_dir, run.inputs["tokenizer_run"])
        enc = load_encoder(encoder_run)
        tok = load_tokenizer(tokenizer_run)
        shapes = run.shapes
        if diffusion:
            checks = {
                "latent channels": (shapes.latent_channels, tok.cfg.latent_channels),
                "latent side": (shapes.latent_side, tok.cfg.scales[-1]),
                "tokens per level": (shapes.level_tokens, enc.shapes.queries),
                "level width": (shapes.context_width, enc.cfg.encoder.width),
            }
        else:
            checks = {
                "vocabulary": (shapes.vocab, tok.cfg.vocab),
                "scales": (tuple(shapes.scales), tuple(tok.cfg.scales)),
                "code dimension": (shapes.latent_channels, tok.cfg.latent_channels),
                "brain levels": (shapes.n_levels, enc.cfg.encoder.depth),
                "tokens per level": (shapes.level_tokens, enc.shapes.queries),
                "level width": (shapes.context_width, enc.cfg.encoder.width),
            }
        for what, (trained, given) in checks.items():
            if trained != given:
                raise ConfigError(
                    f"the decoder {run.run_dir} was trained with {what} {trained}, the given models have {given}; "
                    "pass the encoder and tokenizer it was trained with"
                )
        expected_sampler = DdimConfig if diffusion else SamplerConfig
        if sampler is not None and not isinstance(sampler, expected_sampler):
            raise ConfigError(f"{run.run_dir} needs a {expected_sampler.__name__}, got a {type(sampler).__name__}")
        if diffusion:
            decoder = DiffusionDecoder(run.model, tok, sampler or run.cfg.ddim)
        else:
            decoder = ScaleWiseDecoder(run.model, tok, sampler or run.cfg.sampler)
        return cls(
            enc.model,
            enc.cfg.alignment.supervision,
            decoder,
            build_teacher(enc.cfg.teacher),
            {"decoder": str(run.run_dir), "encoder": str(encoder_run), "tokenizer": str(tokenizer_run)},
        )

    @torch.no_grad()
    def condition(self, voxels, subject: int, average: str = "voxels"):
        """(levels, pooled, predicted terminal) of [B, V] voxels, or of [B, R, V] repetitions."""
        if average not in AVERAGING:
            raise ConfigError(f"average must be one of {', '.join(AVERAGING)}, got {average!r}")
        voxels = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
        if voxels.ndim == 3 and average == "voxels":
            voxels = voxels.mean(dim=1)
        if voxels.ndim == 3:  # average the encoder's outputs over repetitions
            b, r, v = voxels.shape
            out = self.encoder(voxels.reshape(b * r, v), subject)
            levels = guidance_levels(out, self.supervision).reshape(b, r, *out.levels_BMQD.shape[1:]).mean(1)
            return (
                levels,
                out.pooled_BD.reshape(b, r, -1).mean(1),
                out.terminal_BQD.reshape(b, r, *out.terminal_BQD.shape[1:]).mean(1),
            )
        if voxels.ndim != 2:
            raise ConfigError(f"voxels must be [B, V] or [B, R, V], got shape {tuple(voxels.shape)}")
        out = self.encoder(voxels, subject)
        return guidance_levels(out, self.supervision), out.pooled_BD, out.terminal_BQD

    @torch.no_grad()
    def reconstruct(
        self,
        voxels,
        subject: int,
        samples: int = 1,
        seed: int = 0,
        select: str = "first",
        average: str = "voxels",
        strips: bool = False,
        keys: list[int] | None = None,
    ) -> Reconstruction:
        if select not in SELECTIONS:
            raise ConfigError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
        levels, pooled, predicted = self.condition(voxels, subject, average)
        null_levels, null_pooled, _ = self.condition(torch.zeros(1, self.encoder.shapes.voxels[subject]), subject)
        keys = keys if keys is not None else list(range(len(levels)))
        images, chosen, strip_rows = [], [], []
        for b in range(len(levels)):
            out = self.decoder.sample(
                levels[b : b + 1],
                pooled[b : b + 1],
                null_levels,
                null_pooled,
                samples,
                item_generator(seed, keys[b]),
                strips=strips,
            )
            pick = 0
            if select == "brain" and samples > 1:
                pick = int(select_by_brain(out.images_R3HW[None], predicted[b : b + 1], self.teacher)[0])
            chosen.append(pick)
            images.append(_uint8(out.images_R3HW[pick : pick + 1])[0])
            if strips:
                strip_rows.append(np.stack([_uint8(s[pick : pick + 1])[0] for s in out.strips]))
        return Reconstruction(np.stack(images), np.asarray(chosen), np.stack(strip_rows) if strips else None)


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (every item gets another item's brain input)."""
    rng = np.random.default_rng([seed, 0x5EED])
    while True:
        order = rng.permutation(n)
        if n < 2 or not np.any(order == np.arange(n)):
            return order


def write_reconstructions(
    reconstructor: Reconstructor,
    data_dir: str | Path,
    out: str | Path,
    subject: int,
    split: str = "test",
    samples: int = 1,
    select: str = "first",
    average: str = "voxels",
    seed: int = 0,
    strips: bool = False,
    shuffle_brain: bool = False,
    determinism: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Reconstruct every item of a split into `out` (published atomically). See the module docstring."""
    from mindhier.data.nsd import open_dataset

    expected = {subject: reconstructor.encoder.shapes.voxels.get(subject, -1)}
    if expected[subject] < 0:
        raise ConfigError(
            f"the encoder was not trained on subject {subject}; it knows {reconstructor.encoder.subjects}"
        )
    with open_dataset(data_dir, subjects=[subject], expected_voxels=expected, check_images=False) as dataset:
        items = dataset.split(subject, split)
        voxels = items.voxels_per_repeat() if average == "outputs" else items.voxels()
        indices = np.asarray(items.image_index_N)
    if shuffle_brain:
        voxels = voxels[derangement(len(voxels), seed)]
    seeds = [seed + r for r in range(max(determinism, 1))]
    with staged_directory(out, overwrite=overwrite) as staging:
        for r, run_seed in enumerate(seeds):
            folder = staging if r == 0 else staging / "repeats" / f"seed{run_seed}"
            (folder / "strips").mkdir(parents=True, exist_ok=True) if strips and r == 0 else folder.mkdir(
                parents=True, exist_ok=True
            )
            for start in range(0, len(indices), 16):
                part = slice(start, start + 16)
                result = reconstructor.reconstruct(
                    voxels[part],
                    subject,
                    samples,
                    run_seed,
                    select,
                    average,
                    strips=strips and r == 0,
                    keys=[int(i) for i in indices[part]],
                )
                for k, index in enumerate(indices[part]):
                    _save_png(folder / layout.image_png_name(int(index)), result.images_BHW3[k])
                    if result.strips_BKHW3 is not None:
                        _save_png(
                            folder / "strips" / layout.image_png_name(int(index)),
                            np.concatenate(list(result.strips_BKHW3[k]), axis=1),
                        )
                report(progress, f"reconstruct (seed {run_seed})", min(start + 16, len(indices)), len(indices))
        manifest = {
            "subject": subject,
            "split": split,
            "stimulus_indices": [int(i) for i in indices],
            "models": reconstructor.runs,
            "protocol": {
                "samples": samples,
                "selection": "first sample"
                if select == "first" or samples == 1
                else "best of N by agreement with the brain-predicted terminal embedding (no ground truth)",
                "averaging": "repetitions averaged as voxels"
                if average == "voxels"
                else "encoder outputs averaged over repetitions",
                **reconstructor.decoder.protocol(),
                "seed": seed,
                "per_image_seed": "SeedSequence([seed, stimulus index])",
                "control": "shuffled brain: every image reconstructed from another image's voxels (seeded derangement)"
                if shuffle_brain
                else None,
                "encoder_supervision": reconstructor.supervision,
            },
            "strips": "strips/" if strips else None,
            "determinism": {"seeds": seeds, "dirs": ["."] + [f"repeats/seed{s}" for s in seeds[1:]]}
            if determinism > 1
            else None,
            "provenance": provenance(),
        }
        write_json(staging / "manifest.json", manifest)
    return Path(out)


def _save_png(path: Path, image_HW3: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image_HW3).save(tmp, format="PNG")


def write_tokenizer_ceiling(
    tokenizer_run: str | Path,
    data_dir: str | Path,
    out: str | Path,
    subject: int,
    split: str = "test",
    overwrite: bool = False,
) -> Path:
    """The tokenizer's own reconstructions of the true test images: the ceiling of any reconstruction here.

    (It reads the test images, by definition; it is a reference row, never a method.)
    """
    from mindhier.data.nsd import open_dataset
    from mindhier.runs import load_tokenizer
    from mindhier.train.tokenizer import resize_uint8, to_model_input, to_uint8

    tokenizer = load_tokenizer(tokenizer_run)
    with open_dataset(data_dir, subjects=[subject]) as dataset:
        items = dataset.split(subject, split)
        indices = np.asarray(items.image_index_N)
        images = resize_uint8(items.images(), tokenizer.cfg.image_px)
    with torch.no_grad():
        recon = to_uint8(tokenizer.decode(tokenizer.encode(to_model_input(images))))
    with staged_directory(out, overwrite=overwrite) as staging:
        for k, index in enumerate(indices):
            _save_png(staging / layout.image_png_name(int(index)), recon[k])
        write_json(
            staging / "manifest.json",
            {
                "subject": subject,
                "split": split,
                "stimulus_indices": [int(i) for i in indices],
                "models": {"tokenizer": str(tokenizer_run)},
                "protocol": {"control": "tokenizer ceiling: the true images encoded and decoded (reads them)"},
                "provenance": provenance(),
            },
        )
    return Path(out)
