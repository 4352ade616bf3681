"""Every file name of a run folder, and of a pipeline folder, in one place; and the readers of what every loader
needs first: a run's kind, its config, and the paths to the other runs and files it was made from.

A **run** is what one `mindhier train …` call writes: a folder of one trained model of one *kind*
(`encoder`, `tokenizer`, `generator`, `diffusion`). Its `config.json` names the kind, so loaders never
guess it from which files exist:

    config.json                {"kind": …, "config": resolved config, "provenance": …, "distributed": …}
    <kind>.safetensors         the weights later stages use (best on val; the final ones when val never scored)
    <kind>_last.safetensors    the weights after the last step
    <kind>_shapes.json         sizes taken from the data and the other models (not from the config)
    inputs.json                generator / diffusion: the encoder and tokenizer runs and caches it was trained on
    features.json              encoder: where its teacher targets came from
    diffusion_model.json       diffusion: the backbone after the `matched` size search
    log.jsonl                  one JSON record per logged step (truncated to the resume point on resume)
    train_summary.json         written when training finishes (its presence marks a finished run)
    resume/step-XXXXXXXX/      resume points: each one folder, renamed into place only when complete
        state/                 model and optimiser tensors (torch.distributed.checkpoint; any process count)
        train_state.pt         step, scheduler, optimiser hyper-parameters, best score (weights_only load)
        rng/rank{r}.pt         every process's CPU and CUDA random state
        manifest.json          written last: every file with its size and sha256
    resume/.step-XXXXXXXX.partial-*/   a resume point being written (removed on the next start)

A **pipeline** folder is what `mindhier demo` writes: one run folder per stage plus reconstructions,
evaluations and the report (`PIPELINE_*` names below).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mindhier.config import MindhierConfig, from_dict
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, write_json
from mindhier.records import contained_path

KINDS = ("encoder", "tokenizer", "generator", "diffusion")

CONFIG = "config.json"
LOG = "log.jsonl"
SUMMARY = "train_summary.json"
INPUTS = "inputs.json"
FEATURES = "features.json"
CONDITION_CALIBRATION = "condition_calibration.safetensors"  # encoder runs with alignment.calibration=moments
LOW_LEVEL = "low_level.safetensors"  # encoder runs with encoder.low_level_px > 0
DIFFUSION_MODEL = "diffusion_model.json"
ENCODER_EVAL = "encoder_eval.json"
RECONS_CONDITION_USE = "condition_use.json"  # beside a scale-wise generator's reconstructions: its condition use

RESUME_DIR = "resume"
RESUME_STATE_DIR = "state"  # torch.distributed.checkpoint files of model + optimiser tensors
RESUME_TRAIN_STATE = "train_state.pt"
RESUME_RNG_DIR = "rng"
RESUME_MANIFEST = "manifest.json"
RESUME_PREFIX = "step-"
PARTIAL_MARK = ".partial-"


def weights_file(kind: str) -> str:
    """The weights later stages load: best on val, else the final ones."""
    return f"{_known(kind)}.safetensors"


def last_weights_file(kind: str) -> str:
    """The weights after the last training step."""
    return f"{_known(kind)}_last.safetensors"


def shapes_file(kind: str) -> str:
    return f"{_known(kind)}_shapes.json"


def val_figure_file(step: int) -> str:
    """Tokenizer: originals, reconstructions and the coarse-to-fine rows at a validation step."""
    return f"val_recon_step{step}.png"


def resume_point_name(step: int) -> str:
    return f"{RESUME_PREFIX}{step:08d}"


def resume_rng_file(rank: int) -> str:
    return f"rank{rank}.pt"


def _known(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"unknown run kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return kind


# ------------------------------------------------------------------------------------------- config.json


def write_run_config(run_dir: str | Path, kind: str, record: dict[str, Any], distributed: dict[str, Any]) -> None:
    """`config.json` of a run: its kind, the resolved config record (config + provenance), and how it ran."""
    write_json(Path(run_dir) / CONFIG, {"kind": _known(kind), **record, "distributed": distributed})


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run folder not found: {run_dir}; train one with `mindhier train … --out {run_dir}`")
    record = read_json(path, "run config")
    if not isinstance(record, dict) or "config" not in record:
        raise ConfigError(f"{path} is not a mindhier run config (no 'config' key); point at a run folder")
    if not isinstance(record["config"], dict) or not isinstance(record.get("kind", ""), str):
        raise ConfigError(f"run config {path} is malformed ('config' must be an object, 'kind' a name); restore it")
    return record


def load_run_config(run_dir: str | Path) -> MindhierConfig:
    """The resolved config a run was trained with."""
    return from_dict(MindhierConfig, read_run_record(run_dir)["config"])


def run_kind(run_dir: str | Path) -> str:
    """The kind a run folder's `config.json` records."""
    record = read_run_record(run_dir)
    kind = record.get("kind")
    if kind is None:
        kind = _legacy_kind(Path(run_dir))
    if kind not in KINDS:
        raise ConfigError(
            f"{Path(run_dir) / CONFIG} names an unknown run kind {kind!r}; valid kinds: {', '.join(KINDS)}"
        )
    return kind


