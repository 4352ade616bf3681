"""Derive the key/shape table of the VQ-VAE that VAR and Switti publish, from their model code's structure.

Reads nothing and imports no model code: it enumerates, by hand, the parameters and buffers that
FoundationVision/VAR's `models/vqvae.py` (VQVAE), `models/basic_vae.py` (Encoder, Decoder, ResnetBlock,
AttnBlock, Up/Downsample2x) and `models/quant.py` (VectorQuantizer2, Phi, PhiPartiallyShared) create, for
the published configuration (vocab 4096, z 32, ch 160, ch_mult 1,1,2,2,4, 2 res blocks, attention at the
lowest resolution and in the middle, 3×3 quant convs, 4 shared φ convs, 10 scales at 512 px):

    python scripts/derive_var_vqvae_manifest.py > src/mindhier/models/manifests/var_vqvae_512.json

The test suite checks our `Tokenizer` against this table on the meta device, independently of our code.
"""

from __future__ import annotations

import json
import sys

VOCAB, Z, CH, CH_MULT, RES_BLOCKS, PHI_CONVS = 4096, 32, 160, (1, 1, 2, 2, 4), 2, 4
SCALES = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


def conv(table, name, c_in, c_out, k):
    table[f"{name}.weight"] = [c_out, c_in, k, k]
    table[f"{name}.bias"] = [c_out]


def norm(table, name, c):
    table[f"{name}.weight"] = [c]
    table[f"{name}.bias"] = [c]


def resnet(table, name, c_in, c_out):
    norm(table, f"{name}.norm1", c_in)
    conv(table, f"{name}.conv1", c_in, c_out, 3)
    norm(table, f"{name}.norm2", c_out)
    conv(table, f"{name}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        conv(table, f"{name}.nin_shortcut", c_in, c_out, 1)


def attention(table, name, c):
    norm(table, f"{name}.norm", c)
    conv(table, f"{name}.qkv", c, 3 * c, 1)
    conv(table, f"{name}.proj_out", c, c, 1)


def encoder(table):
    levels = len(CH_MULT)
    conv(table, "encoder.conv_in", 3, CH, 3)
    in_mult = (1, *CH_MULT)
    for i in range(levels):
        c_in, c_out = CH * in_mult[i], CH * CH_MULT[i]
        for j in range(RES_BLOCKS):
            resnet(table, f"encoder.down.{i}.block.{j}", c_in, c_out)
            c_in = c_out
            if i == levels - 1:
                attention(table, f"encoder.down.{i}.attn.{j}", c_in)
        if i != levels - 1:
            conv(table, f"encoder.down.{i}.downsample.conv", c_in, c_in, 3)
    c = CH * CH_MULT[-1]
    resnet(table, "encoder.mid.block_1", c, c)
    attention(table, "encoder.mid.attn_1", c)
    resnet(table, "encoder.mid.block_2", c, c)
    norm(table, "encoder.norm_out", c)
    conv(table, "encoder.conv_out", c, Z, 3)


def decoder(table):
    levels = len(CH_MULT)
    c_in = CH * CH_MULT[-1]
    conv(table, "decoder.conv_in", Z, c_in, 3)
    resnet(table, "decoder.mid.block_1", c_in, c_in)
    attention(table, "decoder.mid.attn_1", c_in)
    resnet(table, "decoder.mid.block_2", c_in, c_in)
    for i in reversed(range(levels)):
        c_out = CH * CH_MULT[i]
        for j in range(RES_BLOCKS + 1):
            resnet(table, f"decoder.up.{i}.block.{j}", c_in, c_out)
            c_in = c_out
            if i == levels - 1:
                attention(table, f"decoder.up.{i}.attn.{j}", c_in)
        if i != 0:
            conv(table, f"decoder.up.{i}.upsample.conv", c_in, c_in, 3)
    norm(table, "decoder.norm_out", c_in)
    conv(table, "decoder.conv_out", c_in, 3, 3)


def main() -> None:
    parameters: dict[str, list[int]] = {}
    encoder(parameters)
    decoder(parameters)
    parameters["quantize.embedding.weight"] = [VOCAB, Z]
    for k in range(PHI_CONVS):
        conv(parameters, f"quantize.quant_resi.qresi_ls.{k}", Z, Z, 3)
    conv(parameters, "quant_conv", Z, Z, 3)
    conv(parameters, "post_quant_conv", Z, Z, 3)
    buffers = {"quantize.ema_vocab_hit_SV": [len(SCALES), VOCAB]}
    count = 0
    for shape in parameters.values():
        n = 1
        for d in shape:
            n *= d
        count += n
    manifest = {
        "source": "FoundationVision/VAR models/{vqvae,basic_vae,quant}.py; checkpoints vae_ch160v4096z32.pth (VAR) and "
        "yresearch/VQVAE-Switti model.safetensors (Switti)",
        "config": {
            "vocab": VOCAB,
            "latent_channels": Z,
            "channels": CH,
            "channel_mult": list(CH_MULT),
            "res_blocks": RES_BLOCKS,
            "scales": list(SCALES),
            "phi_convs": PHI_CONVS,
        },
        "parameter_count": count,
        "parameters": parameters,
        "buffers": buffers,
    }
    json.dump(manifest, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
