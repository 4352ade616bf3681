"""Resume points: everything a run needs to continue exactly, written as one unit that appears only when whole.

A resume point is the folder `resume/step-XXXXXXXX/` (`run_layout`):

    state/            model and optimiser tensors, saved with `torch.distributed.checkpoint` (DCP): every
                      process writes its own shards, and a load re-shards them for any number of processes
                      (save with 2, resume with 1)
    train_state.pt    step, scheduler, the optimiser's hyper-parameters, best-on-val state, the log's
                      length, the world it was written by (`torch.load(weights_only=True)`)
    rng/rank{r}.pt    each process's CPU and CUDA random state
    manifest.json     written last: every file with its size and sha256

It is built under `resume/.step-XXXXXXXX.partial-/` and renamed into place only after every process has
written and the manifest is complete, so a crash leaves either the previous resume point or the new one,
never half of one; leftovers are removed on the next start. Reading verifies the manifest and falls back to
the newest resume point that verifies. The two newest resume points are kept.

Only tensors go through DCP (its loader would unpickle anything else), and DCP's metadata file, a pickle, is
read with an unpickler that admits only DCP's own metadata classes: a resume point never runs code.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from mindhier import fault_points, run_layout
from mindhier.errors import ConfigError, MindhierError
from mindhier.fileio import read_json, sha256_file, write_failure, write_json
from mindhier.train.parallel import World, WrappedModel
from mindhier.train.random_streams import rng_state, seed_process, set_rng_state

KEEP = 2  # resume points kept: the newest, and the one before in case the newest is damaged later


@dataclass
class ResumePoint:
    path: Path
    step: int
    train_state: dict[str, Any]
    notices: list[str] = field(default_factory=list)  # what the search skipped, for the CLI to print


# ------------------------------------------------------------------------------------------------- writing


def write_resume_point(
    run_dir: Path,
    step: int,
    wrapped: WrappedModel,
    optimizer: torch.optim.Optimizer,
    train_state: dict[str, Any],
    world: World,
) -> Path:
    """Write the resume point of `step` (every process calls this); returns its folder."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = run_dir / run_layout.RESUME_DIR
    name = run_layout.resume_point_name(step)
    staging = root / f".{name}{run_layout.PARTIAL_MARK}"
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / run_layout.RESUME_RNG_DIR).mkdir(parents=True)
    world.barrier()
    model_state, optim_state = get_state_dict(wrapped.module, optimizer)
    tensors = {"model": model_state, "optimizer": optim_state["state"]}
    from torch.distributed.checkpoint.api import CheckpointException

    try:  # a full disk names the resume point (the half-written staging folder is removed on --resume)
        _dcp_save(tensors, staging / run_layout.RESUME_STATE_DIR, world)
        torch.save(rng_state(), staging / run_layout.RESUME_RNG_DIR / run_layout.resume_rng_file(world.rank))
        if world.is_main:
            record = {**train_state, "step": step, "param_groups": optim_state["param_groups"]}
            record["world"] = {"world_size": world.world_size, "strategy": wrapped.strategy}
            torch.save(record, staging / run_layout.RESUME_TRAIN_STATE)
    except (OSError, RuntimeError, CheckpointException) as err:
        raise write_failure(err, root / name) from err
    world.barrier()
    target = root / name
    if world.is_main:
        fault_points.reach("resume-point.before-manifest")
        write_json(staging / run_layout.RESUME_MANIFEST, {"step": step, "files": _file_table(staging)})
        _fsync_tree(staging)
        fault_points.reach("resume-point.before-rename")
        if target.exists():  # the same step written again (a resumed run that re-ran it): replace it
            shutil.rmtree(target)
        os.replace(staging, target)
        fault_points.reach("resume-point.after-rename")
        for old in sorted(p for p in root.iterdir() if p.name.startswith(run_layout.RESUME_PREFIX))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    world.barrier()
    return target


