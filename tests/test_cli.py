import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mindhier.cli import main
from mindhier.data import layout


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_then_data_info(tmp_path, capsys):
    out = tmp_path / "sim"
    code, stdout, _ = run_cli(
        capsys,
        "simulate",
        "--out",
        out,
        "--preset",
        "tiny",
        "--subjects",
        "1",
        "3",
        "--n-train",
        "60",
        "--n-test",
        "10",
        "--size",
        "24",
        "--seed",
        "5",
        "--quiet",
    )
    assert code == 0
    assert "subject 3:" in stdout and f"wrote {out}" in stdout
    record = json.loads((out / layout.CONFIG).read_text())
    assert record["config"]["simulator"]["subjects"] == [1, 3]
    assert record["config"]["simulator"]["seed"] == 5
    assert record["provenance"]["mindhier_version"]

    code, stdout, _ = run_cli(capsys, "data", "info", out, "--json")
    summary = json.loads(stdout)
    assert code == 0
    assert sorted(summary["subjects"]) == ["1", "3"]
    entry = summary["subjects"]["1"]
    assert entry["splits"]["test"] == {"trials": 30, "images": 10}
    assert entry["splits"]["train"]["trials"] + entry["splits"]["val"]["trials"] == 60
    assert sum(entry["voxels_per_roi"].values()) == entry["n_voxels"]
    assert 0 < entry["median_noise_ceiling_measured"] < 100

    code, stdout, _ = run_cli(capsys, "data", "info", out)
    assert "voxels per ROI: V1" in stdout and "median noise ceiling (n=3)" in stdout


def test_simulate_refuses_to_clobber_and_keeps_old_data_on_failure(tmp_path, capsys):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("do not lose me")
    code, _, err = run_cli(capsys, "simulate", "--out", out, "--preset", "tiny", "--quiet")
    assert code == 2 and "already exists and is not empty" in err and "--overwrite" in err
    # with --overwrite, a run that fails part-way leaves the old folder untouched and no debris
    code, _, err = run_cli(
        capsys,
        "simulate",
        "--out",
        out,
        "--preset",
        "tiny",
        "--stimuli",
        f"folder:{tmp_path / 'nowhere'}",
        "--overwrite",
        "--quiet",
    )
    assert code == 2 and "nowhere" in err
    assert (out / "precious.txt").read_text() == "do not lose me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


@pytest.fixture
def broken(tiny_dataset, tmp_path):
    """A fresh copy of the tiny dataset to damage."""
    _, result = tiny_dataset
    root = tmp_path / "copy"
    shutil.copytree(result.root, root)
    return root, result


def _replace_betas(root, subject, array, key="betas"):
    path = layout.betas_path(root, subject)
    path.unlink()
    with h5py.File(path, "w") as f:
        f[key] = array


