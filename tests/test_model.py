"""neurodiff.model: network, noise schedules, training objective, cost estimates; config checks."""

from __future__ import annotations

import pytest
import torch

from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.errors import ConfigError
from neurodiff.model import (
    build_inferer,
    build_model,
    build_scheduler,
    count_parameters,
    diffusion_loss,
    diffusion_target,
    estimate_train_flops,
    model_summary,
    schedule_args,
)

SMOKE = {
    "process": "ddpm",  # the DDPM's schedules and targets (rectified flow: test_recipes.py)
    "channels": (16, 32),
    "attention_levels": (False, True),
    "norm_num_groups": 8,
    "num_head_channels": 16,
    "image_size": 16,
    "timesteps": 50,
}


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig(**SMOKE)


def test_model_maps_noisy_images_to_same_shape(cfg):
    model = build_model(cfg)
    x = torch.randn(3, 1, 16, 16)
    t = torch.tensor([0, 10, 49])
    with torch.no_grad():
        y = model(x, t)
    assert y.shape == x.shape
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert 10_000 < count_parameters(model) < 1_000_000


def test_3d_model(cfg):
    cfg3 = ModelConfig(**{**SMOKE, "spatial_dims": 3, "image_size": 8})
    with torch.no_grad():
        y = build_model(cfg3)(torch.randn(1, 1, 8, 8, 8), torch.tensor([3]))
    assert y.shape == (1, 1, 8, 8, 8)


@pytest.mark.parametrize("schedule", ["linear_beta", "scaled_linear_beta", "cosine"])
@pytest.mark.parametrize("timesteps", [50, 250, 1000])
def test_every_schedule_ends_in_noise(schedule, timesteps):
    sched = build_scheduler(ModelConfig(process="ddpm", schedule=schedule, timesteps=timesteps))
    abar = sched.alphas_cumprod
    assert abar.shape == (timesteps,)
    assert torch.all(abar[1:] < abar[:-1])  # strictly decreasing: noise only grows
    assert abar[0] > 0.95 and abar[-1] < 0.01


def test_linear_schedule_keeps_ho_et_al_range_at_t1000():
    assert schedule_args(
        ModelConfig(process="ddpm", schedule="linear_beta", timesteps=1000)
    ) == pytest.approx({"beta_start": 1e-4, "beta_end": 0.02})
    assert schedule_args(ModelConfig(process="ddpm", schedule="linear_beta", timesteps=250))[
        "beta_end"
    ] == pytest.approx(0.08)
    assert schedule_args(ModelConfig(process="ddpm", schedule="cosine")) == {}


def test_samplers_share_the_training_betas(cfg):
    ddpm = build_scheduler(cfg)
    for kind in ("ddim", "pndm"):
        other = build_scheduler(cfg, kind)
        torch.testing.assert_close(other.alphas_cumprod, ddpm.alphas_cumprod)
    with pytest.raises(ConfigError, match="kind must be ddpm, ddim or pndm; got 'euler'"):
        build_scheduler(cfg, "euler")
    v_cfg = ModelConfig(**{**SMOKE, "prediction_type": "v_prediction"})
    with pytest.raises(ConfigError, match="'pndm' needs an epsilon-prediction model") as err:
        build_scheduler(v_cfg, "pndm")
    assert err.value.parameter == "sampler"


def test_the_ddim_of_build_scheduler_is_the_schedule_consistent_one(cfg):
    """MONAI's plain DDIMScheduler steps by T // steps, wrong when steps do not divide T: every
    DDIM neurodiff builds is the fixed class, whose previous timestep is the schedule's next."""
    from neurodiff.schedulers import schedule_consistent_ddim

    ddim = build_scheduler(cfg, "ddim")
    assert type(ddim) is schedule_consistent_ddim()
    assert ddim.prediction_type == cfg.prediction_type and ddim.clip_sample
    ddim.set_timesteps(7)  # 7 does not divide T = 50
    ts = [int(t) for t in ddim.timesteps]
    assert [ddim.previous_timestep(t) for t in ts] == ts[1:] + [-1]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_loss_target_follows_prediction_type(prediction_type):
    cfg = ModelConfig(**{**SMOKE, "prediction_type": prediction_type})
    sched = build_scheduler(cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 5, 25, 49])
    target = diffusion_target(x0, noise, t, sched)
    expected = {"epsilon": noise, "sample": x0, "v_prediction": sched.get_velocity(x0, noise, t)}[
        prediction_type
    ]
    torch.testing.assert_close(target, expected)
    # a perfect prediction has zero loss; the loss is the mean error otherwise
    assert diffusion_loss(expected, x0, noise, t, sched, "l1").item() == 0.0
    off = expected + 0.5
    assert diffusion_loss(off, x0, noise, t, sched, "l1").item() == pytest.approx(0.5)
    assert diffusion_loss(off, x0, noise, t, sched, "l2").item() == pytest.approx(0.25)


