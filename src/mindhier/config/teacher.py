"""The frozen vision network whose feature hierarchy the encoder is aligned to (config section `teacher`)."""

from __future__ import annotations

from dataclasses import dataclass

from mindhier.config.checks import check_range
from mindhier.errors import ConfigError

TEACHER_NAMES = ("efficientnet-lite0", "clip")
LAYER_MAPPINGS = ("balanced", "early", "late")


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen vision network whose feature hierarchy the brain encoder is aligned to (docs/method.md §3.2).

    Layer ℓ is the output of block ℓ counted from 1 (CLIP: transformer block; EfficientNet: MBConv block).
    """

    name: str = "efficientnet-lite0"  # "efficientnet-lite0" (embedded, real weights) | "clip" (open_clip)
    mapping: str = "balanced"  # named layer mapping g_m: balanced | early | late (ignored when `layers` is set)
    layers: tuple[int, ...] = ()  # explicit 1-based layers, shallow to deep; the last is the terminal level
    grid: int = 4  # EfficientNet: every level pooled to grid×grid tokens plus one global token (Q = grid² + 1)
    input_px: int = 128  # EfficientNet input side (images are resized to it); CLIP uses its own preprocessing
    clip_model: str = "ViT-L-14"  # open_clip architecture name
    clip_weights: str = "openai"  # open_clip pretrained tag (resolved in the local cache) or a local weights file
    text: bool = False  # also compute caption features with CLIP's text tower (clip only)
    # true: the targets are computed once into the feature cache (disk: levels × tokens × dims × 2 B per image) and
    # read in every step; false: the teacher runs inside the training step on the training device (bf16 on a GPU,
    # no gradients) and only the images are read — the same targets (data/teacher_targets.py)
    cache: bool = True

    def __post_init__(self) -> None:
        if self.name not in TEACHER_NAMES:
            raise ConfigError(
                f"teacher.name must be one of {', '.join(TEACHER_NAMES)}, got {self.name!r}; use one of those"
            )
        if self.mapping not in LAYER_MAPPINGS:
            raise ConfigError(
                f"teacher.mapping must be one of {', '.join(LAYER_MAPPINGS)}, got {self.mapping!r}; use one of those"
            )
        if any(layer < 1 for layer in self.layers) or list(self.layers) != sorted(set(self.layers)):
            raise ConfigError(
                f"teacher.layers must be increasing 1-based layer numbers, got {list(self.layers)};"
                " list them in increasing order, e.g. 4,8,12"
            )
        check_range("teacher.grid", self.grid, 1, 64)
        check_range("teacher.input_px", self.input_px, 32, 1024)
        if self.text and self.name != "clip":
            raise ConfigError(
                "teacher.text needs teacher.name=clip (only CLIP has a text tower here);"
                " set teacher.name=clip or teacher.text=false"
            )
