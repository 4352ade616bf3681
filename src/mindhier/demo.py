"""`mindhier demo`: the main job on the embedded default world.

Today it runs the stages that exist — simulate the default subject on `scenes` (or use `--data`),
validate and summarise the dataset — and says which stages are still to come. Finished stages are
reused when their config is unchanged (keyed by a config hash); `fresh=True` recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mindhier.config import MindhierConfig, config_hash, save_resolved, to_dict
from mindhier.data import layout
from mindhier.data.info import describe_dataset, format_summary
from mindhier.fileio import read_json, write_json
from mindhier.progress import ProgressFn

PENDING_STAGES = (
    "teacher features",
    "Stage 1 encoder",
    "tokenizer",
    "generators (coarse_to_fine, static_terminal)",
    "reconstruction",
    "evaluation",
    "report",
)


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    data_dir: Path
    simulated: bool  # False when a finished dataset was reused or --data was given
    lines: list[str]  # what the CLI prints; the last line names the run's summary file


def data_key(cfg: MindhierConfig) -> str:
    """What the simulated dataset depends on."""
    return config_hash({"stimuli": to_dict(cfg.stimuli), "simulator": to_dict(cfg.simulator)})


def _reusable(data_dir: Path, cfg: MindhierConfig) -> bool:
    config_file = data_dir / layout.CONFIG
    if not (data_dir / layout.MANIFEST).is_file() or not config_file.is_file():
        return False
    saved = read_json(config_file, "dataset config").get("config", {})
    return config_hash({"stimuli": saved.get("stimuli"), "simulator": saved.get("simulator")}) == data_key(cfg)


def run_demo(
    cfg: MindhierConfig,
    out: str | Path,
    data: str | Path | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
) -> DemoResult:
    from mindhier.data.simulator import simulate

    run_dir = Path(out)
    simulated = False
    if data is None:
        data_dir = run_dir / "data"
        if fresh or not _reusable(data_dir, cfg):
            simulate(cfg, data_dir, overwrite=True, progress=progress)
            simulated = True
    else:
        data_dir = Path(data)
    summary = describe_dataset(data_dir, cfg.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / layout.CONFIG)
    summary_file = run_dir / "data_info.json"
    write_json(summary_file, summary)
    lines = [
        ("simulated" if simulated else "reused") + f" dataset {data_dir}" if data is None else f"dataset {data_dir}",
        format_summary(summary),
        "the demo currently runs the data stages only; still to come: " + ", ".join(PENDING_STAGES),
        f"summary: {summary_file}",
    ]
    return DemoResult(run_dir, data_dir, simulated, lines)
