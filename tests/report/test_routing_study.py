"""The routing study (`demo --preset demo-long` at tiny size): routings fine-tuned per seed on the brain and on the
teacher's features, the reference rows once, and the paired table with its verdict in the report."""

import json
import shutil

import numpy as np
import pytest

from mindhier.cli import main
from mindhier.metrics.recons_eval import read_per_image
from mindhier.report.routing_study import verdict

STUDY = [
    "demo.routings=coarse_to_fine,fine_to_coarse",
    "demo.seeds=0,1",
    "demo.conditions=brain,teacher",
    "demo.oracle_row=false",
    "demo.consistency_samples=0",
]


@pytest.mark.slow  # eight tiny fine-tunes and their evaluations: about 2 minutes on 2 cores (CI runs `make test-slow`)
def test_two_seeds_two_routings_two_arms_are_paired_in_the_report(tiny_demo, tmp_path, capsys):
    out = shutil.copytree(tiny_demo[0], tmp_path / "study")  # data, encoder and tokenizer are reused
    sets = [token for setting in STUDY for token in ("--set", setting)]
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--quiet", "--no-judge", *sets]) == 0
    stages = json.loads((out / "stage_times.json").read_text())
    assert stages["encoder"]["reused"] and stages["tokenizer"]["reused"]
    for seed in (0, 1):
        run = out / f"seed{seed}"
        for name in ("coarse_to_fine", "fine_to_coarse", "coarse_to_fine-oracle", "fine_to_coarse-oracle"):
            inputs = json.loads((run / "generators" / name / "inputs.json").read_text())
            assert inputs["condition"] == ("teacher" if name.endswith("-oracle") else "brain")
            assert (run / "eval" / name / "metrics.json").is_file()
        # the seed-independent reference rows are made once, in the first seed's run
        assert (run / "eval" / "tokenizer_ceiling").is_dir() == (seed == 0)
        assert (run / "eval" / "shuffled_brain").is_dir() == (seed == 0)
    # another seed is another fine-tune: the two seeds' reconstructions differ
    a = read_per_image(out / "seed0" / "eval" / "coarse_to_fine" / "metrics.json")[1]["pixcorr"]
    b = read_per_image(out / "seed1" / "eval" / "coarse_to_fine" / "metrics.json")[1]["pixcorr"]
    assert not np.array_equal(a, b)

    study = json.loads((out / "report" / "routing_study.json").read_text())
    assert set(study["arms"]) == {"brain", "oracle"} and study["world"]["teacher_grid"] == 2
    for arm in study["arms"].values():
        d = arm["coarse_to_fine minus"]["fine_to_coarse"]["pixcorr"]
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] and 0 <= d["p_wilcoxon"] <= 1
    # the pooled means: per-image scores averaged over the seeds, then over the images
    assert np.isclose(study["arms"]["brain"]["means"]["coarse_to_fine"]["pixcorr"], (a.mean() + b.mean()) / 2)
    report = (out / "report" / "index.html").read_text()
    assert "Routing study (2 seeds" in report and "oracle conditioning" in report and "Verdict" in report


def test_verdict_names_significant_differences_and_says_why_when_the_oracle_shows_none():
    def diff(lo, hi, p):
        return {"mean": (lo + hi) / 2, "ci95": [lo, hi], "p_wilcoxon": p}

    world = {"teacher": "efficientnet-lite0", "teacher_grid": 4, "teacher_layers": "balanced", "scales": [1, 2, 4]}
    none = {"coarse_to_fine minus": {"static_terminal": {"pixcorr": diff(-0.01, 0.02, 0.4)}}}
    better = {"coarse_to_fine minus": {"static_terminal": {"pixcorr": diff(0.01, 0.05, 0.001)}}}
    said = verdict({"brain": better, "oracle": none}, world)
    assert "brain: coarse_to_fine better on pixcorr vs static_terminal" in said
    assert "cannot show a routing effect" in said and "4×4 grid" in said
    said = verdict({"brain": none, "oracle": better}, world)
    assert "cannot show" not in said and "no routing differs" in said
