"""Switti's VQ-VAE has one file name: the key manifest, `mindhier fetch` and `--tokenizer switti-vqvae` agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mindhier
from conftest import write_hub_cache
from mindhier.fetch.sources import weight_files
from mindhier.published_weights import NAMED_TOKENIZERS, SWITTI_VQVAE_FILE, SWITTI_VQVAE_REPO
from mindhier.tokenizer_source import tokenizer_source

MANIFEST = Path(mindhier.__file__).parent / "models" / "manifests" / "var_vqvae_512.json"


def fetched_switti_vqvae():
    return next(f for f in weight_files(["switti"]) if f.repo_id == SWITTI_VQVAE_REPO)


def test_the_manifest_names_the_file_fetch_downloads():
    source = json.loads(MANIFEST.read_text())["source"]
    assert f"{SWITTI_VQVAE_REPO} {SWITTI_VQVAE_FILE}" in source
    assert re.findall(r"[\w.-]+\.safetensors", source) == [SWITTI_VQVAE_FILE]  # no second name for the same file
    assert fetched_switti_vqvae().filename == SWITTI_VQVAE_FILE == "model.safetensors"


def test_the_tokenizer_by_name_reads_the_file_fetch_puts_in_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    fetched = fetched_switti_vqvae()
    assert NAMED_TOKENIZERS["switti-vqvae"] == (fetched.repo_id, fetched.filename)
    cache = tmp_path / "hf"
    write_hub_cache(cache, fetched.repo_id, {fetched.filename: b"stand-in of Switti's VQ-VAE"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    source = tokenizer_source("switti-vqvae")
    assert source.weights.name == SWITTI_VQVAE_FILE and source.weights.read_bytes() == b"stand-in of Switti's VQ-VAE"
    assert f"models--{SWITTI_VQVAE_REPO.replace('/', '--')}" in source.weights.parts
