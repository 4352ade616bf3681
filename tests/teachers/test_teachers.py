"""Teachers: the real Lite0 hierarchy and a tiny random-init open_clip ViT through the real CLIP code path."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mindhier.backbones import efficientnet_lite
from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError, WeightsError
from mindhier.teachers import Teacher, TeacherLevel, build_teacher, resolve_layers
from mindhier.teachers.clip import PAPER_MAPPINGS, CLIPTeacher, clip_preprocess, find_cached_weights, mappings_for_depth
from mindhier.teachers.efficientnet import MAPPINGS, EfficientNetTeacher

TINY_CLIP = "mindhier-test-tiny-vit"
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _images(n: int = 3, height: int = 40, width: int = 52) -> torch.Tensor:
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------------- layer choice


def test_resolve_layers_prefers_explicit_layers_and_checks_the_range():
    mappings = {"balanced": (2, 4), "early": (1, 4), "late": (3, 4)}
    assert resolve_layers(TeacherConfig(mapping="early"), 4, mappings) == (1, 4)
    assert resolve_layers(TeacherConfig(mapping="early", layers=(2, 3)), 4, mappings) == (2, 3)
    with pytest.raises(ConfigError, match=r"out of range .* layers 1\.\.4"):
        resolve_layers(TeacherConfig(layers=(2, 5)), 4, mappings)
    with pytest.raises(ConfigError, match="not strictly increasing"):
        resolve_layers(TeacherConfig(mapping="balanced"), 4, {"balanced": (2, 2, 4)})


def test_clip_mappings_are_the_papers_at_24_layers_and_scale_with_depth():
    assert mappings_for_depth(24) == PAPER_MAPPINGS
    assert mappings_for_depth(24)["balanced"] == (12, 16, 20, 24)  # g_m = 8 + 4m
    assert mappings_for_depth(12) == {"balanced": (6, 8, 10, 12), "early": (3, 6, 9, 12), "late": (9, 10, 11, 12)}
    assert mappings_for_depth(32)["balanced"] == (16, 21, 27, 32)


# ------------------------------------------------------------------------------------------- EfficientNet


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetTeacher(TeacherConfig(grid=2, input_px=64))


def test_lite0_levels_follow_the_mapping_and_block_widths(lite0):
    assert isinstance(lite0, Teacher)
    assert lite0.layers == MAPPINGS["balanced"] == (5, 8, 11, 16)
    assert lite0.levels == (
        TeacherLevel("block5", 5, 5, 40),
        TeacherLevel("block8", 8, 5, 80),
        TeacherLevel("block11", 11, 5, 112),
        TeacherLevel("block16", 16, 5, 320),
    )
    late = EfficientNetTeacher(TeacherConfig(mapping="late", grid=3, input_px=64))
    assert [(level.layer, level.tokens, level.dim) for level in late.levels] == [
        (11, 10, 112),
        (13, 10, 192),
        (15, 10, 192),
        (16, 10, 320),
    ]
    outputs = late(_images())
    assert [tuple(o.shape) for o in outputs] == [(3, 10, 112), (3, 10, 192), (3, 10, 192), (3, 10, 320)]
    assert all(o.dtype == torch.float32 for o in outputs)


def test_lite0_tokens_are_global_mean_then_pooled_grid(lite0):
    """Parity with a naive reference: forward hooks on the real blocks, hand-written pooling."""
    teacher = EfficientNetTeacher(TeacherConfig(grid=2, input_px=128, layers=(5, 16)))
    captured = {}
    handles = [
        teacher.model._blocks[layer - 1].register_forward_hook(lambda m, i, o, layer=layer: captured.update({layer: o}))
        for layer in (5, 16)
    ]
    head_calls = []
    handles.append(teacher.model._conv_head.register_forward_hook(lambda *a: head_calls.append(1)))
    try:
        tokens = teacher(_images())
    finally:
        for handle in handles:
            handle.remove()
    assert not head_calls  # the head is never run
    for level, layer in zip(tokens, (5, 16), strict=True):
        f_NChw = captured[layer]
        n, c, h, w = f_NChw.shape
        assert h % 2 == 0 and w % 2 == 0
        quadrants_NC22 = f_NChw.reshape(n, c, 2, h // 2, 2, w // 2).mean(dim=(3, 5))
        expected = torch.cat([f_NChw.mean(dim=(2, 3))[:, None], quadrants_NC22.flatten(2).transpose(1, 2)], dim=1)
        torch.testing.assert_close(level, expected, rtol=1e-5, atol=1e-5)


def test_lite0_stops_after_the_deepest_chosen_block():
    teacher = EfficientNetTeacher(TeacherConfig(grid=2, input_px=64, layers=(2, 4)))
    ran = []
    handle = teacher.model._blocks[4].register_forward_hook(lambda *a: ran.append(1))
    try:
        outputs = teacher(_images())
    finally:
        handle.remove()
    assert not ran
    assert [tuple(o.shape) for o in outputs] == [(3, 5, 24), (3, 5, 40)]


def test_lite0_preprocess_resizes_and_rescales(lite0):
    x = lite0.preprocess(torch.ones(2, 3, 30, 90))
    assert x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x, torch.ones_like(x))  # white → +1
    assert lite0.preprocess(torch.zeros(1, 3, 64, 64)).eq(-1).all()


def test_lite0_outputs_carry_no_graph_but_can_be_loss_targets(lite0):
    images = _images().requires_grad_(True)
    targets = lite0(images)
    assert not any(t.requires_grad for t in targets)
    prediction = torch.zeros_like(targets[-1], requires_grad=True)
    F.mse_loss(prediction, targets[-1]).backward()  # inference-mode tensors would fail here
    assert prediction.grad is not None


def test_lite0_describe_names_layers_sizes_and_weights(lite0):
    described = lite0.describe()
    json.dumps(described)
    weights = efficientnet_lite.weights_file("efficientnet-lite0")
    assert described["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert described["layers"] == [5, 8, 11, 16] and described["grid"] == 2 and described["input_px"] == 64
    other = EfficientNetTeacher(TeacherConfig(grid=2, input_px=64, mapping="early")).describe()
    assert other["layers"] == [3, 5, 8, 16] and other != described
    random_init = EfficientNetTeacher(
        TeacherConfig(grid=2, input_px=64), model=efficientnet_lite.build("efficientnet-lite0", pretrained=False)
    )
    assert random_init.describe()["weights"]["source"] == "injected"
    assert not torch.allclose(random_init(_images())[0], lite0(_images())[0])


def test_lite0_has_no_text_and_rejects_bad_layers(lite0):
    assert not lite0.has_text
    with pytest.raises(ConfigError, match="no text tower"):
        lite0.encode_text(["a cat"])
    with pytest.raises(ConfigError, match=r"layers 1\.\.16"):
        EfficientNetTeacher(TeacherConfig(layers=(5, 17)))
    assert isinstance(build_teacher(TeacherConfig(grid=2, input_px=64)), EfficientNetTeacher)


# ------------------------------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip_arch(tmp_path_factory):
    """Register a tiny ViT architecture with open_clip (public `add_model_config`); nothing is downloaded."""
    path = tmp_path_factory.mktemp("open_clip_cfg") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture(scope="module")
def tiny_clip_model(tiny_clip_arch):
    torch.manual_seed(0)
    return open_clip.create_model(tiny_clip_arch, pretrained=None).eval()


def _clip_cfg(**changes) -> TeacherConfig:
    return TeacherConfig(**{"name": "clip", "clip_model": TINY_CLIP, "mapping": "early", **changes})


def test_clip_levels_are_all_tokens_of_each_layer(tiny_clip_model):
    teacher = CLIPTeacher(_clip_cfg(), model=tiny_clip_model)
    assert isinstance(teacher, Teacher)
    assert teacher.layers == (1, 2, 3, 4)  # "early" (6, 12, 18, 24) scaled to 4 layers
    n_tokens = 1 + (32 // 8) ** 2
    assert teacher.levels == tuple(TeacherLevel(f"layer{k}", k, n_tokens, 32) for k in (1, 2, 3, 4))
    outputs = teacher(_images(2))
    assert [tuple(o.shape) for o in outputs] == [(2, n_tokens, 32)] * 4
    with pytest.raises(ConfigError, match="not strictly increasing"):
        CLIPTeacher(_clip_cfg(mapping="balanced"), model=tiny_clip_model)  # 12/16/20/24 → 2, 3, 3, 4
    chosen = CLIPTeacher(_clip_cfg(layers=(2, 4)), model=tiny_clip_model)
    assert [level.layer for level in chosen.levels] == [2, 4]


def test_clip_last_cls_token_equals_encode_image(tiny_clip_model):
    teacher = CLIPTeacher(_clip_cfg(), model=tiny_clip_model)
    images = _images(3)
    last = teacher(images)[-1]
    with torch.no_grad():
        embedding = tiny_clip_model.encode_image(teacher.preprocess(images), normalize=False)
    torch.testing.assert_close(last[:, 0], embedding, rtol=1e-5, atol=1e-6)


def test_clip_levels_match_hooks_on_the_resblocks(tiny_clip_model):
    """Every chosen layer, every token: post-LN + projection of that resblock's output."""
    teacher = CLIPTeacher(_clip_cfg(layers=(1, 3)), model=tiny_clip_model)
    visual = tiny_clip_model.visual
    captured = {}
    handles = [
        visual.transformer.resblocks[k].register_forward_hook(lambda m, i, o, k=k: captured.update({k: o}))
        for k in range(4)
    ]
    images = _images(2)
    try:
        with torch.no_grad():
            tiny_clip_model.encode_image(teacher.preprocess(images))
    finally:
        for handle in handles:
            handle.remove()
    outputs = teacher(images)
    for output, layer in zip(outputs, (1, 3), strict=True):
        hidden_NQd = captured[layer - 1]
        if not visual.transformer.batch_first:
            hidden_NQd = hidden_NQd.transpose(0, 1)
        expected = visual.ln_post(hidden_NQd) @ visual.proj
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)


