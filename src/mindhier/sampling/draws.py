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


def exponential_rows(rows: int, width: int, generators: list[torch.Generator], device: torch.device) -> torch.Tensor:
    """Exp(1) draws [rows, width] on `device`, each generator drawing its share of the rows (in order)."""
    share = rows // len(generators)
    if share * len(generators) != rows:
        raise ValueError(f"{rows} rows cannot be split evenly among {len(generators)} generators")
    out = [torch.empty(share, width, device=g.device).exponential_(1, generator=g).to(device) for g in generators]
    return out[0] if len(out) == 1 else torch.cat(out)


def race(probs_NZ: torch.Tensor, exponentials_NZ: torch.Tensor) -> torch.Tensor:
    """One draw per row [N] from the exponential race: argmax_z p_z / E_z with E_z ~ Exp(1) draws the token z
    with probability p_z. It is `torch.multinomial(p, 1, generator=g)`'s own algorithm on the CPU, so with
    E drawn by `exponential_rows` from the same generator the tokens are the ones multinomial draws (tested);
    with the draws made beforehand, a whole sampling loop is one graph."""
    return (probs_NZ / exponentials_NZ).argmax(dim=-1)


def normal_rows(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """N(0, 1) draws of `shape` (rows first), each generator drawing its share of the rows."""
    rows = shape[0] // len(generators)
    if rows * len(generators) != shape[0]:
        raise ValueError(f"{shape[0]} rows cannot be split evenly among {len(generators)} generators")
    out = [torch.randn((rows, *shape[1:]), generator=g, dtype=dtype, device=g.device).to(device) for g in generators]
    return out[0] if len(out) == 1 else torch.cat(out)
