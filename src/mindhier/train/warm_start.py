"""Where a training run's weights start (`train_generator.init`, `train_tokenizer.init`).

    ""            random initialisation (`init_weights` of the model, seeded by the loop's seed)
    prior         the embedded world's pretrained prior that ships in the package (`mindhier.priors`)
    RUN_FOLDER    a run of the same kind: its best-on-val weights
    FILE          a weights file (.safetensors, or a state dict read with `torch.load(weights_only=True)`)
    switti=FILE   generator only: a Switti checkpoint, loaded as the paper starts from it — every key but the
    switti=REPO   modules MindHier adds (`runs.load_generator_init`); REPO (e.g. yresearch/Switti, the default
                  of a bare `switti`) is read from the Hugging Face cache (`mindhier fetch weights switti`)

The weights must fit the model exactly (loaded strictly; a mismatch names the keys), and a prior must have
been trained with the same architecture fields as the run's config (a difference names the fields). The
record (source, sha256; for Switti the tensors loaded, left new and unused) goes into the run's
`inputs.json` and summary, and the report says which start a model had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mindhier import priors, run_layout
from mindhier.checkpoint import config_differences, read_state_dict
from mindhier.config import from_dict, to_dict
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, sha256_file

# config fields that define a model's parameters (and how they are used), per kind
ARCHITECTURE = {
    "tokenizer": ("tokenizer",),
    "generator": ("generator",),
    "diffusion": ("diffusion",),
}
NOT_ARCHITECTURE = {"routing", "cfg_dropout"}  # the generator's routing mask is no parameter: any start fits


@dataclass(frozen=True)
class InitialWeights:
    state: dict[str, torch.Tensor] | None  # None: random initialisation
    record: dict[str, Any]
    switti: bool = False  # a Switti checkpoint: load it with `runs.load_generator_init`, not strictly


SWITTI = "switti"


def switti_checkpoint(spec: str) -> Path:
    """The file of `switti=FILE|REPO` (a bare `switti`: the published Switti-512 from the Hugging Face cache)."""
    from mindhier.published_weights import HUB_WEIGHTS_FILE, SWITTI_REPO, cached_hub_file

    where = spec.partition("=")[2] or SWITTI_REPO
    if Path(where).is_file():
        return Path(where)
    if Path(where).exists() or where.count("/") != 1:
        raise ConfigError(
            f"init {spec!r}: {where} is neither a Switti checkpoint file nor a Hub repository id;"
            " pass a Switti .safetensors file or a Hub id"
        )
    return cached_hub_file(where, HUB_WEIGHTS_FILE, "the Switti checkpoint", "mindhier fetch weights switti")


def initial_weights(spec: str, kind: str, cfg) -> InitialWeights:
    """The start named by `spec` for a model of `kind` configured by `cfg` (a MindhierConfig)."""
    if not spec:
        return InitialWeights(None, {"source": "random"})
    if spec == SWITTI or spec.startswith(SWITTI + "="):
        if kind != "generator":
            raise ConfigError(f"init {spec!r} starts a generator; a {kind} cannot start from Switti")
        path = switti_checkpoint(spec)
        state = read_state_dict(path, "Switti checkpoint")
        return InitialWeights(state, {"source": f"switti:{path}", "sha256": sha256_file(path)}, switti=True)
    if spec == "prior":
        record = priors.card(kind)
        saved = record["config"]
        for section in ARCHITECTURE[kind]:
            ours = {k: v for k, v in to_dict(getattr(cfg, section)).items() if k not in NOT_ARCHITECTURE}
            # a setting the card predates is read at its default (what the prior was trained with)
            recorded = to_dict(from_dict(type(getattr(cfg, section)), saved[section]))
            theirs = {k: v for k, v in recorded.items() if k not in NOT_ARCHITECTURE}
            differences = config_differences(theirs, ours, f"{section}.")
            if differences:
                raise ConfigError(
                    f"the {kind} prior was trained with other {section} settings ({', '.join(differences[:5])}); "
                    f"use the prior's settings or init={kind} run of your own"
                )
        start = {"source": f"prior:{kind}", "sha256": record["sha256"]}
        if kind == "generator":  # the condition its weights were trained on (their unconditional stream's)
            start["condition"] = saved.get("train_generator", {}).get("condition", "brain")
        elif kind == "diffusion":  # trained on the stream's teacher features, recorded in its card's inputs
            start["condition"] = record["inputs"].get("condition", "teacher")
        return InitialWeights(priors.state(kind), start)
    path = Path(spec)
    if path.is_dir():
        run_layout.expect_kind(path, kind)
        path = path / run_layout.weights_file(kind)
    if not path.is_file():
        raise ConfigError(
            f"init {spec!r} is neither `prior`, a {kind} run folder nor a weights file;"
            " pass prior, a run folder of that kind or a .safetensors file"
        )
    start = {"source": str(path), "sha256": sha256_file(path)}
    inputs = path.parent / run_layout.INPUTS
    if kind in ("generator", "diffusion") and inputs.is_file():  # a decoder run: the condition its weights learnt
        recorded = read_json(inputs, f"{kind} inputs")
        start["condition"] = recorded.get("null_condition", recorded.get("condition", "brain"))
    return InitialWeights(read_state_dict(path, f"{kind} start weights"), start)