def test_v_target_is_the_velocity():
    sched = build_scheduler(ModelConfig(**{**SMOKE, "prediction_type": "v_prediction"}))
    x0, noise, t = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([10])
    abar = sched.alphas_cumprod[10]
    # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)
    torch.testing.assert_close(
        diffusion_target(x0, noise, t, sched), -torch.sqrt(1 - abar) * torch.ones(1, 1, 2, 2)
    )


def test_unknown_loss_is_rejected(cfg):
    sched = build_scheduler(cfg)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ConfigError, match="'loss' must be l1 or l2; got 'huber'"):
        diffusion_loss(x, x, x, torch.tensor([0]), sched, "huber")


def test_inferer_predicts_from_noised_input(cfg):
    sched = build_scheduler(cfg)
    model = build_model(cfg)
    x0 = torch.zeros(2, 1, 16, 16)
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 40])
    with torch.no_grad():
        a = build_inferer(sched)(x0, model, noise, t)
        b = model(sched.add_noise(x0, noise, t), t)
    torch.testing.assert_close(a, b)


def test_flops_scale_with_batch_and_size(cfg):
    one = estimate_train_flops(cfg, 1)
    assert one > 0
    assert estimate_train_flops(cfg, 4) == 4 * one
    bigger = ModelConfig(**{**SMOKE, "image_size": 32})
    assert estimate_train_flops(bigger, 1) > 3 * one  # 4x the pixels
    s = model_summary(cfg, batch_size=4, grad_accum=2)
    assert s["flops_per_step"] == 8 * one
    assert s["parameters"] == count_parameters(build_model(cfg))
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        estimate_train_flops(cfg, 0)


def test_paper_model_is_counted_without_memory():
    params = config.resolve("paper")
    s = model_summary(params, batch_size=1)
    assert s["input_shape"] == (1, 128, 128, 128)
    assert 30e6 < s["parameters"] < 60e6
    assert s["flops_per_image"] > 1e12


# -- configuration errors, raised before anything is built ------------------------------------


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            {"image_size": 18, "channels": [16, 32, 64], "attention_levels": [False, False, True]},
            r"'image_size' must be divisible by the UNet's downsampling factor .* = 4; got 18",
        ),
        ({"num_head_channels": 24}, r"'num_head_channels' \(24\) must divide .* 32 is not"),
        ({"norm_num_groups": 12}, r"'norm_num_groups' \(12\) must divide every channel count"),
        ({"attention_levels": [True]}, r"'attention_levels' must have one entry per level"),
        ({"batch_size": 0}, r"'batch_size' must be >= 1; got 0"),
        ({"train_steps": 0}, r"'train_steps' must be >= 1; got 0"),
        ({"train_steps": -5}, r"'train_steps' must be >= 1; got -5"),
        ({"schedule": "cosin"}, r"'schedule' must be one of .*did you mean 'cosine'"),
        ({"prediction_type": "eps"}, r"'prediction_type' must be one of"),
        ({"loss": "huber"}, r"'loss' must be one of \['l1', 'l2'\]; got 'huber'"),
        ({"optimizer": "sgd"}, r"'optimizer' must be one of \['adam', 'adamw'\]"),
        ({"precision": "fp16"}, r"'precision' must be one of"),
        ({"grad_accum": 0}, r"'grad_accum' must be >= 1"),
        ({"ema_decay": 1.5}, r"'ema_decay' must be <= 1"),
    ],
)
def test_bad_model_and_training_parameters(override, match):
    with pytest.raises(ConfigError, match=match):
        config.resolve("smoke", override)


def test_profiles_build_valid_models():
    for name in ("smoke", "paper"):
        params = config.resolve(name)
        mcfg = params.stage(ModelConfig)
        assert params.image_size % mcfg.downsample_factor == 0
    paper = config.resolve("paper")
    assert (paper.spatial_dims, paper.image_size, paper.timesteps) == (3, 128, 250)
    assert (paper.schedule, paper.prediction_type, paper.loss) == ("cosine", "epsilon", "l1")
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.grad_accum) == ("adam", 1e-5, 1, 2)
    assert (paper.ema_decay, paper.ema_start, paper.ema_every) == (0.995, 2000, 10)
    assert paper.train_steps == 100_000


def test_signal_left_reads_alpha_bar_at_a_fraction_of_the_steps():
    from neurodiff.model import build_scheduler, signal_left

    for T in (50, 249, 250):
        cfg = {"timesteps": T, "schedule": "cosine"}
        abar = build_scheduler({**cfg, "process": "ddpm"}).alphas_cumprod
        assert signal_left(cfg, "cosine", 1 / 3) == float(abar[T // 3 - 1])
        assert signal_left(cfg, "cosine", 1.0) == float(abar[-1])
    ddpm = {"process": "ddpm", "timesteps": 250, "schedule": "linear_beta"}
    linear = build_scheduler(ddpm).alphas_cumprod
    # the demo trains rectified flow; the schedule figures of chapter 3 still read the DDPM's
    assert signal_left({"timesteps": 250}, "linear_beta", 1 / 2) == float(linear[124])
