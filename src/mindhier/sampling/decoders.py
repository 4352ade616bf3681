"""Image decoders of the reconstruction pipeline: brain condition → images, one interface for both kinds.

* `ScaleWiseDecoder` — MindHier's scale-wise generator, routed brain levels, sampled scale by scale
  (`sampling/scale_ar.py`); strips are the image after every scale.
* `DiffusionDecoder` — the latent diffusion baseline, the terminal level as one static condition, DDIM
  (`sampling/ddim.py`); strips are the predicted clean latent ẑ_0 decoded at as many evenly spaced steps as
  the tokenizer has scales (so both kinds' strips line up in the report).

Both decode through the same tokenizer decoder and take randomness only from the `generator` argument: one
generator, or one per brain input (each input's samples then come from its own generator).

Shape letters (docs/glossary.md): B brain inputs, S samples each, R = B·S rows, M levels, Q tokens per level,
Y level width, P pooled width, C latent channels, h/w latent side, H/W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from mindhier.config import DdimConfig, SamplerConfig, to_dict
from mindhier.models.diffusion import LatentDiT
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.compiled import CompiledStep
from mindhier.sampling.ddim import NoiseSchedule, guided_noise, sample_ddim
from mindhier.sampling.draws import as_list, normal_rows
from mindhier.sampling.precision import network_autocast
from mindhier.sampling.scale_ar import ScaleLoop, sample


@dataclass
class DecodedImages:
    images_R3HW: torch.Tensor  # float in [0, 1]; sample s of input b at row b·S + s
    strips: list[torch.Tensor] | None  # per frame [R, 3, H, W] in [0, 1], when asked for


class ImageDecoder(Protocol):
    tokenizer: Tokenizer

    def sample(
        self,
        levels_BMQY: torch.Tensor,
        pooled_BP: torch.Tensor,
        null_levels_1MQY: torch.Tensor,
        null_pooled_1P: torch.Tensor,
        samples: int,
        generator: torch.Generator | list[torch.Generator],  # one, or one per brain input
        strips: bool = False,
    ) -> DecodedImages: ...

    def protocol(self) -> dict[str, Any]: ...


@dataclass
class ScaleWiseDecoder:
    model: ScaleAR
    tokenizer: Tokenizer
    sampler: SamplerConfig
    compile: bool = False  # compile the loop (all scales, one graph) and the VQ decode; the same tokens, faster
    loops: dict[tuple[int, SamplerConfig], ScaleLoop] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def loop(self, rows: int, cfg: SamplerConfig) -> ScaleLoop:
        """The sampling loop for this many rows: built once, its buffers and compiled steps reused."""
        if (rows, cfg) not in self.loops:
            self.loops[rows, cfg] = ScaleLoop(self.model, self.tokenizer, cfg, rows, compile=self.compile)
        return self.loops[rows, cfg]

    def sample(
        self,
        levels_BMQY,
        pooled_BP,
        null_levels_1MQY,
        null_pooled_1P,
        samples,
        generator,
        strips=False,
        start_tokens: list[torch.Tensor] | None = None,  # per leading scale [B, l_k]: taken, not drawn
    ):
        cfg = SamplerConfig(**{**to_dict(self.sampler), "samples": samples})
        loop = self.loop(len(levels_BMQY) * samples, cfg)
        out = sample(
            self.model,
            self.tokenizer,
            levels_BMQY,
            pooled_BP,
            null_levels_1MQY,
            null_pooled_1P,
            cfg,
            generator,
            strips,
            loop=loop,
            start_tokens=start_tokens,
        )
        return DecodedImages(out.images_R3HW, out.strips)

    def protocol(self) -> dict[str, Any]:
        return {
            "decoder": "scale-wise autoregressive generator",
            "routing": self.model.cfg.routing,
            "sampler": to_dict(self.sampler),
        }


@dataclass
class DiffusionDecoder:
    model: LatentDiT
    tokenizer: Tokenizer
    ddim: DdimConfig
    compile: bool = False  # compile the guided denoiser call and the VQ decode, as the scale-wise decoder's steps
    compiled: dict[str, CompiledStep] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _compiled(self, name: str, fn) -> CompiledStep:
        if name not in self.compiled:
            device_type = next(self.model.parameters()).device.type
            self.compiled[name] = CompiledStep(fn, device_type, enabled=self.compile)
        return self.compiled[name]

    def noise_fn(self) -> CompiledStep:
        """The guided denoiser call (both streams in one batch) of every DDIM step."""
        device = next(self.model.parameters()).device

        def noise(*args) -> torch.Tensor:
            with network_autocast(device, self.ddim.precision):
                eps = guided_noise(self.model, *args)
            return eps.float()

        return self._compiled("noise", noise)

    @property
    def schedule(self) -> NoiseSchedule:
        cfg = self.model.cfg
        return NoiseSchedule.linear(cfg.timesteps, cfg.beta_start, cfg.beta_end)

    @torch.no_grad()
    def to_images(self, z_RChw: torch.Tensor) -> torch.Tensor:
        """Normalised latent → image in [0, 1] through the tokenizer (re-quantised unless decode=continuous)."""
        return self._compiled("images", self._images)(z_RChw).clone()

    def _images(self, z_RChw: torch.Tensor) -> torch.Tensor:
        f = self.model.denormalize(z_RChw)
        if self.model.cfg.decode == "quantized":
            f = self.tokenizer.quantize.decode(self.tokenizer.quantize.encode(f))
        return (self.tokenizer.decode_latent(f) + 1) / 2

    @torch.no_grad()
    def sample(self, levels_BMQY, pooled_BP, null_levels_1MQY, null_pooled_1P, samples, generator, strips=False):
        self.model.eval()
        width = self.model.shapes.context_width  # the terminal level's real channels (levels are zero-padded)
        terminal = levels_BMQY[:, -1, :, :width].repeat_interleave(samples, dim=0)
        pooled = pooled_BP.repeat_interleave(samples, dim=0)
        shapes = self.model.shapes
        noise = normal_rows(
            (len(terminal), shapes.latent_channels, shapes.latent_side, shapes.latent_side),
            as_list(generator),
            terminal.device,
        )
        frames = set(np.linspace(0, self.ddim.steps - 1, len(self.tokenizer.cfg.scales)).round().astype(int).tolist())
        strip_images: list[torch.Tensor] = []

        def keep(i: int, z0: torch.Tensor) -> None:
            if i in frames:
                strip_images.append(self.to_images(z0))

        z = sample_ddim(
            self.model,
            self.schedule,
            terminal,
            pooled,
            null_levels_1MQY[:, -1, :, :width],
            null_pooled_1P,
            self.ddim,
            noise,
            generator,
            step_callback=keep if strips else None,
            noise_fn=self.noise_fn(),
        )
        return DecodedImages(self.to_images(z), strip_images if strips else None)

    def protocol(self) -> dict[str, Any]:
        return {
            "decoder": "latent diffusion baseline (DiT, DDIM)",
            "routing": "static_terminal (one static condition: pooled terminal level + its tokens)",
            "sampler": to_dict(self.ddim),
            "decode": self.model.cfg.decode,
        }
