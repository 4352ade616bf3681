"""Scale-by-scale sampling from the generator (docs/method.md §6.3).

For each brain input, S samples; for scale k = 1..K:

1. run the blocks on the scale's tokens only — the start token at k = 1, else the word embedding of f̂
   (the sum of all earlier scales' codes) area-downsampled to s_k. Per-sample work (AdaLN modulations,
   the brain context's keys/values) is computed once in `prepare` and reused; with block-causal
   attention, earlier scales' keys/values are cached, never recomputed;
2. classifier-free guidance: the conditional and unconditional (encoder of zeroed voxels) streams run
   in one batch; logits = (1 + t_k)·ℓ_cond − t_k·ℓ_uncond with t_k = cfg · (k − 1)/(K − 1), so scale 1
   is unguided; from `cfg_off_from` on only the conditional stream runs (the other half is dropped);
3. temperature, top-k, top-p (nucleus), and a draw from a `torch.Generator` — the only source of
   randomness — by the exponential race (`draws.race`: `torch.multinomial`'s algorithm, the same tokens).
   The draw happens on the generator's own device (diffusers' convention): a CPU generator gives the same
   tokens on any hardware, a CUDA one is reproducible per device. With one generator per brain input, each
   input's S samples are drawn from its own generator, so an input's images do not depend on what else is
   in the batch;
4. add the scale's codes to f̂ (`MultiScaleQuantizer.next_input`).

Finally the tokenizer decodes f̂. On request, the image after every scale (the coarse-to-fine strip).
With `precision = bf16` the blocks run under bf16 autocast while the logits, filtering and draws stay fp32.
From `prune_from` on, the blocks see only the `prune_keep` fraction of pivotal tokens and the others are
restored from the previous scale (FastVAR, `models/token_pruning.py`); every token is still drawn.

`ScaleLoop` runs this as one function of fixed shapes — the per-sample work, every scale and the VQ decode —
compiled on request into one graph (`sampling/compiled.py`): the lean path for one image at a time. `sample`
builds an eager one per call unless given one to reuse.

Shape letters (docs/glossary.md): B brain inputs, S samples each, R = B·S rows, l tokens of a scale,
Z codebook size, C latent channels, M levels, Q tokens per level, Y level width, P pooled width.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange

from mindhier.config import SamplerConfig
from mindhier.errors import ConfigError
from mindhier.models.scale_ar import ScaleAR, StepState
from mindhier.models.token_pruning import kept_count
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.compiled import CompiledStep
from mindhier.sampling.draws import as_list, exponential_rows, race
from mindhier.sampling.precision import network_autocast


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


class ScaleLoop:
    """The lean sampling loop of one generator and tokenizer for `rows` samples under one sampler config.

    Built once and reused for every batch of that size (a decoder keeps one per batch size). The random
    numbers of every scale are drawn first (`draws.exponential_rows`, from each input's generator in scale
    order), so the rest — the per-sample work (`ScaleAR.prepare`: AdaLN modulations, the context's keys/values,
    both guidance streams fused in one batch, conditional rows first), the K scales (blocks on the routed
    context, head, guidance, filtering, the draw — an exponential race, `torch.multinomial`'s own algorithm, the
    same tokens — and the f̂ update) and the VQ decode — is one function of fixed shapes, `fused`: with
    `compile`, one `torch.compile` graph (`sampling/compiled.py`; on a GPU a CUDA graph) instead of hundreds of
    operator calls per scale (uncompiled, the same function runs eagerly). Diagnostics (strips, logits, forced or
    start tokens, per-scale times) run the same steps scale by scale, eagerly (`run_by_scale`).
    """

    def __init__(
        self,
        model: ScaleAR,
        tokenizer: Tokenizer,
        cfg: SamplerConfig,
        rows: int,
        compile: bool = False,
        backend: str | None = None,
    ):
        check_pruning(model, cfg)
        self.model, self.tokenizer, self.cfg, self.rows = model.eval(), tokenizer.eval(), cfg, rows
        self.device = next(model.parameters()).device
        self.guided = cfg.cfg_scale > 0 and cfg.cfg_off_from != 1
        self.precision = network_autocast(self.device, cfg.precision)
        self.compiled = compile
        self.fused_step = CompiledStep(self.fused, self.device.type, compile, backend)

    def streams_at(self, k: int) -> int:
        if not self.guided or (self.cfg.cfg_off_from and k + 1 >= self.cfg.cfg_off_from):
            return 1
        return 2

    def prepare(self, levels_RMQY, pooled_RP, null_levels_1MQY, null_pooled_1P) -> StepState:
        """The per-sample work of a batch (rows already repeated per sample), both guidance streams when guided."""
        if self.guided:
            rows = len(levels_RMQY)
            levels_RMQY = torch.cat([levels_RMQY, null_levels_1MQY.expand(rows, -1, -1, -1).to(levels_RMQY)])
            pooled_RP = torch.cat([pooled_RP, null_pooled_1P.expand(rows, -1).to(pooled_RP)])
        with self.precision:
            return self.model.prepare(levels_RMQY, pooled_RP)

    def scale_probabilities(self, state: StepState, k: int, next_input_RlC: torch.Tensor | None):
        """Scale k's guided logits [R, l, Z] and filtered probabilities [R·l, Z]; `state` gains its keys/values."""
        streams = self.streams_at(k)
        view = state if streams == 2 or not self.guided else state.keep(self.rows)
        x_in = None if next_input_RlC is None else next_input_RlC.repeat(streams, 1, 1)
        side = self.model.shapes.scales[k]
        pruned = self.cfg.prune_from and k + 1 >= self.cfg.prune_from
        kept = kept_count(side * side, self.cfg.prune_keep) if pruned else 0
        with self.precision:
            logits = self.model.step(view, k, x_in, kept).float()
        if view is not state:  # the step updated the views' cache: keep it (the first rows are the same)
            state.hidden_BlD, state.past_kv = view.hidden_BlD, view.past_kv
        if streams == 2:
            t = guidance_weight(k, len(self.model.shapes.scales), self.cfg)
            logits = (1 + t) * logits[: self.rows] - t * logits[self.rows :]
        cfg = self.cfg
        probs = filter_logits(rearrange(logits, "r l z -> (r l) z"), cfg.top_k, cfg.top_p, cfg.temperature).softmax(-1)
        return logits, probs

    def advance(self, k: int, f_hat, idx_Rl):
        """f̂ after scale k's codes, and the next scale's input map [R, l', C] (None after the last)."""
        quantizer = self.tokenizer.quantize
        f_hat, next_map = quantizer.next_input(k, f_hat, quantizer.codes(idx_Rl))
        last = k + 1 == len(self.model.shapes.scales)
        return f_hat, None if last else rearrange(next_map, "r c h w -> r (h w) c")

    def all_scales(self, state: StepState, exponentials: list[torch.Tensor]):
        """Every scale: the drawn tokens (per scale [R, l]) and the final f̂."""
        f_hat, next_input, tokens = None, None, []
        for k in range(len(self.model.shapes.scales)):
            _, probs = self.scale_probabilities(state, k, next_input)
            idx_Rl = rearrange(race(probs, exponentials[k]), "(r l) -> r l", r=self.rows)
            tokens.append(idx_Rl)
            f_hat, next_input = self.advance(k, f_hat, idx_Rl)
        return tokens, f_hat

    def decode(self, f_hat):
        return (self.tokenizer.decode_latent(f_hat) + 1) / 2

    def fused(self, levels_RMQY, pooled_RP, null_levels_1MQY, null_pooled_1P, exponentials):
        """Condition → tokens per scale and images [R, 3, H, W]: prepare, every scale and the VQ decode in one
        function (what `compile` makes one graph)."""
        state = self.prepare(levels_RMQY, pooled_RP, null_levels_1MQY, null_pooled_1P)
        tokens, f_hat = self.all_scales(state, exponentials)
        return tokens, self.decode(f_hat)

    def draws(self, generators: list[torch.Generator]) -> list[torch.Tensor]:
        """The exponentials of every scale, [R·l, Z] each, drawn in scale order from each input's generator."""
        vocab = self.model.shapes.vocab
        return [exponential_rows(self.rows * s * s, vocab, generators, self.device) for s in self.model.shapes.scales]

    def run(
        self,
        condition: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        generators,
        strips=False,
        forced_tokens=None,
        record_logits=False,
        scale_seconds=None,
        start_tokens=None,
    ):
        """Sample from `condition` = (levels, pooled, null levels, null pooled), rows repeated per sample; see
        `sample`."""
        if strips or forced_tokens is not None or record_logits or scale_seconds is not None or start_tokens:
            state = self.prepare(*condition)
            diagnostics = (strips, forced_tokens, record_logits, scale_seconds, start_tokens)
            return self.run_by_scale(state, generators, *diagnostics)
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        tokens, images = self.fused_step(*condition, self.draws(generators))  # uncompiled: `fused` itself
        if self.compiled:  # a CUDA graph's outputs live until its next replay
            tokens, images = [t.clone() for t in tokens], images.clone()
        return SampleOutput(images, tokens, None, None)

    def run_by_scale(
        self,
        state: StepState,
        generators,
        strips=False,
        forced_tokens=None,
        record_logits=False,
        scale_seconds=None,
        start_tokens=None,
    ):
        """The same steps one scale at a time, eagerly, with the diagnostics asked for; `start_tokens` (per leading
        scale [R, l_k]) are taken instead of drawn, and every later scale draws what it would have drawn anyway."""
        start_tokens = start_tokens or []
        if len(start_tokens) >= len(self.model.shapes.scales):
            raise ConfigError(
                f"{len(start_tokens)} start scales leave none of the {len(self.model.shapes.scales)} scales to sample; "
                "lower sampler.low_level_scales"
            )
        draws = self.draws(generators) if forced_tokens is None else None
        f_hat, next_input, tokens, strip_images, all_logits = None, None, [], [], []
        clock = time.perf_counter()
        for k in range(len(self.model.shapes.scales)):
            logits, probs = self.scale_probabilities(state, k, next_input)
            if record_logits:
                all_logits.append(logits)
            if forced_tokens is not None:
                idx_Rl = forced_tokens[k]
            elif k < len(start_tokens):
                idx_Rl = start_tokens[k].to(self.device)
            else:
                idx_Rl = rearrange(race(probs, draws[k]), "(r l) -> r l", r=self.rows)
            tokens.append(idx_Rl)
            f_hat, next_input = self.advance(k, f_hat, idx_Rl)
            if scale_seconds is not None:
                _synchronize(self.device)
                scale_seconds.append(time.perf_counter() - clock)
            if strips:
                strip_images.append(self.decode(f_hat))
            clock = time.perf_counter()
        images = self.decode(f_hat)
        if scale_seconds is not None:
            _synchronize(self.device)
            scale_seconds.append(time.perf_counter() - clock)
        return SampleOutput(images, tokens, strip_images if strips else None, all_logits if record_logits else None)


