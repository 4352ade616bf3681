"""The metric networks of the evaluation protocol and their weight files (`metrics/extractors.py` uses them).

Architectures (torchvision / open_clip, built with random init and then loaded strictly), the pinned weights
of each (file name, version, usual URL — text only, never fetched), the offline EfficientNet-Lite proxies,
and the safe loaders: a weights file is read without unpickling code and its sha256 checked — against the full
digest where one is recorded (`PinnedNetwork.sha256`: another file is refused), else against the prefix torchvision
puts in the file name (another file loads, flagged in the note); SwAV's has neither yet (`SWAV_SHA256`), so only
its digest is recorded. A missing file gives a `LoadedNetwork` with
`model=None` and `missing` naming the file and where to put it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from mindhier.backbones import efficientnet_lite
from mindhier.checkpoint import load_state_strict, read_state_dict
from mindhier.errors import WeightsError


def _alexnet(init: bool) -> nn.Module:
    from torchvision.models import alexnet

    return alexnet()


def _inception(init: bool) -> nn.Module:
    from torchvision.models import inception_v3

    # as `inception_v3(weights=...)` builds it: the Google weights expect transform_input, the file holds AuxLogits
    return inception_v3(transform_input=True, aux_logits=True, init_weights=init)


def _effnet_b1(init: bool) -> nn.Module:
    from torchvision.models import efficientnet_b1

    return efficientnet_b1()


def _resnet50(init: bool) -> nn.Module:
    from torchvision.models import resnet50

    return resnet50()


@dataclass(frozen=True)
class PinnedNetwork:
    """A torchvision-architecture network of the protocol with its pinned weights file."""

    key: str  # `weights` key / CLI --weights NAME
    network: str
    build: Callable[[bool], nn.Module]  # architecture, random init (the argument: whether to initialise at all)
    version: str  # the weights the file holds
    filename: str  # what torch.hub names it under <hub dir>/checkpoints
    url: str  # where that file normally comes from (text for the user; never fetched)
    input_px: int
    sha256: str | None = None  # the file's full digest, where recorded; a file with another digest is refused

    @property
    def published_sha256(self) -> str | None:
        """The sha256 prefix in the file name (torch.hub's `-<hash>.` convention), when there is one."""
        found = re.search(r"-([a-f0-9]{6,})\.", self.filename)
        return found.group(1) if found else None


# SwAV's file name carries no hash prefix, and no published sha256 of it was found: facebookresearch/swav's README
# and hubconf.py (`load_state_dict_from_url` without `check_hash`), the fMRI evaluation scripts that compute the SwAV
# metric (`torch.hub.load('facebookresearch/swav:main', 'resnet50')`), VISSL's docs and the repositories that download
# the file (naver/cog, IC-GAN, ptfid, storch) record none; searched for the file name with sha256, md5 and Hugging Face
# LFS pointers in public code, docs, issues and pages. Until the digest of the file served at `url` is recorded here,
# the file is not verified: only its digest is recorded (in each evaluation's weights field and the fetch manifest).
# With a digest recorded, loading and `mindhier fetch weights metrics` refuse any other file.
SWAV_SHA256: str | None = None

PINNED = {
    "alexnet": PinnedNetwork(
        "alexnet",
        "torchvision alexnet",
        _alexnet,
        "AlexNet_Weights.IMAGENET1K_V1",
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        256,
    ),
    "inception": PinnedNetwork(
        "inception",
        "torchvision inception_v3 (transform_input=True)",
        _inception,
        "Inception_V3_Weights.IMAGENET1K_V1",
        "inception_v3_google-0cc3c7bd.pth",
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        342,
    ),
    "effnet": PinnedNetwork(
        "effnet",
        "torchvision efficientnet_b1",
        _effnet_b1,
        "EfficientNet_B1_Weights.IMAGENET1K_V2",
        "efficientnet_b1-c27df63c.pth",
        "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth",
        255,
    ),
    "swav": PinnedNetwork(
        "swav",
        "torch.hub facebookresearch/swav:main resnet50 (torchvision resnet50)",
        _resnet50,
        "SwAV 800 epochs (facebookresearch/swav hubconf)",
        "swav_800ep_pretrain.pth.tar",
        "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
        224,
        sha256=SWAV_SHA256,
    ),
}

# metric name → (weights key, FX node, layer description, metric)
TORCHVISION_METRICS = {
    "alexnet_2": ("alexnet", "features.4", "features.4 (ReLU of conv2)", "two_way"),
    "alexnet_5": ("alexnet", "features.11", "features.11 (ReLU of conv5)", "two_way"),
    "inception": ("inception", "avgpool", "avgpool", "two_way"),
    "effnet": ("effnet", "avgpool", "avgpool", "correlation_distance"),
    "swav": ("swav", "avgpool", "avgpool", "correlation_distance"),
}

CLIP_MODEL, CLIP_TAG, CLIP_PX = "ViT-L-14", "openai", 224
CLIP_NETWORK = "open_clip ViT-L-14 (openai, QuickGELU)"
CLIP_VERSION = "OpenAI CLIP ViT-L/14 (open_clip tag openai)"


@dataclass(frozen=True)
class ProxySpec:
    network: str  # efficientnet_lite name
    block: int | None  # 1-based MBConv block; None: the head map, globally averaged
    layer: str
    input_px: int
    note: str


PROXIES = {
    "lite0_early": ProxySpec(
        "efficientnet-lite0", 5, "block 5 (40 ch, stride 8), avg-pooled 4×4", 224, "proxy, teacher-coupled"
    ),
    "lite0_late": ProxySpec(
        "efficientnet-lite0", None, "head (1280 ch, stride 32), global average", 224, "proxy, teacher-coupled"
    ),
    "lite2_early": ProxySpec(
        "efficientnet-lite2", 7, "block 7 (48 ch, stride 8), avg-pooled 4×4", 260, "proxy, simulator-coupled"
    ),
    "lite2_late": ProxySpec(
        "efficientnet-lite2", None, "head (1280 ch, stride 32), global average", 260, "proxy, simulator-coupled"
    ),
}
PROXY_GRID = 4  # early proxy maps are adaptive-average-pooled to 4 × 4


# ------------------------------------------------------------------------------------------- weights


class LoadedNetwork(NamedTuple):
    model: nn.Module | None  # None: absent
    weights: str
    note: str
    missing: str | None = None


def _sha256(path: Path) -> str:
    from mindhier.teachers.base import file_identity

    return file_identity(path)["sha256"]


def _read_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, never unpickling code; `.pth.tar` (SwAV's) read as a plain state dict too."""
    if path.suffix.lower() != ".tar":
        return read_state_dict(path, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = (str(err).splitlines() or [""])[0][:200]
        raise WeightsError(
            f"cannot load {what} {path} safely ({type(err).__name__}: {reason}); pickled code is refused — replace "
            "it with the original file or a plain state dict"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"{what} file {path} does not hold a state dict of tensors; pass the network's weights file (a state dict)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _swav_backbone(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """SwAV's checkpoint: the ResNet-50 trunk plus its projection head and prototypes, and no `fc`.

    The heads are dropped; `fc` (never reached by the avgpool feature) keeps the model's own values, as the hub
    entry leaves it randomly initialised. Every trunk key must then be present: the load stays strict.
    """
    trunk = {k: v for k, v in state.items() if not k.startswith(("projection_head.", "prototypes."))}
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            trunk.setdefault(key, value)
    return trunk


def _explicit_path(weights: Mapping[str, Any], key: str) -> Path | None:
    if weights.get(key) is None:
        return None
    path = Path(weights[key]).expanduser()
    if not path.is_file():
        raise WeightsError(f"--weights {key}={weights[key]}: no such file; pass an existing weights file")
    return path


def check_recorded_digest(spec: PinnedNetwork, path: Path, sha: str) -> None:
    """Refuse a weights file whose sha256 is not the one recorded for `spec` (nothing to check without one)."""
    if spec.sha256 is not None and sha != spec.sha256:
        raise WeightsError(
            f"{path} has sha256 {sha}, but {spec.filename} ({spec.url}) is recorded as {spec.sha256}: it is damaged "
            f"or not the published file; delete it and download it again (`mindhier fetch weights metrics`), or pass "
            f"the published file with --weights {spec.key}=PATH"
        )


def _prefix_note(spec: PinnedNetwork, sha: str) -> str:
    """A file whose digest does not start with the prefix in its published name: loaded, and flagged."""
    published = spec.published_sha256
    if spec.sha256 is None and published and not sha.startswith(published):
        return f"weights file sha256 {sha[:8]} differs from the published {published}: not the pinned weights"
    return ""


def load_pinned(spec: PinnedNetwork, weights: Mapping[str, Any], hub_dir: Path) -> LoadedNetwork:
    path = _explicit_path(weights, spec.key)
    if path is None:
        path = hub_dir / "checkpoints" / spec.filename
        if not path.is_file():
            missing = (
                f"absent: put {spec.filename} ({spec.url}) in {hub_dir / 'checkpoints'} "
                f"or pass --weights {spec.key}=PATH"
            )
            return LoadedNetwork(None, spec.version, "", missing)
    sha = _sha256(path)
    check_recorded_digest(spec, path, sha)  # before reading or building anything: another file fails fast
    state = _read_state(path, f"{spec.network} weights")
    model = spec.build(False)
    if spec.key == "swav":
        state = _swav_backbone(state, model)
    load_state_strict(model, state, str(path))
    return LoadedNetwork(model, f"{spec.version} ({path.name}, sha256 {sha[:12]})", _prefix_note(spec, sha))


def _clip_missing(cache_dir: str | os.PathLike[str] | None) -> str:
    import open_clip

    repo = open_clip.get_pretrained_cfg(CLIP_MODEL, CLIP_TAG).get("hf_hub", "").rstrip("/")
    where = f"the Hugging Face cache {cache_dir}" if cache_dir is not None else "the Hugging Face cache"
    return (
        f"absent: put open_clip_model.safetensors of {repo} (https://huggingface.co/{repo}) in {where} — e.g. run "
        f"`python -c \"import open_clip; open_clip.create_model('{CLIP_MODEL}', pretrained='{CLIP_TAG}')\"` once "
        "with internet — or pass --weights clip=PATH (an open_clip ViT-L-14 state dict)"
    )


def clip_architecture() -> nn.Module:
    from mindhier.teachers.clip import _open_clip, _quiet_random_init_warning

    open_clip = _open_clip()
    with _quiet_random_init_warning():
        return open_clip.create_model(
            CLIP_MODEL,
            pretrained=None,  # weights are loaded by us, safely; nothing is fetched
            device="cpu",
            force_quick_gelu=True,  # OpenAI's weights were trained with QuickGELU
            pretrained_image=False,
            pretrained_text=False,
        )


def load_clip(weights: Mapping[str, Any], cache_dir: str | os.PathLike[str] | None) -> LoadedNetwork:
    from mindhier.teachers.clip import _load_into, find_cached_weights, load_state_dict_safely

    path = _explicit_path(weights, "clip")
    if path is None:
        try:
            path = find_cached_weights(CLIP_MODEL, CLIP_TAG, cache_dir)
        except WeightsError:
            return LoadedNetwork(None, CLIP_VERSION, "", _clip_missing(cache_dir))
    state = load_state_dict_safely(path)
    model = clip_architecture()
    _load_into(model, state, path)
    return LoadedNetwork(model, f"{CLIP_VERSION} ({path.name}, sha256 {_sha256(path)[:12]})", "")


def load_proxy(network: str, device: torch.device) -> LoadedNetwork:
    # the process-wide shared copy is CPU-only; another device gets its own
    model = efficientnet_lite.cached(network) if device.type == "cpu" else efficientnet_lite.build(network)
    path = efficientnet_lite.weights_file(network)
    return LoadedNetwork(model, f"ImageNet, bundled ({path.name}, sha256 {_sha256(path)[:12]})", "")
