"""Brain → image: the reconstruction pipeline (encoder → scale-wise generator, or the diffusion baseline →
tokenizer decoder), on any device, in batches.

`Reconstructor.reconstruct(voxels, subject, samples, seed)` builds the brain condition with the frozen
encoder (`models/brain_condition.py`: the conditional stream, and the null condition of all-zero voxels for
classifier-free guidance), samples S candidates per input scale by scale, and keeps the first — or, with
`select="brain"`, the candidate whose teacher embedding agrees best with the encoder's own predicted terminal
embedding (never the test image). Trials of a test image are averaged as voxels (default) or as encoder
outputs (`[B, T, V]` input with `average="outputs"`, MindEye2's choice).

Randomness: every input gets its own `torch.Generator`, seeded from (seed, key) — the stimulus index in the
CLI, the row otherwise — on the CPU, and draws happen on the generator's device, so an image depends neither
on what else is in the batch nor on the hardware's random number generator. `batch_size` inputs are sampled
together: the same tokens as one at a time; pixels equal up to floating-point summation order (a batched
matrix product may round differently in the last bit), which is why the default batch of 1 reproduces earlier
versions byte for byte on the CPU.

`write_reconstructions` runs the pipeline over a split and writes `image_{index:06d}.png` files, optional
coarse-to-fine strips and a `manifest.json` with inputs, configs, seeds and protocol. It never reads the
test images (a test deletes them and checks the output is unchanged).

Shape letters (docs/glossary.md): B inputs, T trials, V voxels, S samples, R = B·S rows, H/W pixels, K scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.config import DdimConfig, SamplerConfig, TokenizerConfig
from mindhier.data import layout
from mindhier.data.image_tensors import resize_uint8, to_model_input, to_uint8, unit_to_uint8
from mindhier.errors import ConfigError
from mindhier.fileio import atomic_path, staged_directory, write_json
from mindhier.models.brain_condition import BrainCondition, Condition, TeacherCondition, over_trials
from mindhier.models.brain_encoder import BrainEncoder
from mindhier.models.low_level import LowLevelDecoder
from mindhier.models.tokenizer import Tokenizer
from mindhier.progress import ProgressFn, report
from mindhier.provenance import provenance
from mindhier.sampling.decoders import DiffusionDecoder, ImageDecoder, ScaleWiseDecoder
from mindhier.sampling.selection import select_by_brain
from mindhier.teachers import build_teacher

SELECTIONS = ("first", "brain")
ENCODER_CHUNK = 16  # inputs encoded together by `write_reconstructions` (at least `batch_size`)


@dataclass
class Reconstruction:
    images_BHW3: np.ndarray  # uint8, the kept sample of every input
    chosen_B: np.ndarray  # index of the kept sample
    strips_BKHW3: np.ndarray | None  # uint8, the kept sample after every scale


def item_generator(seed: int, key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(key)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


@dataclass
class Reconstructor:
    condition: BrainCondition  # the frozen encoder as the decoder's condition
    decoder: ImageDecoder  # the scale-wise generator, or the diffusion baseline
    teacher: Any  # the Stage-1 teacher, for brain-only selection
    runs: dict[str, str]  # where the models came from
    trained_on: str = "brain"  # the condition its weights learnt, brain | teacher: the unconditional stream to use
    low_level: LowLevelDecoder | None = None  # the encoder's voxels → image ridge, for `sampler.low_level_scales`

    @property
    def encoder(self) -> BrainEncoder:
        return self.condition.encoder

    @property
    def supervision(self) -> str:
        return self.condition.supervision

    @property
    def tokenizer(self) -> Tokenizer:
        return self.decoder.tokenizer

    @property
    def device(self) -> torch.device:
        return self.condition.device

    @classmethod
    def from_runs(
        cls,
        generator_run: str | Path,
        encoder_run: str | Path | None = None,
        tokenizer_run: str | Path | None = None,
        sampler: SamplerConfig | DdimConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> Reconstructor:
        """Load a generator (or diffusion baseline) run and, unless given, the encoder and tokenizer it was
        trained with, on `device`. `sampler`: a `SamplerConfig` for a generator, a `DdimConfig` for the baseline."""
        from mindhier.run_layout import resolve_input
        from mindhier.runs import load_decoder, load_encoder, load_tokenizer
        from mindhier.teachers import build_teacher
        from mindhier.tokenizer_source import recorded_tokenizer

        run = load_decoder(generator_run, device=device)
        diffusion = isinstance(run.model, _diffusion_class())
        encoder_run = encoder_run or resolve_input(run.run_dir, run.inputs["encoder_run"], "encoder_run", "--encoder")
        tokenizer = recorded_tokenizer(run.run_dir, run.inputs, tokenizer_run, run.cfg.tokenizer)
        tokenizer_run = tokenizer.spec
        enc = load_encoder(encoder_run, device=device)
        tok = load_tokenizer(tokenizer, device=device)
        condition = BrainCondition(enc.model, enc.cfg.alignment.supervision, enc.calibration)
        shapes = run.shapes
        if diffusion:
            checks = {
                "latent channels": (shapes.latent_channels, tok.cfg.latent_channels),
                "latent side": (shapes.latent_side, tok.cfg.scales[-1]),
                "tokens per level": (shapes.level_tokens, enc.shapes.queries),
                "terminal level width": (shapes.context_width, condition.level_dims[-1]),
            }
        else:
            checks = {
                "vocabulary": (shapes.vocab, tok.cfg.vocab),
                "scales": (tuple(shapes.scales), tuple(tok.cfg.scales)),
                "code dimension": (shapes.latent_channels, tok.cfg.latent_channels),
                "tokens per level": (shapes.level_tokens, enc.shapes.queries),
                "level widths": (tuple(shapes.level_dims), condition.level_dims),
            }
        for what, (trained, given) in checks.items():
            if trained != given:
                raise ConfigError(
                    f"the decoder {run.run_dir} was trained with {what} {trained}, the given models have {given}; "
                    "pass the encoder and tokenizer it was trained with"
                )
        expected_sampler = DdimConfig if diffusion else SamplerConfig
        if sampler is not None and not isinstance(sampler, expected_sampler):
            raise ConfigError(
                f"{run.run_dir} needs a {expected_sampler.__name__}, got a {type(sampler).__name__};"
                " pass a run of the kind this sampler reads"
            )
        if diffusion:
            decoder = DiffusionDecoder(run.model, tok, sampler or run.cfg.ddim)
        else:
            decoder = ScaleWiseDecoder(run.model, tok, sampler or run.cfg.sampler)
        return cls(
            condition,
            decoder,
            build_teacher(enc.cfg.teacher, device=device),
            {"decoder": str(run.run_dir), "encoder": str(encoder_run), "tokenizer": str(tokenizer_run)},
            run.inputs.get("null_condition", run.inputs.get("condition", "brain")),
            enc.low_level,
        )

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
        batch_size: int = 1,
    ) -> Reconstruction:
        """Images of [B, V] voxels (or [B, T, V] trials); `batch_size` inputs are sampled together."""
        condition = self.condition.of_voxels(voxels, subject, average)
        starts = self.low_level_tokens(voxels, subject, average)
        return self.sample(condition, subject, samples, seed, select, strips, keys, batch_size, starts)

    @property
    def low_level_scales(self) -> int:
        return getattr(getattr(self.decoder, "sampler", None), "low_level_scales", 0)

    def low_level_tokens(self, voxels, subject: int, average: str = "voxels") -> list[torch.Tensor] | None:
        """With `sampler.low_level_scales = k`: the first k scales' tokens of the encoder's low-level image of each
        input ([B, l] each; trials averaged as the condition's are), else None."""
        k = self.low_level_scales
        if not k:
            return None
        if self.low_level is None:
            raise ConfigError(
                f"sampler.low_level_scales={k} needs an encoder with a low-level decoder (encoder.low_level_px > 0); "
                f"{self.runs['encoder']} has none — retrain it with one, or set sampler.low_level_scales=0"
            )
        voxels = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
        images = over_trials(voxels, average, lambda rows: self.low_level.predict(rows, subject))
        side = self.tokenizer.cfg.image_px
        resized = torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
        tokens = self.tokenizer.encode((resized.clamp(0, 1) * 2 - 1).to(self.device))
        return [t.cpu() for t in tokens[:k]]

    @torch.no_grad()
    def reconstruct_oracle(
        self,
        levels: list[torch.Tensor],
        subject: int,
        samples: int = 1,
        seed: int = 0,
        select: str = "first",
        strips: bool = False,
        keys: list[int] | None = None,
        batch_size: int = 1,
    ) -> Reconstruction:
        """Images from the teacher's own levels of the images (M tensors [B, Q, D_m]): what a perfect encoder
        would give this decoder. It reads the images' features by definition: a reference row, not a method."""
        teacher = TeacherCondition(self.condition.level_dims, self.encoder.shapes.queries, self.device)
        return self.sample(teacher(levels), subject, samples, seed, select, strips, keys, batch_size)

    def null(self, subject: int) -> Condition:
        """The unconditional stream the decoder was trained with: the encoder's output for zero voxels (trained on
        the brain), or zero features (trained on the teacher's features)."""
        if self.trained_on == "teacher":
            return TeacherCondition(self.condition.level_dims, self.encoder.shapes.queries, self.device).null()
        return self.condition.null(subject)

    @torch.no_grad()
    def sample(
        self,
        condition: Condition,
        subject: int,
        samples: int = 1,
        seed: int = 0,
        select: str = "first",
        strips: bool = False,
        keys: list[int] | None = None,
        batch_size: int = 1,
        start_tokens: list[torch.Tensor] | None = None,
    ) -> Reconstruction:
        """Images of a condition (B inputs), `batch_size` inputs sampled together, each from its own generator;
        `start_tokens` (per leading scale [B, l]) are taken instead of drawn (`low_level_tokens`)."""
        if select not in SELECTIONS:
            raise ConfigError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}; use one of those")
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}; pass 1 or more")
        levels, pooled, predicted = condition
        null_levels, null_pooled, _ = self.null(subject)
        keys = keys if keys is not None else list(range(len(levels)))
        images, chosen, strip_rows = [], [], []
        for start in range(0, len(levels), batch_size):
            part = slice(start, start + batch_size)
            out = self.decoder.sample(
                levels[part],
                pooled[part],
                null_levels,
                null_pooled,
                samples,
                [item_generator(seed, key) for key in keys[part]],
                strips=strips,
                **({"start_tokens": [t[part] for t in start_tokens]} if start_tokens else {}),
            )
            candidates = out.images_R3HW.unflatten(0, (-1, samples))  # [B, S, 3, H, W]
            picks = torch.zeros(len(candidates), dtype=torch.long)
            if select == "brain" and samples > 1:
                picks = select_by_brain(candidates, predicted[part], self.teacher).cpu()
            rows = torch.arange(len(candidates)) * samples + picks
            chosen += picks.tolist()
            images.append(unit_to_uint8(out.images_R3HW[rows.to(out.images_R3HW.device)]))
            if strips:
                strip_rows.append(np.stack([unit_to_uint8(s[rows.to(s.device)]) for s in out.strips], axis=1))
        return Reconstruction(
            np.concatenate(images), np.asarray(chosen), np.concatenate(strip_rows) if strips else None
        )