def _damage(kind, root, result):
    """Apply one kind of damage; return the words the error line must contain."""
    betas_path = layout.betas_path(root, 1)
    with h5py.File(betas_path) as f:
        betas = f["betas"][:]
    if kind == "missing betas":
        betas_path.unlink()
        return ["betas file for subject 1", "is missing"]
    if kind == "wrong key":
        _replace_betas(root, 1, betas, key="data")
        return ["has no dataset 'betas'", "found: data"]
    if kind == "wrong dtype":
        _replace_betas(root, 1, betas.astype(np.float64))
        return ["are float64; expected float32"]
    if kind == "nan betas":
        betas[7, 3] = np.nan
        _replace_betas(root, 1, betas)
        return ["NaN or inf in 1 trials (first: row 7)"]
    if kind == "corrupt betas":
        betas_path.write_bytes(b"not an hdf5 file at all")
        return ["cannot open betas file", "re-download or regenerate"]
    if kind == "voxel count":
        manifest = json.loads((root / layout.MANIFEST).read_text())
        manifest["subjects"]["1"]["n_voxels"] += 1
        (root / layout.MANIFEST).write_text(json.dumps(manifest))
        return ["voxels but manifest.json says"]
    if kind == "behav out of range":
        shard = layout.shard_dir(root, 1, "test") / "0.tar"
        behav = np.full((1, 17), -1)
        behav[0, [0, 5]] = 3, 10**6
        buffer = __import__("io").BytesIO()
        np.save(buffer, behav)
        import webdataset as wds

        with wds.TarWriter(str(shard)) as sink:
            sink.write({"__key__": "bad", "behav.npy": buffer.getvalue()})
        return ["behav column 5 points at betas row 1000000"]
    if kind == "corrupt shard":
        (layout.shard_dir(root, 1, "train") / "0.tar").write_bytes(b"\x00garbage" * 100)
        return ["0.tar"]
    if kind == "missing image":
        layout.image_png_path(root, int(result.test_images[0])).unlink()
        return ["stimulus images are missing", layout.image_png_name(int(result.test_images[0]))]
    if kind == "unreadable image":
        layout.image_png_path(root, int(result.test_images[1])).write_bytes(b"\x89PNG broken")
        return ["cannot read stimulus image", layout.image_png_name(int(result.test_images[1]))]
    if kind == "corrupt manifest":
        (root / layout.MANIFEST).write_text("{ not json")
        return ["manifest", "is not valid JSON"]
    if kind == "missing folder":
        shutil.rmtree(root)
        return ["dataset folder not found", "mindhier simulate"]
    raise AssertionError(kind)


