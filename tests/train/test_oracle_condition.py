"""Generators conditioned on the teacher's features (the oracle arm and the priors' pretraining), and warm starts."""

import dataclasses
import json

import numpy as np
import torch

from mindhier.models.brain_condition import TeacherCondition
from mindhier.runs import load_generator
from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions
from mindhier.train.generator import train_generator


def _cfg(cfg, **changes):
    return dataclasses.replace(cfg, train_generator=dataclasses.replace(cfg.train_generator, **changes))


def test_teacher_conditioned_generator_its_oracle_row_and_a_brain_fine_tune_from_it(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    teacher_cfg = _cfg(cfg, condition="teacher", steps=10, eval_every=10, checkpoint_every=10)
    oracle = train_generator(teacher_cfg, result.root, encoder, tokenizer, tmp_path / "oracle")
    inputs = json.loads((oracle.run_dir / "inputs.json").read_text())
    assert inputs["condition"] == "teacher" and "subjects" in inputs
    shapes = load_generator(oracle.run_dir).shapes
    assert shapes.level_dims == (40, 80, 112, 320) and shapes.adapted  # Lite0's levels, each through an adapter
    assert oracle.summary["best_val"] is not None

    reconstructor = Reconstructor.from_runs(oracle.run_dir)
    assert reconstructor.trained_on == "teacher"
    null = reconstructor.null(1)
    assert torch.count_nonzero(null.levels_BMQD) == 0 and torch.count_nonzero(null.pooled_BP) == 0
    out = write_reconstructions(reconstructor, result.root, tmp_path / "recons", 1, strips=True, condition="teacher")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["condition"].startswith("oracle") and manifest["protocol"]["scales"] == [1, 2, 4, 8]
    assert len(list(out.glob("image_*.png"))) == cfg.simulator.n_test

    brain_cfg = _cfg(cfg, steps=4, eval_every=4, checkpoint_every=4, init=str(oracle.run_dir))
    brain = train_generator(brain_cfg, result.root, encoder, tokenizer, tmp_path / "brain")
    assert brain.summary["init"]["source"].endswith("generator.safetensors") and brain.summary["condition"] == "brain"
    start = load_generator(oracle.run_dir).model
    fresh = type(start)(start.cfg, start.shapes)  # what a start from scratch would be
    moved = sum((a - b).abs().sum() for a, b in zip(brain.model.parameters(), start.parameters(), strict=True))
    apart = sum((a - b).abs().sum() for a, b in zip(fresh.parameters(), start.parameters(), strict=True))
    assert 0 < moved < 0.2 * apart  # 4 steps from the start weights, far from any random initialisation

    # steps=0 keeps the start weights as they are (the demo's oracle row from the prior), as a complete run
    kept_cfg = _cfg(teacher_cfg, steps=0, init=str(oracle.run_dir))
    kept = train_generator(kept_cfg, result.root, encoder, tokenizer, tmp_path / "kept")
    reloaded = load_generator(kept.run_dir).model
    assert all(torch.equal(a, b) for a, b in zip(reloaded.parameters(), start.parameters(), strict=True))
    assert kept.summary["steps"] == 0

    # read from the brain without a step (the demo's brain rows): the unconditional stream stays the start's
    as_is = train_generator(
        _cfg(cfg, steps=0, init=str(oracle.run_dir)), result.root, encoder, tokenizer, tmp_path / "as-is"
    )
    recorded = json.loads((as_is.run_dir / "inputs.json").read_text())
    assert recorded["condition"] == "brain" and recorded["null_condition"] == "teacher"
    assert recorded["init"]["condition"] == "teacher"
    assert Reconstructor.from_runs(as_is.run_dir).trained_on == "teacher"
    # ... while a generator trained on the brain guides against the brain's null (zero voxels through the encoder)
    assert json.loads((brain.run_dir / "inputs.json").read_text())["null_condition"] == "brain"
    assert Reconstructor.from_runs(brain.run_dir).trained_on == "brain"


def test_teacher_condition_pools_the_terminal_level_and_pads_the_others():
    condition = TeacherCondition((3, 5), level_tokens=4)
    levels = [torch.randn(2, 4, 3), torch.randn(2, 4, 5)]
    out = condition(levels)
    assert out.levels_BMQD.shape == (2, 2, 4, 5) and torch.equal(out.levels_BMQD[:, 0, :, 3:], torch.zeros(2, 4, 2))
    assert torch.allclose(out.pooled_BP, levels[1].mean(1)) and np.array_equal(out.terminal_BQP, levels[1])
