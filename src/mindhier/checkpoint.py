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
        raise WeightsError(f"weights {source} do not fit the model: {'; '.join(parts)}")
    unwrap(module).load_state_dict(state, strict=True)


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
        raise WeightsError(f"{what} file not found: {p}")
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
    return state


def check_run_folder(run_dir: Path, cfg_dict: dict, sections: tuple[str, ...], resume: bool) -> None:
    """A fresh run needs an unused folder; a resumed one the same config sections as before."""
    config_file = Path(run_dir) / "config.json"
    if not resume:
        if config_file.exists():
            raise ConfigError(
                f"run folder {run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        return
    from mindhier.fileio import read_json

    saved = read_json(config_file, "run config").get("config", {})
    differences = config_differences({k: saved.get(k) for k in sections}, {k: cfg_dict.get(k) for k in sections})
    if differences:
        raise ConfigError(
            f"cannot resume {run_dir}: it was trained with a different config ({', '.join(differences[:5])}); "
            "resume with the same config or start a new --out"
        )


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


def save_resume_point(
    run_dir: Path,
    weights_name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    best_loss: float,
    generators: dict[str, torch.Generator],
    state_name: str = "train_state.pt",
) -> None:
    """The last weights and everything a bit-exact resume needs (optimizer, scheduler, step, best val loss, the
    global torch RNG and the named generators, stored as `<name>_rng`)."""
    save_weights(run_dir / weights_name, model, {"step": str(step)})
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "best_loss": best_loss,
        "torch_rng": torch.get_rng_state(),
    }
    save_train_state(run_dir / state_name, state | {f"{k}_rng": g.get_state() for k, g in generators.items()})


def load_resume_point(
    run_dir: Path,
    weights_name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generators: dict[str, torch.Generator],
    state_name: str = "train_state.pt",
) -> tuple[int, float]:
    """Restore what `save_resume_point` wrote into the given objects; returns (step, best val loss)."""
    load_weights(run_dir / weights_name, model)
    state = load_train_state(run_dir / state_name)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    for name, generator in generators.items():
        generator.set_state(state[f"{name}_rng"])
    return int(state["step"]), float(state["best_loss"])


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [prefix.rstrip(".")]
