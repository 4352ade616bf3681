"""Shared fixtures: deterministic threads, a tiny simulated dataset built once per session."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from mindhier.config import MindhierConfig, tiny

# 2 threads (the CI machine's cores); MINDHIER_TEST_THREADS=1 shares a machine with another job without
# oversubscribing its cores (OpenMP threads that spin on a busy core slow everything down)
torch.set_num_threads(int(os.environ.get("MINDHIER_TEST_THREADS", "2")))


def tiny_config(**simulator_changes) -> MindhierConfig:
    """The `tiny` preset with simulator fields changed."""
    cfg = tiny()
    return dataclasses.replace(cfg, simulator=dataclasses.replace(cfg.simulator, **simulator_changes))


@pytest.fixture
def make_config():
    """`make_config(**simulator_changes)` -> the tiny preset with those simulator fields changed."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A two-subject tiny dataset (PNG store) and the in-memory simulation result."""
    from mindhier.data.simulator import simulate

    cfg = tiny_config(subjects=(1, 2))
    out = tmp_path_factory.mktemp("sim") / "tiny"
    result = simulate(cfg, out)
    return cfg, result


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_stage_runs(tiny_dataset, tmp_path_factory):
    """A tiny encoder (subjects 1 and 2) and a tiny tokenizer trained on the tiny dataset."""
    import shutil

    from mindhier.train.encoder import train_encoder
    from mindhier.train.tokenizer import train_tokenizer

    cfg, shared = tiny_dataset
    root = tmp_path_factory.mktemp("stages")
    # a copy of the dataset: training writes caches (features, tokens) into it, and the shared one stays as simulated
    result = dataclasses.replace(shared, root=Path(shutil.copytree(shared.root, root / "data")))
    encoder = train_encoder(cfg, result.root, root / "encoder").run_dir
    tokenizer = train_tokenizer(cfg, result.root, root / "tokenizer").run_dir
    return cfg, result, encoder, tokenizer


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`mindhier demo --preset tiny --no-judge`, run once per session: (its folder, what it printed, exit code).
    Tests that change the folder work on a copy (`shutil.copytree`)."""
    import contextlib
    import io

    from mindhier.cli import main

    out = tmp_path_factory.mktemp("tiny-demo") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--preset", "tiny", "--out", str(out), "--quiet", "--no-judge"])
    return out, printed.getvalue(), code