def check_pruning(model: ScaleAR, cfg: SamplerConfig) -> None:
    if cfg.prune_from and cfg.prune_keep < 1 and model.cfg.block_causal:
        raise ConfigError(
            "sampler.prune_from needs within-scale attention (generator.block_causal = false): a pruned token "
            "would leave no keys/values for the later scales; set sampler.prune_from=0"
        )


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
    loop: ScaleLoop | None = None,
    start_tokens: list[torch.Tensor] | None = None,
) -> SampleOutput:
    """S = `cfg.samples` images per brain input. `generator`: one for all draws, or one per brain input.
    `forced_tokens` replaces the draws (for tests); `scale_seconds`, when given, receives the wall time of
    every scale (then the final decode). `loop`: a `ScaleLoop` built for these rows and this config, to reuse
    its compiled graph (a fresh eager one otherwise). `start_tokens`: the first scales' tokens per brain input
    ([B, l_k] each, e.g. of the encoder's low-level image), taken instead of drawn; the later scales are sampled
    as ever."""
    n = cfg.samples
    levels = levels_BMQY.repeat_interleave(n, dim=0)
    pooled = pooled_BP.repeat_interleave(n, dim=0)
    generators = as_list(generator)
    if len(generators) not in (1, levels_BMQY.shape[0]):
        raise ValueError(f"{len(generators)} generators for {levels_BMQY.shape[0]} brain inputs; pass 1 or one each")
    if loop is None:
        loop = ScaleLoop(model, tokenizer, cfg, len(levels))
    elif loop.rows != len(levels) or loop.cfg != cfg or loop.model is not model:
        raise ValueError(f"this ScaleLoop samples {loop.rows} rows of another config or model; build one for these")
    condition = (levels, pooled, null_levels_1MQY.to(levels.device), null_pooled_1P.to(levels.device))
    starts = [t.repeat_interleave(n, dim=0) for t in start_tokens or []]
    return loop.run(condition, generators, strips, forced_tokens, record_logits, scale_seconds, starts)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
