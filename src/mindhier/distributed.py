"""Collective operations the library needs when a process group is running (no-ops otherwise).

A training run under `torchrun` splits every global batch across the processes. Two things must then
look at the global batch, not at each process's slice, or the objective would change with the number
of processes:

* the SoftCLIP loss takes its negatives from every process's rows: `gather_with_grad` concatenates the
  rows of all processes in rank order (= the global batch's order, which is split in contiguous
  slices) and sends each process the gradient of its own rows, summed over the processes' losses;
* the quantizer's code-hit statistics are summed over processes (`all_reduce_sum_`), and dead-code
  restarts draw from the vectors of all processes (`all_gather_rows`), so codebooks stay identical.

Nothing here starts or ends a process group: the caller (the CLI under torchrun, or a test) does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_running() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_running() else 1


def rank() -> int:
    return dist.get_rank() if is_running() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns, to each process, the summed gradient of its rows."""

    @staticmethod
    def forward(ctx, x_ND: torch.Tensor) -> torch.Tensor:
        ctx.rows = x_ND.shape[0]
        parts = [torch.empty_like(x_ND) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x_ND.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad_WND: torch.Tensor) -> torch.Tensor:
        grad = grad_WND.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss depends on every row
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x_ND: torch.Tensor) -> torch.Tensor:
    """[N, …] rows of this process → [W·N, …] rows of all processes in rank order, differentiable.

    Every process must pass the same number of rows. Each process then computes the same global loss;
    its gradient reaches each row's owner summed over the W processes, and the data-parallel average of
    parameter gradients (÷ W) makes the update that of the single-process loss.
    """
    if not is_running() or dist.get_world_size() == 1:
        return x_ND
    return _GatherWithGrad.apply(x_ND)


def all_reduce_sum_(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over processes in place (a no-op in one process)."""
    if is_running() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_gather_rows(x_ND: torch.Tensor) -> torch.Tensor:
    """Rows of all processes in rank order, without gradient; processes may hold different row counts."""
    if not is_running() or dist.get_world_size() == 1:
        return x_ND
    sizes = [torch.zeros(1, dtype=torch.long, device=x_ND.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x_ND.shape[0]], device=x_ND.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x_ND.shape[1:]), dtype=x_ND.dtype, device=x_ND.device)
    padded[: x_ND.shape[0]] = x_ND
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(size.item())] for part, size in zip(parts, sizes, strict=True)])
