"""The training log: `log.jsonl` always, TensorBoard and Weights & Biases when asked (optional extras).

One JSON record per logged step, written by rank 0 only. On resume the log is cut back to the resume
point's step, so the steps between the last resume point and a crash are not repeated. The extra sinks
receive the numeric fields of the same records (`pip install mindhier[tensorboard]` / `[wandb]`); a sink
that is asked for but not installed is a clear error before training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from mindhier import fault_points
from mindhier.errors import ConfigError
from mindhier.fileio import atomic_path


class Sink(Protocol):
    def write(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                "log sink tensorboard needs the tensorboard package; `pip install mindhier[tensorboard]` or drop it"
            ) from err
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, run_dir: Path, config: dict[str, Any], name: str):
        try:
            import wandb
        except ImportError as err:
            raise ConfigError(
                "log sink wandb needs the wandb package; `pip install mindhier[wandb]` or drop it"
            ) from err
        # the run id is the folder's, so a resumed run continues the same W&B run
        self.run = wandb.init(dir=str(run_dir), config=config, name=name, id=_wandb_id(run_dir), resume="allow")

    def write(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]


class Logbook:
    """Appends step records to `log.jsonl` and the extra sinks (rank 0); a no-op on other ranks."""

    def __init__(self, path: Path, enabled: bool, sinks: list[Sink] | None = None):
        self.path, self.enabled, self.sinks = path, enabled, sinks or []

    @classmethod
    def open(cls, run_dir: Path, names: tuple[str, ...], enabled: bool, config: dict[str, Any], kind: str) -> Logbook:
        sinks: list[Sink] = []
        if enabled:
            for name in names:
                sinks.append(TensorBoardSink(run_dir) if name == "tensorboard" else WandbSink(run_dir, config, kind))
        from mindhier import run_layout

        return cls(run_dir / run_layout.LOG, enabled, sinks)

    def cut_to(self, step: int) -> int:
        """Drop the records after `step` (a resume); returns how many were dropped."""
        if not self.enabled or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text().splitlines():
            try:
                keep = json.loads(line).get("step", 0) <= step
            except json.JSONDecodeError:
                keep = False  # a line a crash cut in half
            if keep:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(f"{line}\n" for line in kept))
        return dropped

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as log:
            log.write(json.dumps(record) + "\n")
        fault_points.reach("log.after-write")
        numbers = {k: float(v) for k, v in record.items() if isinstance(v, int | float) and k != "step"}
        for sink in self.sinks:
            sink.write(int(record["step"]), numbers)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
