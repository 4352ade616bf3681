"""Pretrained priors of the embedded world, shipped inside the package: the analogue of VAR's VQ-VAE and Switti.

The paper never trains its tokenizer or generator from scratch: it takes VAR's VQ-VAE and Switti, pretrained
on millions of images, and fine-tunes the generator on brain data. The embedded world does the same with two
priors trained here, on the pretraining stream (`priors/stream.py`: scenes no dataset ever shows):

    tokenizer.safetensors  + tokenizer.json   the multi-scale VQ tokenizer (fp32: its tokens must be exact)
    generator.safetensors  + generator.json   the scale-wise generator, conditioned on the teacher's feature
                                              hierarchy of the image itself (fp16 storage, fp32 in use)
    diffusion.safetensors  + diffusion.json   the latent diffusion baseline, on the same stream and condition
                                              (its terminal level) with the generator prior's pretraining FLOPs
                                              (fp16 storage but the fp32 latent statistics)

Each `.json` is the prior's model card: the exact command, the config sections it was trained with, seeds,
steps, wall time and threads on the machine named, its metrics, the sha256 of the weights, and the losses of
its first steps, which `mindhier pretrain … --verify` reproduces exactly on a CPU: the shipped weights come
from the shipped code. `mindhier pretrain … --export` writes them from a pretraining run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mindhier.errors import WeightsError
from mindhier.fileio import read_json, sha256_file

KINDS = ("tokenizer", "generator", "diffusion")  # what can be pretrained, exported and started from
SHIPPED = ("tokenizer", "generator", "diffusion")  # what this version ships
FOLDER = Path(__file__).resolve().parent


def weights_path(kind: str) -> Path:
    return FOLDER / f"{_known(kind)}.safetensors"


def card_path(kind: str) -> Path:
    return FOLDER / f"{_known(kind)}.json"


def _known(kind: str) -> str:
    if kind not in KINDS:
        raise WeightsError(f"no prior named {kind!r}; the package ships {', '.join(KINDS)}")
    return kind


def available(kind: str) -> bool:
    return weights_path(kind).is_file() and card_path(kind).is_file()


def card(kind: str) -> dict[str, Any]:
    """The prior's model card (see the module docstring)."""
    if not available(kind):
        raise WeightsError(
            f"the {kind} prior is not in this installation ({weights_path(kind)}); reinstall mindhier, or train one "
            f"with `mindhier pretrain {kind}` and `--export` it"
        )
    return read_json(card_path(kind), f"{kind} prior model card")


def state(kind: str) -> dict[str, torch.Tensor]:
    """The prior's weights as fp32 tensors, after checking the file against the card's sha256."""
    from safetensors.torch import load_file

    record = card(kind)
    path = weights_path(kind)
    if sha256_file(path) != record["sha256"]:
        raise WeightsError(f"{path} does not match its model card's sha256; the installation is damaged, reinstall")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def config_sections(kind: str) -> dict[str, Any]:
    """The config sections the prior was trained with (`tokenizer`, `generator`, `teacher`, …)."""
    return card(kind)["config"]
