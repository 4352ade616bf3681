"""Scale-by-scale sampling from the generator (docs/method.md §6.3).

For each brain input, S samples; for scale k = 1..K:

1. run the blocks on the scale's tokens only — the start token at k = 1, else the word embedding of f̂
   (the sum of all earlier scales' codes) area-downsampled to s_k. Per-sample work (AdaLN modulations,
   the brain context's keys/values) is computed once in `prepare` and reused; with block-causal
   attention, earlier scales' keys/values are cached, never recomputed;
2. classifier-free guidance: the conditional and unconditional (encoder of zeroed voxels) streams run
   in one batch; logits = (1 + t_k)·ℓ_cond − t_k·ℓ_uncond with t_k = cfg · (k − 1)/(K − 1), so scale 1
   is unguided; from `cfg_off_from` on only the conditional stream runs (the other half is dropped);
3. temperature, top-k, top-p (nucleus), and a multinomial draw from a `torch.Generator` — the only
   source of randomness. The draw happens on the generator's own device (diffusers' convention): a CPU
   generator gives the same tokens on any hardware, a CUDA one is reproducible per device. With one
   generator per brain input, each input's S samples are drawn from its own generator, so an input's
   images do not depend on what else is in the batch;
4. add the scale's codes to f̂ (`MultiScaleQuantizer.next_input`).

Finally the tokenizer decodes f̂. On request, the image after every scale (the coarse-to-fine strip).
With `precision = bf16` the blocks run under bf16 autocast while the logits, filtering and draws stay fp32.

Shape letters (docs/glossary.md): B brain inputs, S samples each, R = B·S rows, l tokens of a scale,
Z codebook size, C latent channels, M levels, Q tokens per level, Y level width, P pooled width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange

from mindhier.config import SamplerConfig
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.draws import as_list, multinomial_rows


@dataclass
class SampleOutput:
    images_R3HW: torch.Tensor  # float in [0, 1], sample s of input b at row b·S + s
    tokens: list[torch.Tensor]  # per scale [R, s²]
    strips: list[torch.Tensor] | None  # per scale [R, 3, H, W] in [0, 1], when asked for
    logits: list[torch.Tensor] | None  # per scale guided logits [R, s², Z], when asked for


def guidance_weight(k: int, n_scales: int, cfg: SamplerConfig) -> float:
    """t_k for scale k (0-based): a linear ramp from 0 at the first scale to cfg_scale at the last, 0 after
    the switch-off scale."""
    if cfg.cfg_off_from and k + 1 >= cfg.cfg_off_from:
        return 0.0
    return cfg.cfg_scale * k / max(n_scales - 1, 1)


def filter_logits(logits_NZ: torch.Tensor, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """Temperature, then top-k, then nucleus filtering (the most likely token always survives)."""
    logits = logits_NZ.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already ≥ p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model: ScaleAR,
    tokenizer: Tokenizer,
    levels_BMQY: torch.Tensor,
    pooled_BP: torch.Tensor,
    null_levels_1MQY: torch.Tensor,
    null_pooled_1P: torch.Tensor,
    cfg: SamplerConfig,
    generator: torch.Generator | Sequence[torch.Generator],
    strips: bool = False,
    forced_tokens: list[torch.Tensor] | None = None,
    record_logits: bool = False,
    scale_seconds: list[float] | None = None,
) -> SampleOutput:
    """S = `cfg.samples` images per brain input. `generator`: one for all draws, or one per brain input.
    `forced_tokens` replaces the draws (for tests); `scale_seconds`, when given, receives the wall time of
    every scale (then the final decode)."""
    import time

    model.eval()
    scales = model.shapes.scales
    n = cfg.samples
    levels = levels_BMQY.repeat_interleave(n, dim=0)
    pooled = pooled_BP.repeat_interleave(n, dim=0)
    rows = levels.shape[0]
    guided = cfg.cfg_scale > 0 and cfg.cfg_off_from != 1
    if guided:
        levels = torch.cat([levels, null_levels_1MQY.expand(rows, -1, -1, -1).to(levels)])
        pooled = torch.cat([pooled, null_pooled_1P.expand(rows, -1).to(pooled)])
    generators = as_list(generator)
    if len(generators) not in (1, levels_BMQY.shape[0]):
        raise ValueError(f"{len(generators)} generators for {levels_BMQY.shape[0]} brain inputs; pass 1 or one each")
    precision = _autocast(levels.device, cfg.precision)
    with precision:
        state = model.prepare(levels, pooled)
    streams = 2 if guided else 1

    quantizer = tokenizer.quantize
    f_hat, next_input, tokens, strip_images, all_logits = None, None, [], [], []
    clock = time.perf_counter()
    for k in range(len(scales)):
        t = guidance_weight(k, len(scales), cfg)
        if streams == 2 and cfg.cfg_off_from and k + 1 >= cfg.cfg_off_from:
            state.keep(rows)  # guidance is off from here: drop the unconditional stream
            streams = 1
        x_in = None if next_input is None else next_input.repeat(streams, 1, 1)
        with precision:
            logits = model.step(state, k, x_in).float()
        if streams == 2:
            cond, uncond = logits[:rows], logits[rows:]
            logits = (1 + t) * cond - t * uncond
        if record_logits:
            all_logits.append(logits)
        if forced_tokens is not None:
            idx_Rl = forced_tokens[k]
        else:
            probs = filter_logits(rearrange(logits, "r l z -> (r l) z"), cfg.top_k, cfg.top_p, cfg.temperature)
            idx_Rl = rearrange(multinomial_rows(probs.softmax(-1), generators), "(r l) 1 -> r l", r=rows)
        tokens.append(idx_Rl)
        f_hat, nxt = quantizer.next_input(k, f_hat, quantizer.codes(idx_Rl))
        next_input = rearrange(nxt, "r c h w -> r (h w) c") if k + 1 < len(scales) else None
        if scale_seconds is not None:
            scale_seconds.append(time.perf_counter() - clock)
        if strips:
            strip_images.append((tokenizer.decode_latent(f_hat) + 1) / 2)
        clock = time.perf_counter()
    images = (tokenizer.decode_latent(f_hat) + 1) / 2
    if scale_seconds is not None:
        scale_seconds.append(time.perf_counter() - clock)
    return SampleOutput(images, tokens, strip_images if strips else None, all_logits if record_logits else None)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
