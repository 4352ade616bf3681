"""One training call's shared machinery; each stage's loop (`train/encoder.py`, …) stays explicit and uses it.

    run = TrainingSession.start(run_dir, kind, cfg, loop_cfg, world, resume=…)   config.json, resume check
    model = …; wrapped = run.attach(model, units, make_optimizer, make_scheduler, higher_is_better)
    for step in run.steps():
        for rows, last in run.micro_batches(n_rows):                        gradient accumulation
            with run.accumulating(last):
                with run.autocast():
                    loss = …
                run.backward(loss, share)                                   (loss · share).backward(), logged
        extra = run.optimizer_step()                                        clip, step, schedule, zero grads
        extra |= run.evaluate(step + 1, compute_metrics, "val_loss")        best-on-val weights
        run.end_step(step + 1, extra)                                       log, progress, resume point
    run.finish(summary)                                                     final weights, summary

What it owns: the run folder (`config.json` with the run's kind and how it ran; on resume, the same config
sections as before), the processes (`World`), the wrapped model (DDP / FSDP, activation checkpointing), the
optimiser and schedule, the JSONL log (+ optional sinks), the best-on-val keeper, resume points, and the
summary. Only rank 0 writes files, except the per-process shards of a resume point.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn
from typing_extensions import Unpack

from mindhier import fault_points, run_layout
from mindhier.checkpoint import config_differences, save_state
from mindhier.config import MindhierConfig, resolved_record, to_dict
from mindhier.config.loop import LoopConfig
from mindhier.errors import ConfigError, NonFiniteTrainingError
from mindhier.fileio import read_json, remove_stale_temporaries, write_json
from mindhier.progress import ProgressFn, report
from mindhier.records import parse_record
from mindhier.train.batches import micro_slices
from mindhier.train.best_keeper import BestKeeper
from mindhier.train.logbook import Logbook
from mindhier.train.parallel import World, WrappedModel, autocast, autocast_dtype, wrap_model
from mindhier.train.random_streams import seed_process
from mindhier.train.resume import find_resume_point, load_resume_point, remove_partials, write_resume_point

# loop fields a resumed run may change (process count, memory, sinks), not what it optimises
RUNTIME_FIELDS = ("strategy", "precision", "activation_checkpointing", "micro_batch", "log_sinks")
FIRST_STEPS_LOGGED = 20


class Launch(TypedDict, total=False):
    """How one training call runs: the keyword arguments every `train_*` function takes besides its inputs.
    Under torchrun the CLI passes the process's device, rank and world size (the process group is its own)."""

    resume: bool  # continue the run in the folder from its newest complete resume point
    device: str | torch.device
    rank: int
    world_size: int
    progress: ProgressFn | None  # progress(task, done, total[, info]); rank 0's only


