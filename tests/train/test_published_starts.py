"""The paper's training route: a published VQ-VAE file as the tokenizer, a Switti checkpoint as the generator's
start — on stand-ins written in the real files' key layout (the manifests derived from VAR's and Switti's code)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mindhier
from conftest import switti_layout, write_hub_cache
from mindhier.cli import main
from mindhier.data.token_cache import TokenCache
from mindhier.models.scale_ar import SWITTI_NEW_MODULES
from mindhier.published_weights import HUB_WEIGHTS_FILE, SWITTI_REPO, VAR_REPO, VAR_VQVAE_FILE
from mindhier.runs import load_generator

MANIFESTS = Path(mindhier.__file__).parent / "models" / "manifests"


def layout(keys) -> set[str]:
    """Key names with every index replaced by `*` (`blocks.3.attn…` → `blocks.*.attn…`): the naming scheme."""
    return {re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "*", k) for k in keys}


def manifest_layout(name: str) -> set[str]:
    manifest = json.loads((MANIFESTS / f"{name}.json").read_text())
    return layout([*manifest["parameters"], *manifest["buffers"]])


def switti_standin(generator_run: Path, path: Path, wrong: str | None = None) -> dict[str, torch.Tensor]:
    """A Switti checkpoint of the tiny generator's size in Switti's layout (`conftest.switti_layout`), saved."""
    state = switti_layout(load_weights_as_state(generator_run), wrong)
    save_file(state, str(path))
    return state


def load_weights_as_state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "generator.safetensors"))


@pytest.fixture(scope="module")
def published_files(tiny_stage_runs, tmp_path_factory):
    """The tiny tokenizer's weights as a bare VQ-VAE file (VAR's key layout, float32), and a short generator run
    on it from random weights (the model whose size the Switti stand-ins take)."""
    cfg, result, encoder, tokenizer = tiny_stage_runs
    root = tmp_path_factory.mktemp("published")
    vae = root / "weights" / "vae.safetensors"
    vae.parent.mkdir()
    shutil.copyfile(tokenizer / "tokenizer.safetensors", vae)
    files = (cfg, result, encoder, tokenizer, vae, root)
    data = Path(shutil.copytree(result.root, root / "data"))
    assert train_generator_cli(files, data, root / "scratch", vae) == 0
    return files


def test_the_standin_vqvae_has_vars_key_layout(published_files):
    *_, vae, _ = published_files
    state = load_file(str(vae))
    assert layout(state) <= manifest_layout("var_vqvae_512") and "quantize.ema_vocab_hit_SV" in state
    assert {v.dtype for v in state.values()} <= {torch.float32}


def test_a_vqvae_file_or_name_works_wherever_a_tokenizer_run_does(published_files, tmp_path, capsys, monkeypatch):
    _, result, _, tokenizer, vae, _ = published_files
    data = Path(shutil.copytree(result.root, tmp_path / "data"))

    def tokenize(spec, out):
        code = main(
            [
                "tokenize",
                "--tokenizer",
                str(spec),
                "--data",
                str(data),
                "--out",
                str(out),
                "--preset",
                "tiny",
                "--quiet",
            ]
        )
        assert code == 0, capsys.readouterr().err
        return TokenCache.open(out)

    from_run, from_file = tokenize(tokenizer, tmp_path / "t_run"), tokenize(vae, tmp_path / "t_file")
    assert all(torch.equal(a, b) for a, b in zip(from_run.tokens, from_file.tokens, strict=True))

    # by name, from the Hugging Face cache (`mindhier fetch weights var-vqvae` puts it there)
    from huggingface_hub import constants

    hub = tmp_path / "hf"
    pth = tmp_path / VAR_VQVAE_FILE
    torch.save(load_file(str(vae)), pth)  # VAR publishes a plain state dict saved with torch.save
    write_hub_cache(hub, VAR_REPO, {VAR_VQVAE_FILE: pth})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    from_name = tokenize("var-vqvae", tmp_path / "t_name")
    assert all(torch.equal(a, b) for a, b in zip(from_run.tokens, from_name.tokens, strict=True))

    # the nsd-paper architecture (the default for a file) is VAR's 512-px one: the tiny file is refused by shape
    code = main(
        ["tokenize", "--tokenizer", str(vae), "--data", str(data), "--out", str(tmp_path / "t_paper"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "shape of" in err


def train_generator_cli(published_files, data, out, tokenizer, *extra):
    _, _, encoder, *_ = published_files
    argv = ["train", "generator", "--data", str(data), "--encoder", str(encoder), "--tokenizer", str(tokenizer)]
    argv += ["--out", str(out), "--preset", "tiny", "--quiet", "--set", "train_generator.steps=4"]
    argv += ["--set", "train_generator.eval_every=4", "--set", "train_generator.checkpoint_every=4", *extra]
    return main(argv)


def test_train_generator_from_switti_on_a_vqvae_file_then_reconstruct(published_files, tmp_path, capsys):
    cfg, result, _, _, vae, root = published_files
    data = Path(shutil.copytree(result.root, tmp_path / "data"))
    scratch = root / "scratch"
    capsys.readouterr()
    checkpoint = root / "weights" / "switti.safetensors"
    standin = switti_standin(scratch, checkpoint)
    assert layout(standin) <= manifest_layout("switti_512")

    run = root / "from_switti"
    code = train_generator_cli(published_files, data, run, vae, "--init", f"switti={checkpoint}")
    out = capsys.readouterr().out
    assert code == 0
    inputs = json.loads((run / "inputs.json").read_text())
    init = inputs["init"]
    ours = load_weights_as_state(scratch)
    added = [k for k in ours if any(part in k for part in SWITTI_NEW_MODULES)]
    fits = [k for k in ours if k in standin and standin[k].shape == ours[k].shape]
    assert init["loaded"] == len(fits) == len(ours) - init["new"] and init["new"] > 0
    assert set(ours) - set(fits) <= set(added)
    assert init["ignored"] == len(standin) - len(fits) and init["source"] == f"switti:{checkpoint}"
    assert f"loaded {init['loaded']} of {len(ours)} generator tensors" in out
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["init"] == init
    assert inputs["tokenizer_file"]["path"] == "../weights/vae.safetensors" and "tokenizer_run" not in inputs

    # what the start takes: Switti's tensors (bf16 → fp32 exactly) everywhere but MindHier's own modules
    model = load_generator(scratch).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = mindhier.load_generator_init(model, checkpoint)
    after = model.state_dict()
    assert len(report.loaded) == init["loaded"]
    assert all(torch.equal(after[k], standin[k].float()) for k in report.loaded)
    assert all(torch.equal(after[k], before[k]) for k in report.new)

    # later stages find the same tokenizer file, and refuse it once its bytes change
    loaded = load_generator(run)
    assert loaded.cfg.tokenizer == cfg.tokenizer
    recons = tmp_path / "recons"
    argv = ["reconstruct", "--generator", str(run), "--data", str(data), "--out", str(recons), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((recons / "manifest.json").read_text())["models"]["tokenizer"].endswith("vae.safetensors")
    changed = root / "weights" / "vae_changed.safetensors"
    shutil.copyfile(vae, changed)
    state = load_file(str(vae))
    state["quant_conv.bias"] += 1
    save_file(state, str(vae))
    try:
        assert main([*argv[:-1], "--overwrite", "--quiet"]) == 2
        assert "differ from the ones" in capsys.readouterr().err
    finally:
        shutil.copyfile(changed, vae)


def test_a_switti_checkpoint_of_another_shape_is_refused_naming_the_key(published_files, tmp_path, capsys):
    _, result, _, _, vae, root = published_files
    data = Path(shutil.copytree(result.root, tmp_path / "data"))
    scratch = root / "scratch"
    bad = tmp_path / "switti_bad.safetensors"
    switti_standin(scratch, bad, wrong="blocks.1.attn.proj.weight")
    capsys.readouterr()
    code = train_generator_cli(published_files, data, tmp_path / "gen", vae, "--init", f"switti={bad}")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "does not fit this generator: blocks.1.attn.proj.weight is" in err
    assert not (tmp_path / "gen" / "generator.safetensors").exists()

    # by repository id from the Hugging Face cache; absent, one line says how to fetch it
    code = train_generator_cli(published_files, data, tmp_path / "gen2", vae, "--init", "switti=nobody/none")
    assert code == 2 and "mindhier fetch weights switti" in capsys.readouterr().err
    assert SWITTI_REPO == "yresearch/Switti" and HUB_WEIGHTS_FILE == "model.safetensors"


def test_switti_init_is_for_generators_only():
    from mindhier.config import tiny
    from mindhier.errors import ConfigError
    from mindhier.train.warm_start import initial_weights

    with pytest.raises(ConfigError, match="a tokenizer cannot start from Switti"):
        initial_weights("switti=x.safetensors", "tokenizer", tiny())
