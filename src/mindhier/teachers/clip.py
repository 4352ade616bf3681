"""Any open_clip ViT as a teacher: intermediate vision layers as targets, plus caption tokens (docs/method.md §3.2).

The paper's targets come from CLIP ViT-L/14 (OpenAI weights): the hidden states after vision layers 12/16/20/24,
each passed through the tower's post-LayerNorm (`ln_post`) and visual projection (`proj`) **for all 257 tokens**
(CLS + 16 × 16 patches) → four [257, 768] sequences. Layer 24's CLS token is then exactly the model's own image
embedding (`encode_image`), which the tests check. The text target is the text tower's last hidden state after
its final LayerNorm, *not* projected, for all 77 tokens.

Layer ℓ (1-based) is the output of `visual.transformer.resblocks[ℓ-1]`. The paper's mappings are written for
24 layers; a network of depth n uses round(n·k/24) for each layer k (so ViT-B/16's 12 layers give 6/8/10/12 for
`balanced`), and a mapping that collapses two levels on a shallow network is refused (pass `teacher.layers`).

Weights are never downloaded. `teacher.clip_weights` is either a file (loaded here: safetensors, or
`torch.load(weights_only=True)` for .bin/.pt/.pth, then a strict state-dict check) or an open_clip pretrained tag,
looked up read-only in the Hugging Face cache (open_clip's own `hf_hub` location for the tag) and in open_clip's
URL cache. open_clip itself would download a missing tag and, when `torch.load(weights_only=True)` raises a
TypeError, retry without it; we load the file ourselves so neither can happen. A tag's preprocessing (mean/std,
interpolation, resize mode) comes from open_clip's pretrained table, as `create_model` would use it, and so does
its QuickGELU flag, which `create_model('ViT-L-14', pretrained='openai')` only warns about: OpenAI's weights were
trained with QuickGELU, and plain GELU would give slightly different targets. For a weights *file* the
architecture's own settings apply, so OpenAI weights from a file need `teacher.clip_model=ViT-L-14-quickgelu`.

Only open_clip's own `VisionTransformer` towers without attentional pooling are supported (timm and ResNet
towers have no such layers), and for text only open_clip's built-in text transformer (no Hugging Face tower).

Shape letters (docs/glossary.md): N images or captions, C colour channels, H/W pixels, Q vision tokens (1 CLS +
q patches), d the vision tower's width, D projected width (and the text width), U text tokens (77).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindhier.checkpoint import read_state_dict
from mindhier.config import TeacherConfig
from mindhier.errors import ConfigError, WeightsError
from mindhier.teachers.base import TeacherLevel, file_identity, resolve_layers, state_dict_sha256

PAPER_DEPTH = 24
PAPER_MAPPINGS: dict[str, tuple[int, ...]] = {
    "balanced": (12, 16, 20, 24),  # g_m = 8 + 4m, the paper's choice
    "early": (6, 12, 18, 24),  # g_m = 6m, ablation
    "late": (18, 20, 22, 24),  # g_m = 16 + 2m, ablation
}
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def mappings_for_depth(n_layers: int) -> dict[str, tuple[int, ...]]:
    """The paper's 24-layer mappings scaled to `n_layers` (round half up of n·k/24)."""
    return {
        name: tuple(math.floor(n_layers * k / PAPER_DEPTH + 0.5) for k in layers)
        for name, layers in PAPER_MAPPINGS.items()
    }


# ------------------------------------------------------------------------------------------- preprocessing