def test_clip_text_is_the_unprojected_last_hidden_state(tiny_clip_model):
    teacher = CLIPTeacher(_clip_cfg(text=True), model=tiny_clip_model)
    captions = ["a red bus on a street", "two cats asleep on a sofa"]
    text_NUD = teacher.encode_text(captions)
    assert text_NUD.shape == (2, 77, 64) and text_NUD.dtype == torch.float32
    assert not torch.allclose(text_NUD[0], text_NUD[1])
    tokens = teacher.tokenizer(captions)
    pooled = text_NUD[torch.arange(2), tokens.argmax(dim=-1)] @ tiny_clip_model.text_projection
    with torch.no_grad():
        torch.testing.assert_close(pooled, tiny_clip_model.encode_text(tokens), rtol=1e-5, atol=1e-6)
    assert teacher.describe()["text"] == {"context": 77, "dim": 64}
    no_text = CLIPTeacher(_clip_cfg(), model=tiny_clip_model)
    assert not no_text.has_text
    with pytest.raises(ConfigError, match=r"teacher\.text=true"):
        no_text.encode_text(captions)


@pytest.mark.parametrize(
    ("rows", "cols", "size", "resize_mode"),
    [(400, 300, 32, "shortest"), (300, 512, 224, "shortest"), (300, 512, 224, "squash"), (100, 150, 224, "shortest")],
)
def test_clip_preprocess_matches_open_clips_pil_transform(rows, cols, size, resize_mode):
    from skimage.data import astronaut

    image_HWC = np.ascontiguousarray(astronaut()[:rows, :cols])  # 512 × 512 photograph shipped with scikit-image
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    reference = open_clip.image_transform(size, is_train=False, mean=mean, std=std, resize_mode=resize_mode)(
        Image.fromarray(image_HWC)
    )
    images_NCHW = torch.from_numpy(image_HWC).permute(2, 0, 1)[None].float() / 255.0
    ours = clip_preprocess(images_NCHW, size, mean, std, "bicubic", resize_mode)[0]
    assert ours.shape == reference.shape == (3, size, size)
    difference = (ours - reference).abs()
    # PIL resamples in 8-bit fixed point: edges differ by a few grey levels, the bulk by well under one
    assert difference.mean() < 0.01 and difference.max() < 0.1


