"""Feature extractors: absent / real / proxy, safe weight loading, MindEye2's preprocessing and layers.

Fast tests use tiny stand-ins through the real wrappers, a random AlexNet file in a temporary hub directory and
the bundled Lite0/Lite2 weights; full-size architectures are `slow`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from skimage import data as skdata

from mindhier.backbones import efficientnet_lite
from mindhier.errors import ConfigError, MindhierError, WeightsError
from mindhier.metrics.extractors import (
    AbsentExtractor,
    FeatureExtractor,
    build_extractor,
    build_extractors,
    resize_shorter_side,
    tiny_network,
)
from mindhier.metrics.identification import correlation_matrix, two_way_identification

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
SWAV_FILE = "swav_800ep_pretrain.pth.tar"
# MindEye2's input sizes (docs/method.md §7)
PROTOCOL_PX = {"alexnet_2": 256, "alexnet_5": 256, "inception": 342, "effnet": 255, "swav": 224, "clip": 224}


def _photos(size: int = 512) -> torch.Tensor:
    """Three real photographs as float [3, 3, size, size] in [0, 1] (square, like NSD's test images)."""
    arrays = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()[None] / 255.0 for a in arrays]
    resized = [
        F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False) for t in tensors
    ]
    return torch.cat(resized).clamp(0.0, 1.0)


def _reference_input(images: torch.Tensor, size: int, mean_std) -> torch.Tensor:
    """The protocol written out: antialiased bilinear resize of the square images to size × size, then mean/std."""
    x = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in mean_std)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------- absent


