"""Analytic FLOPs of scale-wise sampling (for model FLOP utilisation; 1 multiply-add = 2 FLOPs).

Per brain input and guidance stream, with width D, SwiGLU hidden width `hidden`, codebook size Z, latent
code channels C, context X = M·Q tokens of width Y, and l = s_k² tokens at scale k:

    once (prepare)   pooler 2·P·D; level adapters 2·Q·Σ_m D_m·D (when the levels differ in width, then Y = D);
                     per block AdaLN 2·D·6D and context keys/values 2·X·Y·2D; head AdaLN 2·D·2D
    scale k          word embedding 2·l·C·D (k > 1); per block, on the n tokens the blocks see:
                       self-attention  2·n·D·3D (q, k, v) + 2·2·n·n'·D (scores, values) + 2·n·D·D (output)
                       cross-attention 2·n·D·D (q) + 2·2·n·X_k·D + 2·n·D·D (output)
                       SwiGLU          3 · 2·n·D·hidden
                     head 2·l·D·Z

with n = l, or the kept tokens where the sampler prunes (`sampler.prune_from`); n' = n within a scale, or
all tokens so far with block-causal attention; X_k the context tokens routed to scale k (the step attends
to those only). Both streams run while
guidance is on (`cfg_off_from` drops the unconditional one). The VQ decoder's FLOPs are counted from its
convolutions' and attention's shapes (`decoder_flops`). Elementwise work (norms, RoPE, sampling) is not counted.
"""

from __future__ import annotations

import torch
from torch import nn

from mindhier.config import SamplerConfig
from mindhier.layers.conv_blocks import AttnBlock
from mindhier.models.scale_ar import ScaleAR
from mindhier.models.token_pruning import kept_count
from mindhier.models.tokenizer import Tokenizer


def scale_wise_sampling_flops(model: ScaleAR, sampler: SamplerConfig, batch: int = 1) -> dict[str, object]:
    """FLOPs of sampling `batch` brain inputs (S = `sampler.samples` each): per scale, prepare, total."""
    shapes, cfg = model.shapes, model.cfg
    width, depth = cfg.width, cfg.depth
    hidden = int(width * cfg.ffn_mult)
    context = shapes.n_levels * shapes.level_tokens
    rows = batch * sampler.samples
    guided = sampler.cfg_scale > 0 and sampler.cfg_off_from != 1
    context_width = width if shapes.adapted else shapes.context_width
    prepare_per_row = 2 * shapes.pooled_width * width + depth * (
        2 * width * 6 * width + 2 * context * context_width * 2 * width
    )
    if shapes.adapted:
        prepare_per_row += 2 * shapes.level_tokens * sum(shapes.level_dims) * width
    prepare_per_row += 2 * width * 2 * width
    per_scale, seen = [], 0
    for k, side in enumerate(shapes.scales):
        tokens = side * side
        pruned = sampler.prune_from and k + 1 >= sampler.prune_from
        n = kept_count(tokens, sampler.prune_keep) if pruned else tokens
        seen += tokens
        keys = seen if cfg.block_causal else n
        span = model.context_spans[k]
        routed = span.stop - span.start
        streams = 2 if guided and not (sampler.cfg_off_from and k + 1 >= sampler.cfg_off_from) else 1
        block = (
            2 * n * width * 3 * width
            + 4 * n * keys * width
            + 2 * n * width * width
            + 2 * n * width * width
            + 4 * n * routed * width
            + 2 * n * width * width
            + 3 * 2 * n * width * hidden
        )
        embed = 2 * tokens * shapes.latent_channels * width if k > 0 else 0
        per_scale.append(rows * streams * (embed + depth * block + 2 * tokens * width * shapes.vocab))
    prepare = rows * (2 if guided else 1) * prepare_per_row
    return {"per_scale": per_scale, "prepare": prepare, "total": prepare + sum(per_scale)}


def decoder_flops(tokenizer: Tokenizer, batch: int = 1) -> int:
    """FLOPs of the VQ decoder (post-quant conv + decoder) for `batch` images, from its layers' shapes."""
    cfg = tokenizer.cfg
    with torch.device("meta"):
        twin = Tokenizer(cfg)
    total = 0

    def conv(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = 2 * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        total += per_output * output.numel()

    def attention(module: AttnBlock, inputs, _output) -> None:
        nonlocal total
        b, c, h, w = inputs[0].shape
        total += 4 * b * (h * w) ** 2 * c  # scores and values; its 1×1 convs are counted as convs

    hooks = [m.register_forward_hook(conv) for m in twin.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(attention) for m in twin.modules() if isinstance(m, AttnBlock)]
    side = cfg.scales[-1]
    with torch.no_grad():
        twin.decoder(twin.post_quant_conv(torch.empty(batch, cfg.latent_channels, side, side, device="meta")))
    for hook in hooks:
        hook.remove()
    return total
