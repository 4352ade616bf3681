"""Activation memory measured on the meta device: the bytes of the tensors autograd saves for backward.

Activations are measured, for ONE sample, as the bytes of the tensors autograd saves for backward
(`torch.autograd.graph.saved_tensors_hooks`), each storage counted once, parameters and buffers not counted,
during a forward with the parameters in bf16 and the matmuls computed in bf16 as autocast would (`_MetaAutocast`;
attention as the fused kernel a GPU runs, which keeps q, k, v, the output and the log-sum-exp, not the weights).
With checkpointing on (one checkpoint per block), what stays is

    (saved outside the blocks) + (the inputs of every block, which checkpointing keeps) + (one block's saved
    tensors, recomputed during its backward: the largest block's)

and forward hooks on the blocks attribute every saved tensor to the block that saved it. Activations scale
linearly with the micro-batch (`plan.py` turns them into the micro-batch that fits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from mindhier.memory_plan.stages import StageSpec, block_modules


@dataclass(frozen=True)
class ActivationProfile:
    """Saved-for-backward bytes of one forward pass on `batch` samples."""

    batch: int
    saved_bytes: int  # everything autograd keeps (checkpointing off)
    outside_bytes: int  # saved outside the blocks
    block_input_bytes: int  # inputs of all blocks not already counted outside (kept under checkpointing)
    largest_block_bytes: int  # the largest one block saves (held again while that block is recomputed)
    blocks: int
    forward_flops: int = 0  # matmul, convolution and attention FLOPs of the forward pass (torch's flop counter)

    @property
    def checkpointed_bytes(self) -> int:
        return self.outside_bytes + self.block_input_bytes + self.largest_block_bytes

    def bytes(self, checkpointing: bool) -> int:
        return self.checkpointed_bytes if checkpointing else self.saved_bytes


_LOWER_PRECISION = {
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.scaled_dot_product_attention,
    torch.matmul,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.einsum,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
}
_FULL_PRECISION = {F.layer_norm, F.group_norm, F.softmax, F.log_softmax}


class _MetaAutocast(TorchFunctionMode):
    """bf16 autocast for meta tensors (torch.autocast only acts on CPU/CUDA tensors): matmul-like ops get bf16
    inputs, normalisations and softmax fp32 inputs, as CUDA autocast casts them. Parameters and buffers are left
    alone: the planner has already made them bf16, so no weight copies appear among the activations."""

    def __init__(self, keep: set[int]):
        super().__init__()
        self.keep = keep

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self.fused_attention(*args, **kwargs)
        dtype = torch.bfloat16 if func in _LOWER_PRECISION else torch.float32 if func in _FULL_PRECISION else None
        if dtype is not None:

            def cast(x: Any) -> Any:
                if isinstance(x, torch.Tensor) and x.is_floating_point() and id(x) not in self.keep:
                    return x.to(dtype)
                return x

            args, kwargs = _map_tensors(cast, args), _map_tensors(cast, kwargs)
        return func(*args, **kwargs)

    def fused_attention(
        self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ) -> torch.Tensor:
        """SDPA as the GPU runs it: a fused kernel that keeps q, k, v, the output and the log-sum-exp for backward.

        On meta, `F.scaled_dot_product_attention` takes the math path and materialises the attention weights
        [batch, heads, queries, keys], which a GPU never stores. The memory-efficient kernel (the one CUDA picks
        for a boolean mask; flash keeps the same tensors) saves what the GPU saves. Its additive mask is built
        from the boolean mask once per call, does not grow with the batch, and is not counted.
        """
        if enable_gqa:
            raise ValueError("the memory plan does not model grouped-query attention")
        q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))
        bias = None
        if attn_mask is not None:
            bias = attn_mask
            if attn_mask.dtype == torch.bool:
                bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    ~attn_mask, float("-inf")
                )
            self.keep.add(id(bias))
            bias = bias.expand(*q.shape[:-1], k.shape[-2])
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, dropout_p, is_causal, scale=scale
        )
        return out[0]


def _map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """`fn` applied to every tensor in nested tuples, lists and dicts (the arguments of a torch function)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(fn, item) for item in obj)
    if isinstance(obj, dict):
        return {key: _map_tensors(fn, item) for key, item in obj.items()}
    return obj


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def measure_activations(model: nn.Module, args: tuple, blocks: list[nn.Module]) -> ActivationProfile:
    """Saved-for-backward bytes of `model(*args)`, a meta-device model in training mode with bf16 parameters.

    Every saved tensor is counted by the storage it views (its `_base`), once: q, k and v chunks of one
    projection keep that whole projection alive. Parameters, buffers and views of them are not activations.
    """
    keep = {id(t) for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, torch.Tensor] = {}  # id of a counted storage base → the tensor (kept alive so ids stay unique)
    per_block = [0] * len(blocks)
    outside: set[int] = set()
    outside_bytes = 0
    block_inputs: dict[int, torch.Tensor] = {}
    active: list[int] = []  # the block now running (hooks push and pop)

    def base_of(t: torch.Tensor) -> torch.Tensor:
        return t._base if t._base is not None else t

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal outside_bytes
        base = base_of(t)
        key = id(base)
        if key in keep or key in seen:
            return t
        seen[key] = base
        size = base.numel() * base.element_size()
        if active:
            per_block[active[-1]] += size
        else:
            outside.add(key)
            outside_bytes += size
        return t

    def pre_hook(index: int):
        def hook(module, hook_args, hook_kwargs):
            for t in _tensors((hook_args, hook_kwargs)):
                base = base_of(t)
                if id(base) not in keep:
                    block_inputs.setdefault(id(base), base)
            active.append(index)

        return hook

    def post_hook(module, hook_args, output):
        active.pop()

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(block.register_forward_hook(post_hook))
    counter = FlopCounterMode(display=False)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _MetaAutocast(keep), counter:
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
    batch = next(t for t in _tensors(args) if t.dim() > 0).shape[0]
    inputs = sum(t.numel() * t.element_size() for key, t in block_inputs.items() if key not in outside)
    return ActivationProfile(
        batch=batch,
        saved_bytes=outside_bytes + sum(per_block),
        outside_bytes=outside_bytes,
        block_input_bytes=inputs,
        largest_block_bytes=max(per_block, default=0),
        blocks=len(blocks),
        forward_flops=int(counter.get_total_flops()),
    )


def stage_activations(spec: StageSpec, batch: int = 1) -> ActivationProfile:
    """`measure_activations` of one stage's trainable model on `batch` samples."""
    with torch.device("meta"):
        model = spec.build()
    return model_activations(spec, model, batch)


def model_activations(spec: StageSpec, model: nn.Module, batch: int) -> ActivationProfile:
    """`measure_activations` of a stage's model already built on the meta device (cast to bf16 in place)."""
    # bf16 parameters: what autocast computes with; training mode: dropout keeps its masks
    model = model.to(torch.bfloat16).train()
    with torch.device("meta"):
        args = spec.inputs(batch)
    return measure_activations(model, args, block_modules(model))