def test_missing_weights_are_absent_with_what_to_fetch_and_the_others_still_build(tmp_path):
    hub, hf = tmp_path / "hub", tmp_path / "hf"
    names = ("alexnet_2", "alexnet_5", "inception", "clip", "effnet", "swav", "lite0_early")
    extractors = build_extractors(names, torch_hub_dir=hub, clip_cache_dir=hf)
    assert [e.info.name for e in extractors] == list(names)
    by_name = {e.info.name: e for e in extractors}
    expected_files = {
        "alexnet_2": ("alexnet", ALEXNET_FILE),
        "alexnet_5": ("alexnet", ALEXNET_FILE),
        "inception": ("inception", "inception_v3_google-0cc3c7bd.pth"),
        "effnet": ("effnet", "efficientnet_b1-c27df63c.pth"),
        "swav": ("swav", SWAV_FILE),
    }
    for name, (key, filename) in expected_files.items():
        extractor = by_name[name]
        assert isinstance(extractor, AbsentExtractor) and extractor.info.kind == "absent"
        assert filename in extractor.info.missing
        assert str(hub / "checkpoints") in extractor.info.missing
        assert f"--weights {key}=PATH" in extractor.info.missing
        with pytest.raises(MindhierError, match=filename):
            extractor(torch.rand(1, 3, 64, 64))
    clip = by_name["clip"]
    assert clip.info.kind == "absent"
    assert "timm/vit_large_patch14_clip_224.openai" in clip.info.missing and str(hf) in clip.info.missing
    assert "--weights clip=PATH" in clip.info.missing
    with pytest.raises(WeightsError):
        clip(torch.rand(1, 3, 64, 64))
    # the protocol's pinned versions and metrics are reported even for absent networks
    assert by_name["effnet"].info.weights == "EfficientNet_B1_Weights.IMAGENET1K_V2"
    assert by_name["inception"].info.weights == "Inception_V3_Weights.IMAGENET1K_V1"
    assert by_name["alexnet_2"].info.weights == "AlexNet_Weights.IMAGENET1K_V1"
    metrics = {name: by_name[name].info.metric for name in names}
    assert metrics == {
        "alexnet_2": "two_way",
        "alexnet_5": "two_way",
        "inception": "two_way",
        "clip": "two_way",
        "effnet": "correlation_distance",
        "swav": "correlation_distance",
        "lite0_early": "both",
    }
    assert {name: by_name[name].info.input_px for name in PROTOCOL_PX} == PROTOCOL_PX
    proxy = by_name["lite0_early"]
    assert proxy.info.kind == "proxy" and isinstance(proxy, FeatureExtractor)
    assert proxy(torch.rand(2, 3, 64, 64)).shape == (2, 640)


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown feature extractor.*vgg"):
        build_extractors(("alexnet_2", "vgg"), torch_hub_dir=tmp_path)
    with pytest.raises(ConfigError, match="--weights alexnet_2: not a metric network"):
        build_extractors(("alexnet_2",), weights={"alexnet_2": "x.pth"}, torch_hub_dir=tmp_path)
    with pytest.raises(WeightsError, match=r"--weights swav=.*no such file"):
        build_extractors(("swav",), weights={"swav": tmp_path / "nope.pth.tar"}, torch_hub_dir=tmp_path)
    with pytest.raises(ConfigError, match="not both"):
        build_extractor("swav", model=tiny_network("swav"), random_init=True)
    extractor = build_extractor("swav", model=tiny_network("swav"))
    with pytest.raises(ValueError, match="float"):
        extractor(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        extractor(torch.rand(3, 32, 32))


# ------------------------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def alexnet_hub(tmp_path_factory):
    """A torch hub dir holding a random-init AlexNet state dict under torchvision's file name, and that network."""
    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    torch.manual_seed(1)
    model = torchvision.models.alexnet().eval()
    torch.save(model.state_dict(), hub / "checkpoints" / ALEXNET_FILE)
    return hub, model


def test_alexnet_file_in_the_hub_dir_is_loaded_and_matches_the_network_run_directly(alexnet_hub):
    hub, model = alexnet_hub
    alexnet_2, alexnet_5 = build_extractors(("alexnet_2", "alexnet_5"), torch_hub_dir=hub, batch_size=2)
    for extractor in (alexnet_2, alexnet_5):
        assert extractor.info.kind == "real"
        assert extractor.info.weights.startswith(f"AlexNet_Weights.IMAGENET1K_V1 ({ALEXNET_FILE}, sha256 ")
        assert "not the pinned weights" in extractor.info.note  # a random file is not torchvision's 7be5be79…
    images = _photos()  # 3 images, batches of 2
    x = _reference_input(images, 256, IMAGENET)
    with torch.no_grad():
        expected_2 = model.features[:5](x).flatten(1)  # up to features.4, the ReLU of conv2
        expected_5 = model.features[:12](x).flatten(1)  # up to features.11, the ReLU of conv5
    features_2, features_5 = alexnet_2(images), alexnet_5(images)
    assert features_2.shape == (3, 192 * 31 * 31) and features_2.dtype == torch.float32
    assert features_5.shape == (3, 256 * 15 * 15)
    torch.testing.assert_close(features_2, expected_2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features_5, expected_5, rtol=1e-4, atol=1e-5)
    assert not features_2.requires_grad


def test_an_explicit_weights_path_is_used_without_any_hub_dir(alexnet_hub, tmp_path):
    hub, model = alexnet_hub
    extractor = build_extractor(
        "alexnet_5", weights={"alexnet": hub / "checkpoints" / ALEXNET_FILE}, torch_hub_dir=tmp_path / "empty"
    )
    assert extractor.info.kind == "real"
    image = _photos(300)[:1]
    with torch.no_grad():
        expected = model.features[:12](_reference_input(image, 256, IMAGENET)).flatten(1)
    torch.testing.assert_close(extractor(image), expected, rtol=1e-4, atol=1e-5)


class _Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.mark.parametrize(("name", "filename"), [("alexnet_2", ALEXNET_FILE), ("swav", SWAV_FILE)])
def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path, name, filename):
    (tmp_path / "checkpoints").mkdir()
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoints" / filename
    torch.save({"conv1.weight": _Payload(str(marker))}, path)
    with pytest.raises(WeightsError, match="safely"):
        build_extractors((name,), torch_hub_dir=tmp_path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load would have run it
    assert marker.read_text() == "ran"


def _swav_checkpoint(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SwAV's layout: `module.` prefixes, projection head and prototypes, no `fc`."""
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.randn(16, 2048)
    state["module.prototypes.weight"] = torch.randn(8, 16)
    return state


def test_swav_checkpoint_layout_loads_strictly_into_resnet50(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(2)
    model = torchvision.models.resnet50()
    state = _swav_checkpoint(model)
    torch.save(state, tmp_path / "checkpoints" / SWAV_FILE)
    (swav,) = build_extractors(("swav",), torch_hub_dir=tmp_path)
    assert swav.info.kind == "real" and swav.info.note == ""  # SwAV's file name publishes no hash to compare
    assert SWAV_FILE in swav.info.weights
    torch.testing.assert_close(swav.model.get_submodule("layer4.2.conv3").weight, model.layer4[2].conv3.weight)

    del state["module.layer4.2.bn3.bias"]
    state["module.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "checkpoints" / SWAV_FILE)
    with pytest.raises(WeightsError, match=r"missing \['layer4.2.bn3.bias'\].*unexpected \['extra.weight'\]"):
        build_extractors(("swav",), torch_hub_dir=tmp_path)


# ------------------------------------------------------------------------------------------- stand-ins


@pytest.mark.parametrize("name", sorted(PROTOCOL_PX))
def test_tiny_stand_ins_run_the_protocol_preprocessing_and_layer(name):
    model = tiny_network(name)
    extractor = build_extractor(name, model=model, batch_size=2)
    assert extractor.info.kind == "real" and extractor.info.weights.startswith("injected")
    assert extractor.info.input_px == PROTOCOL_PX[name]
    images = _photos()
    with torch.no_grad():
        if name == "clip":
            expected = model.encode_image(_reference_input(images, 224, OPENAI_CLIP))
        else:
            x = _reference_input(images, PROTOCOL_PX[name], IMAGENET)
            layer = {"alexnet_2": model.features[:5], "alexnet_5": model.features[:12]}.get(name)
            expected = layer(x) if layer is not None else model.avgpool(model.features(x))
    features = extractor(images)
    torch.testing.assert_close(features, expected.flatten(1), rtol=1e-4, atol=1e-5)
    if name == "clip":  # MindEye2 correlates the raw embedding, not the unit-normalised one
        assert not torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-3)


def test_resize_is_torchvision_resize_of_the_shorter_side_without_crop():
    image = torch.rand(1, 3, 200, 300)
    resized = resize_shorter_side(image, 256)
    assert resized.shape == (1, 3, 256, 384)
    expected = F.interpolate(image, size=(256, 384), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(resized, expected)


# ------------------------------------------------------------------------------------------- proxies


@pytest.fixture(scope="module")
def proxies():
    """The four proxies with their real weights, and their features of three photos at 512 and at 300 px."""
    names = ("lite0_early", "lite0_late", "lite2_early", "lite2_late")
    extractors = dict(zip(names, build_extractors(names), strict=True))
    large, small = _photos(512), _photos(300)
    features = {name: (extractor(large), extractor(small)) for name, extractor in extractors.items()}
    return extractors, (large, small), features


def test_proxies_are_labelled_with_what_they_are_coupled_to(proxies):
    extractors, (large, _), features = proxies
    expected = {
        "lite0_early": ("proxy, teacher-coupled", 224, 640),
        "lite0_late": ("proxy, teacher-coupled", 224, 1280),
        "lite2_early": ("proxy, simulator-coupled", 260, 768),
        "lite2_late": ("proxy, simulator-coupled", 260, 1280),
    }
    for name, (note, px, dim) in expected.items():
        info = extractors[name].info
        assert (info.kind, info.note, info.input_px, info.metric) == ("proxy", note, px, "both")
        assert "sha256" in info.weights and info.missing is None
        assert features[name][0].shape == (3, dim) and features[name][0].dtype == torch.float32
        assert torch.equal(extractors[name](large), features[name][0])  # deterministic


def test_proxies_tell_images_apart_across_resolutions(proxies):
    """Each photo at 300 px correlates more with itself at 512 px than with the other photos (real weights)."""
    _, _, features = proxies
    for name, (features_large, features_small) in features.items():
        assert two_way_identification(features_small, features_large).mean() == 1.0, name
        r = correlation_matrix(features_large, features_small)
        assert r[~torch.eye(3, dtype=torch.bool)].max() < 0.99, name  # different images, different features


def test_proxy_layers_match_the_networks_own_forward(proxies):
    _, (_, small), features = proxies
    # lite2_late is exactly the simulator's semantic feature, at the proxy's size
    lite2 = efficientnet_lite.cached("efficientnet-lite2")
    expected_late = efficientnet_lite.pooled_features(lite2, small, 260)
    torch.testing.assert_close(features["lite2_late"][1], expected_late, rtol=1e-4, atol=1e-4)
    # lite0_early is block 5's output in the full forward pass, pooled to 4 × 4
    lite0 = efficientnet_lite.cached("efficientnet-lite0")
    seen = []
    handle = lite0._blocks[4].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        with torch.no_grad():
            lite0.extract_features(efficientnet_lite.to_network_input(small, 224))
    finally:
        handle.remove()
    expected_early = F.adaptive_avg_pool2d(seen[0], 4).flatten(1)
    torch.testing.assert_close(features["lite0_early"][1], expected_early, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- full size


FULL_SIZE_FEATURES = {
    "alexnet_2": 192 * 31 * 31,
    "alexnet_5": 256 * 15 * 15,
    "inception": 2048,
    "effnet": 1280,
    "swav": 2048,
    "clip": 768,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FULL_SIZE_FEATURES))
def test_full_size_architectures_give_the_documented_feature_sizes(name):
    extractor = build_extractor(name, random_init=True)
    assert extractor.info.kind == "real" and "not a metric" in extractor.info.note
    features = extractor(_photos()[:1])
    assert features.shape == (1, FULL_SIZE_FEATURES[name])
    assert torch.isfinite(features).all()


@pytest.mark.slow
def test_swav_features_equal_the_hub_entrys_own_loading(tmp_path):
    """facebookresearch/swav's hubconf: torchvision resnet50, `module.` stripped, load_state_dict(strict=False)."""
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(3)
    state = _swav_checkpoint(torchvision.models.resnet50())
    torch.save(state, tmp_path / "checkpoints" / SWAV_FILE)
    reference = torchvision.models.resnet50().eval()
    reference.load_state_dict({k.replace("module.", ""): v for k, v in state.items()}, strict=False)
    trunk = torch.nn.Sequential(*list(reference.children())[:-1])  # everything up to and including avgpool
    (swav,) = build_extractors(("swav",), torch_hub_dir=tmp_path)
    images = _photos()[:2]
    with torch.no_grad():
        expected = trunk(_reference_input(images, 224, IMAGENET)).flatten(1)
    torch.testing.assert_close(swav(images), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_clip_weights_file_loads_into_quickgelu_vit_l14(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(4)
    model = open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    extractor = build_extractor("clip", weights={"clip": path}, torch_hub_dir=tmp_path)
    assert extractor.info.kind == "real" and extractor.info.note == ""
    images = _photos()[:1]
    with torch.no_grad():
        expected = model.encode_image(_reference_input(images, 224, OPENAI_CLIP))
    torch.testing.assert_close(extractor(images), expected, rtol=1e-4, atol=1e-4)