DAMAGE = [
    "missing betas",
    "wrong key",
    "wrong dtype",
    "nan betas",
    "corrupt betas",
    "voxel count",
    "behav out of range",
    "corrupt shard",
    "missing image",
    "unreadable image",
    "corrupt manifest",
    "missing folder",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_bad_dataset_gives_one_clear_error_line(kind, broken, capsys):
    root, result = broken
    expected = _damage(kind, root, result)
    code, stdout, stderr = run_cli(capsys, "data", "info", root)
    assert code == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mindhier: error: ")
    for words in expected:
        assert words in lines[0]


def test_error_exit_from_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mindhier", "data", "info", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("mindhier: error: dataset folder not found")


def test_bad_config_value_is_one_line(capsys):
    code, _, err = run_cli(capsys, "config", "show", "--preset", "tiny", "--set", "simulator.seed=abc")
    assert (
        code == 2
        and err.strip() == "mindhier: error: simulator.seed expects an integer, got 'abc'; write a whole number"
    )
    code, out, _ = run_cli(capsys, "config", "show", "--preset", "tiny", "--set", "simulator.seed=9")
    assert code == 0 and json.loads(out)["simulator"]["seed"] == 9


def test_demo_runs_end_to_end_and_reuses_every_stage(tiny_demo, tmp_path, capsys):
    first, stdout, code = tiny_demo
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("simulated dataset")
    assert lines[-1] == f"report: {first / 'report' / 'index.html'}"
    out = shutil.copytree(first, tmp_path / "demo")  # the reuse and --fresh runs below change the folder
    args = ["demo", "--preset", "tiny", "--out", out, "--quiet", "--no-judge"]
    n_test = 24
    for name in ("coarse_to_fine", "static_terminal", "teacher_oracle", "shuffled_brain", "tokenizer_ceiling"):
        assert len(list((out / "recons" / name).glob("image_*.png"))) == n_test
        record = json.loads((out / "eval" / name / "metrics.json").read_text())
        protocol = record["protocol"]
        assert protocol["split"] == "test" and protocol["n_images"] == n_test and protocol["subject"] == 1
        assert {"pixcorr", "ssim", "lite0_late.two_way"} <= set(record["metrics"])
        assert record["metrics"]["alexnet_2"]["kind"] in ("absent", "real")
    routed = json.loads((out / "eval" / "coarse_to_fine" / "metrics.json").read_text())["protocol"]
    assert (
        routed["routing"] == "coarse_to_fine" and routed["samples"] == 1 and "averaged as voxels" in routed["averaging"]
    )
    control = json.loads((out / "eval" / "shuffled_brain" / "metrics.json").read_text())["protocol"]
    assert control["control"].startswith("shuffled brain")
    assert len(list((out / "recons" / "coarse_to_fine" / "strips").glob("*.png"))) == n_test
    record = json.loads((out / "eval" / "coarse_to_fine" / "metrics.json").read_text())
    assert len(record["per_scale"]["means"]["pixcorr"]) == 4 and record["consistency"]["repeats"] == 4
    assert set(record["brain_correlation"]["rois"]) >= {"all", "V1", "higher"}
    oracle = json.loads((out / "eval" / "teacher_oracle" / "metrics.json").read_text())["protocol"]
    assert oracle["condition"].startswith("oracle") and oracle["routing"] == "coarse_to_fine"
    # an honest upper bound: the oracle row's generator was trained on teacher features (here the prior as it is)
    manifest = json.loads((out / "recons" / "teacher_oracle" / "manifest.json").read_text())
    assert Path(manifest["models"]["decoder"]).name == "coarse_to_fine-oracle"
    oracle_inputs = json.loads((out / "generators" / "coarse_to_fine-oracle" / "inputs.json").read_text())
    assert oracle_inputs["condition"] == "teacher"
    # condition use per scale for every scale-wise row that reconstructs from its own condition, none for controls
    for name, condition in (("coarse_to_fine", "brain"), ("static_terminal", "brain"), ("teacher_oracle", "teacher")):
        use = json.loads((out / "eval" / name / "metrics.json").read_text())["condition_use"]
        assert use["condition"] == condition and use["n_images"] == n_test and len(use["scales"]) == 4
        assert "per_image" not in use and (out / "recons" / name / "condition_use.json").is_file()
    assert json.loads((out / "eval" / "shuffled_brain" / "metrics.json").read_text())["condition_use"] is None
    report = (out / "report" / "index.html").read_text()
    assert "coarse_to_fine" in report and "static_terminal" in report and "shuffled_brain" in report
    assert "Quality at each scale" in report and "Brain correlation per ROI" in report and "Consistency" in report
    assert "Condition use per scale" in report
    stages = json.loads((out / "stage_times.json").read_text())
    assert not any(stage["reused"] for stage in stages.values())
    weights = out / "generators" / "coarse_to_fine" / "generator.safetensors"
    stamp = weights.stat().st_mtime_ns

    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and stdout.startswith("reused dataset")
    stages = json.loads((out / "stage_times.json").read_text())
    assert all(
        stages[name]["reused"]
        for name in (
            "simulate",
            "encoder",
            "tokenizer",
            "generator coarse_to_fine",
            "reconstruct coarse_to_fine",
            "evaluate static_terminal",
        )
    )
    assert weights.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_demo_recomputes_what_a_changed_config_touches_and_fresh_recomputes_all(tiny_demo, tmp_path, capsys):
    out = shutil.copytree(tiny_demo[0], tmp_path / "demo")
    args = ["demo", "--preset", "tiny", "--out", out, "--quiet", "--no-judge"]
    smaller = ["--set", "demo.routings=coarse_to_fine", "--set", "demo.consistency_samples=0"]
    code, stdout, _ = run_cli(capsys, *args, "--set", "generator.depth=1", *smaller)
    stages = json.loads((out / "stage_times.json").read_text())
    assert stages["encoder"]["reused"] and not stages["generator coarse_to_fine"]["reused"]

    code, stdout, _ = run_cli(capsys, *args, "--set", "generator.depth=1", *smaller, "--fresh")
    assert code == 0 and stdout.startswith("simulated dataset")
    stages = json.loads((out / "stage_times.json").read_text())
    assert not any(stage.get("reused") for stage in stages.values())
