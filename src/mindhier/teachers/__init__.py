"""Frozen feature hierarchies behind one Protocol: EfficientNet-Lite0 (embedded default) and open_clip CLIP.

`build_teacher(cfg)` is the one entry point; the brain encoder, feature cache and losses see only `Teacher`.
"""

from __future__ import annotations

import torch

from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError
from mindhier.teachers.base import Teacher, TeacherLevel, resolve_layers

__all__ = ["Teacher", "TeacherLevel", "build_teacher", "resolve_layers"]


def build_teacher(cfg: TeacherConfig, device: str | torch.device = "cpu") -> Teacher:
    """The teacher `cfg.name` names, frozen and in eval mode on `device`; weights are never downloaded."""
    if cfg.name == "efficientnet-lite0":
        from mindhier.teachers.efficientnet import EfficientNetTeacher

        return EfficientNetTeacher(cfg, device=device)
    if cfg.name == "clip":
        from mindhier.teachers.clip import CLIPTeacher

        return CLIPTeacher(cfg, device=device)
    raise ConfigError(f"unknown teacher {cfg.name!r}; available: efficientnet-lite0, clip")