def expect_kind(run_dir: str | Path, kind: str) -> None:
    """Refuse a run of another kind with one line naming both."""
    found = run_kind(run_dir)
    if found != kind:
        raise ConfigError(f"{run_dir} is a {found} run, not a {kind} run; pass a {kind} run folder")


def _legacy_kind(run_dir: Path) -> str | None:
    """Runs written by mindhier 0.1.0.dev0 before `kind` was recorded: the one place that reads the old layout,
    by its distinctive shapes/weights file (kept so those trained weights stay usable)."""
    for kind in ("diffusion", "generator", "encoder", "tokenizer"):
        if (run_dir / (shapes_file(kind) if kind != "tokenizer" else weights_file(kind))).is_file():
            return kind
    return None


# ------------------------------------------------------------------------------ inputs.json: recorded paths

INPUT_SCOPE_LEVELS = 2  # a run's recorded inputs live beside it or in its pipeline folder (demo: generators/NAME)


def relative_input(run_dir: str | Path, path: str | Path) -> str:
    """How a run records the path of one of its inputs: relative to the run folder."""
    return os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())


def resolve_input(run_dir: str | Path, stored: str, what: str = "recorded input", flag: str = "") -> Path:
    """A path recorded in a run folder, relative to it (so runs that were trained together move together). It must
    resolve inside the folder two levels above the run (its siblings, or the demo's pipeline folder); a path
    elsewhere is refused — a run file never sends us anywhere on the disk — and is given with `flag` instead."""
    scope = Path(run_dir).resolve()
    for _ in range(INPUT_SCOPE_LEVELS):
        scope = scope.parent
    return contained_path(scope, os.path.relpath((Path(run_dir).resolve() / str(stored)), scope), what, flag)


# ---------------------------------------------------------------------------------------- pipeline folder

PIPELINE_MARKER = "pipeline.json"  # written first: the folder is a pipeline the demo may rewrite
PIPELINE_DATA = "data"
PIPELINE_ENCODER = "encoder"
PIPELINE_TOKENIZER = "tokenizer"
PIPELINE_GENERATORS = "generators"  # one run folder per routing
PIPELINE_DIFFUSION = "diffusion"  # the diffusion baseline's run folder, and its reconstruction set
PIPELINE_RECONS = "recons"  # one folder per reconstruction set
PIPELINE_EVAL = "eval"  # one folder per reconstruction set: metrics.json + per_image.csv
PIPELINE_STAGE_TIMES = "stage_times.json"
PIPELINE_CONTROL = "shuffled_brain"  # brain inputs permuted across test images
PIPELINE_CEILING = "tokenizer_ceiling"  # the true test images through the tokenizer
PIPELINE_ORACLE = "teacher_oracle"  # a teacher-trained generator given the test images' teacher features
PIPELINE_DIFFUSION_ORACLE = "diffusion_oracle"  # the same for the diffusion baseline (with --with-diffusion)
PIPELINE_LOW_LEVEL = "low_level_start"  # the first routing's generator, its first scales from the low-level image
PIPELINE_REPORT = "report"
PIPELINE_DATA_INFO = "data_info.json"
STAGE_MARKER = ".stage.json"  # a derived output's config key (reuse when unchanged)
