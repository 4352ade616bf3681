"""How any training loop runs (processes, precision, accumulation, log sinks), shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mindhier.config.checks import check_range
from mindhier.errors import ConfigError

STRATEGIES = ("ddp", "fsdp")
PRECISIONS = ("auto", "fp32", "bf16")
LOG_SINKS = ("tensorboard", "wandb")


@dataclass(frozen=True)
class LoopConfig:
    """How a training loop runs, shared by every stage (README "Many GPUs"): process wrapping, precision,
    activation checkpointing, gradient accumulation and extra log sinks. Nothing here changes the objective:
    N processes with the same global batch reproduce one process (within floating-point tolerance)."""

    section: ClassVar[str] = "train"  # the config section name, for messages
    strategy: str = "ddp"  # ddp (replicated) | fsdp (FSDP2 fully_shard per block; one process trains unsharded)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 (fp32 master weights)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    micro_batch: int = 0  # rows per forward on one process (0 = its whole share); the rest is accumulated
    log_sinks: tuple[str, ...] = ()  # besides log.jsonl: tensorboard | wandb (optional extras)

    def __post_init__(self) -> None:
        where = self.section
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"{where}.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}; use one of those"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"{where}.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}; use one of those"
            )
        check_range(f"{where}.micro_batch", self.micro_batch, 0, 1_000_000)
        bad = [s for s in self.log_sinks if s not in LOG_SINKS]
        if bad:
            raise ConfigError(
                f"{where}.log_sinks must name sinks among {', '.join(LOG_SINKS)}, got {bad}; use only those"
            )