class TrainingSession:
    def __init__(
        self,
        run_dir: Path,
        kind: str,
        cfg: MindhierConfig,
        loop: LoopConfig,
        world: World,
        resume: bool,
        progress: ProgressFn | None,
    ):
        self.run_dir, self.kind, self.cfg, self.loop, self.world = run_dir, kind, cfg, loop, world
        self.resume, self.progress = resume, progress
        self.task = f"train {kind}"
        self.total_steps = getattr(loop, "steps", 0)  # the diffusion baseline may set its FLOP-matched count
        self.start_step = 0
        self.notices: list[str] = []
        self.wrapped: WrappedModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.keeper = BestKeeper(higher_is_better=True)
        self.logbook = Logbook(run_dir / run_layout.LOG, enabled=False)
        self._step_losses: dict[str, float] = {}
        self.started = time.perf_counter()
        self._autocast_dtype = autocast_dtype(loop, world.device)

    # --------------------------------------------------------------------------------------------- start

    @classmethod
    def start(
        cls,
        run_dir: str | Path,
        kind: str,
        cfg: MindhierConfig,
        loop: LoopConfig,
        sections: tuple[str, ...],
        **launch: Unpack[Launch],
    ) -> TrainingSession:
        """Check the run folder (fresh: unused; resume: the same config `sections`) and write `config.json`."""
        run_dir, resume, progress = Path(run_dir), launch.get("resume", False), launch.get("progress")
        world = World(launch.get("rank", 0), launch.get("world_size", 1), torch.device(launch.get("device", "cpu")))
        config_file = run_dir / run_layout.CONFIG
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file, not a folder; choose a folder for the run")
        resuming = resume and config_file.is_file()
        if not resume and config_file.exists():
            raise ConfigError(
                f"run folder {run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        if resuming:
            record = read_json(config_file, "run config")
            if record.get("kind", kind) != kind:
                raise ConfigError(
                    f"cannot resume {run_dir}: it is a {record['kind']} run, not a {kind} run;"
                    " choose another --out for this kind of run"
                )
            saved, current = record.get("config", {}), to_dict(cfg)
            differences = config_differences(
                {k: _without_runtime(saved.get(k)) for k in sections},
                {k: _without_runtime(current.get(k)) for k in sections},
            )
            if differences:
                raise ConfigError(
                    f"cannot resume {run_dir}: it was trained with a different config ({', '.join(differences[:5])}); "
                    "resume with the same config or start a new --out"
                )
        world.barrier()  # every process has checked the folder before rank 0 writes into it
        session = cls(run_dir, kind, cfg, loop, world, resuming, progress)
        if world.is_main:
            if resuming:
                session.notices += [f"removed half-written {name}" for name in remove_partials(run_dir)]
                session.notices += [f"removed temporary {name}" for name in remove_stale_temporaries(run_dir)]
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                run_layout.write_run_config(run_dir, kind, resolved_record(cfg), world.describe(loop.strategy))
        world.barrier()
        return session

    def check_inputs(self, record: dict[str, Any], key: str = "weights_sha256") -> None:
        """On resume: the frozen inputs' weights (`record[key]`, by content) must be the ones the run started with."""
        path = self.run_dir / run_layout.INPUTS
        if not self.resume or not path.is_file():
            return
        saved = read_json(path, "run inputs").get(key)
        if saved is None:  # a run from before inputs were hashed: nothing to compare
            return
        changed = [name for name, digest in record[key].items() if saved.get(name) != digest]
        if changed:
            raise ConfigError(
                f"cannot resume {self.run_dir}: its {' and '.join(changed)} weights differ from the ones it was "
                "started with (inputs.json); pass the same inputs, or start a new --out"
            )

    def saved_json(self, name: str, what: str, parse: Callable[[Any], Any] = lambda record: record) -> Any:
        """On resume, a run file the earlier call wrote at its start, parsed (a malformed one is one line); None on a
        fresh run, or when that call stopped before writing it (then `write_json` writes it now)."""
        path = self.run_dir / name
        return parse_record(path, what, parse) if self.resume and path.is_file() else None

    def write_json(self, name: str, obj: Any) -> None:
        """A run file written once at the start (shapes, inputs); rank 0 only. On resume it is written only when a
        crash came before it was (its content is the same: it depends on the config and the inputs)."""
        if self.world.is_main and (not self.resume or not (self.run_dir / name).is_file()):
            write_json(self.run_dir / name, obj)

    # ---------------------------------------------------------------------------------------------- model

    def attach(
        self,
        model: nn.Module,
        units: Sequence[nn.Module],
        make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        make_scheduler: Callable[[torch.optim.Optimizer], Any],
        higher_is_better: bool,
        find_unused_parameters: bool = False,
        fp32_units: Sequence[nn.Module] = (),
    ) -> WrappedModel:
        """Wrap the freshly built `model` (same weights on every process), build its optimiser and schedule,
        and restore the resume point when resuming. Returns the wrapped model to call in the loop."""
        model.to(self.world.device)
        self.wrapped = wrap_model(model, units, self.loop, self.world, find_unused_parameters, fp32_units)
        self.optimizer = make_optimizer(self.wrapped.module)
        self.scheduler = make_scheduler(self.optimizer)
        self.keeper = BestKeeper(higher_is_better)
        seed_process(self.loop.seed, self.world.rank)
        self.logbook = Logbook.open(self.run_dir, self.loop.log_sinks, self.world.is_main, to_dict(self.cfg), self.kind)
        if self.resume:
            point = find_resume_point(self.run_dir)
            if point is not None:
                state = load_resume_point(point, self.wrapped, self.optimizer, self.world, self.loop.seed)
                self.scheduler.load_state_dict(state["scheduler"])
                self.keeper.restore(state["keeper"])
                self.start_step = point.step
                self.notices += point.notices
            else:
                self.notices.append("no complete resume point yet: training starts again from step 0")
            self.logbook.cut_to(self.start_step)
        return self.wrapped

    @property
    def validates_here(self) -> bool:
        """Whether this process runs validation: rank 0, or every process under FSDP (its forward is collective)."""
        return self.world.is_main or self.wrapped.strategy == "fsdp"

    @property
    def model(self) -> nn.Module:
        return self.wrapped.module

    @property
    def trained(self) -> nn.Module:
        return self.wrapped.trained

    # ----------------------------------------------------------------------------------------------- steps

    def set_total_steps(self, steps: int) -> None:
        """The number of steps, when the loop computes it (the diffusion baseline's FLOP-matched budget); 0 keeps
        the start weights as they are."""
        if steps < 0:
            raise ConfigError(f"a run's step count must be 0 or more, got {steps}; set steps to 0 or more")
        self.total_steps = steps

    def steps(self) -> range:
        if self.start_step > self.total_steps:
            raise ConfigError(
                f"the run in {self.run_dir} is already past {self.total_steps} steps;"
                " raise the steps, or start a new --out"
            )
        return range(self.start_step, self.total_steps)

    def micro_batches(self, rows: int) -> Iterator[tuple[slice, bool]]:
        """(rows of this process's share, is-last) per micro-batch of `loop.micro_batch` rows."""
        parts = micro_slices(rows, self.loop.micro_batch)
        for k, part in enumerate(parts):
            yield part, k == len(parts) - 1

    def accumulating(self, last: bool):
        return self.wrapped.accumulating(sync=last)

    def autocast(self):
        return autocast(self.world.device, self._autocast_dtype)

    def backward(self, loss: torch.Tensor, share: float, terms: dict[str, float] | None = None) -> None:
        """Back-propagate one micro-batch's loss weighted by its share of this process's rows, and add its
        (weighted) value and named terms to the step's logged losses."""
        (loss * share).backward()
        for name, value in {"loss": float(loss.detach()), **(terms or {})}.items():
            self._step_losses[name] = self._step_losses.get(name, 0.0) + share * value

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step, advance the schedule, clear gradients; returns the learning rate (and grad norm)."""
        out: dict[str, float] = {}
        clip = getattr(self.loop, "grad_clip", 0.0)
        if clip > 0:
            out["grad_norm"] = self.wrapped.clip_grad_norm(clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        out["lr"] = self.scheduler.get_last_lr()[0]
        return out

    def evaluation_due(self, done: int) -> bool:
        return done % self.loop.eval_every == 0 or done == self.total_steps

    def evaluate(self, done: int, compute: Callable[[], dict[str, Any]], score: str) -> dict[str, Any]:
        """At an evaluation step, the metrics `compute()` returns on the processes that validate (empty on the
        others and at other steps); rank 0's `score` metric decides the best-on-val weights."""
        if not self.evaluation_due(done):
            return {}
        metrics = compute() if self.validates_here else {}
        self.offer_best(metrics.get(score, float("nan")), done)
        return metrics

    def offer_best(self, score: float, done: int) -> bool:
        """Rank 0's validation score decides on every process; a new best saves `<kind>.safetensors`."""
        score = self.world.broadcast_float(score)
        better = self.keeper.offer(score, done)
        if better:
            self.save_weights(run_layout.weights_file(self.kind), done)
            fault_points.reach("best-weights.after-write")
        return better

    def save_weights(self, name: str, step: int) -> None:
        """The whole model as safetensors (a collective under FSDP; rank 0 writes)."""
        state = self.wrapped.full_state_dict()
        if self.world.is_main:
            bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
            if bad is not None:
                raise NonFiniteTrainingError(self._diverged(f"the weight {bad} holds NaN or inf at step {step}"))
            save_state(self.run_dir / name, state, {"step": str(step)})

    def _diverged(self, what: str) -> str:
        return (
            f"{self.task}: {what}; likely betas far outside the z-scored range (mindhier data info DATA checks them) "
            f"or a learning rate too high: fix the data or lower {self.loop.section}.lr, then start a new --out"
        )

    def end_step(self, done: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Log the step (its losses averaged over processes), report progress, write a resume point when due."""
        losses, self._step_losses = self.world.mean(self._step_losses), {}
        if not math.isfinite(losses.get("loss", 0.0)):  # the same mean on every process: all stop together
            raise NonFiniteTrainingError(self._diverged(f"the loss became {losses['loss']} at step {done}"))
        record = {"step": done, **losses, **(extra or {})}
        report(self.progress, self.task, done, self.total_steps, {"loss": losses.get("loss", float("nan"))})
        log_every = max(1, self.total_steps // 200)
        first = done <= FIRST_STEPS_LOGGED  # every one of the first steps: what a prior's `--verify` compares
        if first or done % log_every == 0 or any(k.startswith("val") for k in record) or done == self.total_steps:
            self.logbook.write(record)
        if done % self.loop.checkpoint_every == 0 or done == self.total_steps:
            self.write_resume_point(done)
        return record

    def write_resume_point(self, done: int) -> Path:
        state = {"scheduler": self.scheduler.state_dict(), "keeper": self.keeper.state()}
        return write_resume_point(self.run_dir, done, self.wrapped, self.optimizer, state, self.world)

    # ---------------------------------------------------------------------------------------------- finish

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Final weights (and the best-on-val fallback), then `train_summary.json`; returns the summary."""
        seconds = time.perf_counter() - self.started
        self.save_weights(run_layout.last_weights_file(self.kind), self.total_steps)
        if not self.keeper.has_best:  # validation never scored: the final weights are the ones to use
            self.save_weights(run_layout.weights_file(self.kind), self.total_steps)
        record = {
            "steps": self.total_steps,
            "resumed_from": self.start_step,
            "seconds": round(seconds, 2),
            "steps_per_second": round((self.total_steps - self.start_step) / max(seconds, 1e-9), 3),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "best_val": self.keeper.best,
            "best_step": self.keeper.best_step if self.keeper.has_best else None,
            **summary,
            **self.world.describe(self.loop.strategy),
            "global_batch": getattr(self.loop, "batch_size", None),
            "micro_batch": self.loop.micro_batch or None,
            "precision": str(self._autocast_dtype or torch.float32).removeprefix("torch."),
            "activation_checkpointing": self.loop.activation_checkpointing,
            "torch_threads": torch.get_num_threads(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "notices": self.notices,
        }
        if self.world.device.type == "cuda":
            record["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(self.world.device) / 2**20, 1)
        if self.world.is_main:
            write_json(self.run_dir / run_layout.SUMMARY, record)
        self.logbook.close()
        self.world.barrier()
        return record


def _without_runtime(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: v for k, v in section.items() if k not in RUNTIME_FIELDS}
    return section


class TrainResult:
    """What every training loop returns: the run folder, its summary, and the final model in memory."""

    def __init__(self, run_dir: Path, summary: dict[str, Any], model: nn.Module):
        self.run_dir, self.summary, self.model = run_dir, summary, model

    @property
    def resumed_from(self) -> int:
        return int(self.summary["resumed_from"])

    @property
    def best_val(self) -> float | None:
        return self.summary["best_val"]

    @property
    def best_step(self) -> int | None:
        return self.summary["best_step"]
