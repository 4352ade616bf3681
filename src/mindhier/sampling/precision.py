"""The samplers' precision setting (`sampler.precision`, `ddim.precision`) as an autocast context: fp32 runs as
it is; bf16 runs the network under bf16 autocast (what the paper-scale presets use on a GPU), while logits,
guidance, filtering, draws and the DDIM update stay fp32."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def network_autocast(device: torch.device, precision: str):
    """The context the decoder network runs in for `precision` (fp32 | bf16)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