def _diffusion_class():
    from mindhier.models.diffusion import LatentDiT

    return LatentDiT


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
    batch_size: int = 1,
    *,
    condition: str = "brain",
) -> Path:
    """Reconstruct every item of a split into `out` (published atomically). See the module docstring.
    `condition="teacher"` is the oracle row: the teacher's features of the test images instead of the brain."""
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
    features = oracle_features(reconstructor, data_dir) if condition == "teacher" else None
    seeds = [seed + r for r in range(max(determinism, 1))]
    chunk = max(ENCODER_CHUNK, batch_size)
    with staged_directory(out, overwrite=overwrite) as staging:
        for r, run_seed in enumerate(seeds):
            folder = staging if r == 0 else staging / "repeats" / f"seed{run_seed}"
            folder.mkdir(parents=True, exist_ok=True)
            if strips and r == 0:
                (folder / "strips").mkdir()
            for start in range(0, len(indices), chunk):
                part = slice(start, start + chunk)
                keys = [int(i) for i in indices[part]]
                if features is not None:
                    levels = features.get(indices[part])
                    result = reconstructor.reconstruct_oracle(
                        levels, subject, samples, run_seed, select, strips and r == 0, keys, batch_size
                    )
                else:
                    result = reconstructor.reconstruct(
                        voxels[part], subject, samples, run_seed, select, average, strips and r == 0, keys, batch_size
                    )
                for k, index in enumerate(indices[part]):
                    _save_png(folder / layout.image_png_name(int(index)), result.images_BHW3[k])
                    if result.strips_BKHW3 is not None:
                        _save_png(
                            folder / "strips" / layout.image_png_name(int(index)),
                            np.concatenate(list(result.strips_BKHW3[k]), axis=1),
                        )
                report(progress, f"reconstruct (seed {run_seed})", min(start + chunk, len(indices)), len(indices))
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
                "batch_size": batch_size,
                "device": str(reconstructor.device),
                "scales": list(reconstructor.tokenizer.cfg.scales),
                "per_image_seed": "SeedSequence([seed, stimulus index])",
                "control": "shuffled brain: every image reconstructed from another image's voxels (seeded derangement)"
                if shuffle_brain
                else None,
                "condition": "brain"
                if condition == "brain"
                else "oracle: the teacher's features of each test image (reads the test images; a reference row)",
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


