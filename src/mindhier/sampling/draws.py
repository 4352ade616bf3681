"""Random draws of the samplers, on each generator's own device (diffusers' convention).

A CPU `torch.Generator` gives the same numbers whatever device the model runs on; a CUDA generator is
reproducible per device. With one generator per brain input, the rows of a batch are split evenly among
the generators in order, so each input's draws come from its own generator and an input's images do not
depend on what else is in the batch.

Shape letters (docs/glossary.md): N rows, Z codebook size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def as_list(generator: torch.Generator | Sequence[torch.Generator]) -> list[torch.Generator]:
    return [generator] if isinstance(generator, torch.Generator) else list(generator)


def multinomial_rows(probs_NZ: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One draw per row, [N, 1] on the probabilities' device."""
    parts = probs_NZ.chunk(len(generators)) if len(generators) > 1 else (probs_NZ,)
    out = [
        torch.multinomial(part.to(g.device), 1, generator=g).to(probs_NZ.device)
        for part, g in zip(parts, generators, strict=True)
    ]
    return out[0] if len(out) == 1 else torch.cat(out)


def normal_rows(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """N(0, 1) draws of `shape` (rows first), each generator drawing its share of the rows."""
    rows = shape[0] // len(generators)
    if rows * len(generators) != shape[0]:
        raise ValueError(f"{shape[0]} rows cannot be split evenly among {len(generators)} generators")
    out = [torch.randn((rows, *shape[1:]), generator=g, dtype=dtype, device=g.device).to(device) for g in generators]
    return out[0] if len(out) == 1 else torch.cat(out)
