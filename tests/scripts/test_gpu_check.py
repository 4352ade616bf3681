"""The GPU check runs the same code on the CPU with the tiny preset, and imports only torch and the library."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
ALLOWED = (
    "mindhier.models",
    "mindhier.sampling",
    "mindhier.layers",
    "mindhier.config",
    "mindhier.errors",
    "mindhier.distributed",
    "mindhier._version",  # the root package's version, read without importing the rest
    "mindhier.records",  # run files' sizes checked like flags (standard library only, as the next two)
    "mindhier.fileio",
    "mindhier.fault_points",
)


def run(*args, timeout=300):
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_without_a_gpu_it_says_so_and_exits_2():
    result = run(str(SCRIPT), "sample")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr


def test_imports_only_torch_and_the_library_it_checks():
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mindhier'))))"
    )
    result = run("-c", code, str(SCRIPT))
    assert result.returncode == 0, result.stderr
    loaded = [m for m in result.stdout.split() if m != "mindhier"]
    assert loaded and all(m.startswith(ALLOWED) for m in loaded), loaded


def test_every_check_runs_on_the_cpu_with_the_tiny_preset(tmp_path):
    out = tmp_path / "sample.json"
    result = run(
        str(SCRIPT),
        "sample",
        "--allow-cpu",
        "--preset",
        "tiny",
        "--batches",
        "1",
        "4",
        "--repeats",
        "1",
        "--modes",
        "eager",  # compiled: minutes of TorchInductor on this CPU (compiled = eager tokens: tests/sampling)
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert [r["batch"] for r in record["results"]] == [1, 4]
    for row in record["results"]:
        assert row["seconds_per_image"] > 0 and row["tflop_per_image"] > 0 and row["image_shape"] == [3, 16, 16]
        stages = row["stage_seconds"]
        assert set(stages) == {"encoder", "network", "vq_decode"} and min(stages.values()) > 0
        assert sum(stages.values()) == pytest.approx(row["seconds_per_image"] * row["batch"], rel=1e-6)
    assert record["sampler"]["precision"] == "bf16" and "sample eager batch 4:" in result.stdout

    out = tmp_path / "logits.json"
    assert run(str(SCRIPT), "logits", "--allow-cpu", "--preset", "tiny", "--out", str(out)).returncode == 0
    logits = json.loads(out.read_text())
    assert logits["logit_dtype_under_bf16"] == "torch.float32"  # the head stays fp32 under autocast
    assert 0.5 < logits["top1_agreement"] <= 1.0 and logits["max_abs_difference"] < 10 * logits["logit_std"]

    out = tmp_path / "train.json"
    result = run(str(SCRIPT), "train-step", "--allow-cpu", "--preset", "tiny", "--out", str(out))
    assert result.returncode == 0, result.stderr
    step = json.loads(out.read_text())
    assert step["strategy"] == "fsdp" and step["loss"] > 0


def test_the_ddim_check_times_every_step_count_at_the_matched_size(tmp_path):
    out = tmp_path / "ddim.json"
    args = ["ddim", "--allow-cpu", "--preset", "tiny", "--ddim-steps", "2", "4", "--batches", "1", "3"]
    result = run(str(SCRIPT), *args, "--repeats", "1", "--modes", "eager", "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert [(r["ddim_steps"], r["batch"]) for r in record["results"]] == [(2, 1), (2, 3), (4, 1), (4, 3)]
    assert all(r["seconds_per_image"] > 0 for r in record["results"])
    assert abs(record["parameters"] / record["generator_parameters"] - 1) <= 0.05  # the matched size
