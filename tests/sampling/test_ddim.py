import itertools
import math

import pytest
import torch

from mindhier.config import DdimConfig
from mindhier.sampling.ddim import NoiseSchedule, ddim_step, ddim_timesteps, sample_ddim


def schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(1000, 1e-4, 0.02)


def test_linear_schedule_follows_ddpm():
    s = schedule()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert s.alpha_bar(0) == pytest.approx(1 - 1e-4)
    assert s.alpha_bar(999) == pytest.approx(float(torch.prod(1 - betas)))
    assert s.alpha_bar(-1) == 1.0
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])
    z0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 500, 999])
    z_t = s.add_noise(z0, noise, t)
    for i, ti in enumerate(t.tolist()):
        a = s.alpha_bar(ti)
        assert torch.allclose(z_t[i], math.sqrt(a) * z0[i] + math.sqrt(1 - a) * noise[i], atol=1e-6)


def test_trailing_timesteps_start_at_the_last_and_descend():
    assert ddim_timesteps(1000, 1) == [999]
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 19
    assert all(a > b for a, b in itertools.pairwise(steps))
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="DDIM steps"):
        ddim_timesteps(10, 11)


def test_step_with_the_true_noise_recovers_the_clean_latent():
    s = schedule()
    z0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    z_t = s.add_noise(z0, noise, torch.tensor([700, 700]))
    z_prev, z0_hat = ddim_step(s, z_t, noise, 700, 300, eta=0.0, generator=None)
    assert torch.allclose(z0_hat, z0, atol=1e-5)
    # deterministic DDIM moves along the same noise: z_300 = √ᾱ_300·z0 + √(1 − ᾱ_300)·ε
    assert torch.allclose(z_prev, s.add_noise(z0, noise, torch.tensor([300, 300])), atol=1e-5)
    last, _ = ddim_step(s, z_t, noise, 700, -1, eta=0.0, generator=None)
    assert torch.allclose(last, z0, atol=1e-5)


def test_eta_adds_generator_noise():
    s = schedule()
    z, eps = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    a, _ = ddim_step(s, z, eps, 500, 400, eta=1.0, generator=torch.Generator().manual_seed(0))
    b, _ = ddim_step(s, z, eps, 500, 400, eta=1.0, generator=torch.Generator().manual_seed(0))
    c, _ = ddim_step(s, z, eps, 500, 400, eta=1.0, generator=torch.Generator().manual_seed(1))
    d, _ = ddim_step(s, z, eps, 500, 400, eta=0.0, generator=None)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.allclose(a, d)


class Oracle(torch.nn.Module):
    """Knows the clean latent of the conditional stream; the unconditional stream predicts a wrong one."""

    def __init__(self, z0, wrong):
        super().__init__()
        self.z0, self.wrong, self.s = z0, wrong, schedule()
        self.calls = 0

    def context_kv(self, terminal):
        return [terminal]

    def forward(self, z, t, terminal, pooled, context_kv=None):
        self.calls += 1
        a = self.s.alpha_bar(int(t[0]))
        target = torch.cat([self.z0, self.wrong])[: len(z)]
        return (z - math.sqrt(a) * target) / math.sqrt(1 - a)


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_sampling_with_an_oracle_denoiser_lands_on_the_clean_latent(steps):
    z0 = torch.randn(2, 3, 4, 4)
    oracle = Oracle(z0, torch.zeros_like(z0))
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    cfg = DdimConfig(steps=steps, cfg_scale=0.0)
    out = sample_ddim(
        oracle, schedule(), torch.zeros(2, 1, 1), torch.zeros(2, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1), cfg, noise
    )
    assert torch.allclose(out, z0, atol=1e-4) and oracle.calls == steps


def test_guidance_extrapolates_away_from_the_unconditional_prediction():
    z0 = torch.randn(1, 2, 4, 4)
    wrong = torch.zeros_like(z0)
    oracle = Oracle(z0, wrong)
    noise = torch.randn(1, 2, 4, 4)
    frames = []
    out = sample_ddim(
        oracle,
        schedule(),
        torch.zeros(1, 1, 1),
        torch.zeros(1, 1),
        torch.zeros(1, 1, 1),
        torch.zeros(1, 1),
        DdimConfig(steps=1, cfg_scale=2.0),
        noise,
        step_callback=lambda i, z: frames.append(i),
    )
    # one step from t = T − 1 to the clean end: ẑ_0 = (1 + w)·z0 − w·wrong
    assert torch.allclose(out, 3 * z0 - 2 * wrong, atol=1e-4) and frames == [0]
