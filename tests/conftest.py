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
def tiny_bold(tmp_path_factory):
    """The tiny world's dataset (the tiny demo's own, by seed) with its 72 test presentations as BOLD runs of 16
    trials (`simulate --bold`)."""
    from mindhier.data.bold.simulate_bold import BoldSimConfig
    from mindhier.data.simulator import simulate

    out = tmp_path_factory.mktemp("bold") / "data"
    simulate(tiny(), out, bold=BoldSimConfig(run_trials=16))
    return out


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


def write_hub_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes], repo_type: str = "model", wrong=()):
    """Lay out `files` (name in the repository → content) as the Hugging Face cache holds a repository at `main`:
    blobs named by their sha256 (the Hub's etag of large files), snapshot links, `refs/main`. Names in `wrong`
    get a blob named by another digest, as a damaged or substituted download would have."""
    import hashlib

    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        etag = hashlib.sha256(data + (b"tampered" if name in wrong else b"")).hexdigest()
        blob = folder / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return folder


@pytest.fixture
def hub_cache():
    """`hub_cache(cache, repo_id, files, repo_type="model", wrong=())`: see `write_hub_cache`."""
    return write_hub_cache


TINY_SESSIONS = 4  # the tiny preset's training sessions


@pytest.fixture(scope="session")
def mindeye2_standin(tmp_path_factory):
    """MindEye2's files for subject 1 (repository path → file), from a tiny simulation written with an HDF5 image
    store and renamed as MindEye2 names them; no manifest, as real NSD has none."""
    from mindhier.data import layout
    from mindhier.data.simulator import simulate
    from mindhier.fetch.sources import nsd_files

    cfg = tiny_config(subjects=(1,), image_store="hdf5")
    root = simulate(cfg, tmp_path_factory.mktemp("mindeye2") / "tiny").root
    names = {f.filename: f.filename for f in nsd_files([1], TINY_SESSIONS, with_old_test=True)}
    names[layout.NSD_IMAGES_HDF5] = layout.images_hdf5_name(cfg.stimuli.size)
    names[layout.NSD_CAPTIONS_NPY] = layout.CAPTIONS_NPY
    return {repo_name: root / ours for repo_name, ours in names.items()}


SWITTI_CONTEXT, SWITTI_POOLED = 768 + 1280, 1280  # Switti's text context (CLIP-L + bigG tokens) and pooled width


def switti_layout(ours: dict[str, torch.Tensor], wrong: str | None = None, seed: int = 7) -> dict[str, torch.Tensor]:
    """A Switti checkpoint of our generator's size (`ours`: its state dict), random, in bf16: Switti's names and
    text-context widths where MindHier's modules differ, its text pooler, none of MindHier's own modules; `wrong`
    names a key given one column too many (a checkpoint of another size)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ours.items():
        if key.startswith(("fmri_pooler.", "level_in.", "condition_maps.")) or ".level_in." in key:
            continue
        shape = list(value.shape)
        if "cross_attn.to_kv.weight" in key:
            shape[-1] = SWITTI_CONTEXT
        elif "attention_y_norm." in key:
            shape = [SWITTI_CONTEXT]
        state[key] = torch.randn(shape, generator=gen)
    width = ours["head.weight"].shape[1]
    state["text_pooler.weight"] = torch.randn(width, SWITTI_POOLED, generator=gen)
    state["text_pooler.bias"] = torch.zeros(width)
    if wrong is not None:
        state[wrong] = torch.randn(*state[wrong].shape[:-1], state[wrong].shape[-1] + 1, generator=gen)
    return {k: v.to(torch.bfloat16) for k, v in state.items()}


def tiny_scale_tokenizer(scales: tuple[int, ...] = (1, 2, 4, 8)):
    """A seeded random tiny tokenizer (8 latent channels, 64 codes) over `scales`: the stand-in of the generator,
    sampler and condition-use tests."""
    from mindhier.config import tiny
    from mindhier.models.tokenizer import Tokenizer

    torch.manual_seed(1)
    return Tokenizer(dataclasses.replace(tiny().tokenizer, latent_channels=8, vocab=64, scales=scales)).eval()
