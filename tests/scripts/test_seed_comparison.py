import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "seed_comparison.py"


def load_script():
    spec = importlib.util.spec_from_file_location("seed_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_set(folder: Path, values: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"per_image": "per_image.csv"}))
    with open(folder / "per_image.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stimulus_index", *values])
        for i in range(len(next(iter(values.values())))):
            writer.writerow([10 + i, *(v[i] for v in values.values())])


def test_pools_seeds_per_image_then_compares(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 40
    truth = rng.normal(size=n)
    seeds = {}
    for s in range(3):
        ours = truth + 0.5 + rng.normal(scale=0.1, size=n)  # the reference is better by 0.5 on every image
        theirs = truth + rng.normal(scale=0.1, size=n)
        for name, pix in (("coarse_to_fine", ours), ("static_terminal", theirs), ("shuffled_brain", theirs - 1)):
            write_set(tmp_path / f"seed{s}" / "eval" / name, {"pixcorr": pix, "ssim": pix / 2})
        seeds[s] = (ours, theirs)
    out = tmp_path / "table.json"
    assert load_script().main([str(tmp_path), "--metrics", "pixcorr", "ssim", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["seeds"] == ["seed0", "seed1", "seed2"]
    row = table["rows"]["pixcorr"]["static_terminal"]
    pooled = np.mean([o - t for o, t in seeds.values()], axis=0).mean()
    assert row["reference_minus"]["mean"] == pytest.approx(pooled, abs=1e-5)
    assert row["reference_minus"]["p_wilcoxon"] < 1e-6 and row["reference_minus"]["ci95"][0] > 0.4
    assert len(row["per_seed"]) == 3 and table["rows"]["pixcorr"]["shuffled_brain"]["reference_minus"]["mean"] > 1.4
    assert "pixcorr" in capsys.readouterr().out
