"""Derive the key/shape table of the Switti-512 checkpoint from its model code's structure.

Enumerates, by hand, the parameters and buffers that yandex-research/switti's `models/switti.py`
(`SwittiHF(depth=30)`: width 64·30 = 1920, 30 heads, SwiGLU, RoPE, crop conditioning, within-scale
attention, scales 1…32) and `models/basic_switti.py` (`AdaLNSelfCrossAttn`, `SelfAttention`,
`CrossAttention`, `SwiGLUFFN`, `RMSNorm`, `AdaLNBeforeHead`) create. Text conditioning: pooled CLIP-bigG
(1280) and a context of CLIP-L + bigG tokens (768 + 1280 = 2048).

    python scripts/derive_switti_manifest.py > src/mindhier/models/manifests/switti_512.json
"""

from __future__ import annotations

import json
import sys

DEPTH, VOCAB, Z = 30, 4096, 32
WIDTH = 64 * DEPTH
CONTEXT, POOLED = 768 + 1280, 1280
SCALES = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
FFN_HIDDEN = int(WIDTH * (8 / 3))


def linear(table, name, n_in, n_out, bias=True):
    table[f"{name}.weight"] = [n_out, n_in]
    if bias:
        table[f"{name}.bias"] = [n_out]


def main() -> None:
    p: dict[str, list[int]] = {}
    linear(p, "word_embed", Z, WIDTH)
    linear(p, "text_pooler", POOLED, WIDTH)
    p["pos_start"] = [1, SCALES[0] ** 2, WIDTH]
    p["lvl_embed.weight"] = [len(SCALES), WIDTH]
    for i in range(DEPTH):
        b = f"blocks.{i}"
        linear(p, f"{b}.attn.to_qkv", WIDTH, 3 * WIDTH)
        linear(p, f"{b}.attn.proj", WIDTH, WIDTH)
        linear(p, f"{b}.cross_attn.to_q", WIDTH, WIDTH)
        linear(p, f"{b}.cross_attn.to_kv", CONTEXT, 2 * WIDTH)
        linear(p, f"{b}.cross_attn.proj", WIDTH, WIDTH)
        linear(p, f"{b}.ffn.up_proj", WIDTH, FFN_HIDDEN, bias=False)
        linear(p, f"{b}.ffn.down_proj", FFN_HIDDEN, WIDTH, bias=False)
        linear(p, f"{b}.ffn.gate_proj", WIDTH, FFN_HIDDEN, bias=False)
        for norm in (
            "self_attention_norm1",
            "self_attention_norm2",
            "cross_attention_norm1",
            "cross_attention_norm2",
            "ffn_norm1",
            "ffn_norm2",
        ):
            p[f"{b}.{norm}.weight"] = [WIDTH]
        p[f"{b}.attention_y_norm.weight"] = [CONTEXT]
        linear(p, f"{b}.ada_lin.1", WIDTH, 6 * WIDTH)
        p[f"{b}.crop_cond_scales"] = [1, WIDTH]
    p["crop_embed.weight"] = [WIDTH // 2 // 4]  # diffusers GaussianFourierProjection(set_W_to_weight=False)
    linear(p, "crop_proj", WIDTH, WIDTH)
    linear(p, "head_nm.ada_lin.1", WIDTH, 2 * WIDTH)
    linear(p, "head", WIDTH, VOCAB)
    n_tokens = sum(s * s for s in SCALES)
    buffers = {"lvl_1L": [1, n_tokens], "attn_bias_for_masking": [1, 1, n_tokens, n_tokens]}
    count = 0
    for shape in p.values():
        n = 1
        for d in shape:
            n *= d
        count += n
    json.dump(
        {
            "source": "yandex-research/switti models/{switti,basic_switti}.py, SwittiHF(depth=30); checkpoint "
            "yresearch/Switti",
            "parameter_count": count,
            "parameters": p,
            "buffers": buffers,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
