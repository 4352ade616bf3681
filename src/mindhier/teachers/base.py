"""The teacher contract: a frozen vision network seen as a hierarchy of token levels (docs/method.md §3.2).

Stage 1 aligns the brain encoder's level outputs e_1..e_M to a teacher's levels v_1..v_M, each a token sequence
of its own width; the last level is the terminal one (the paper's CLIP layer 24). Everything downstream (feature
cache, encoder, losses, cross-attention routing) needs only what this module defines: the level shapes, a
forward pass from [0, 1] RGB images, an identity for cache keys and, optionally, caption features.

Shape letters (docs/glossary.md): N images (or captions), C colour channels, H/W pixels, Q tokens of a level
(Q_m at level m), D width of a level (D_m), U text tokens (of width D_text).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError


@dataclass(frozen=True)
class TeacherLevel:
    """Shape of one level of a teacher hierarchy."""

    name: str  # human-readable origin, e.g. "block5" (EfficientNet) or "layer12" (CLIP)
    layer: int  # 1-based layer number in the network
    tokens: int  # Q_m, tokens per image at this level
    dim: int  # D_m, feature size of each token

    def to_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class Teacher(Protocol):
    """A frozen feature hierarchy. Implementations: `EfficientNetTeacher`, `CLIPTeacher`."""

    name: str
    levels: tuple[TeacherLevel, ...]  # shallow → deep; the last is the terminal level

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """Float RGB in [0, 1], any size → the network's input."""
        ...

    def __call__(self, images_NCHW: torch.Tensor) -> list[torch.Tensor]:
        """Float RGB in [0, 1] → one float32 tensor [N, Q_m, D_m] per level, computed without autograd."""
        ...

    def describe(self) -> dict:
        """JSON-serialisable identity (name, layers, sizes, weights identity); feature-cache keys hash it."""
        ...

    @property
    def has_text(self) -> bool:
        """Whether `encode_text` is available (and wanted) for this teacher."""
        ...

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Captions → [N, U, D_text]; raises `ConfigError` when `has_text` is False."""
        ...


def resolve_layers(cfg: TeacherConfig, n_layers: int, mappings: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The 1-based layers a teacher exposes: `cfg.layers` when given, else the named mapping `cfg.mapping`.

    `mappings` holds the teacher's own named mappings for a network of `n_layers` layers.
    """
    if cfg.layers:
        layers = tuple(int(layer) for layer in cfg.layers)
        where = f"teacher.layers={list(layers)}"
    else:
        if cfg.mapping not in mappings:
            raise ConfigError(
                f"teacher.mapping must be one of {', '.join(mappings)}, got {cfg.mapping!r}; use one of those"
            )
        layers = tuple(mappings[cfg.mapping])
        where = f"teacher.mapping={cfg.mapping} (layers {list(layers)})"
    if not layers:
        raise ConfigError(f"{where} selects no layer; pass at least one layer")
    if min(layers) < 1 or max(layers) > n_layers:
        raise ConfigError(
            f"{where} is out of range for {cfg.name}, which has layers 1..{n_layers}; choose layers in that range"
        )
    if list(layers) != sorted(set(layers)):
        raise ConfigError(
            f"{where} is not strictly increasing on a {n_layers}-layer network; pass teacher.layers explicitly"
        )
    return layers


def file_identity(path: str | os.PathLike[str]) -> dict:
    """Name, byte size and sha256 of a weights file; the hash is computed once per (path, size, mtime)."""
    p = Path(path)
    real = p.resolve()  # Hugging Face snapshots are symlinks into a blob store
    stat = real.stat()
    return {"file": p.name, "bytes": stat.st_size, "sha256": _file_sha256(str(real), stat.st_size, stat.st_mtime_ns)}


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes, dtypes, values): the identity of an injected model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(value.shape)}|{value.dtype}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
