"""The adaptation study: per-image retrieval, the record's statistics and verdict, and the whole study on `tiny`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindhier.config import tiny, to_dict
from mindhier.fileio import write_json
from mindhier.metrics.retrieval import retrieval_hits, retrieval_top1
from mindhier.report.adaptation import RETRIEVAL_FILE, arm_name, build_adaptation_report, study_record


def test_per_image_hits_average_to_mindeyes_retrieval():
    generator = torch.Generator().manual_seed(0)
    brain, image = torch.randn(40, 3, 8, generator=generator), torch.randn(40, 3, 8, generator=generator)
    brain[:20] = image[:20] + 0.1 * brain[:20]  # half the items are recognisable
    whole = retrieval_top1(brain, image, pool=300, draws=5, generator=torch.Generator().manual_seed(1))
    hits = retrieval_hits(brain, image, pool=300, draws=5, generator=torch.Generator().manual_seed(1))
    assert float(hits["brain_to_image_N"].mean()) == pytest.approx(whole["brain_to_image_top1"])
    assert float(hits["image_to_brain_N"].mean()) == pytest.approx(whole["image_to_brain_top1"])
    assert set(hits["brain_to_image_N"][:20].tolist()) == {1.0}
    # pools smaller than N: each item's rate over the draws that held it, the same draws as retrieval_top1
    small = retrieval_hits(brain, image, pool=10, draws=50, generator=torch.Generator().manual_seed(2))
    assert bool((small["draws_N"] > 0).all()) and float(small["brain_to_image_N"][:20].mean()) > 0.9


def _fake_study(root, adapted_hits, scratch_hits, full_hits):
    """A finished study folder with only the retrieval arms (no reconstructions)."""
    cfg = tiny()
    record = to_dict(cfg)
    record["adaptation"].update(shared_subjects=[1, 2], held_out=3, sessions=[1, 0])
    write_json(root / "config.json", {"config": record})
    arms = {
        arm_name("adapted", 1): adapted_hits,
        arm_name("scratch", 1): scratch_hits,
        arm_name("adapted", 0): full_hits,
        arm_name("scratch", 0): full_hits,
    }
    write_json(
        root / RETRIEVAL_FILE,
        {
            "arms": {
                k: {"brain_to_image": list(v), "image_to_brain": list(v), "images": list(range(len(v)))}
                for k, v in arms.items()
            }
        },
    )


def test_the_verdict_says_met_only_when_cis_are_apart_and_the_share_is_reached(tmp_path):
    rng = np.random.default_rng(0)
    good, poor, full = ((rng.random(100) < p).astype(float) for p in (0.5, 0.1, 0.55))
    _fake_study(tmp_path, good, poor, full)
    record = study_record(tmp_path)
    lines = record["verdict"]
    assert "met (CIs apart)" in lines[0] and "reaches" in lines[-1] and lines[-1].endswith(": met")
    assert record["budgets"][0]["adapted_minus_scratch"]["retrieval.brain_to_image"]["mean"] > 0.3
    assert "not measured" in lines[1]  # no reconstructions: the proxy target is not claimed

    _fake_study(tmp_path, poor, poor, full)
    lines = study_record(tmp_path)["verdict"]
    assert "not met" in lines[0] and lines[-1].endswith("not met")


def test_the_report_is_written_with_its_record(tmp_path):
    rng = np.random.default_rng(1)
    _fake_study(tmp_path, (rng.random(50) < 0.4).astype(float), (rng.random(50) < 0.2).astype(float), np.ones(50))
    index, lines = build_adaptation_report(tmp_path, tmp_path / "report")
    record = json.loads((tmp_path / "report" / "adaptation_study.json").read_text())
    assert record["verdict"] == lines and "adapted 1s" in index.read_text()
    assert (tmp_path / "report" / "adaptation_curves.png").stat().st_size > 1000


def _study_argv(out, *extra, shared="1,2", held_out=3):
    settings = {
        "simulator.subjects": "1,2,3",
        "adaptation.shared_subjects": shared,
        "adaptation.held_out": str(held_out),
        "adaptation.sessions": "1,0",
        "adapt.steps": "30",
        "adapt.alone_steps": "10",
        "adapt.batch_size": "32",
        "adapt.eval_every": "10",
    }
    flags = [x for key, value in settings.items() for x in ("--set", f"{key}={value}")]
    return ["eval", "adaptation", "--preset", "tiny", "--out", str(out), "--no-judge", "--quiet", *flags, *extra]


def test_the_study_runs_its_retrieval_arms_on_tiny(tiny_dataset, tmp_path, capsys):
    import shutil

    from mindhier.cli import main

    data = shutil.copytree(tiny_dataset[1].root, tmp_path / "data")  # the study writes its caches into the dataset
    extra = ("--data", str(data), "--set", "adaptation.reconstruct=false")
    assert main(_study_argv(tmp_path / "study", *extra, shared="1", held_out=2)) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "study" / "report" / "adaptation_study.json").read_text())
    assert [b["name"] for b in record["budgets"]] == ["1s", "all"]
    for budget in record["budgets"]:
        for kind in ("adapted", "scratch"):
            entry = budget[kind]["retrieval.brain_to_image"]
            assert entry["n"] == tiny().simulator.n_test and 0.0 <= entry["mean"] <= 1.0
    assert "report:" in printed.splitlines()[-1]
    summary = json.loads((tmp_path / "study" / "adapted" / "1s" / "train_summary.json").read_text())
    assert summary["sessions"] == "1" and summary["shared_subjects"] == [1] and summary["subjects"] == [2]


@pytest.mark.slow
def test_the_whole_study_with_reconstructions_on_tiny(tmp_path):
    from mindhier.cli import main

    result = tmp_path / "adaptation.json"
    assert main(_study_argv(tmp_path / "study", "--record", str(result))) == 0
    record = json.loads((tmp_path / "study" / "report" / "adaptation_study.json").read_text())
    assert "lite2_late.two_way" in record["budgets"][0]["adapted"]
    assert set(record["references"]) == {"tokenizer_ceiling", "teacher_oracle", "shuffled_brain"}
    assert "not measured" not in " ".join(record["verdict"])
    # the oracle row's generator learned from teacher features (an honest upper bound), not the brain-trained one
    manifest = json.loads((tmp_path / "study" / "recons" / "teacher_oracle" / "manifest.json").read_text())
    assert manifest["models"]["decoder"].endswith("generator-oracle")
    # --record keeps the headline rows as a result file the README renders
    numbers = json.loads(result.read_text())["numbers"]
    assert [(r["sessions"], r["arm"]) for r in numbers["rows"]] == [
        (1, "adapted"), (1, "scratch"), ("all", "adapted"), ("all", "scratch")
    ]  # fmt: skip
    first = numbers["rows"][0]["brain_to_image_top1"]["mean"]
    assert first == round(record["budgets"][0]["adapted"]["retrieval.brain_to_image"]["mean"], 3)
    assert set(numbers["reference_rows"]) == {"tokenizer ceiling", "oracle (teacher features)",
                                              "shuffled-brain control"}  # fmt: skip