def _dcp_save(tensors: dict, folder: Path, world: World) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.save(tensors, checkpoint_id=str(folder), no_dist=not world.distributed)


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        table[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return table


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def remove_partials(run_dir: Path) -> list[str]:
    """Remove resume points a crash left half-written; returns their names."""
    root = run_dir / run_layout.RESUME_DIR
    if not root.is_dir():
        return []
    removed = []
    for path in root.iterdir():
        if run_layout.PARTIAL_MARK in path.name:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


# ------------------------------------------------------------------------------------------------- reading


def find_resume_point(run_dir: Path) -> ResumePoint | None:
    """The newest resume point whose manifest verifies (None when there is none)."""
    root = run_dir / run_layout.RESUME_DIR
    if not root.is_dir():
        return None
    notices = []
    candidates = sorted((p for p in root.iterdir() if p.name.startswith(run_layout.RESUME_PREFIX)), reverse=True)
    for path in candidates:
        problem = _verify(path)
        state = None
        if problem is None:
            state, problem = _read_contents(path)
        if state is not None:
            return ResumePoint(path, int(state["step"]), state, notices)
        notices.append(f"skipped resume point {path.name}: {problem}")
    if notices:
        raise ConfigError(f"no usable resume point in {root} ({'; '.join(notices)}); start a new --out")
    return None


def _verify(path: Path) -> str | None:
    manifest_file = path / run_layout.RESUME_MANIFEST
    if not manifest_file.is_file():
        return "no manifest"
    try:
        manifest = read_json(manifest_file, "resume manifest")
        for name, entry in manifest["files"].items():
            file = path / name
            if not file.is_file() or file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                return f"{name} is missing or damaged"
    except (KeyError, TypeError, ValueError, OSError, MindhierError) as err:
        return f"unreadable manifest ({err})"
    return None


_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError, OSError, MindhierError)


def _read_contents(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(train state, None), or (None, the problem) when a file whose checksum matches still is not what a resume
    point holds (a pickle with code, foreign metadata): read with the restricted loaders before anything is used,
    so such a point is skipped like a damaged one."""
    import torch.distributed.checkpoint.metadata as meta

    try:
        state = torch.load(path / run_layout.RESUME_TRAIN_STATE, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) or "world" not in state:
            return None, f"{run_layout.RESUME_TRAIN_STATE} is not a training state"
        for rng_file in sorted((path / run_layout.RESUME_RNG_DIR).glob("*")):
            torch.load(rng_file, map_location="cpu", weights_only=True)
        metadata_file = path / run_layout.RESUME_STATE_DIR / ".metadata"
        with open(metadata_file, "rb") as f:
            metadata = _MetadataUnpickler(io.BytesIO(f.read())).load()
        if not isinstance(metadata, meta.Metadata):
            return None, "its checkpoint metadata is not DCP metadata"
    except _UNREADABLE as err:
        return None, f"refused content ({' '.join(str(err).split())[:120]})"
    return state, None


def load_resume_point(
    point: ResumePoint, wrapped: WrappedModel, optimizer: torch.optim.Optimizer, world: World, seed: int
) -> dict[str, Any]:
    """Restore model, optimiser and this process's random state; returns the saved train state."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(wrapped.module, optimizer)
    tensors = {"model": model_state, "optimizer": optim_state["state"]}
    _check_tensors_only(tensors)
    _dcp_load(tensors, point.path / run_layout.RESUME_STATE_DIR, world)
    set_state_dict(
        wrapped.module,
        optimizer,
        model_state_dict=tensors["model"],
        optim_state_dict={"state": tensors["optimizer"], "param_groups": point.train_state["param_groups"]},
    )
    rng_file = point.path / run_layout.RESUME_RNG_DIR / run_layout.resume_rng_file(world.rank)
    if point.train_state["world"]["world_size"] == world.world_size and rng_file.is_file():
        set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
    else:  # another process count: this process's in-model randomness restarts from (seed, rank, step)
        seed_process(seed, world.rank, point.step)
    return point.train_state


def _check_tensors_only(tree: Any) -> None:
    if isinstance(tree, dict):
        for value in tree.values():
            _check_tensors_only(value)
    elif not isinstance(tree, torch.Tensor):
        raise TypeError(f"resume points hold tensors only, got {type(tree).__name__}")


def _dcp_load(tensors: dict, folder: Path, world: World) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.load(tensors, storage_reader=_SafeReader(str(folder)), no_dist=not world.distributed)


# ------------------------------------------------------------------------------- DCP metadata, never code


def _safe_reader_class():
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any):
            import torch.distributed.checkpoint.metadata as meta

            rank = kwargs.get("rank")
            path = self._get_metadata_path(rank)
            with self.fs.create_stream(path, "rb") as f:
                metadata = _MetadataUnpickler(io.BytesIO(f.read())).load()
            if not isinstance(metadata, meta.Metadata):
                raise ConfigError(
                    f"{path} is not a checkpoint metadata file; remove the damaged resume point, then --resume again"
                )
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = meta.StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader


def _SafeReader(path: str):
    return _safe_reader_class()(path)


class _MetadataUnpickler(pickle.Unpickler):
    """Admits DCP's metadata classes, tensor properties and paths; refuses every other global."""

    _MODULES = ("torch.distributed.checkpoint.metadata",)
    _NAMES: ClassVar[set[tuple[str, str]]] = {
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PureWindowsPath"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if module in self._MODULES or (module, name) in self._NAMES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise ConfigError(f"checkpoint metadata refers to {module}.{name}, which a checkpoint never holds; refused")
