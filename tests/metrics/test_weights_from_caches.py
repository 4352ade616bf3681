"""The evaluator finds every metric network in the standard caches, where `mindhier fetch weights metrics` puts
them — no `--weights` flags. Stand-ins: the real architectures, randomly initialised, in the published files'
formats (torchvision state dicts, SwAV's `module.`-prefixed checkpoint, open_clip's safetensors on the Hub)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import write_hub_cache
from mindhier.cli import main
from mindhier.data import layout
from mindhier.fetch.sources import weight_files
from mindhier.fileio import sha256_file
from mindhier.metrics.metric_networks import PINNED, clip_architecture

pytestmark = pytest.mark.slow
NETWORK_METRICS = ("alexnet_2", "alexnet_5", "inception", "clip", "effnet", "swav")


def write_standins(torch_home, hub_cache) -> None:
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    for spec in PINNED.values():
        state = spec.build(True).state_dict()
        if spec.key == "swav":  # SwAV's checkpoint: `module.` prefixes, projection head and prototypes, no fc
            state = {f"module.{k}": v for k, v in state.items() if not k.startswith("fc.")}
            state |= {
                "module.projection_head.0.weight": torch.randn(16, 2048),
                "module.prototypes.weight": torch.randn(8, 16),
            }
        torch.save(state, checkpoints / spec.filename)
    clip = next(f for f in weight_files(["metrics"]) if f.origin == "hub")
    weights = torch_home / "clip.safetensors"
    save_file({k: v.half().contiguous() for k, v in clip_architecture().state_dict().items()}, str(weights))
    write_hub_cache(hub_cache, clip.repo_id, {clip.filename: weights})
    weights.unlink()


def test_every_metric_is_real_with_the_weights_in_the_caches(tiny_dataset, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    _, result = tiny_dataset
    torch_home, hub_cache = tmp_path / "torch", tmp_path / "hf"
    write_standins(torch_home, hub_cache)
    # SwAV's file is checked against its recorded full digest (its name has no hash prefix): record the stand-in's
    swav = torch_home / "hub" / "checkpoints" / PINNED["swav"].filename
    monkeypatch.setitem(PINNED, "swav", dataclasses.replace(PINNED["swav"], sha256=sha256_file(swav)))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))

    recons = tmp_path / "recons"  # the true images as "reconstructions": any folder of the right names will do
    recons.mkdir()
    test = sorted(int(i) for i in result.test_images)
    for index in test:
        shutil.copyfile(layout.image_png_path(result.root, index), recons / layout.image_png_name(index))
    (recons / "manifest.json").write_text(json.dumps({"subject": 1, "split": "test", "stimulus_indices": test}))
    argv = ["eval", "recons", "--recons", str(recons), "--data", str(result.root), "--no-judge", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "eval")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    kinds = {entry["name"]: entry["kind"] for entry in record["extractors"]}
    assert {kinds[name] for name in NETWORK_METRICS} == {"real"}, kinds
    for name in NETWORK_METRICS:
        assert any(metric.startswith(f"{name}.") for metric in record["metrics"]), name

    # fetch checks the same files against the published digests: random stand-ins are not the published weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    code = main(["fetch", "weights", "metrics", "--to", str(tmp_path / "fetched")])
    assert code == 2
    assert "offline: 5 of 5 files are not in the local caches" in capsys.readouterr().err
    shutil.copytree(torch_home, tmp_path / "fetched" / "torch")
    shutil.copytree(hub_cache, tmp_path / "fetched" / "huggingface" / "hub", symlinks=True)
    code = main(["fetch", "weights", "metrics", "--to", str(tmp_path / "fetched")])
    err = capsys.readouterr().err
    assert code == 2 and "alexnet-owt-7be5be79.pth has sha256" in err and "starts with 7be5be79" in err
    assert not (tmp_path / "fetched" / "fetch_manifest.json").exists()
