"""The diversity study's levers: stochastic flow sampling (churn), the logit-normal timestep
distribution's location and scale, anatomy-keeping training augmentation, the generator's own
seed -- each does what its parameter says, and each left at its default changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from neurodiff import config
from neurodiff.config import ConfigError, ModelConfig, SampleConfig, TrainConfig
from neurodiff.model import sample_timesteps
from neurodiff.sampling import _churn, generate
from neurodiff.train.augmentation import augmenter

T = 250
MU, TAU = 0.2, 0.25  # the data: every pixel N(MU, TAU^2), independently


class GaussianFlow(torch.nn.Module):
    """The exact rectified-flow velocity E[x0 - noise | x_t] of data N(MU, TAU^2) per pixel: a
    perfect network, so that a sampler's output distribution can be checked against the data's."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # generate() asks for a device

    def forward(self, x, timesteps, class_labels=None):
        s = (timesteps.float() / T).view(-1, *([1] * (x.dim() - 1)))
        var = (1 - s) ** 2 * TAU**2 + s**2
        centred = x - (1 - s) * MU
        x0 = MU + (1 - s) * TAU**2 / var * centred
        noise = s / var * centred
        return x0 - noise


@pytest.fixture(scope="module")
def flow_cfg() -> ModelConfig:
    return config.resolve("demo", {"image_size": 8, "timesteps": T}).stage(ModelConfig)


def _draw(cfg, churn: float, sampler: str = "euler", steps: int = 40, seed: int = 0):
    x = generate(
        GaussianFlow(), cfg, 256, sampler=sampler, steps=steps, churn=churn, seed=seed,
        batch_size=256, progress=False,
    )  # fmt: skip
    return x.flatten()


@pytest.mark.parametrize("churn", [0.0, 0.3, 1.0])
def test_churn_keeps_the_data_distribution_with_a_perfect_network(flow_cfg, churn):
    """With Heun's steps (the demo's sampler) the churned path ends on the data distribution.
    (Euler's first-order error grows with the churn: 40 steps at churn 1 give an SD of 0.196
    for 0.25 -- the churn is meant for Heun, as in Karras et al.'s Algorithm 2.)"""
    x = _draw(flow_cfg, churn, "heun")  # 16384 pixels
    assert abs(float(x.mean()) - MU) < 0.02
    assert abs(float(x.std()) - TAU) < 0.02


def test_churn_changes_the_path_and_is_seeded(flow_cfg):
    plain, churned = _draw(flow_cfg, 0.0), _draw(flow_cfg, 0.5)
    assert not torch.equal(plain, churned)  # fresh noise was injected
    assert torch.equal(churned, _draw(flow_cfg, 0.5))  # from the seed alone
    assert not torch.equal(churned, _draw(flow_cfg, 0.5, seed=1))


def test_churn_raises_the_noise_to_signal_ratio_by_its_factor():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(20000)  # x0 = 0: x_t is pure scaled noise of std s
    t = 100
    s = t / T
    x_t = s * torch.randn(x.shape, generator=gen)
    t_hat, x_hat = _churn(x_t, t, 0.5, T, gen)
    s_hat = t_hat / T
    assert abs(s_hat / (1 - s_hat) - 1.5 * s / (1 - s)) < 0.01  # sigma raised by 1.5 (rounded t)
    assert abs(float(x_hat.std()) - s_hat) < 0.01  # and x_hat has the noise of level t_hat
    assert _churn(x_t, 0, 0.5, T, gen) == (0, x_t)  # nothing at the ends
    assert _churn(x_t, T, 0.5, T, gen)[0] == T


def test_churn_is_refused_for_samplers_with_their_own_noise():
    with pytest.raises(ConfigError, match="churn"):
        config.resolve("smoke", {"churn": 0.2})  # ddpm process, ddim sampler
    with pytest.raises(ConfigError, match="churn"):
        config.resolve("demo", {"churn": -0.1})


def test_logit_normal_location_and_scale_shape_the_training_timesteps():
    def draw(**kw):
        cfg = config.resolve("demo", kw).stage(ModelConfig)
        t = sample_timesteps(cfg, 40000, torch.Generator().manual_seed(0)).float() / cfg.timesteps
        return t

    base, noisy, wide = draw(), draw(logit_mean=0.5), draw(logit_std=1.6)
    assert abs(float(base.median()) - 0.5) < 0.01
    assert abs(float(noisy.median()) - 1 / (1 + math.exp(-0.5))) < 0.01
    assert float(wide.std()) > float(base.std()) + 0.03
    # the defaults draw exactly what the plain logit-normal drew
    z = torch.randn((40000,), generator=torch.Generator().manual_seed(0))
    plain = (torch.sigmoid(z) * 250).long().clamp_(0, 249).float() / 250
    assert torch.equal(base, plain)


def test_logit_normal_parameters_are_refused_with_uniform_timesteps():
    with pytest.raises(ConfigError, match="logit_mean"):
        config.resolve("demo", {"timestep_sampling": "uniform", "logit_mean": 0.5})
    with pytest.raises(ConfigError, match="logit_std"):
        config.resolve("demo", {"logit_std": 0})


def _ring(n: int = 4, size: int = 32) -> torch.Tensor:
    """A bright ring on a background of -1: an anatomy whose shape can be measured."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).float().sqrt()
    img = torch.where((r > 8) & (r < 12), 0.8, -1.0)
    return img.expand(n, 1, size, size).clone()


def test_mild_augmentation_moves_the_anatomy_by_about_a_voxel():
    aug = augmenter("mild", 2, 32)
    x = _ring()
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= -1 and float(y.max()) <= 1
    assert not torch.equal(x, y)
    # the ring's area and centre stay nearly where they were
    area_x, area_y = (x > 0).float().sum((1, 2, 3)), (y > 0).float().sum((1, 2, 3))
    assert torch.all((area_y / area_x - 1).abs() < 0.15)
    assert float(((x > 0) != (y > 0)).float().mean()) < 0.1
    # the background stays at -1 (the contrast gamma keeps the minimum)
    assert float(y[:, :, 0, 0].max()) == pytest.approx(-1.0)


def test_augmentation_is_seeded_and_none_draws_nothing():
    aug = augmenter("mild", 2, 32)
    a = aug(_ring(), torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(_ring(), torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(_ring(), torch.Generator().manual_seed(4)))
    assert augmenter("none", 2, 32) is None
    volumes = augmenter("mild", 3, 16)(torch.rand(2, 1, 16, 16, 16) * 2 - 1, torch.Generator())
    assert volumes.shape == (2, 1, 16, 16, 16)


def test_generator_seed_moves_only_the_generator():
    params = config.resolve("demo", {"generator_seed": 2, "seed": 5})
    assert params.stage(TrainConfig).generator_rng_seed == 7
    assert params.stage(SampleConfig).generator_rng_seed == 7
    base = config.resolve("demo", {"seed": 5})
    # the split, the subjects and the metrics keep the master seed
    assert params.stage(config.PreprocessConfig) == base.stage(config.PreprocessConfig)
    assert params.stage(config.MetricsConfig) == base.stage(config.MetricsConfig)
    assert params.hash() != base.hash()
