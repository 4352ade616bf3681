"""`torch.compile` for the samplers' fixed-shape steps, with an eager fallback.

A sampling step (all scales of the scale-wise generator, one denoiser call of DDIM, the VQ decode) has
static shapes for a given batch, so it is compiled once per shape and replayed: TorchInductor fuses the elementwise
work around the matrix products (on a CPU, C++ kernels; on a GPU, Triton kernels), and on CUDA
`mode="reduce-overhead"` records the step as a CUDA graph, so a batch-1 step costs one graph launch instead
of hundreds of kernel launches. `fullgraph=True`: a graph break is a bug here, not a silent slowdown.

When compilation fails (no C++ compiler, an unsupported operator, a graph break), the step warns once and
runs eagerly: the same numbers, only slower (the tests assert that no fallback happened). Compiled and
eager steps agree to float rounding (tested on CPU: the same tokens for the same seed).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

RECOMPILE_LIMIT = 64  # one graph per scale and batch size: 10 scales × a few batch sizes at paper scale
DEFAULT_BACKEND = "inductor"  # the fast tests trace with "eager" (dynamo only, no code generation)


class CompiledStep:
    """`fn` compiled for `device_type` (`backend="eager"` traces without generating code: what the fast tests
    use), or `fn` itself when `enabled` is false or compilation failed."""

    def __init__(self, fn: Callable[..., Any], device_type: str, enabled: bool = True, backend=None):
        self.fn, self.enabled = fn, enabled
        self.compiled = None
        backend = backend or DEFAULT_BACKEND
        if enabled:
            limits = torch._dynamo.config
            limits.recompile_limit = max(limits.recompile_limit, RECOMPILE_LIMIT)
            mode = "reduce-overhead" if device_type == "cuda" and backend == "inductor" else None
            self.compiled = torch.compile(fn, fullgraph=True, dynamic=False, backend=backend, mode=mode)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as error:  # tracing or code generation failed
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"torch.compile failed ({first_line}); running this step eagerly", stacklevel=2)
            self.compiled = None
            return self.fn(*args)