def clip_preprocess(
    images_NCHW: torch.Tensor,
    size: int | tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
) -> torch.Tensor:
    """open_clip's eval transform on tensors: [0, 1] RGB, any size → normalised [N, 3, H, W], (H, W) = `size`.

    `shortest`: shorter side to H = W (longer side truncated as torchvision's `Resize(int)` does), centre crop;
    `squash`: resize to H × W. Values are clamped to [0, 1] after the antialiased resize, as PIL's uint8
    result is, so bicubic overshoot does not leak into the normalised input.
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if interpolation not in ("bicubic", "bilinear"):
        raise ConfigError(
            f"CLIP preprocessing interpolation {interpolation!r} is not supported (bicubic, bilinear);"
            " use bicubic or bilinear"
        )
    x_NCHW = images_NCHW.float()
    h, w = x_NCHW.shape[-2:]
    if resize_mode == "squash":
        resized = (height, width)
    elif resize_mode == "shortest":
        if height != width:
            raise ConfigError(
                f"CLIP preprocessing 'shortest' needs a square input size, got {height}x{width};"
                " use a square size or resize_mode=squash"
            )
        short, long = min(h, w), max(h, w)
        new_long = int(height * long / short)
        resized = (height, new_long) if h <= w else (new_long, height)
    else:
        raise ConfigError(
            f"CLIP preprocessing resize_mode {resize_mode!r} is not supported (shortest, squash);"
            " use shortest or squash"
        )
    if resized != (h, w):
        x_NCHW = F.interpolate(x_NCHW, size=resized, mode=interpolation, align_corners=False, antialias=True)
        x_NCHW = x_NCHW.clamp(0.0, 1.0)
    top = round((resized[0] - height) / 2.0)  # torchvision's centre_crop offsets
    left = round((resized[1] - width) / 2.0)
    x_NCHW = x_NCHW[..., top : top + height, left : left + width]
    mean_C11 = torch.tensor(mean, dtype=x_NCHW.dtype, device=x_NCHW.device).view(-1, 1, 1)
    std_C11 = torch.tensor(std, dtype=x_NCHW.dtype, device=x_NCHW.device).view(-1, 1, 1)
    return (x_NCHW - mean_C11) / std_C11


# ----------------------------------------------------------------------------------------------- weights


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as err:
        raise WeightsError("the clip teacher needs open_clip; run `pip install open_clip_torch`") from err
    return open_clip


def _download_hint(model_name: str, tag: str) -> str:
    return (
        f"download them once with `python -c \"import open_clip; open_clip.create_model('{model_name}', "
        f"pretrained='{tag}')\"` on a machine with internet, or pass teacher.clip_weights=/path/to/"
        "open_clip_model.safetensors"
    )


def find_cached_weights(model_name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local file of open_clip pretrained tag `tag` for `model_name`, looked up without any network access.

    Searches where open_clip would have put it: the Hugging Face cache for the tag's `hf_hub` repository
    (safetensors preferred), then open_clip's URL cache (`cache_dir` or ~/.cache/clip) for non-OpenAI URLs.
    """
    open_clip = _open_clip()
    tag_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not tag_cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise WeightsError(
            f"teacher.clip_weights={tag!r} is neither a file nor an open_clip pretrained tag of {model_name} "
            f"(known tags: {known}); pass a known tag or a weights file path"
        )
    looked: list[str] = []
    if tag_cfg.get("file"):
        path = Path(tag_cfg["file"])
        if path.is_file():
            return path
        looked.append(str(path))
    if tag_cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # no hub client, so nothing can be in its cache
            try_to_load_from_cache = None
        # open_clip's convention: "org/repo/" names the default file, "org/repo/file.bin" a specific one
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        for name in _hub_candidates(filename):
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir) if try_to_load_from_cache else None
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
            looked.append(f"{repo_id}/{name}")
    # OpenAI's own URLs hold TorchScript archives, which are never loaded here; the timm/ hub copies are used instead
    if tag_cfg.get("url") and "openaipublic" not in tag_cfg["url"]:
        url_cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "clip"
        path = url_cache / Path(tag_cfg["url"]).name
        if path.is_file():
            return path
        looked.append(str(path))
    raise WeightsError(
        f"CLIP weights {model_name}/{tag} not found in the local cache (looked for {', '.join(looked)}); "
        + _download_hint(model_name, tag)
    )


def _hub_candidates(filename: str) -> list[str]:
    """open_clip's file choice for an `hf_hub` entry: a safetensors alternative first, then the named file."""
    if not filename:
        return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    name = Path(filename)
    return ([name.stem + ".safetensors"] if name.suffix in (".bin", ".pth") else []) + [filename]


