"""Random streams of a training run, so N processes reproduce one process and a resume continues exactly.

Three kinds of randomness, each from its own stream:

* **initialisation** — `torch.manual_seed(seed)` on every process before the model is built, so every
  process starts from the same weights (FSDP does not broadcast them);
* **per-sample draws** of the data pipeline (classifier-free-guidance dropout, diffusion noise and
  timesteps, dead-code restarts) — drawn for the whole *global* batch from a generator keyed by
  (seed, step, purpose), and each process takes the rows of its own samples. A sample's draws therefore
  do not depend on the number of processes, and a resumed run needs no saved state to redraw them;
* **per-process draws inside the model** (dropout) — the global torch RNG, seeded per process from
  (seed, rank) after the model is built; its state is part of every resume point.

All draws happen on the CPU (the generator's device) and are moved to the training device, so the
numbers are the same on any hardware.
"""

from __future__ import annotations

import numpy as np
import torch

PURPOSES = {"cfg_dropout": 1, "noise": 2, "timesteps": 3, "dead_codes": 4, "process": 5, "routing": 6}


def keyed_generator(seed: int, step: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose at one step, the same on every process."""
    state = np.random.SeedSequence([int(seed), int(step), PURPOSES[purpose]]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def seed_process(seed: int, rank: int, step: int = 0) -> None:
    """Seed this process's global RNG (CPU and CUDA) for in-model randomness such as dropout."""
    state = np.random.SeedSequence([int(seed), int(rank), int(step), PURPOSES["process"]]).generate_state(1)[0]
    torch.manual_seed(int(state))


def rng_state() -> dict[str, torch.Tensor]:
    """This process's CPU and CUDA random states (a resume point stores one per process)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def keep_mask(seed: int, step: int, global_rows: int, drop: float) -> torch.Tensor:
    """bool [global_rows]: which samples of the global batch keep their voxels (CFG dropout)."""
    return torch.rand(global_rows, generator=keyed_generator(seed, step, "cfg_dropout")) >= drop


def normal_draws(seed: int, step: int, shape: tuple[int, ...], purpose: str = "noise") -> torch.Tensor:
    """N(0, 1) draws of shape [global_rows, …] for the global batch."""
    return torch.randn(shape, generator=keyed_generator(seed, step, purpose))


def integer_draws(seed: int, step: int, high: int, global_rows: int, purpose: str = "timesteps") -> torch.Tensor:
    """Uniform integers in [0, high) for every sample of the global batch."""
    return torch.randint(0, high, (global_rows,), generator=keyed_generator(seed, step, purpose))
