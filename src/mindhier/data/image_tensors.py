"""Images between disk and models: uint8 [N, H, W, 3] arrays ⇄ float [N, 3, H, W] tensors.

Two float conventions meet here: the tokenizer and the decoders work in [-1, 1] (VAR's VQ-VAE
convention), teachers and metrics take [0, 1]. Training, token caches, sampling and the ceiling all
convert through these functions, so an image means the same pixels everywhere.

Shape letters (docs/glossary.md): N images, H/W pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_uint8(images_NHWC: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of uint8 images to size × size (a no-op at that size)."""
    if images_NHWC.shape[1] == size and images_NHWC.shape[2] == size:
        return images_NHWC
    x = torch.from_numpy(np.ascontiguousarray(images_NHWC)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def to_model_input(images_NHWC: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [-1, 1] on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images_NHWC)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images_N3HW: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] → uint8 [N, H, W, 3] (on the CPU)."""
    return ((images_N3HW.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def unit_to_uint8(images_N3HW: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [0, 1] → uint8 [N, H, W, 3] (on the CPU)."""
    return (images_N3HW.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def uint8_to_unit(images_NHWC: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [0, 1] on `device` (the teachers' and metrics' input)."""
    return torch.from_numpy(np.ascontiguousarray(images_NHWC)).to(device).permute(0, 3, 1, 2).float() / 255.0
