import json

import numpy as np
import pytest
import torch
from PIL import Image

import mindhier
from mindhier import run_layout
from mindhier.checkpoint import load_weights
from mindhier.cli import main
from mindhier.data import layout
from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.data.token_cache import TokenCache, build_token_cache
from mindhier.errors import DataError
from mindhier.models.tokenizer import Tokenizer
from mindhier.tokenizer_source import tokenizer_source
from mindhier.train.tokenizer import train_tokenizer


def test_cli_trains_logs_figures_and_tokenizes(tiny_dataset, tmp_path, capsys):
    _, result = tiny_dataset
    run = tmp_path / "tok"
    assert (
        main(["train", "tokenizer", "--data", str(result.root), "--out", str(run), "--preset", "tiny", "--quiet"]) == 0
    )
    assert "val: val_mse" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_mse" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert {"val_pixcorr", "val_ssim", "codebook_usage", "codebook_perplexity"} <= set(evals[-1])
    assert 0 < evals[-1]["codebook_usage"] <= 1
    assert (run / "val_recon_step40.png").is_file()
    figure = Image.open(run / "val_recon_step40.png")
    assert figure.height == 2 * 16 * (2 + 4)  # originals, reconstructions, one row per scale; ×2 zoom

    assert (
        main(["tokenize", "--run", str(run), "--data", str(result.root), "--out", str(tmp_path / "tokens"), "--quiet"])
        == 0
    )
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'tokens'}")
    cache = TokenCache.open(tmp_path / "tokens")
    assert cache.scales == (1, 2, 4, 8)
    # the cached tokens are the tokenizer's tokens of the stimulus at its size
    tokenizer = mindhier.load_tokenizer(run)
    some = cache.indices[[0, 5, 17]]
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        images = resize_uint8(dataset.images.load(some), 16)
    expected = tokenizer.encode(to_model_input(images))
    for cached, direct in zip(cache.get(some), expected, strict=True):
        assert torch.equal(cached, direct)
    again = build_token_cache(result.root, tokenizer, tokenizer_source(run).identity(), out=tmp_path / "tokens")
    assert again.reused
    with pytest.raises(DataError, match="lacks some requested stimuli"):
        cache.get(np.array([10**6]))


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    straight = train_tokenizer(cfg, result.root, tmp_path / "straight").run_dir

    class Crash(Exception):
        pass

    def crash(task, done, total, info=None):
        if task == "train tokenizer" and done == 21:
            raise Crash

    with pytest.raises(Crash):
        train_tokenizer(cfg, result.root, tmp_path / "resumed", progress=crash)
    train_tokenizer(cfg, result.root, tmp_path / "resumed", resume=True)
    last = []
    for run in (straight, tmp_path / "resumed"):
        model = Tokenizer(cfg.tokenizer)
        load_weights(run / run_layout.last_weights_file("tokenizer"), model)
        last.append(model.state_dict())
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])


def test_trains_on_a_plain_image_folder(tmp_path, make_config):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    cfg = make_config()
    run = train_tokenizer(cfg, f"folder:{folder}", tmp_path / "run").run_dir
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["images"] == {"source": f"folder:{folder}", "train": 36, "val": 4}
    assert not (tmp_path / "pictures" / layout.MANIFEST).exists()
