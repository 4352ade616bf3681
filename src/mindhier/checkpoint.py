"""Run folders and checkpoints.

A run folder holds `config.json` (the resolved config + provenance), one `<model>.safetensors` per
model (weights only — never a pickle), `train_state.pt` (optimizer, scheduler, step, RNG; read with
`torch.load(weights_only=True)`), and logs. Every write is atomic (temp file + rename), so a crash never
leaves a half-written checkpoint, and only rank 0 writes. Loading is strict: a mismatch names the keys,
and a checkpoint from another config names the differing fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mindhier.errors import ConfigError, WeightsError
from mindhier.fileio import atomic_path


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
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(module).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


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
        raise WeightsError(f"weights {path} do not fit the model: {'; '.join(parts)}")
    unwrap(module).load_state_dict(state, strict=True)
    return metadata


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_train_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no train_state.pt in {path.parent}; nothing to resume (drop --resume to start fresh)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"cannot read {path} ({err}); it is corrupt — start fresh without --resume") from err


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [prefix.rstrip(".")]
