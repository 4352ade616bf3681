"""The shared training machinery: best-on-val keeping, resume points, the log, sinks, accumulation, precision."""

import dataclasses
import io
import json
import pickle
import sys
import types

import pytest
import torch

from mindhier import run_layout
from mindhier.errors import ConfigError
from mindhier.train.best_keeper import BestKeeper
from mindhier.train.encoder import train_encoder
from mindhier.train.generator import train_generator
from mindhier.train.resume import _MetadataUnpickler, find_resume_point
from mindhier.train.tokenizer import train_tokenizer


def test_nan_is_never_best_and_direction_counts():
    keeper = BestKeeper(higher_is_better=False)
    assert not keeper.offer(float("nan"), 10) and not keeper.has_best
    assert keeper.offer(2.0, 20) and keeper.offer(1.0, 30)
    assert not keeper.offer(1.5, 40) and not keeper.offer(float("inf"), 50) and not keeper.offer(float("-inf"), 60)
    assert (keeper.best, keeper.best_step) == (1.0, 30)
    higher = BestKeeper(higher_is_better=True)
    assert higher.offer(0.1, 1) and not higher.offer(0.05, 2) and higher.offer(0.2, 3)


def _short(cfg, section, **changes):
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def test_final_weights_are_kept_when_validation_never_scores(make_config, tmp_path):
    from mindhier.data.simulator import simulate

    cfg = make_config(subjects=(1,))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_fraction=0.0))  # no val split: NaN scores
    cfg = _short(cfg, "train_encoder", steps=6, eval_every=3, checkpoint_every=3)
    data = simulate(cfg, tmp_path / "data").root
    run = train_encoder(cfg, data, tmp_path / "run")
    assert run.best_val is None and run.summary["best_step"] is None
    best = (run.run_dir / run_layout.weights_file("encoder")).read_bytes()
    assert best == (run.run_dir / run_layout.last_weights_file("encoder")).read_bytes()


def test_resume_cuts_the_log_and_falls_back_past_a_damaged_resume_point(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(cfg, "train_generator", steps=12, eval_every=6, checkpoint_every=3)

    class Crash(Exception):
        pass

    def crash(task, done, total, info=None):
        if task == "train generator" and done == 11:
            raise Crash

    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train_generator(cfg, result.root, encoder, tokenizer, run_dir, progress=crash)
    points = sorted(p.name for p in (run_dir / run_layout.RESUME_DIR).iterdir())
    assert points == [run_layout.resume_point_name(6), run_layout.resume_point_name(9)]  # the two newest kept
    # damage the newest: resume must notice and continue from the one before
    state_files = sorted((run_dir / run_layout.RESUME_DIR / points[-1] / run_layout.RESUME_STATE_DIR).glob("*.distcp"))
    state_files[0].write_bytes(state_files[0].read_bytes()[:-7] + b"garbage")
    (run_dir / run_layout.RESUME_DIR / f".{run_layout.resume_point_name(12)}{run_layout.PARTIAL_MARK}").mkdir()
    resumed = train_generator(cfg, result.root, encoder, tokenizer, run_dir, resume=True)
    assert resumed.resumed_from == 6
    assert any("skipped resume point step-00000009" in n for n in resumed.summary["notices"])
    assert any("removed half-written" in n for n in resumed.summary["notices"])
    assert not [p for p in (run_dir / run_layout.RESUME_DIR).iterdir() if run_layout.PARTIAL_MARK in p.name]
    steps = [json.loads(line)["step"] for line in (run_dir / run_layout.LOG).read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # no step logged twice

    straight = train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "straight")
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact on the CPU


def test_a_run_killed_before_its_first_resume_point_starts_again(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(cfg, "train_generator", steps=4, eval_every=4, checkpoint_every=4)

    def crash(task, done, total, info=None):
        if task == "train generator" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "run", progress=crash)
    assert find_resume_point(tmp_path / "run") is None
    resumed = train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "run", resume=True)
    assert resumed.resumed_from == 0
    assert any("starts again from step 0" in n for n in resumed.summary["notices"])


def test_checkpoint_metadata_never_runs_code():
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(ConfigError, match=r"refers to builtins\.print"):
        _MetadataUnpickler(io.BytesIO(pickle.dumps(Exploit()))).load()
    assert _MetadataUnpickler(io.BytesIO(pickle.dumps(torch.Size([2, 3])))).load() == torch.Size([2, 3])


