"""`mindhier adapt`: a new subject on a shared encoder — a new input layer trained alone, then the shared encoder
fine-tuned with it; the result is an ordinary encoder run that loads and reconstructs like any other."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from mindhier import fault_points, run_layout
from mindhier.cli import main
from mindhier.config import DataConfig
from mindhier.data.nsd import open_dataset
from mindhier.errors import DataError
from mindhier.fileio import read_json
from mindhier.models.brain_encoder import EncoderShapes
from mindhier.runs import load_encoder
from mindhier.train.adapt import adapt_encoder, adapted_shapes, phase_factor
from mindhier.train.encoder import train_encoder

NEW_LAYER = "input_layers.subj02."


def _adapt_cfg(cfg, **changes):
    adapt = dataclasses.replace(cfg.adapt, batch_size=32, eval_every=10, checkpoint_every=10, warmup_steps=2)
    return dataclasses.replace(cfg, adapt=dataclasses.replace(adapt, **changes))


@pytest.fixture(scope="module")
def shared(tiny_stage_runs, tmp_path_factory):
    """An encoder shared over subject 1 only; subject 2 of the same dataset is the new participant."""
    cfg, result, _, tokenizer = tiny_stage_runs
    run = train_encoder(cfg, result.root, tmp_path_factory.mktemp("shared") / "encoder", subjects=(1,))
    return cfg, result.root, run.run_dir, tokenizer


def _shared_part(state):
    return {k: v for k, v in state.items() if not k.startswith("input_layers.")}


def test_phase_one_trains_only_the_new_input_layer(shared, tmp_path):
    cfg, data, shared_run, _ = shared
    result = adapt_encoder(_adapt_cfg(cfg, steps=12, alone_steps=12), shared_run, data, 2, tmp_path / "run")
    before = load_encoder(shared_run).model.state_dict()
    after = load_encoder(result.run_dir, weights=run_layout.last_weights_file("encoder")).model.state_dict()
    assert {k for k in after if k.startswith("input_layers.")} == {NEW_LAYER + "weight", NEW_LAYER + "bias"}
    for key, value in _shared_part(before).items():
        assert torch.equal(after[key], value), f"{key} changed while only the new layer should learn"
    log = [json.loads(line) for line in (result.run_dir / run_layout.LOG).read_text().splitlines()]
    assert all(r["shared_lr"] == 0.0 for r in log)
    assert log[-1]["loss"] < log[0]["loss"]


def test_phase_two_fine_tunes_the_shared_encoder_and_the_run_reconstructs_like_any_other(shared, tmp_path):
    from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions
    from mindhier.train.generator import train_generator

    cfg, data, shared_run, tokenizer = shared
    result = adapt_encoder(_adapt_cfg(cfg, steps=20, alone_steps=8), shared_run, data, 2, tmp_path / "adapted")
    before = _shared_part(load_encoder(shared_run).model.state_dict())
    after = load_encoder(result.run_dir, weights=run_layout.last_weights_file("encoder")).model.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    log = [json.loads(line) for line in (result.run_dir / run_layout.LOG).read_text().splitlines()]
    assert [r["shared_lr"] > 0 for r in log if r["step"] in (8, 9)] == [False, True]
    inputs = read_json(result.run_dir / run_layout.INPUTS, "inputs")
    assert inputs["adapted_from"] == os.path.relpath(shared_run, result.run_dir)
    assert inputs["shared_subjects"] == [1] and inputs["subject"] == 2 and inputs["sessions"] == "all"

    # the shared model's generator decodes the adapted encoder's subject
    generator = train_generator(cfg, data, shared_run, tokenizer, tmp_path / "generator", subjects=(1,)).run_dir
    reconstructor = Reconstructor.from_runs(generator, result.run_dir, tokenizer, cfg.sampler)
    out = write_reconstructions(reconstructor, data, tmp_path / "recons", 2)
    manifest = read_json(out / "manifest.json", "manifest")
    assert manifest["subject"] == 2 and len(manifest["stimulus_indices"]) == cfg.simulator.n_test


def test_sessions_limit_the_new_subjects_trials(shared, tmp_path):
    cfg, data, shared_run, _ = shared
    limited = dataclasses.replace(_adapt_cfg(cfg, steps=4, alone_steps=2), data=DataConfig(sessions=(1,)))
    result = adapt_encoder(limited, shared_run, data, 2, tmp_path / "run")
    with open_dataset(data, DataConfig(sessions=(1,)), subjects=[2]) as dataset:
        expected = len(dataset.split(2, "train"))
    assert result.summary["train_trials"] == {"2": expected} and result.summary["sessions"] == "1"
    assert read_json(result.run_dir / run_layout.INPUTS, "inputs")["sessions"] == "1"


def test_the_two_rates_follow_their_phases():
    assert [phase_factor(s, 5, 20, 2) for s in (0, 4)] == [0.0, 0.0]
    assert phase_factor(5, 5, 20, 2) == 0.5 and phase_factor(6, 5, 20, 2) == 1.0
    assert phase_factor(19, 5, 20, 2) == pytest.approx(0.1, abs=0.02)


def test_a_voxel_count_that_differs_from_the_shared_models_is_refused():
    shapes = EncoderShapes(((1, 300), (2, 320)), (8, 16), queries=4)
    with pytest.raises(DataError, match="subject 2 has 321 voxels in this dataset but 320 in the shared model"):
        adapted_shapes(shapes, 2, 321)
    assert adapted_shapes(shapes, 3, 50).subject_voxels == ((3, 50),)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--subject", "1"], "subject 1 is already in the shared model"),
        (["--subject", "2", "--preset", "demo"], "is a 'tiny' model and this config ('demo') differs"),
        (["--subject", "2", "--sessions", "40"], "--sessions 40 asks for session"),
        (["--subject", "7"], "subject 7 has no betas"),
    ],
)
def test_bad_adaptations_are_one_clear_line(shared, tmp_path, capsys, extra, expected):
    _, data, shared_run, _ = shared
    out = tmp_path / "run"
    code = main(["adapt", "--run", str(shared_run), "--data", str(data), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (out / run_layout.weights_file("encoder")).exists()


def _adapt_process(shared_run, data, out, *extra, kill_at=None):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(fault_points.ENV, None)
    if kill_at:
        env[fault_points.ENV] = kill_at
    settings = ["--set", "adapt.steps=20", "--set", "adapt.alone_steps=8", "--set", "adapt.batch_size=32"]
    settings += ["--set", "adapt.checkpoint_every=10", "--set", "adapt.eval_every=10"]
    command = [sys.executable, "-m", "mindhier", "adapt", "--run", str(shared_run), "--data", str(data)]
    command += ["--subject", "2", "--out", str(out), "--threads", "1", "--quiet", *settings, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow  # three processes; the shared session machinery's kill points are in `make test` (test_crash_resume)
def test_a_killed_adaptation_resumes_to_the_uninterrupted_result(shared, tmp_path):
    _, data, shared_run, _ = shared
    reference = _adapt_process(shared_run, data, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    killed = _adapt_process(shared_run, data, tmp_path / "run", kill_at="resume-point.after-rename#1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _adapt_process(shared_run, data, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in (run_layout.weights_file("encoder"), run_layout.last_weights_file("encoder")):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / run_layout.LOG).read_text().splitlines()]
    reference_losses = [
        json.loads(line)["loss"] for line in (tmp_path / "reference" / run_layout.LOG).read_text().splitlines()
    ]
    assert np.array_equal(losses, reference_losses)
