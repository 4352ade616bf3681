"""The whole path of one batch of a subject's voxels to images, with no per-call overhead: what a real-time
decoder calls per trial, and what `mindhier bench decoders` times.

* Scale-wise decoder: the encoder (its aligned, calibrated levels and pooled vector, `BrainCondition.compute`),
  the generator's per-sample work, every scale and the VQ decode are one function of fixed shapes, compiled
  (`compile=True`) into **one graph** per batch size (`sampling/compiled.py`; on a GPU one CUDA graph).
* Diffusion baseline: the encoder and the guided condition's keys/values are one graph, each DDIM step one graph
  (the same graph, replayed `steps` times: unrolling 25–100 denoiser calls into one graph would multiply its
  compile time by the step count, for a per-call saving of microseconds), the latent's decode one graph.

The unconditional stream (`Reconstructor.null`: the encoder of zero voxels, or zero teacher features) is computed
once. The draws come from one `torch.Generator` per input, made before the graph as everywhere else, so a single
pass gives the images `Reconstructor.reconstruct` gives with the same generators (tested).

Shape letters (docs/glossary.md): B inputs, V voxels, C latent channels, h/w latent side, H/W pixels.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from mindhier.errors import ConfigError
from mindhier.sampling.compiled import CompiledStep
from mindhier.sampling.ddim import denoise, guided_condition
from mindhier.sampling.decoders import DiffusionDecoder, ScaleWiseDecoder
from mindhier.sampling.draws import as_list, normal_rows


@dataclass
class SinglePass:
    """voxels [B, V] of `subject` → images [B, 3, H, W] in [0, 1], one sample each (`reconstructor`'s decoder and
    sampler settings; its `compile` flag decides whether the path is compiled)."""

    reconstructor: object  # a sampling.reconstruct.Reconstructor
    subject: int
    backend: str | None = None  # torch.compile backend (None: the package default, inductor)
    steps: dict[str, CompiledStep] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        decoder = self.reconstructor.decoder
        self.null = tuple(t.to(self.reconstructor.device) for t in self.reconstructor.null(self.subject)[:2])
        self.scale_wise = isinstance(decoder, ScaleWiseDecoder)
        if not self.scale_wise and not isinstance(decoder, DiffusionDecoder):
            raise TypeError(f"no single pass for a {type(decoder).__name__}")
        if self.scale_wise and decoder.sampler.low_level_scales:
            raise ConfigError(
                f"a single pass samples every scale; sampler.low_level_scales={decoder.sampler.low_level_scales} needs "
                "Reconstructor.reconstruct — set sampler.low_level_scales=0 for a single pass"
            )
        self.compile = decoder.compile
        self.reconstructor.encoder.eval()

    def _step(self, name: str, fn) -> CompiledStep:
        if name not in self.steps:
            self.steps[name] = CompiledStep(fn, self.reconstructor.device.type, self.compile, self.backend)
        return self.steps[name]

    def _condition(self, voxels_BV: torch.Tensor):
        levels, pooled, _ = self.reconstructor.condition.compute(((self.subject, voxels_BV),))
        return levels, pooled

    @torch.no_grad()
    def __call__(self, voxels_BV: torch.Tensor, generators, seconds: dict[str, float] | None = None) -> torch.Tensor:
        """Images of `voxels_BV`, the draws from `generators` (one, or one per input); `seconds`, when given,
        receives the wall time of the parts that run separately (the scale-wise path is one part)."""
        voxels_BV = torch.as_tensor(voxels_BV).float().to(self.reconstructor.device)
        generators = as_list(generators)
        if self.scale_wise:
            return self._scale_wise(voxels_BV, generators, seconds)
        return self._diffusion(voxels_BV, generators, seconds)

    def _scale_wise(self, voxels_BV, generators, seconds) -> torch.Tensor:
        decoder = self.reconstructor.decoder
        loop = decoder.loop(len(voxels_BV), dataclasses.replace(decoder.sampler, samples=1))
        exponentials = loop.draws(generators)
        clock = time.perf_counter()
        if not self.compile:  # the same parts one after the other, each timed
            levels, pooled = self._condition(voxels_BV)
            clock = _record(seconds, "encoder", clock, voxels_BV.device)
            _, f_hat = loop.all_scales(loop.prepare(levels, pooled, *self.null), exponentials)
            clock = _record(seconds, "network", clock, voxels_BV.device)
            images = loop.decode(f_hat)
            _record(seconds, "vq_decode", clock, voxels_BV.device)
            return images

        def whole(voxels, null_levels, null_pooled, exponentials):
            levels, pooled = self._condition(voxels)
            return loop.fused(levels, pooled, null_levels, null_pooled, exponentials)[1]

        self._mark_step()
        images = self._step(f"scale-wise {len(voxels_BV)}", whole)(voxels_BV, *self.null, exponentials).clone()
        _record(seconds, "encoder_scales_and_vq_decode", clock, images.device)
        return images

    def _diffusion(self, voxels_BV, generators, seconds) -> torch.Tensor:
        decoder: DiffusionDecoder = self.reconstructor.decoder
        model, ddim = decoder.model, decoder.ddim
        width = model.shapes.context_width  # the terminal level's real channels (levels are zero-padded)

        def start(voxels, null_levels, null_pooled):
            levels, pooled = self._condition(voxels)
            terminal, null_terminal = levels[:, -1, :, :width], null_levels[:, -1, :, :width]
            return guided_condition(model, terminal, pooled, null_terminal, null_pooled, ddim)

        shapes = model.shapes
        noise = normal_rows(
            (len(voxels_BV), shapes.latent_channels, shapes.latent_side, shapes.latent_side),
            generators,
            voxels_BV.device,
        )
        clock = time.perf_counter()
        self._mark_step()
        terminal, pooled, context_kv = self._step(f"diffusion start {len(voxels_BV)}", start)(voxels_BV, *self.null)
        clock = _record(seconds, "encoder", clock, noise.device)
        noise_fn = decoder.noise_fn()
        z = denoise(model, decoder.schedule, terminal, pooled, context_kv, ddim, noise, generators, noise_fn=noise_fn)
        clock = _record(seconds, "network", clock, noise.device)
        images = decoder.to_images(z)
        _record(seconds, "vq_decode", clock, noise.device)
        return images

    def _mark_step(self) -> None:
        if self.compile and self.reconstructor.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()


def _record(seconds: dict[str, float] | None, name: str, clock: float, device: torch.device) -> float:
    """Store the seconds since `clock` under `name` (after the device's queued work) and return a new clock."""
    if seconds is not None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[name] = time.perf_counter() - clock
    return time.perf_counter()
