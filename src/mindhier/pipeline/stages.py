"""`Stages`: run the named stages of a pipeline folder, reusing a finished one while the config sections it depends
on are unchanged (compared by hash), resuming an interrupted training, and recording every stage's time and peak
memory (`stage_times.json`).
"""

from __future__ import annotations

import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from mindhier import run_layout
from mindhier.config import MindhierConfig, config_hash, to_dict
from mindhier.data import layout
from mindhier.fileio import read_json, write_json
from mindhier.run_layout import PIPELINE_EVAL, PIPELINE_RECONS

# the config sections each stage's output depends on
DATA_SECTIONS = ("stimuli", "simulator")
ENCODER_SECTIONS = ("stimuli", "simulator", "data", "teacher", "encoder", "alignment", "train_encoder")
TOKENIZER_SECTIONS = ("stimuli", "simulator", "data", "tokenizer", "train_tokenizer")
GENERATOR_SECTIONS = (*ENCODER_SECTIONS, *TOKENIZER_SECTIONS[3:], "generator", "train_generator")
RECON_SECTIONS = (*GENERATOR_SECTIONS, "sampler", "demo")
DIFFUSION_SECTIONS = (*GENERATOR_SECTIONS, "diffusion", "train_diffusion")  # sized and budgeted on the generator
DIFFUSION_RECON_SECTIONS = (*DIFFUSION_SECTIONS, "ddim")


def section_key(cfg: MindhierConfig | dict, sections: tuple[str, ...]) -> str:
    """Hash of the named config sections (of a config or of a saved config dict)."""
    as_dict = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return config_hash({name: as_dict.get(name) for name in sections})


def _saved_config(folder: Path) -> dict | None:
    """A stage's saved config, as written (a field added since is missing, so the stage counts as another config:
    a new field's default need not reproduce what older code did)."""
    config_file = folder / layout.CONFIG
    return read_json(config_file, "stage config").get("config", {}) if config_file.is_file() else None


def made_with(folder: Path, cfg: MindhierConfig, sections: tuple[str, ...]) -> bool:
    """Whether the stage in `folder` was made with `cfg`'s `sections` (its saved config compared by hash)."""
    saved = _saved_config(folder)
    return saved is not None and section_key(saved, sections) == section_key(cfg, sections)


class Stages:
    """Runs named stages, reusing finished ones, and records their time and peak memory."""

    def __init__(self, cfg: MindhierConfig, fresh: bool, device: str = "cpu", batch_size: int = 1):
        self.cfg, self.fresh = cfg, fresh
        self.device, self.batch_size = device, batch_size  # where networks run; inputs sampled together
        self.record: dict[str, dict] = {}

    def train(self, name: str, folder: Path, sections: tuple[str, ...], train: Callable[[bool], object]) -> bool:
        """A training stage: reuse when finished with this config, resume when interrupted, else train."""
        state = "absent"
        if not self.fresh and made_with(folder, self.cfg, sections):
            state = (
                "finished"
                if (folder / run_layout.SUMMARY).is_file()
                else ("partial" if (folder / run_layout.CONFIG).is_file() else "absent")
            )
        if state == "absent" and folder.exists():
            shutil.rmtree(folder)  # another config (or --fresh): start over
        return self.run(name, lambda: train(state == "partial"), reused=state == "finished")

    def output(self, name: str, folder: Path, sections: tuple[str, ...], make: Callable[[], object]) -> bool:
        """A derived output (reconstructions, evaluations): reuse when made with this config."""
        marker = folder / run_layout.STAGE_MARKER
        key = section_key(self.cfg, sections)
        reused = not self.fresh and marker.is_file() and read_json(marker, "stage marker").get("key") == key
        if not reused:
            self.run(name, make)
            write_json(marker, {"key": key})
            return True
        self.record[name] = {"seconds": 0.0, "reused": True}
        return False

    def scored_row(
        self,
        tag: str,
        run_dir: Path,
        name: str,
        sections: tuple[str, ...],
        make: Callable[[Path], object],
        data_dir: Path,
        **evaluation,
    ) -> Path:
        """One row of a pipeline: its reconstructions (`make(folder)`) and their evaluation (`evaluation`: the
        keyword arguments of `evaluate_reconstructions`), each a reusable output; returns the evaluation folder."""
        from mindhier.metrics.recons_eval import evaluate_reconstructions

        recon_dir, eval_dir = run_dir / PIPELINE_RECONS / name, run_dir / PIPELINE_EVAL / name
        self.output(f"{tag}reconstruct {name}", recon_dir, sections, lambda: make(recon_dir))
        self.output(
            f"{tag}evaluate {name}",
            eval_dir,
            sections,
            lambda: evaluate_reconstructions(recon_dir, data_dir, eval_dir, **evaluation),
        )
        return eval_dir

    def run(self, name: str, fn: Callable[[], object], reused: bool = False) -> bool:
        started = time.perf_counter()
        if not reused:
            fn()
        self.record[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "reused": reused,
        }
        return not reused
