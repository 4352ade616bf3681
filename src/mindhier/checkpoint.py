"""Model weights on disk: safetensors files written atomically, loaded strictly, third-party files read safely.

Weights are always safetensors (never a pickle); a third-party `.pt/.pth/.bin` state dict is read with
`torch.load(weights_only=True)` only. Every write is atomic (temp file + rename), so a crash never leaves a
half-written file. Loading is strict: a mismatch names the keys. The layout of a run folder is
`run_layout.py`'s; resume points are `train/resume.py`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mindhier.errors import WeightsError
from mindhier.fileio import atomic_path, write_failure


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module under DDP/FSDP-style `.module` and `torch.compile`'s `_orig_mod` wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def save_weights(path: str | Path, module: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """The unwrapped module's state dict as safetensors, atomically."""
    save_state(path, unwrap(module).state_dict(), metadata)


def save_state(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A state dict as safetensors, atomically (tensors copied to the CPU, contiguous)."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=metadata)
        except SafetensorError as err:  # a full disk, as safetensors' text: the same one line as any OSError
            raise write_failure(err, path) from err


def load_weights(path: str | Path, module: nn.Module) -> dict[str, str]:
    """Load strictly into `module`; returns the file's metadata. Mismatches name the keys."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}; train the model first or check the run folder")
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"cannot read weights {path} ({err}); the file is corrupt, retrain or restore it") from err
    load_state_strict(module, state, str(path))
    return metadata


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly; missing, unexpected or wrong-shaped keys raise one line naming them."""
    expected = unwrap(module).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}" + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""))
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(
                f"shape of {k} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
            )
        raise WeightsError(
            f"weights {source} do not fit the model ({', '.join(parts)}); pass weights made with the same config "
            "(the run's config.json, or its --preset and --set)"
        )
    refuse_non_finite(state, source)
    unwrap(module).load_state_dict(state, strict=True)


def refuse_non_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """NaN or infinite weights (a diverged run, a damaged file) are refused, naming the first such tensor."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(
                f"weights {source} hold NaN or infinite values (first in {key}); the run diverged or the file is "
                "damaged: use an earlier checkpoint or retrain"
            )


SAFE_SUFFIXES = (".safetensors",)
STATE_DICT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # read with torch.load(weights_only=True) only


def read_state_dict(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """Tensors of a third-party weights file, never unpickling code.

    `.safetensors`, or a plain state dict saved with `torch.save` (read with `weights_only=True`; a
    top-level `state_dict` entry is unwrapped, a `module.` prefix from DDP stripped). TorchScript archives
    and pickled models are refused with a clear message.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise WeightsError(f"{what} file not found: {p}; check the path, or train or fetch the weights")
    if suffix not in SAFE_SUFFIXES + STATE_DICT_SUFFIXES:
        raise WeightsError(
            f"{what} file {p} has suffix {suffix!r}; use .safetensors (preferred) or a .bin/.pt/.pth state dict"
        )
    try:
        state = (
            load_file(str(p), device="cpu")
            if suffix in SAFE_SUFFIXES
            else torch.load(p, map_location="cpu", weights_only=True)
        )
    except Exception as err:
        reason = (str(err).splitlines() or [""])[0][:200]
        raise WeightsError(
            f"cannot load {what} {p} safely ({type(err).__name__}: {reason}); use a .safetensors file or a plain "
            "state-dict file (TorchScript and pickled models are refused)"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{what} file {p} does not hold a state dict of tensors; export one with safetensors")
    if next(iter(state)).startswith("module."):  # saved from a DistributedDataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    refuse_non_finite(state, str(p))
    return state


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [prefix.rstrip(".")]
