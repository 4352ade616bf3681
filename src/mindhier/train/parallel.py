"""Processes and how the trained model is wrapped for them: DDP or FSDP2, precision, activation checkpointing.

`World` is this process's place in a `torchrun` job (rank, world size, device), with the few collectives
the loops need. `wrap_model` prepares the trained module:

* **activation checkpointing** (optional): each unit (a transformer block, or the tokenizer's encoder and
  decoder) recomputes its activations in the backward pass (`checkpoint_wrapper`, non-reentrant; the
  state-dict names do not change);
* **ddp**: `DistributedDataParallel`, gradients averaged over processes;
* **fsdp**: FSDP2 `fully_shard` on every unit and then on the root; parameters, gradients and optimiser
  state are sharded across processes; with bf16 precision the forward runs on bf16 copies of the fp32
  master weights and gradients are reduced in fp32 (`MixedPrecisionPolicy`), except for modules kept in
  fp32 (the generator's head, so logits stay fp32);
* no process group (a plain `mindhier train …`): the plain module, whatever the strategy; the resume points
  are the same files, so a run can move between 1 and N processes.

Precision `auto` means bf16 autocast on CUDA and fp32 on the CPU. Gradient accumulation skips the
gradient all-reduce on all but the last micro-batch (`accumulating`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from mindhier.checkpoint import unwrap
from mindhier.config.loop import LoopConfig


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """A process group is running (under torchrun, even with one process: FSDP then shards for real)."""
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_float(self, value: float) -> float:
        """Rank 0's value on every process (decisions such as "new best" must agree everywhere)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(t, src=0)
        return float(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over processes of logged numbers (each process's loss is over its own rows)."""
        if not self.distributed or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {k: float(v) / self.world_size for k, v in zip(values, t.tolist(), strict=True)}

    def describe(self, strategy: str) -> dict:
        return {
            "world_size": self.world_size,
            "strategy": strategy if self.distributed else f"{strategy} (no process group: unwrapped)",
            "device": str(self.device),
            "backend": dist.get_backend() if self.distributed else None,
        }


def autocast_dtype(cfg: LoopConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype the loop config asks for on this device (None: fp32)."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@dataclass
class WrappedModel:
    module: nn.Module  # the model itself (under FSDP: sharded in place)
    trained: nn.Module  # what the loop calls: the DDP wrapper, or the module
    strategy: str  # "single", "ddp" or "fsdp"

    @contextlib.contextmanager
    def accumulating(self, sync: bool) -> Iterator[None]:
        """Skip the gradient reduction unless `sync` (the last micro-batch of a step)."""
        if sync or self.strategy == "single":
            yield
        elif self.strategy == "ddp":
            with self.trained.no_sync():
                yield
        else:
            self.module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)

    def clip_grad_norm(self, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's tensors on the CPU; under FSDP a collective every process must join."""
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in unwrap(self.module).state_dict().items()}


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put `new` where `old` sits in `model` (a ModuleList entry or an attribute)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                if isinstance(parent, nn.ModuleList):
                    parent[int(name)] = new
                else:
                    setattr(parent, name, new)
                return
    raise ValueError("unit is not a submodule of the model")


def wrap_model(
    model: nn.Module,
    units: Sequence[nn.Module],
    cfg: LoopConfig,
    world: World,
    find_unused_parameters: bool = False,
    fp32_units: Sequence[nn.Module] = (),
) -> WrappedModel:
    """Checkpointing, then DDP or FSDP, as `cfg` asks; `units` are the model's repeated blocks, `fp32_units`
    modules whose parameters FSDP keeps in fp32 for the forward (the generator's output head: fp32 logits)."""
    units = list(units)
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper

        wrapped = [checkpoint_wrapper(unit, checkpoint_impl=CheckpointImpl.NO_REENTRANT) for unit in units]
        for unit, wrapper in zip(units, wrapped, strict=True):
            _replace(model, unit, wrapper)
        units = wrapped  # FSDP shards the wrappers, so a recomputation sees unsharded parameters
    if not world.distributed:
        return WrappedModel(model, model, "single")
    if cfg.strategy == "ddp":
        ddp = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[world.device.index] if world.device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )
        return WrappedModel(model, ddp, "ddp")
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    compute = autocast_dtype(cfg, world.device)
    policy = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32) if compute else None
    options = {"mp_policy": policy} if policy is not None else {}
    for unit in units:
        fully_shard(unit, **options)
    for unit in fp32_units:
        fully_shard(unit, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32))
    fully_shard(model, **options)
    return WrappedModel(model, model, "fsdp")
