"""Crash safety of training runs: real processes killed with SIGKILL at named points (inside writes too), then
`--resume`, compared bit for bit with the run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from mindhier import fault_points, run_layout

TRAIN = ("train", "tokenizer", "--preset", "tiny", "--threads", "1", "--quiet", "--device", "cpu")
# checkpoint every 10 of the 40 steps, validation (best-on-val weights) every 20
SETTINGS = ("--set", "train_tokenizer.checkpoint_every=10")


def _train(data, out, *extra, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(fault_points.ENV, None)
    if kill_at:
        env[fault_points.ENV] = kill_at
    command = [sys.executable, "-m", "mindhier", *TRAIN, *SETTINGS, "--data", str(data), "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def _steps(run_dir) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / run_layout.LOG).read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def _leftovers(run_dir) -> list[str]:
    return sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.name.endswith(".tmp") or run_layout.PARTIAL_MARK in p.name
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset, tmp_path_factory):
    _, result = tiny_dataset
    out = tmp_path_factory.mktemp("crash") / "reference"
    proc = _train(result.root, out)
    assert proc.returncode == 0, proc.stderr
    return result.root, out


def _kill_then_resume(uninterrupted, tmp_path, kill_at: str):
    data, reference = uninterrupted
    out = tmp_path / "run"
    killed = _train(data, out, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, f"the fault point {kill_at} was not reached: {killed.stderr}"
    assert not (out / run_layout.SUMMARY).exists()
    resumed = _train(data, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in (run_layout.weights_file("tokenizer"), run_layout.last_weights_file("tokenizer")):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs after {kill_at}"
    assert _steps(out) == _steps(reference)  # no step logged twice, none lost, same losses
    assert _leftovers(out) == []
    return out


# one kill inside a write stays in `make test` (a kill before the first resume point is there too, at the session
# level: tests/train/test_session.py); the other points are slow (`make test-slow`, run by CI)
@pytest.mark.parametrize(
    "kill_at",
    [
        "atomic-write.before-rename#2",  # inside the write of the step-20 best-on-val weights
        pytest.param("log.after-write#5", marks=pytest.mark.slow),  # before the first resume point: from step 0
        pytest.param("resume-point.before-manifest#2", marks=pytest.mark.slow),
        pytest.param("resume-point.before-rename#2", marks=pytest.mark.slow),
        pytest.param("resume-point.after-rename#3", marks=pytest.mark.slow),
        pytest.param("best-weights.after-write#1", marks=pytest.mark.slow),
        pytest.param("log.after-write#25", marks=pytest.mark.slow),
        pytest.param("atomic-write.before-rename#5", marks=pytest.mark.slow),
    ],
)
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path, kill_at):
    _kill_then_resume(uninterrupted, tmp_path, kill_at)


@pytest.mark.slow
def test_resume_falls_back_past_a_damaged_newest_resume_point(uninterrupted, tmp_path):
    data, reference = uninterrupted
    out = tmp_path / "run"
    assert _train(data, out, kill_at="log.after-write#35").returncode == -signal.SIGKILL
    points = sorted((out / run_layout.RESUME_DIR).glob(f"{run_layout.RESUME_PREFIX}*"))
    assert len(points) == 2  # steps 20 and 30
    state_file = next(p for p in (points[-1] / run_layout.RESUME_STATE_DIR).iterdir() if p.is_file())
    state_file.write_bytes(state_file.read_bytes()[:-7] + b"damaged")  # same size, other bytes
    resumed = _train(data, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / run_layout.SUMMARY).read_text())
    assert summary["resumed_from"] == 20
    assert any("skipped resume point" in notice for notice in summary["notices"])
    for name in (run_layout.weights_file("tokenizer"), run_layout.last_weights_file("tokenizer")):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


@pytest.mark.slow
def test_leftover_temporary_files_are_removed_on_resume(uninterrupted, tmp_path):
    data, _ = uninterrupted
    out = tmp_path / "run"
    assert _train(data, out, kill_at="atomic-write.before-rename#2").returncode == -signal.SIGKILL
    assert any(p.name.endswith(".tmp") for p in out.iterdir())  # what the kill left
    assert _train(data, out, "--resume").returncode == 0
    assert _leftovers(out) == []
