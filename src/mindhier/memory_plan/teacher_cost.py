"""What the frozen teacher costs a training run, in either form `teacher.cache` picks (data/teacher_targets.py):

* cached (`true`): its features on disk — levels × tokens × width float16 values per image (CLIP ViT-L/14's four
  levels, 257 tokens of 768: 1.58 MB; plus 77 × 768 caption tokens with `teacher.text`) — and read in every step;
* on the fly (`false`): its weights on every GPU, its forward pass in every step (no gradients, bf16) and only the
  stimulus read (3 × 224 × 224 float16 in MindEye2's HDF5: 0.3 MB).

CLIP's figures are derived from the open_clip architecture config (a plain ViT, as `stages._clip_shapes` reads
it), without weights: parameters and matmul/attention FLOPs of the layers that run (the image tower stops at the
deepest level; the text tower runs whole on one caption per image). EfficientNet-Lite0 ships with the package,
so its figures are measured on the network (torch's FLOP counter, one 1-image forward).

Inference memory is an estimate: three times the largest intermediate tensor of one image in bf16 (a block's
input, its widest hidden tensor and its output live together; fused attention keeps no score matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError
from mindhier.memory_plan.stages import STIMULUS_BYTES, open_clip_config, teacher_shapes

FEATURE_BYTES = 2  # float16: the feature cache's storage dtype
ACTIVATION_BYTES = 2  # bf16 autocast on the GPU
LIVE_TENSORS = 3  # a block's input, its widest intermediate and its output


@dataclass(frozen=True)
class TeacherCost:
    """The teacher per image: what running it costs, and what caching its output takes."""

    name: str
    parameters: int  # the layers that run (image tower to the deepest level, the text tower when used)
    forward_flops_per_image: int  # matmul, convolution and attention FLOPs of one image (and its caption)
    activation_bytes_per_image: int  # inference peak of one image, bf16 (an estimate; module doc)
    feature_bytes_per_image: int  # what the feature cache stores for one image (float16 levels, text)
    target_bytes_per_image: int  # the same targets as float32 tensors in a training step
    image_bytes: int  # one stimulus as the step reads it on the fly


def teacher_cost(cfg: TeacherConfig) -> TeacherCost:
    shapes = teacher_shapes(cfg)
    values = shapes.queries * sum(shapes.level_dims) + shapes.text_tokens * shapes.text_dim
    if cfg.name == "clip":
        parameters, flops, largest = _clip_cost(cfg, len(shapes.level_dims))
    else:
        parameters, flops, largest = _measured_cost(cfg)
    return TeacherCost(
        name=cfg.name if cfg.name != "clip" else f"clip {cfg.clip_model}",
        parameters=parameters,
        forward_flops_per_image=flops,
        activation_bytes_per_image=LIVE_TENSORS * largest * ACTIVATION_BYTES,
        feature_bytes_per_image=values * FEATURE_BYTES,
        target_bytes_per_image=values * 4,
        image_bytes=STIMULUS_BYTES,
    )


def _vit_block(width: int, hidden: int, tokens: int) -> tuple[int, int]:
    """Parameters and forward FLOPs of one pre-norm ViT block over `tokens` tokens."""
    parameters = 4 * width * width + 4 * width + 2 * width * hidden + hidden + width + 4 * width
    flops = 2 * tokens * (4 * width * width + 2 * width * hidden) + 4 * tokens * tokens * width
    return parameters, flops


def _clip_cost(cfg: TeacherConfig, n_levels: int) -> tuple[int, int, int]:
    from mindhier.teachers.base import resolve_layers
    from mindhier.teachers.clip import mappings_for_depth

    model_cfg = open_clip_config(cfg.clip_model)
    if model_cfg is None:
        raise ConfigError(
            f"the plan cannot size teacher.clip_model={cfg.clip_model!r}; it knows open_clip's plain ViTs"
        )
    vision, embed = model_cfg["vision_cfg"], int(model_cfg["embed_dim"])
    width, patch = vision["width"], vision["patch_size"]
    hidden = int(width * vision.get("mlp_ratio", 4.0))
    tokens = (vision["image_size"] // patch) ** 2 + 1
    depth = max(resolve_layers(cfg, vision["layers"], mappings_for_depth(vision["layers"])))
    block_parameters, block_flops = _vit_block(width, hidden, tokens)
    stem = 3 * patch * patch * width
    parameters = stem + width + tokens * width + 2 * width + depth * block_parameters + 2 * width + width * embed
    flops = 2 * (tokens - 1) * stem + depth * block_flops + n_levels * 2 * tokens * width * embed  # ln_post + proj
    largest = tokens * hidden
    if cfg.text:
        text = model_cfg["text_cfg"]
        t_width, t_tokens = text["width"], text["context_length"]
        t_hidden = int(t_width * text.get("mlp_ratio", 4.0))
        t_block_parameters, t_block_flops = _vit_block(t_width, t_hidden, t_tokens)
        parameters += text["vocab_size"] * t_width + t_tokens * t_width + text["layers"] * t_block_parameters
        flops += text["layers"] * t_block_flops
        largest = max(largest, t_tokens * t_hidden)
    return parameters, flops, largest


def _measured_cost(cfg: TeacherConfig) -> tuple[int, int, int]:
    """EfficientNet-Lite0 (shipped): the modules that run, counted and timed by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from mindhier.teachers import build_teacher

    teacher = build_teacher(cfg)
    model = teacher.model
    used = [model._conv_stem, model._bn0, *model._blocks[: max(teacher.layers)]]
    parameters = sum(p.numel() for module in used for p in module.parameters())
    largest = [0]

    def track(_module, _inputs, output):
        largest[0] = max(largest[0], output.numel())

    hooks = [module.register_forward_hook(track) for module in used]
    try:
        with FlopCounterMode(display=False) as counter:
            teacher(torch.rand(1, 3, cfg.input_px, cfg.input_px))
    finally:
        for hook in hooks:
            hook.remove()
    return parameters, int(counter.get_total_flops()), largest[0]
