import dataclasses
import json

import pytest
import torch

from mindhier import run_layout
from mindhier.cli import main
from mindhier.config import AlignmentConfig, tiny
from mindhier.errors import ConfigError
from mindhier.losses import stage1_loss
from mindhier.metrics.encoder_eval import evaluate_encoder
from mindhier.metrics.retrieval import retrieval_top1
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.runs import load_encoder
from mindhier.train.encoder import train_encoder

ENCODER_WEIGHTS = run_layout.weights_file("encoder")
LAST_WEIGHTS = run_layout.last_weights_file("encoder")


def test_overfits_one_batch_of_32_to_perfect_retrieval():
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny().encoder, dropout=0.0)
    shapes = EncoderShapes(((1, 50),), (8, 12, 16, 24), queries=5)
    model = BrainEncoder(cfg, shapes)
    voxels = torch.randn(32, 50)
    targets = [torch.randn(32, 5, d) for d in shapes.level_dims]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, _ = stage1_loss(model(voxels, subject=1), targets, AlignmentConfig(temperature=0.05))
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.2 * first
    model.eval()
    result = retrieval_top1(model(voxels, subject=1).terminal_BQD, targets[-1])
    assert result["brain_to_image_top1"] == 1.0 and result["image_to_brain_top1"] == 1.0


def _weights(run_dir, name=LAST_WEIGHTS):
    return load_encoder(run_dir, weights=name).model.state_dict()


def test_multi_subject_training_writes_a_complete_run_and_evaluates(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    run = train_encoder(cfg, result.root, tmp_path / "run")
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.json", ENCODER_WEIGHTS, LAST_WEIGHTS, "resume", "log.jsonl", "encoder_shapes.json"} <= names
    loaded = load_encoder(run.run_dir)
    assert loaded.shapes.voxels == {s: r.model.n_voxels for s, r in result.subjects.items()}
    log = [json.loads(line) for line in (run.run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_retrieval_top1" in r] == [30, 60]
    assert log[-1]["loss"] < log[0]["loss"]

    report = evaluate_encoder(run.run_dir, result.root, subjects=(2,))
    entry = report["subjects"]["2"]
    assert entry["n_items"] == cfg.simulator.n_test
    assert entry["retrieval"]["pool"] == cfg.simulator.n_test
    assert [lvl["supervised"] for lvl in entry["levels"]] == [True] * 4
    assert all(0.0 <= lvl["probe"]["two_way_identification"] <= 1.0 for lvl in entry["levels"])
    assert report["protocol"]["split"] == "test"


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    straight = train_encoder(cfg, result.root, tmp_path / "straight", subjects=(1,))

    class Crash(Exception):
        pass

    def crash_after_checkpoint(task, done, total, info=None):
        if task == "train encoder" and done == 31:
            raise Crash

    with pytest.raises(Crash):
        train_encoder(cfg, result.root, tmp_path / "resumed", subjects=(1,), progress=crash_after_checkpoint)
    resumed = train_encoder(cfg, result.root, tmp_path / "resumed", subjects=(1,), resume=True)
    assert resumed.resumed_from == 30
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_folders_are_never_clobbered_and_resume_checks_the_config(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    train_encoder(cfg, result.root, tmp_path / "run", subjects=(1,))
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train_encoder(cfg, result.root, tmp_path / "run", subjects=(1,))
    other = dataclasses.replace(cfg, train_encoder=dataclasses.replace(cfg.train_encoder, lr=0.5))
    with pytest.raises(ConfigError, match=r"different config \(train_encoder\.lr\)"):
        train_encoder(other, result.root, tmp_path / "run", subjects=(1,), resume=True)


def test_cli_train_and_eval_encoder(tiny_dataset, tmp_path, capsys):
    _, result = tiny_dataset
    run = tmp_path / "cli-run"
    assert (
        main(
            [
                "train",
                "encoder",
                "--data",
                str(result.root),
                "--out",
                str(run),
                "--preset",
                "tiny",
                "--subjects",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert "best val retrieval top-1" in capsys.readouterr().out
    assert main(["eval", "encoder", "--run", str(run), "--data", str(result.root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "retrieval top-1 brain→image" in out and (run / "encoder_eval.json").is_file()
    code = main(
        ["eval", "encoder", "--run", str(run), "--data", str(result.root), "--subject", "2", "--quiet", "--overwrite"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"mindhier: error: the encoder in {run} was not trained on subject 2; it knows [1]"
