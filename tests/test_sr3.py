"""SR3 diffusion: schedule, forward process, DDPM objective, ancestral DDPM and DDIM samplers, each against
a float64 NumPy reference of the published equations written here (Ho et al. 2020; Song et al. 2021)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipscore_sr.baselines import SR3, GaussianDiffusion, build_generator, linear_beta_schedule
from clipscore_sr.errors import ConfigError

T = 20
SHAPE = (2, 3, 4, 5)
A, B = 0.3, 2.5  # linear mock denoiser eps = A x + B gamma cond; B large enough that x0 clipping engages


def schedule64(n=T, start=1e-4, end=0.2):
    betas = np.linspace(start, end, n)
    return betas, np.cumprod(1.0 - betas)


class Mock:
    """A deterministic 'network' that records the noise level it is conditioned on."""

    def __init__(self):
        self.levels: list[np.ndarray] = []

    def __call__(self, x, cond, gamma):
        self.levels.append(gamma.detach().double().cpu().numpy().copy())
        return A * x + B * gamma.reshape(-1, 1, 1, 1) * cond

    @staticmethod
    def np(x, cond, g):
        return A * x + B * g * cond


def cond_tensor():
    return torch.linspace(-1, 1, int(np.prod(SHAPE))).reshape(SHAPE)


def ddim_reference(seed, steps, eta, clip, n=T):
    """Song et al. eq. (12) in float64, with the chosen sub-sequence of steps (0-based, 0 and T-1 included)."""
    betas, ab = schedule64(n)
    taus = np.unique(np.round(np.linspace(0, n - 1, steps)).astype(int))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g).double().numpy()
    c = cond_tensor().double().numpy()
    levels, clipped = [], 0
    for i in range(len(taus) - 1, -1, -1):
        a_t = ab[taus[i]]
        a_p = ab[taus[i - 1]] if i > 0 else 1.0
        levels.append(np.sqrt(a_t))
        eps = Mock.np(x, c, np.sqrt(a_t))
        x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        if clip:
            clipped += int((np.abs(x0) > 1).sum())
            x0 = np.clip(x0, -1, 1)
            eps = (x - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
        sigma = eta * np.sqrt((1 - a_p) / (1 - a_t)) * np.sqrt(1 - a_t / a_p)
        x = np.sqrt(a_p) * x0 + np.sqrt(1 - a_p - sigma ** 2) * eps
        if i > 0 and eta > 0:
            x = x + sigma * torch.randn(SHAPE, generator=g).double().numpy()
    return x, np.array(levels), clipped


def ddpm_reference(seed, clip, n=T):
    """Ho et al.: x_{t-1} = mu~(x_t, x0) + sqrt(beta~_t) z with the posterior q(x_{t-1} | x_t, x0)."""
    betas, ab = schedule64(n)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g).double().numpy()
    c = cond_tensor().double().numpy()
    for t in range(n - 1, -1, -1):
        ab_prev = ab[t - 1] if t > 0 else 1.0
        eps = Mock.np(x, c, np.sqrt(ab[t]))
        x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
        if clip:
            x0 = np.clip(x0, -1, 1)
        mean = (np.sqrt(ab_prev) * betas[t] / (1 - ab[t])) * x0 + (np.sqrt(1 - betas[t]) * (1 - ab_prev) / (1 - ab[t])) * x
        if t > 0:
            var = betas[t] * (1 - ab_prev) / (1 - ab[t])
            x = mean + np.sqrt(var) * torch.randn(SHAPE, generator=g).double().numpy()
        else:
            x = mean
    return x


@pytest.fixture
def diffusion():
    return GaussianDiffusion(linear_beta_schedule(T, 1e-4, 0.2))


def test_linear_schedule():
    betas = linear_beta_schedule()
    assert betas.dtype == np.float64 and len(betas) == 2000
    assert betas[0] == 1e-6 and betas[-1] == 1e-2 and np.allclose(np.diff(betas), (1e-2 - 1e-6) / 1999)
    with pytest.raises(ConfigError):
        linear_beta_schedule(10, 0.1, 0.01)


def test_q_sample_formula(diffusion):
    x0 = torch.rand(SHAPE) * 2 - 1
    noise = torch.randn(SHAPE)
    gamma = torch.tensor([0.9, 0.1], dtype=torch.float64)
    out = diffusion.q_sample(x0, gamma, noise)
    g = gamma.numpy().reshape(-1, 1, 1, 1)
    expected = g * x0.double().numpy() + np.sqrt(1 - g ** 2) * noise.double().numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-6)


def test_training_noise_levels_lie_in_their_step_interval(diffusion):
    t, gamma = diffusion.sample_noise_levels(4000, torch.Generator().manual_seed(0))
    _, ab = schedule64()
    hi = np.sqrt(np.append(1.0, ab))[t.numpy()]
    lo = np.sqrt(ab)[t.numpy()]
    g = gamma.numpy()
    assert ((g >= lo) & (g <= hi)).all()
    assert set(t.tolist()) == set(range(T))  # every step is drawn


def test_training_loss_is_the_ddpm_objective(diffusion):
    """Recreate the documented draw order (t, uniform level, noise) and compute the loss in float64."""
    x0 = torch.rand(SHAPE) * 2 - 1
    cond = cond_tensor()
    for loss_type in ("l2", "l1"):
        loss = diffusion.training_loss(Mock(), x0, cond, torch.Generator().manual_seed(3), loss_type)
        g = torch.Generator().manual_seed(3)
        _, ab = schedule64()
        t = torch.randint(0, T, (2,), generator=g).numpy()
        u = torch.rand(2, generator=g, dtype=torch.float64).numpy()
        noise = torch.randn(SHAPE, generator=g).double().numpy()
        hi, lo = np.sqrt(np.append(1.0, ab))[t], np.sqrt(ab)[t]
        gam = (lo + (hi - lo) * u).reshape(-1, 1, 1, 1)
        xn = gam * x0.double().numpy() + np.sqrt(1 - gam ** 2) * noise
        err = Mock.np(xn, cond.double().numpy(), gam) - noise
        expected = np.mean(err ** 2) if loss_type == "l2" else np.mean(np.abs(err))
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError):
        diffusion.training_loss(Mock(), x0, cond, loss_type="huber")


def test_ddim_timesteps(diffusion):
    assert diffusion.ddim_timesteps(T).tolist() == list(range(T))
    taus = GaussianDiffusion(linear_beta_schedule(2000)).ddim_timesteps(50)
    assert len(taus) == 50 and taus[0] == 0 and taus[-1] == 1999 and (np.diff(taus) > 0).all()
    with pytest.raises(ConfigError):
        diffusion.ddim_timesteps(T + 1)


@pytest.mark.parametrize("steps,eta,clip", [(5, 0.0, False), (7, 0.5, True), (T, 1.0, False), (3, 1.0, True)])
def test_ddim_matches_float64_reference_and_conditions_on_chosen_steps(diffusion, steps, eta, clip):
    mock = Mock()
    out = diffusion.ddim_sample(mock, cond_tensor(), SHAPE, steps, eta, torch.Generator().manual_seed(11),
                                clip_denoised=clip)
    ref, levels, _ = ddim_reference(11, steps, eta, clip)
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=0, atol=1e-4)
    seen = np.array([lv[0] for lv in mock.levels])
    assert len(seen) == len(levels)
    np.testing.assert_allclose(seen, levels, rtol=1e-6)  # sqrt(alpha_bar) of each chosen step, in order
    assert all((lv == lv[0]).all() for lv in mock.levels)


def test_ddpm_matches_float64_reference(diffusion):
    for clip in (False, True):
        mock = Mock()
        out = diffusion.ddpm_sample(mock, cond_tensor(), SHAPE, torch.Generator().manual_seed(5), clip_denoised=clip)
        np.testing.assert_allclose(out.double().numpy(), ddpm_reference(5, clip), rtol=0, atol=1e-4)
        _, ab = schedule64()
        np.testing.assert_allclose([lv[0] for lv in mock.levels], np.sqrt(ab[::-1]), rtol=1e-6)


def test_ddim_full_steps_eta1_is_ddpm(diffusion):
    """DDIM with steps = T and eta = 1 is the ancestral DDPM update (also with x0 clipping engaged)."""
    _, _, clipped = ddim_reference(2, T, 1.0, True)
    assert clipped > 0
    for clip in (False, True):
        a = diffusion.ddim_sample(Mock(), cond_tensor(), SHAPE, T, 1.0, torch.Generator().manual_seed(2),
                                  clip_denoised=clip)
        b = diffusion.ddpm_sample(Mock(), cond_tensor(), SHAPE, torch.Generator().manual_seed(2), clip_denoised=clip)
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
    # one step alone: the two update rules agree for a random state
    x = torch.randn(SHAPE, dtype=torch.float64)
    betas, ab = schedule64()
    t = 9
    eps = torch.randn(SHAPE, dtype=torch.float64)
    x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
    ddpm_mean = (np.sqrt(ab[t - 1]) * betas[t] / (1 - ab[t])) * x0 + (np.sqrt(1 - betas[t]) * (1 - ab[t - 1]) / (1 - ab[t])) * x
    sigma2 = (1 - ab[t - 1]) / (1 - ab[t]) * (1 - ab[t] / ab[t - 1])
    ddim_mean = np.sqrt(ab[t - 1]) * x0 + np.sqrt(1 - ab[t - 1] - sigma2) * eps
    torch.testing.assert_close(ddim_mean, ddpm_mean, rtol=1e-12, atol=1e-12)
    assert sigma2 == pytest.approx(betas[t] * (1 - ab[t - 1]) / (1 - ab[t]), rel=1e-12)


def test_ddim_eta0_is_deterministic(diffusion):
    g = torch.Generator().manual_seed(4)
    a = diffusion.ddim_sample(Mock(), cond_tensor(), SHAPE, 6, 0.0, g)
    after = g.get_state()
    g2 = torch.Generator().manual_seed(4)
    torch.randn(SHAPE, generator=g2)
    assert torch.equal(after, g2.get_state())  # only the initial noise was drawn
    b = diffusion.ddim_sample(Mock(), cond_tensor(), SHAPE, 6, 0.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    c = diffusion.ddim_sample(Mock(), cond_tensor(), SHAPE, 6, 0.8, torch.Generator().manual_seed(4))
    assert not torch.allclose(a, c)


def test_per_item_generators_make_batches_independent():
    torch.manual_seed(0)
    model = build_generator("sr3", "small", 2, 2, inner_channel=8, channel_mults=(1, 2), norm_groups=4,
                            n_timestep=8, image_size=16, attn_res=(8,)).eval()
    assert isinstance(model, SR3)
    lr = torch.rand(2, 2, 3, 4, 4)
    for sampler, kw in (("ddim", {"steps": 4, "eta": 0.7}), ("ddpm", {})):
        both = model.sample(lr, sampler, generator=[torch.Generator().manual_seed(s) for s in (1, 2)], **kw)
        one = model.sample(lr[1:], sampler, generator=[torch.Generator().manual_seed(2)], **kw)
        torch.testing.assert_close(both[1:], one, rtol=0, atol=1e-6)
        assert both.min() >= 0 and both.max() <= 1  # x0 clipped to [-1, 1] -> [0, 1]
    with pytest.raises(ConfigError, match="sampler"):
        model.sample(lr, "euler")
