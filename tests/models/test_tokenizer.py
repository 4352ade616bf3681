import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mindhier
from mindhier.config import TokenizerConfig, nsd_paper, tiny
from mindhier.errors import ConfigError, WeightsError
from mindhier.models.tokenizer import Tokenizer
from mindhier.train.tokenizer import PerceptualDistance

MANIFEST = Path(mindhier.__file__).parent / "models" / "manifests" / "var_vqvae_512.json"


def test_nsd_paper_tokenizer_maps_onto_the_published_vqvae_one_to_one():
    """Keys and shapes against the table derived from VAR's model code (scripts/derive_var_vqvae_manifest.py)."""
    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        model = Tokenizer(nsd_paper().tokenizer)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {**manifest["parameters"], **manifest["buffers"]}
    assert sorted(set(ours) ^ set(theirs)) == []
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert sum(p.numel() for p in model.parameters()) == manifest["parameter_count"] == 108_948_355


def test_nsd_paper_geometry():
    cfg = nsd_paper().tokenizer
    assert cfg.downsample == 16 and cfg.image_px // cfg.downsample == cfg.scales[-1] == 32
    assert sum(s * s for s in cfg.scales) == 2240  # the generator's sequence length at 512 px


def small_cfg(**changes) -> TokenizerConfig:
    return dataclasses.replace(tiny().tokenizer, **changes)


def test_loads_a_var_style_weights_file_strictly(tmp_path):
    cfg = small_cfg(attention=True)
    model = Tokenizer(cfg).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "vae.pth")
    save_file(state, str(tmp_path / "vae.safetensors"))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    for name in ("vae.pth", "vae.safetensors"):
        loaded = mindhier.load_tokenizer(tmp_path / name, cfg)
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), model.decode(model.encode(x)))

    del state["quant_conv.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"missing \['quant_conv.bias'\]"):
        mindhier.load_tokenizer(tmp_path / "broken.pth", cfg)
    with pytest.raises(WeightsError, match=r"shape of decoder\.conv_in\.weight"):
        mindhier.load_tokenizer(tmp_path / "vae.pth", small_cfg(attention=True, latent_channels=4))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weights": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="safely"):
        mindhier.load_tokenizer(tmp_path / "evil.pth", small_cfg())


def test_overfits_one_batch_and_residuals_shrink_scale_by_scale():
    torch.manual_seed(0)
    cfg = small_cfg()
    model = Tokenizer(cfg)
    perceptual = PerceptualDistance(2)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    images = torch.stack([torch.stack([torch.sin(3 * (k + 1) * xx), torch.cos(2 * k * yy), xx * yy]) for k in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.5, 0.9))
    errors = []
    for step in range(150):
        recon, vq, _, latent = model(images)
        loss = (recon - images).abs().mean() + (recon - images).square().mean() + vq + 0.1 * perceptual(recon, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        errors.append(float((recon - images).square().mean().detach()))
        if step % 30 == 29:
            vectors = latent.detach().permute(0, 2, 3, 1).reshape(-1, cfg.latent_channels)
            model.quantize.restart_dead_codes(vectors, 0.03, torch.Generator().manual_seed(step))
    assert np.mean(errors[-10:]) < 0.25 * np.mean(errors[:5])
    model.eval()
    with torch.no_grad():
        f = model.latent(images)
        residuals = [float((f - f_hat).norm()) for f_hat in model.quantize.accumulated(model.encode(images))]
    assert all(a > b for a, b in itertools.pairwise(residuals)), residuals
    assert residuals[-1] < 0.5 * float(f.norm())


def test_run_folder_round_trip_is_bit_exact_and_other_configs_are_refused(tiny_dataset, tmp_path):
    from mindhier.train.tokenizer import train_tokenizer

    cfg, result = tiny_dataset
    run = train_tokenizer(cfg, result.root, tmp_path / "tok").run_dir
    loaded = mindhier.load_tokenizer(run, expected=cfg.tokenizer)
    again = mindhier.load_tokenizer(run)
    for (k, a), (_, b) in zip(loaded.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    other = dataclasses.replace(cfg.tokenizer, vocab=128, beta=0.5)
    with pytest.raises(ConfigError, match=r"another config \(tokenizer\.beta, tokenizer\.vocab\)"):
        mindhier.load_tokenizer(run, expected=other)


@pytest.mark.slow
def test_full_size_var_checkpoint_loads_with_the_default_config(tmp_path):
    """A random-init checkpoint with the published shapes, written as VAR does (.pth state dict)."""
    model = Tokenizer(nsd_paper().tokenizer)
    torch.save(model.state_dict(), tmp_path / "vae_ch160v4096z32.pth")
    loaded = mindhier.load_tokenizer(tmp_path / "vae_ch160v4096z32.pth")
    assert torch.equal(loaded.quantize.embedding.weight, model.quantize.embedding.weight)
    with torch.no_grad():
        tokens = loaded.encode(torch.zeros(1, 3, 512, 512))
    assert [t.shape[1] for t in tokens] == [s * s for s in nsd_paper().tokenizer.scales]
