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

Shape letters (docs/glossary.md): N rows of this process (any trailing axes, `…`); the number of processes
is `world`.
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
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:  # rows: [N, …]
        ctx.rows = rows.shape[0]
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # grad: [world·N, …]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss depends on every row
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(rows: torch.Tensor) -> torch.Tensor:
    """[N, …] rows of this process → [world·N, …] rows of all processes in rank order, differentiable.

    Every process must pass the same number of rows. Each process then computes the same global loss;
    its gradient reaches each row's owner summed over the `world` processes, and the data-parallel average of
    parameter gradients (÷ world) makes the update that of the single-process loss.
    """
    if not is_running() or dist.get_world_size() == 1:
        return rows
    return _GatherWithGrad.apply(rows)


def all_reduce_sum_(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over processes in place (a no-op in one process)."""
    if is_running() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows of all processes in rank order, without gradient; processes may hold different row counts."""
    if not is_running() or dist.get_world_size() == 1:
        return rows
    sizes = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([rows.shape[0]], device=rows.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(size.item())] for part, size in zip(parts, sizes, strict=True)])
