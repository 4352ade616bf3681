import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mindhier import run_layout
from mindhier.checkpoint import load_weights
from mindhier.cli import main
from mindhier.config import tiny
from mindhier.errors import ConfigError
from mindhier.models.scale_ar import ScaleAR
from mindhier.runs import load_generator
from mindhier.sampling.selection import select_by_brain
from mindhier.teachers import build_teacher
from mindhier.train.generator import train_generator


def test_cli_trains_a_generator_with_per_scale_val_accuracy(tiny_stage_runs, tmp_path, capsys):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    run = tmp_path / "gen"
    code = main(
        [
            "train",
            "generator",
            "--data",
            str(result.root),
            "--encoder",
            str(encoder),
            "--tokenizer",
            str(tokenizer),
            "--out",
            str(run),
            "--preset",
            "tiny",
            "--subject",
            "2",
            "--quiet",
        ]
    )
    assert code == 0 and "trained a coarse_to_fine generator" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert len(evals[-1]["val_token_accuracy"]) == len(cfg.tokenizer.scales)
    assert log[-1]["loss"] < log[0]["loss"]
    inputs = json.loads((run / "inputs.json").read_text())
    assert inputs["routing"] == "coarse_to_fine" and inputs["subjects"] == [2]

    loaded = load_generator(run, routing="coarse_to_fine")
    with pytest.raises(ConfigError, match="trained with routing coarse_to_fine, not static_terminal"):
        load_generator(run, routing="static_terminal")
    assert loaded.shapes.n_levels == cfg.encoder.depth


def test_resume_continues_exactly(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, routing="static_terminal"))
    straight = train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "a").run_dir

    class Crash(Exception):
        pass

    def crash(task, done, total, info=None):
        if task == "train generator" and done == 21:
            raise Crash

    with pytest.raises(Crash):
        train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "b", progress=crash)
    # another encoder (here: the same run with other weights) is refused, and the run stays resumable
    other = Path(shutil.copytree(encoder, tmp_path / "other-encoder"))
    state = load_file(str(other / "encoder.safetensors"))
    save_file({k: v + 0.01 for k, v in state.items()}, str(other / "encoder.safetensors"))
    with pytest.raises(ConfigError, match="its encoder weights differ from the ones it was started with"):
        train_generator(cfg, result.root, other, tokenizer, tmp_path / "b", resume=True)
    resumed = train_generator(cfg, result.root, encoder, tokenizer, tmp_path / "b", resume=True).run_dir
    weights = []
    for run in (straight, resumed):
        model = load_generator(run).model
        load_weights(run / run_layout.last_weights_file("generator"), model)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert isinstance(load_generator(resumed).model, ScaleAR)


def test_brain_selection_uses_only_the_predicted_embedding():
    teacher = build_teacher(tiny().teacher)
    g = torch.Generator().manual_seed(0)
    candidates = torch.rand(2, 3, 3, 16, 16, generator=g)
    # the "prediction" is the teacher's embedding of candidate 2 of input 0 and candidate 1 of input 1
    predicted = torch.stack([teacher(candidates[0, 2:3])[-1][0], teacher(candidates[1, 1:2])[-1][0]])
    assert select_by_brain(candidates, predicted, teacher).tolist() == [2, 1]