def test_clip_describe_is_json_and_tracks_layers_and_weights(tiny_clip_model):
    described = CLIPTeacher(_clip_cfg(), model=tiny_clip_model).describe()
    json.dumps(described)
    assert described["layers"] == [1, 2, 3, 4] and described["tokens"] == 17 and described["dims"] == [32] * 4
    assert described["weights"]["source"] == "injected" and described["text"] is None
    assert described["preprocess"]["size"] == [32, 32]
    assert CLIPTeacher(_clip_cfg(layers=(2, 4)), model=tiny_clip_model).describe()["layers"] == [2, 4]


def test_clip_loads_a_weights_file_safely(tiny_clip_model, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_clip_model.state_dict().items()}
    safe_path = tmp_path / "tiny.safetensors"
    save_file(state, str(safe_path))
    pickle_path = tmp_path / "tiny.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pickle_path)

    images = _images(2)
    reference = CLIPTeacher(_clip_cfg(), model=tiny_clip_model)(images)
    for path in (safe_path, pickle_path):
        teacher = build_teacher(_clip_cfg(clip_weights=str(path)))
        for ours, expected in zip(teacher(images), reference, strict=True):
            torch.testing.assert_close(ours, expected)
        weights = teacher.describe()["weights"]
        assert weights["source"] == "file" and weights["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    evil_path = tmp_path / "evil.pt"
    torch.save({"visual.proj": _Payload()}, evil_path)
    with pytest.raises(WeightsError, match=r"cannot load CLIP weights .* safely"):
        build_teacher(_clip_cfg(clip_weights=str(evil_path)))
    assert not _PAYLOAD_RAN

    wrong_path = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(64, 32)}, str(wrong_path))
    with pytest.raises(WeightsError, match=r"do not fit the open_clip model \(missing"):
        build_teacher(_clip_cfg(clip_weights=str(wrong_path)))
    save_file({**state, "visual.proj": torch.zeros(32, 64)}, str(wrong_path))
    with pytest.raises(WeightsError, match=r"do not fit the open_clip model \(.*visual\.proj"):
        build_teacher(_clip_cfg(clip_weights=str(wrong_path)))


