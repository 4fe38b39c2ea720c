"""The sampling engine (neurodiff.sampling): schedulers, seeded generation, exact-denoiser
checks, reverse-process snapshots, argument checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.errors import ConfigError
from neurodiff.sampling import (
    SAMPLER_SPECS,
    check_sampler_args,
    generate,
    make_scheduler,
    reverse_process,
)
from neurodiff.schedulers import schedule_consistent_ddim

pytestmark = pytest.mark.usefixtures("one_thread")


class CountingModel(torch.nn.Module):
    """Wraps a model and counts forward calls and the images they saw."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.images = 0

    def forward(self, x, timesteps):
        self.calls += 1
        self.images += x.shape[0]
        return self.inner(x, timesteps=timesteps)


class GaussianOracle(torch.nn.Module):
    """The exact noise predictor E[eps | x_t] for data x_0 ~ N(mu, s^2) per pixel."""

    def __init__(self, alphas_cumprod: torch.Tensor, mu: float = 0.2, s: float = 0.3) -> None:
        super().__init__()
        self.register_buffer("ab", alphas_cumprod.clone())
        self.mu, self.s = mu, s
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x, timesteps):
        a = self.ab[timesteps].view(-1, *([1] * (x.dim() - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "steps", "expected"),
    [("ddim", 7, 7), ("pndm", 6, 6), ("ddpm", None, 50), ("ddim", 50, 50)],
)
def test_network_evaluations_equal_the_requested_steps(model, smoke_cfg, sampler, steps, expected):
    counting = CountingModel(model)
    x = generate(
        counting, smoke_cfg, 5, sampler=sampler, steps=steps, batch_size=2, seed=0, progress=False
    )
    n_batches = 3  # 2 + 2 + 1
    assert counting.calls == n_batches * expected
    assert counting.images == 5 * expected
    assert x.shape == (5, 1, 16, 16)
    assert x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("sampler", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("pndm", 0.0)]
)
def test_same_seed_gives_identical_samples(model, smoke_cfg, sampler, eta):
    kw = {"sampler": sampler, "steps": 5, "eta": eta, "batch_size": 3, "progress": False}
    a = generate(model, smoke_cfg, 4, seed=7, **kw)
    torch.manual_seed(123)  # the global RNG plays no part
    b = generate(model, smoke_cfg, 4, seed=7, **kw)
    c = generate(model, smoke_cfg, 4, seed=8, **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_stochastic_samplers_use_the_generator_at_every_step(model, smoke_cfg):
    # Same initial noise (seed) but the DDPM/DDIM-eta noise drawn later differs from the
    # deterministic DDIM path, so the generator must reach the scheduler's step.
    det = generate(model, smoke_cfg, 2, sampler="ddim", steps=10, eta=0.0, seed=1, progress=False)
    sto = generate(model, smoke_cfg, 2, sampler="ddim", steps=10, eta=1.0, seed=1, progress=False)
    assert not torch.allclose(det, sto)


def _gaussian_case(timesteps: int, schedule: str = "cosine"):
    cfg = ModelConfig(
        process="ddpm",
        image_size=16,
        channels=(16, 32),
        attention_levels=(False, True),
        norm_num_groups=8,
        num_head_channels=16,
        timesteps=timesteps,
        schedule=schedule,
    )
    oracle = GaussianOracle(make_scheduler(cfg, "ddpm").alphas_cumprod)
    return cfg, oracle


@pytest.mark.parametrize(
    ("sampler", "steps"), [("ddpm", None), ("ddim", 250), ("ddim", 100), ("ddim", 50), ("pndm", 50)]
)
def test_samplers_recover_gaussian_data_with_the_exact_denoiser(sampler, steps):
    # With the exact noise predictor of N(0.2, 0.3^2) data, each sampler must reproduce that
    # distribution. DDIM-100 at T = 250 (steps not dividing T) checks the timestep bookkeeping:
    # MONAI's own DDIMScheduler.step gives a standard deviation of 0.37 there.
    cfg, oracle = _gaussian_case(250)
    x = generate(
        oracle, cfg, 64, sampler=sampler, steps=steps, batch_size=64, seed=0, progress=False
    )
    assert abs(float(x.mean()) - 0.2) < 0.01
    assert abs(float(x.std()) - 0.3) < 0.015


def test_reverse_process_snapshots(model, smoke_cfg):
    rp = reverse_process(model, smoke_cfg, sampler="ddim", steps=10, n_snapshots=4, seed=3)
    assert rp.timesteps[0] == 49 and rp.timesteps[-1] == 0
    assert len(rp.timesteps) == 4 and rp.timesteps == sorted(rp.timesteps, reverse=True)
    assert rp.x_t.shape == (4, 1, 16, 16) and rp.x0_pred.shape == (4, 1, 16, 16)
    assert rp.final.shape == (1, 16, 16)
    # the first snapshot is the initial noise, the finished sample is the seeded generate()
    noise = torch.randn((1, 1, 16, 16), generator=torch.Generator().manual_seed(3))
    assert torch.equal(rp.x_t[0], noise[0])
    assert torch.equal(
        rp.final, generate(model, smoke_cfg, 1, sampler="ddim", steps=10, seed=3, progress=False)[0]
    )


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_requests_are_refused_with_the_parameter_named(model, smoke_cfg):
    with pytest.raises(
        ConfigError, match="argument 'n' \\(samples to draw\\) must be a positive integer; got 0"
    ):
        generate(model, smoke_cfg, 0, progress=False)
    with pytest.raises(
        ConfigError, match=r"'steps' \(51\) must be <= the model's timesteps \(50\)"
    ):
        generate(model, smoke_cfg, 2, sampler="ddim", steps=51, progress=False)
    with pytest.raises(ConfigError, match="'steps' must be a positive integer .* got 0"):
        generate(model, smoke_cfg, 2, sampler="pndm", steps=0, progress=False)
    with pytest.raises(
        ConfigError,
        match=r"'sampler' must be one of \['ddpm', 'ddim', 'pndm', 'euler', 'heun'\]; "
        "got 'lms'",
    ):
        generate(model, smoke_cfg, 2, sampler="lms", progress=False)
    with pytest.raises(ConfigError, match=r"sampler 'euler' does not fit process='ddpm'"):
        generate(model, smoke_cfg, 2, sampler="euler", progress=False)
    with pytest.raises(ConfigError, match="argument 'batch_size' must be a positive integer"):
        generate(model, smoke_cfg, 2, batch_size=0, progress=False)
    v_cfg = dataclasses.replace(smoke_cfg, prediction_type="v_prediction")
    with pytest.raises(ConfigError, match="'pndm' needs an epsilon-prediction model"):
        make_scheduler(v_cfg, "pndm", 10)


def test_bad_parameters_are_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="n_samples"):
        config.resolve("smoke", {"n_samples": 0, "derived_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="sampler"):
        config.resolve("smoke", {"sampler": "ddpn"})


# --------------------------------------------------------------------------------------------
# one home per rule
# --------------------------------------------------------------------------------------------


def test_every_sampler_has_its_rule_and_every_ddim_is_the_fixed_one(smoke_cfg):
    assert tuple(SAMPLER_SPECS) == config.SAMPLERS
    # the DDIM the engine samples with is build_scheduler's, the schedule-consistent one
    sched = make_scheduler(smoke_cfg, "ddim", 7)
    assert type(sched) is schedule_consistent_ddim()
    assert sched.previous_timestep(int(sched.timesteps[0])) == int(sched.timesteps[1])


@pytest.mark.parametrize(
    ("process", "prediction_type"),
    [("ddpm", "epsilon"), ("ddpm", "v_prediction"), ("rflow", "epsilon")],
)
@pytest.mark.parametrize("sampler", config.SAMPLERS)
@pytest.mark.parametrize("steps", [1, 50, 60])
def test_the_engine_and_the_parameters_refuse_the_same_requests(
    process, prediction_type, sampler, steps
):
    """check_sampler_args (the engine) and Params (a run's parameters) both ask
    config.check_sampler, and so accept and refuse the same requests with the same message."""
    cfg = ModelConfig(process=process, prediction_type=prediction_type, timesteps=50)
    errors = []
    for check in (
        lambda: check_sampler_args(cfg, sampler, steps),
        lambda: config.resolve(
            "smoke",
            {"process": process, "prediction_type": prediction_type, "sampler": sampler}
            | {"steps": steps, "timesteps": 50},
        ),
    ):
        try:
            check()
            errors.append(None)
        except ConfigError as exc:
            errors.append((str(exc), exc.parameter))
    assert errors[0] == errors[1]
    fits = config.sampler_fits(process, prediction_type, sampler)
    assert (errors[0] is None) == (fits and (sampler == "ddpm" or steps <= 50))