def load_state_dict_safely(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP weights file, never unpickling code (see `mindhier.checkpoint.read_state_dict`)."""
    return read_state_dict(path, "CLIP weights")


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """open_clip's `load_checkpoint` adjustments for ViT checkpoints, then a strict load."""
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)  # old single-module layout → `.text` tower
    for name in ("logit_scale", "logit_bias"):
        target = getattr(model, name, None)
        if name in state and target is not None and state[name].ndim != target.ndim:
            state[name] = state[name].reshape(target.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    state.pop("text.transformer.embeddings.position_ids", None)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when not strict
        reason = (str(err).splitlines() or [""])[-1].strip()[:200]
        raise WeightsError(
            f"CLIP weights {path} do not fit the open_clip model ({reason}); check teacher.clip_model"
        ) from err
    if missing or unexpected:
        raise WeightsError(
            f"CLIP weights {path} do not fit the open_clip model (missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]}); check teacher.clip_model"
        )


# ----------------------------------------------------------------------------------------------- teacher


class CLIPTeacher:
    """open_clip ViT layers (post-LN + projection, all tokens) as levels; optional caption tokens.

    `model` injects a ready open_clip model (tests: a tiny random-init one); `cache_dir` is where pretrained
    tags are looked up (default: the Hugging Face cache and ~/.cache/clip, as open_clip uses them).
    """

    name = "clip"

    def __init__(
        self,
        cfg: TeacherConfig,
        device: str | torch.device = "cpu",
        model: nn.Module | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if cfg.name != "clip":
            raise ConfigError(f"CLIPTeacher needs teacher.name=clip, got {cfg.name!r}; set teacher.name=clip")
        self.cfg = cfg
        self.device = torch.device(device)
        self.quick_gelu = False
        if model is None:
            model, self._weights = self._load(cfg, cache_dir)
        else:
            self._weights = None  # hashed on first describe()
            self.quick_gelu = _uses_quick_gelu(model)
        self.model = model.to(self.device).eval().requires_grad_(False)
        visual = self.model.visual
        _check_vision_tower(visual, cfg.clip_model)
        n_layers = len(visual.transformer.resblocks)
        self.layers = resolve_layers(cfg, n_layers, mappings_for_depth(n_layers))
        grid_h, grid_w = visual.grid_size
        self.n_tokens = 1 + grid_h * grid_w
        self.dim = int(visual.proj.shape[1]) if visual.proj is not None else int(visual.transformer.width)
        self.levels = tuple(TeacherLevel(f"layer{layer}", layer, self.n_tokens, self.dim) for layer in self.layers)
        self.preprocess_cfg = _preprocess_cfg(self.model)
        self._tokenizer = None

    # ---------------------------------------------------------------------------------- loading

    def _load(self, cfg: TeacherConfig, cache_dir) -> tuple[nn.Module, dict]:
        open_clip = _open_clip()
        if ":" in cfg.clip_model or open_clip.get_model_config(cfg.clip_model) is None:
            raise ConfigError(
                f"teacher.clip_model={cfg.clip_model!r} is not a built-in open_clip architecture "
                "(e.g. ViT-L-14, ViT-L-14-quickgelu, ViT-B-16; see open_clip.list_models())"
            )
        tag_cfg: dict = {}
        weights = Path(cfg.clip_weights).expanduser()
        if weights.is_file():
            path, source = weights, {"source": "file"}
        elif not open_clip.get_pretrained_cfg(cfg.clip_model, cfg.clip_weights) and (
            weights.suffix or os.sep in cfg.clip_weights
        ):
            raise WeightsError(
                f"CLIP weights file {weights} not found; pass an existing file or an open_clip pretrained tag "
                "(e.g. teacher.clip_weights=openai)"
            )
        else:
            path = find_cached_weights(cfg.clip_model, cfg.clip_weights, cache_dir)
            tag_cfg = open_clip.get_pretrained_cfg(cfg.clip_model, cfg.clip_weights)
            source = {"source": "tag", "tag": cfg.clip_weights}
        self.quick_gelu = bool(tag_cfg.get("quick_gelu", False)) or bool(
            open_clip.get_model_config(cfg.clip_model).get("quick_gelu", False)
        )
        try:
            with _quiet_random_init_warning():
                model = open_clip.create_model(
                    cfg.clip_model,
                    pretrained=None,  # the weights are loaded below, safely; nothing is fetched
                    device="cpu",
                    force_quick_gelu=self.quick_gelu,
                    force_preprocess_cfg={k: tag_cfg[k] for k in PREPROCESS_KEYS if k in tag_cfg},
                    pretrained_image=False,
                    pretrained_text=False,
                )
        except Exception as err:
            raise ConfigError(
                f"cannot build open_clip model {cfg.clip_model} ({err}); check teacher.clip_model"
            ) from err
        _load_into(model, load_state_dict_safely(path), path)
        return model, {**source, **file_identity(path)}

    # ---------------------------------------------------------------------------------- images

    def preprocess(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB, any size → CLIP's normalised input [N, 3, H, W]."""
        pp = self.preprocess_cfg
        return clip_preprocess(
            images_NCHW.to(self.device), pp["size"], pp["mean"], pp["std"], pp["interpolation"], pp["resize_mode"]
        )

    def __call__(self, images_NCHW: torch.Tensor) -> list[torch.Tensor]:
        # no_grad rather than inference_mode: the targets later meet autograd inside the losses
        with torch.no_grad():
            x_NCHW = self.preprocess(images_NCHW)
            visual = self.model.visual
            out = visual.forward_intermediates(
                x_NCHW,
                indices=[layer - 1 for layer in self.layers],
                stop_early=True,  # nothing after the deepest chosen layer is run
                intermediates_only=True,
                output_fmt="NLC",
                output_extra_tokens=True,
            )
            levels = []
            for cls_N1d, patches_Nqd in zip(out["image_intermediates_prefix"], out["image_intermediates"], strict=True):
                tokens_NQd = visual.ln_post(torch.cat([cls_N1d, patches_Nqd], dim=1))
                tokens_NQD = tokens_NQd @ visual.proj if visual.proj is not None else tokens_NQd  # no projection: D = d
                levels.append(tokens_NQD.float().contiguous())
            return levels

    # ---------------------------------------------------------------------------------- text

    @property
    def has_text(self) -> bool:
        return self.cfg.text

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Captions → [N, U, D]: last hidden state after `ln_final`, all U tokens, not projected."""
        if not self.has_text:
            raise ConfigError("caption features are off; set teacher.text=true to use CLIP's text tower")
        tower = _text_tower(self.model, self.cfg.clip_model)
        ids_NU = self.tokenizer(list(captions)).to(self.device)
        with torch.no_grad():
            cast_dtype = tower.transformer.get_cast_dtype()
            x_NUD = tower.token_embedding(ids_NU).to(cast_dtype) + tower.positional_embedding.to(cast_dtype)
            x_NUD = tower.transformer(x_NUD, attn_mask=tower.attn_mask)
            return tower.ln_final(x_NUD).float().contiguous()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            open_clip = _open_clip()
            model_cfg = open_clip.get_model_config(self.cfg.clip_model) or {}
            if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name"):
                raise ConfigError(
                    f"{self.cfg.clip_model} uses a Hugging Face tokenizer; text features need open_clip's built-in one"
                )
            self._tokenizer = open_clip.get_tokenizer(self.cfg.clip_model)
        return self._tokenizer

    @property
    def text_context(self) -> int:
        return int(_text_tower(self.model, self.cfg.clip_model).positional_embedding.shape[0])

    @property
    def text_dim(self) -> int:
        return int(_text_tower(self.model, self.cfg.clip_model).ln_final.weight.shape[0])

    # ---------------------------------------------------------------------------------- identity

    def describe(self) -> dict:
        if self._weights is None:
            self._weights = {"source": "injected", "state_sha256": state_dict_sha256(self.model)}
        pp = self.preprocess_cfg
        return {
            "name": self.name,
            "model": self.cfg.clip_model,
            "weights": self._weights,
            "quick_gelu": self.quick_gelu,
            "layers": list(self.layers),
            "tokens": self.n_tokens,
            "dims": [level.dim for level in self.levels],
            "target": "ln_post + proj, all tokens",
            "preprocess": {
                "size": list(pp["size"]) if isinstance(pp["size"], (tuple, list)) else [pp["size"]] * 2,
                "mean": [float(v) for v in pp["mean"]],
                "std": [float(v) for v in pp["std"]],
                "interpolation": pp["interpolation"],
                "resize_mode": pp["resize_mode"],
            },
            "text": {"context": self.text_context, "dim": self.text_dim} if self.has_text else None,
        }


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" root-logger warning: the weights are loaded right after.

    While no handler is configured, a NullHandler also keeps `logging.warning` from calling `basicConfig`.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    drop = _DropRandomInitWarning()
    if placeholder is not None:
        root.addHandler(placeholder)
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if placeholder is not None:
            root.removeHandler(placeholder)


def _check_vision_tower(visual: nn.Module, model_name: str) -> None:
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        raise ConfigError(
            f"teacher.clip_model={model_name} has no plain open_clip ViT vision tower (timm, ResNet and attention-"
            "pooled towers have no per-layer token targets); use a ViT model such as ViT-L-14"
        )


def _text_tower(model: nn.Module, model_name: str) -> nn.Module:
    # open_clip.CLIP keeps its text tower's parts on the model itself; CustomTextCLIP has them under `.text`
    tower = getattr(model, "text", None)
    tower = model if tower is None else tower
    parts = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if any(getattr(tower, part, None) is None for part in parts) or getattr(tower, "cls_emb", None) is not None:
        raise ConfigError(
            f"teacher.clip_model={model_name} has no plain open_clip text transformer; set teacher.text=false"
        )
    return tower


def _preprocess_cfg(model: nn.Module) -> dict:
    from open_clip import get_model_preprocess_cfg

    from_model = get_model_preprocess_cfg(model)
    pp = {"size": model.visual.image_size, "interpolation": "bicubic", "resize_mode": "shortest"}
    pp.update({k: v for k, v in from_model.items() if k in ("size", *PREPROCESS_KEYS)})
    return pp


def _uses_quick_gelu(model: nn.Module) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())