_PAYLOAD_RAN: list[int] = []


def _record_payload_ran() -> list[int]:
    _PAYLOAD_RAN.append(1)
    return _PAYLOAD_RAN


class _Payload:
    """Unpickling this calls a function: exactly what weights_only loading must refuse."""

    def __reduce__(self):
        return (_record_payload_ran, ())


def test_absent_clip_weights_fail_fast_without_network(tmp_path, monkeypatch):
    import urllib.request

    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    start = time.perf_counter()
    with pytest.raises(WeightsError) as caught:
        CLIPTeacher(TeacherConfig(name="clip", clip_model="ViT-L-14", clip_weights="openai"), cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "ViT-L-14/openai not found in the local cache" in message
    assert "open_clip.create_model('ViT-L-14', pretrained='openai')" in message
    assert "teacher.clip_weights=" in message
    assert time.perf_counter() - start < 5.0

    with pytest.raises(WeightsError, match="not found; pass an existing file"):
        CLIPTeacher(TeacherConfig(name="clip", clip_weights=str(tmp_path / "missing.safetensors")))
    with pytest.raises(WeightsError, match=r"known tags: .*laion2b_s32b_b82k"):
        CLIPTeacher(TeacherConfig(name="clip", clip_weights="no-such-tag"), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a built-in open_clip architecture"):
        CLIPTeacher(TeacherConfig(name="clip", clip_model="hf-hub:org/model"))


def test_pretrained_tag_is_found_in_a_hugging_face_cache(tmp_path):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/file}."""
    repo = tmp_path / "models--timm--vit_large_patch14_clip_224.openai"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"pickle")
    assert find_cached_weights("ViT-L-14", "openai", tmp_path).name == "open_clip_pytorch_model.bin"
    (snapshot / "open_clip_model.safetensors").write_bytes(b"safe")
    assert find_cached_weights("ViT-L-14", "openai", tmp_path).name == "open_clip_model.safetensors"


def test_a_cached_pretrained_tag_loads_with_its_preprocessing(tiny_clip_model, tmp_path, monkeypatch):
    """The tag route end to end: open_clip's table → the Hugging Face cache → safe load; tag mean/std applied."""
    from safetensors.torch import save_file

    tag_cfg = {"hf_hub": "mindhier/tiny-vit/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "quick_gelu": False}
    real_lookup = open_clip.get_pretrained_cfg
    monkeypatch.setattr(
        open_clip,
        "get_pretrained_cfg",
        lambda model, tag: dict(tag_cfg) if (model, tag) == (TINY_CLIP, "tiny-tag") else real_lookup(model, tag),
    )
    revision = "fedcba9876543210fedcba9876543210fedcba98"
    repo = tmp_path / "models--mindhier--tiny-vit"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    state = {k: v.contiguous() for k, v in tiny_clip_model.state_dict().items()}
    save_file(state, str(repo / "snapshots" / revision / "open_clip_model.safetensors"))

    teacher = CLIPTeacher(_clip_cfg(clip_weights="tiny-tag"), cache_dir=tmp_path)
    described = teacher.describe()
    assert described["weights"]["source"] == "tag" and described["weights"]["file"] == "open_clip_model.safetensors"
    assert described["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    white = torch.ones(1, 3, 32, 32)
    torch.testing.assert_close(teacher.preprocess(white), torch.ones(1, 3, 32, 32))  # (1 - 0.5) / 0.5
    images = _images(2)
    with torch.no_grad():
        expected = tiny_clip_model.encode_image(teacher.preprocess(images))
    torch.testing.assert_close(teacher(images)[-1][:, 0], expected, rtol=1e-5, atol=1e-6)


def test_real_clip_config_values_are_the_papers():
    """Without weights: the default config builds ViT-L/14's 24-layer, 257-token, 768-d geometry."""
    config = open_clip.get_model_config("ViT-L-14")
    assert config["vision_cfg"]["layers"] == 24 and config["embed_dim"] == 768
    assert (config["vision_cfg"]["image_size"] // config["vision_cfg"]["patch_size"]) ** 2 + 1 == 257
    assert mappings_for_depth(config["vision_cfg"]["layers"])["balanced"] == (12, 16, 20, 24)


@pytest.mark.slow
def test_full_size_vit_l14_geometry_matches_the_paper():
    """Random-init ViT-L/14 (QuickGELU, as OpenAI's weights): 4 × [257, 768] image targets and [77, 768] text."""
    model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None).eval()
    teacher = CLIPTeacher(TeacherConfig(name="clip", clip_model="ViT-L-14-quickgelu", text=True), model=model)
    assert teacher.layers == (12, 16, 20, 24) and teacher.quick_gelu
    images = _images(1, 240, 320)
    levels = teacher(images)
    assert [tuple(level.shape) for level in levels] == [(1, 257, 768)] * 4
    with torch.no_grad():
        embedding = model.encode_image(teacher.preprocess(images))
    torch.testing.assert_close(levels[-1][:, 0], embedding, rtol=1e-4, atol=1e-5)
    assert teacher.encode_text(["a photograph of a dog"]).shape == (1, 77, 768)


def test_clip_targets_on_the_fly_equal_its_cache_levels_and_text(tiny_clip_model, tiny_dataset, tmp_path):
    # teacher.cache=false with a text tower: the captions' features too are the cache's, bit for bit
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.data.nsd import open_dataset
    from mindhier.data.online_targets import OnlineTargets
    from mindhier.data.target_lookup import TargetLookup

    _, result = tiny_dataset
    teacher = CLIPTeacher(_clip_cfg(text=True), model=tiny_clip_model)
    cached = TargetLookup(build_feature_cache(result.root, teacher, out=tmp_path / "features", batch_size=7))
    assert cached.has_text
    with open_dataset(result.root) as dataset:
        online = OnlineTargets(dataset, teacher, batch_size=4)
        wanted = cached.cache.indices[[9, 2, 2, 30, 0]]
        assert online.text_shape == cached.text_shape
        assert torch.equal(online.get_text(wanted), cached.get_text(wanted))
        for a, b in zip(online.get(wanted), cached.get(wanted), strict=True):
            assert torch.equal(a, b)