def oracle_features(reconstructor: Reconstructor, data_dir: str | Path):
    """The teacher's features of the dataset's stimuli (the encoder's teacher: from the feature cache, or computed
    on the fly when its config says `teacher.cache=false`)."""
    from mindhier.data.nsd import open_dataset
    from mindhier.data.teacher_targets import teacher_targets
    from mindhier.run_layout import load_run_config

    cfg = load_run_config(reconstructor.runs["encoder"])
    teacher = build_teacher(cfg.teacher, device=reconstructor.device)
    return teacher_targets(cfg.teacher, data_dir, open_dataset(data_dir, cfg.data), teacher)


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
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    strips: bool = True,
    tokenizer_cfg: TokenizerConfig | None = None,
) -> Path:
    """The tokenizer's own reconstructions of the true test images: the ceiling of any reconstruction here,
    with the image after every scale (the ceiling of each scale) in `strips/`. `tokenizer_run` may be a
    VQ-VAE file or name too (`mindhier.tokenizer_source`), loaded into `tokenizer_cfg`.

    (It reads the test images, by definition; it is a reference row, never a method.)
    """
    from mindhier.data.nsd import open_dataset
    from mindhier.runs import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_run, tokenizer_cfg, device=device)
    with open_dataset(data_dir, subjects=[subject]) as dataset:
        items = dataset.split(subject, split)
        indices = np.asarray(items.image_index_N)
        images = resize_uint8(items.images(), tokenizer.cfg.image_px)
    recons, strip_rows = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            tokens = tokenizer.encode(to_model_input(images[i : i + batch_size], device))
            recons.append(to_uint8(tokenizer.decode(tokens)))
            if strips:
                strip_rows.append(np.stack([to_uint8(x) for x in tokenizer.coarse_to_fine(tokens)], axis=1))
    recon = np.concatenate(recons)
    all_strips = np.concatenate(strip_rows) if strips else None  # [N, K, H, W, 3]
    with staged_directory(out, overwrite=overwrite) as staging:
        if strips:
            (staging / "strips").mkdir()
        for k, index in enumerate(indices):
            _save_png(staging / layout.image_png_name(int(index)), recon[k])
            if all_strips is not None:
                strip = np.concatenate(list(all_strips[k]), axis=1)
                _save_png(staging / "strips" / layout.image_png_name(int(index)), strip)
        write_json(
            staging / "manifest.json",
            {
                "subject": subject,
                "split": split,
                "stimulus_indices": [int(i) for i in indices],
                "models": {"tokenizer": str(tokenizer_run)},
                "protocol": {
                    "control": "tokenizer ceiling: the true images encoded and decoded (reads them)",
                    "scales": list(tokenizer.cfg.scales),
                },
                "strips": "strips/" if strips else None,
                "provenance": provenance(),
            },
        )
    return Path(out)
