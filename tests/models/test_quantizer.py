import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindhier.models.quantizer import MultiScaleQuantizer

SCALES = (1, 2, 3, 4, 6)


@pytest.fixture
def quantizer():
    torch.manual_seed(0)
    q = MultiScaleQuantizer(vocab=40, channels=5, scales=SCALES, phi_convs=4, phi_ratio=0.5)
    torch.nn.init.normal_(q.embedding.weight)
    return q.eval()


def reference_encode(q: MultiScaleQuantizer, f: torch.Tensor) -> list[torch.Tensor]:
    """A plain transcription of VAR's algorithm: one scale, one position, one code at a time."""
    batch, _, side, _ = f.shape
    rest, tokens = f.clone(), []
    codes = q.embedding.weight.detach()
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    for k, s in enumerate(SCALES):
        z = rest if s == side else F.interpolate(rest, size=(s, s), mode="area")
        idx = torch.empty(batch, s * s, dtype=torch.long)
        for b in range(batch):
            for i in range(s):
                for j in range(s):
                    distances = [float(((z[b, :, i, j] - codes[v]) ** 2).sum()) for v in range(len(codes))]
                    idx[b, i * s + j] = int(np.argmin(distances))
        h = codes[idx].reshape(batch, s, s, -1).permute(0, 3, 1, 2)
        if s != side:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        h = q.quant_resi.qresi_ls[int(np.argmin(np.abs(ticks - k / (len(SCALES) - 1))))](h)
        rest = rest - h
        tokens.append(idx)
    return tokens


def test_vectorised_encode_equals_a_plain_per_scale_loop(quantizer):
    f = torch.randn(2, 5, 6, 6)
    with torch.no_grad():
        fast, slow = quantizer.encode(f), reference_encode(quantizer, f)
    assert [t.shape for t in fast] == [(2, s * s) for s in SCALES]
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)


def test_tokens_are_in_range_and_code_lookup_round_trips(quantizer):
    f = torch.randn(3, 5, 6, 6) * 3
    tokens = quantizer.encode(f)
    assert all(t.min() >= 0 and t.max() < 40 for t in tokens)
    # decoding a token map to its codes and encoding those codes gives the tokens back exactly
    for idx in tokens:
        codes = quantizer.codes(idx)
        again = quantizer.nearest(codes.permute(0, 2, 3, 1).reshape(-1, 5)).reshape(idx.shape)
        assert torch.equal(again, idx)


def test_phi_ticks_pick_the_papers_convs():
    q = MultiScaleQuantizer(vocab=8, channels=2, scales=(1, 2, 3, 4, 6, 9, 13, 18, 24, 32))
    chosen = [q.quant_resi.index_for(q.position(k)) for k in range(10)]
    # VAR's partial sharing: ticks linspace(1/12, 11/12, 4), nearest to k / 9; k = 2 (2/9) is an exact tie
    # between ticks 0 and 1 that VAR's float arithmetic resolves to 1
    expected = [int(np.argmin(np.abs(np.linspace(1 / 3 / 4, 1 - 1 / 3 / 4, 4) - k / 9))) for k in range(10)]
    assert chosen == expected == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_teacher_forcing_inputs_match_a_per_scale_loop(quantizer):
    tokens = quantizer.encode(torch.randn(2, 5, 6, 6))
    with torch.no_grad():
        inputs = quantizer.teacher_forcing_inputs(tokens)
        assert inputs.shape == (2, sum(s * s for s in SCALES[1:]), 5)
        f_hat, expected = None, []
        for k in range(len(SCALES) - 1):
            f_hat, nxt = quantizer.next_input(k, f_hat, quantizer.codes(tokens[k]))
            expected.append(nxt.flatten(2).transpose(1, 2))
        torch.testing.assert_close(inputs, torch.cat(expected, dim=1))
        accumulated = quantizer.accumulated(tokens)
        torch.testing.assert_close(accumulated[-1], quantizer.decode(tokens))
        # perturbing scale k changes f̂ only from scale k on
        changed = [t.clone() for t in tokens]
        changed[2] = (changed[2] + 1) % 40
        again = quantizer.accumulated(changed)
        assert all(torch.equal(a, b) for a, b in zip(accumulated[:2], again[:2], strict=True))
        assert not torch.equal(accumulated[2], again[2])


def test_training_pass_is_straight_through_and_counts_hits(quantizer):
    quantizer.train()
    f = torch.randn(2, 5, 6, 6, requires_grad=True)
    f_st, loss, tokens = quantizer(f)
    torch.testing.assert_close(f_st, quantizer.decode(tokens))
    (f_st.sum() + loss).backward()
    assert f.grad is not None and quantizer.embedding.weight.grad is not None
    assert quantizer.ema_vocab_hit_SV.sum() > 0
    g = torch.Generator().manual_seed(0)
    restarted = quantizer.restart_dead_codes(torch.randn(50, 5), threshold=1e9, generator=g)
    assert restarted == 40