def test_gradient_accumulation_reproduces_the_full_batch(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(cfg, "train_generator", steps=6, eval_every=6, checkpoint_every=6)
    full = train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "full")
    accumulated = train_generator(
        _short(cfg, "train_generator", micro_batch=5), result.root, encoder, tokenizer, tmp_path / "micro"
    )
    assert accumulated.summary["micro_batch"] == 5
    # float32 summation order differs; Adam turns a near-zero gradient's rounding into a step of up to lr·1e-2 —
    # a wrong share weighting moves weights by ~lr (1e-3) per step
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(accumulated.model.state_dict()[k], v, rtol=1e-4, atol=5e-5, msg=k)


def test_tokenizer_loop_runs_under_bf16_autocast_and_writes_tensorboard(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    cfg, result = tiny_dataset
    cfg = _short(
        cfg, "train_tokenizer", steps=4, eval_every=4, checkpoint_every=4, precision="bf16", log_sinks=("tensorboard",)
    )
    run = train_tokenizer(cfg, result.root, tmp_path / "run")
    assert run.summary["precision"] == "bfloat16"
    assert list((run.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_sink_receives_the_logged_numbers(tiny_dataset, tmp_path, monkeypatch):
    logged, finished = [], []
    fake = types.ModuleType("wandb")

    def init(**kwargs):
        return types.SimpleNamespace(
            log=lambda values, step: logged.append((step, values)), finish=lambda: finished.append(1)
        )

    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg, result = tiny_dataset
    cfg = _short(cfg, "train_tokenizer", steps=2, eval_every=2, checkpoint_every=2, log_sinks=("wandb",))
    train_tokenizer(cfg, result.root, tmp_path / "run")
    assert [step for step, _ in logged] == [1, 2] and "loss" in logged[0][1] and finished == [1]


def test_tokenizer_refuses_fsdp(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    with pytest.raises(ConfigError, match=r"train_tokenizer\.strategy=fsdp is not supported"):
        train_tokenizer(_short(cfg, "train_tokenizer", strategy="fsdp"), result.root, tmp_path / "run")


def test_a_non_finite_loss_stops_the_run_with_its_cause(make_config, tmp_path, monkeypatch):
    from mindhier.data.simulator import simulate
    from mindhier.errors import NonFiniteTrainingError
    from mindhier.train.session import TrainingSession

    cfg = _short(make_config(subjects=(1,)), "train_encoder", steps=6, eval_every=3, checkpoint_every=3)
    data = simulate(cfg, tmp_path / "data").root
    backward, calls = TrainingSession.backward, []

    def poisoned(self, loss, share, terms=None):  # from the 2nd micro-batch on, the loss is NaN (as a 3e38 beta makes)
        calls.append(1)
        backward(self, loss * (float("nan") if len(calls) >= 2 else 1.0), share, terms)

    monkeypatch.setattr(TrainingSession, "backward", poisoned)
    with pytest.raises(NonFiniteTrainingError, match=r"the loss became nan at step 2; likely betas .* data info"):
        train_encoder(cfg, data, tmp_path / "run")
    assert not (tmp_path / "run" / run_layout.SUMMARY).exists()


class _Payload:
    """A pickle that would write a file when unpickled by an unrestricted loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("tampered", [run_layout.RESUME_TRAIN_STATE, f"{run_layout.RESUME_STATE_DIR}/.metadata"])
def test_a_tampered_resume_point_with_a_fixed_checksum_is_skipped(tampered, make_config, tmp_path):
    from mindhier.data.simulator import simulate
    from mindhier.fileio import read_json, sha256_file, write_json

    cfg = _short(make_config(subjects=(1,)), "train_encoder", steps=6, eval_every=3, checkpoint_every=3)
    data = simulate(cfg, tmp_path / "data").root
    run = train_encoder(cfg, data, tmp_path / "run")
    newest = run.run_dir / run_layout.RESUME_DIR / run_layout.resume_point_name(6)
    marker = tmp_path / "payload-ran"
    (newest / tampered).write_bytes(pickle.dumps(_Payload(marker)))
    manifest = read_json(newest / run_layout.RESUME_MANIFEST, "manifest")
    manifest["files"][tampered] = {
        "bytes": (newest / tampered).stat().st_size,
        "sha256": sha256_file(newest / tampered),
    }
    write_json(newest / run_layout.RESUME_MANIFEST, manifest)

    resumed = train_encoder(cfg, data, run.run_dir, resume=True)
    assert resumed.resumed_from == 3 and not marker.exists()
    assert any("skipped resume point step-00000006: refused content" in n for n in resumed.summary["notices"])
