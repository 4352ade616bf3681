import pytest
import torch

from mindhier.checkpoint import load_weights, save_weights
from mindhier.config import PRESETS, nsd_paper
from mindhier.errors import WeightsError
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes


def test_nsd_paper_parameter_count_matches_the_authors():
    """307,292,160 for subject 1 (15,724 voxels), as printed by the authors' `infer.ipynb`.

    Counted: the voxel MLP (per-subject Linear 15,724→4,096, shared 4,096→2,048→100·768, biases),
    the 100×768 position embedding, the 4-layer image decoder with its 257 queries, the 4-layer text
    decoder with its 77 queries, and the two 768→768 projections (terminal and text). The per-level
    heads are identities here (teacher dim = width = 768), so they add nothing.
    """
    cfg = nsd_paper()
    shapes = EncoderShapes(((1, 15724),), (768, 768, 768, 768), queries=257, text_tokens=77, text_dim=768)
    with torch.device("meta"):
        model = BrainEncoder(cfg.encoder, shapes)
    assert sum(p.numel() for p in model.parameters()) == 307_292_160
    assert all(isinstance(h, torch.nn.Identity) for h in model.heads)
    for batch in (1, 4):
        with torch.device("meta"):
            out = model(torch.zeros(batch, 15724), subject=1)
        assert out.levels_BMQD.shape == (batch, 4, 257, 768)
        assert out.terminal_BQD.shape == (batch, 257, 768)
        assert out.text_BUD.shape == (batch, 77, 768)


def _shapes(depth, queries=5):
    return EncoderShapes(((1, 40), (2, 55)), tuple(16 * (m + 1) for m in range(depth)), queries=queries)


@pytest.mark.parametrize("preset", ["tiny", "demo"])
@pytest.mark.parametrize("batch", [1, 4])
def test_output_shapes_for_each_preset(preset, batch):
    cfg = PRESETS[preset]()
    shapes = _shapes(cfg.encoder.depth)
    model = BrainEncoder(cfg.encoder, shapes).eval()
    out = model(torch.randn(batch, 55), subject=2)
    assert out.levels_BMQD.shape == (batch, cfg.encoder.depth, 5, cfg.encoder.width)
    assert [h.shape for h in out.heads] == [(batch, 5, d) for d in shapes.level_dims]
    assert out.terminal_BQD.shape == (batch, 5, shapes.level_dims[-1])
    assert out.pooled_BD.shape == (batch, shapes.level_dims[-1])
    assert out.text_BUD is None


def test_multi_subject_batch_matches_per_subject_forward():
    cfg = PRESETS["tiny"]()
    model = BrainEncoder(cfg.encoder, _shapes(cfg.encoder.depth)).eval()
    a, b = torch.randn(3, 40), torch.randn(2, 55)
    mixed = model([(1, a), (2, b)])
    assert mixed.levels_BMQD.shape[0] == 5
    torch.testing.assert_close(mixed.terminal_BQD[:3], model(a, subject=1).terminal_BQD)
    torch.testing.assert_close(mixed.terminal_BQD[3:], model(b, subject=2).terminal_BQD)
    with pytest.raises(ValueError, match="subject 1: got 55 voxels, the encoder expects 40"):
        model(b, subject=1)
    with pytest.raises(KeyError, match="no input layer for subject 3"):
        model(a, subject=3)


def test_levels_are_cascaded_not_parallel():
    """Level m feeds level m + 1: perturbing block 1 changes every later level."""
    cfg = PRESETS["tiny"]()
    model = BrainEncoder(cfg.encoder, _shapes(cfg.encoder.depth)).eval()
    x = torch.randn(2, 40)
    before = model(x, subject=1).levels_BMQD
    with torch.no_grad():
        model.blocks[0].ffn[0].weight.add_(torch.randn_like(model.blocks[0].ffn[0].weight))
    after = model(x, subject=1).levels_BMQD
    assert all(not torch.allclose(before[:, m], after[:, m]) for m in range(cfg.encoder.depth))


def test_save_load_is_bit_exact_and_mismatch_is_named(tmp_path):
    cfg = PRESETS["tiny"]()
    model = BrainEncoder(cfg.encoder, _shapes(cfg.encoder.depth))
    save_weights(tmp_path / "enc.safetensors", model, {"step": "7"})
    fresh = BrainEncoder(cfg.encoder, _shapes(cfg.encoder.depth))
    assert load_weights(tmp_path / "enc.safetensors", fresh) == {"step": "7"}
    for (name, p), (_, q) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    other = BrainEncoder(cfg.encoder, EncoderShapes(((1, 41),), (16, 32, 48, 64), queries=5))
    with pytest.raises(
        WeightsError, match=r"unexpected \['input_layers.subj02.bias'.*shape of input_layers.subj01.weight"
    ):
        load_weights(tmp_path / "enc.safetensors", other)
