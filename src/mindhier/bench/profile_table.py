"""Where a single pass's milliseconds go, and the floor this machine puts under them (`mindhier bench decoders`).

* `profile_table` — `torch.profiler` over a few calls of a (compiled or eager) single pass: the operators with
  the most self time per call, their calls and share. In a compiled pass the fused elementwise code runs inside
  the compiled region's own entry (TorchInductor's C++ or Triton kernels), and matrix products and convolutions
  that it hands to the vendor libraries appear as their `aten::`/`mkldnn::` calls.
* `compute_floor` — the FLOPs of one pass (`torch.utils.flop_counter`, matrix products, convolutions and
  attention) divided by this machine's measured matrix-product rate at the same thread count (fp32 GEMM
  of 1024²; on a GPU, bf16): the time the arithmetic alone would take at that rate, a lower bound no
  compilation removes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

GEMM_SIDE = 1024


class _FlopCount(TorchDispatchMode):
    """`torch.utils.flop_counter`'s formulas summed over every dispatched operator (no per-module attribution:
    its module tracker needs autograd, which a no-grad pass does not build)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def profile_table(single, voxels_BV: torch.Tensor, calls: int = 5, rows: int = 12) -> dict[str, Any]:
    """The top `rows` operators of `calls` single-pass calls by self time, per call."""
    generators = [torch.Generator().manual_seed(i) for i in range(len(voxels_BV))]
    single(voxels_BV, generators)  # warm (compiled already by the timing runs)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if voxels_BV.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(calls):
            single(voxels_BV, [torch.Generator().manual_seed(i) for i in range(len(voxels_BV))])
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "calls_profiled": calls,
        "self_ms_per_call": round(total_us / calls / 1e3, 3),
        "operators": [
            {
                "name": e.key,
                "calls_per_pass": round(e.count / calls, 1),
                "self_ms_per_pass": round(e.self_cpu_time_total / calls / 1e3, 3),
                "share": round(e.self_cpu_time_total / max(total_us, 1), 3),
            }
            for e in events[:rows]
        ],
    }


def gemm_rate(device: torch.device, repeats: int = 5) -> float:
    """This machine's matrix-product rate (FLOP/s): a square GEMM of `GEMM_SIDE`, fp32 on a CPU, bf16 on a GPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(GEMM_SIDE, GEMM_SIDE, device=device, dtype=dtype)
    b = torch.randn(GEMM_SIDE, GEMM_SIDE, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIDE**3 / best


def compute_floor(single, voxels_BV: torch.Tensor) -> dict[str, Any]:
    """FLOPs of one pass (counted on its eager twin) and the milliseconds they take at this machine's GEMM rate."""
    from mindhier.sampling.single_pass import SinglePass

    reconstructor = single.reconstructor
    eager_decoder = dataclasses.replace(reconstructor.decoder, compile=False)
    eager = SinglePass(dataclasses.replace(reconstructor, decoder=eager_decoder), single.subject)
    with _FlopCount() as counter:
        eager(voxels_BV, [torch.Generator().manual_seed(i) for i in range(len(voxels_BV))])
    flops = counter.total
    rate = gemm_rate(voxels_BV.device)
    return {
        "flops_per_pass": int(flops),
        "gemm_gflops": round(rate / 1e9, 1),
        "floor_ms": round(flops / rate * 1e3, 3),
        "counted": "torch.utils.flop_counter: matrix products, convolutions, attention (elementwise work uncounted)",
    }
