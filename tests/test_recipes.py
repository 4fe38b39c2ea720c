"""Training recipes: rectified flow (training target, Euler/Heun samplers against an exact
velocity), logit-normal timesteps, min-SNR weighting, EMA warm-up, and their parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.errors import ConfigError
from neurodiff.model import (
    build_model,
    build_scheduler,
    diffusion_loss,
    diffusion_target,
    loss_weights,
    sample_timesteps,
)
from neurodiff.sampling import generate, network_evaluations
from neurodiff.train.helpers import ema_avg_fn

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**overrides) -> ModelConfig:
    if overrides.get("process") == "rflow":
        overrides.setdefault("sampler", "euler")
    return config.resolve("smoke", overrides).stage(ModelConfig)


class FlowOracle(torch.nn.Module):
    """The exact velocity E[x0 - eps | x_t] of rectified flow for data x0 ~ N(mu, s^2) per pixel,
    with x_t = (1 - r) x0 + r eps and r = t / T."""

    def __init__(self, T: int, mu: float = 0.2, s: float = 0.3) -> None:
        super().__init__()
        self.T, self.mu, self.s = T, mu, s
        self.calls = 0

    def forward(self, x, timesteps):
        self.calls += 1
        r = (timesteps.double() / self.T).view(-1, *([1] * (x.ndim - 1)))
        a = 1.0 - r
        var = a**2 * self.s**2 + r**2
        centred = x.double() - a * self.mu
        x0 = self.mu + a * self.s**2 / var * centred
        eps = r / var * centred
        return (x0 - eps).float()


@pytest.mark.parametrize(("sampler", "steps"), [("euler", 100), ("heun", 20)])
def test_flow_samplers_reach_the_data_distribution_with_an_exact_velocity(sampler, steps):
    """With the exact velocity the flow ODE carries noise to N(mu, s^2): Euler (first order)
    with many steps, Heun (second order) with few."""
    cfg = _cfg(process="rflow", timesteps=1000, image_size=16)
    oracle = FlowOracle(cfg.timesteps)
    x = generate(
        oracle, cfg, 8, sampler=sampler, steps=steps, batch_size=8, device="cpu", progress=False
    )
    assert x.mean().item() == pytest.approx(0.2, abs=0.01)
    assert x.std().item() == pytest.approx(0.3, rel=0.02)


def test_heun_is_more_accurate_than_euler_at_few_steps():
    cfg = _cfg(process="rflow", timesteps=1000, image_size=16)
    errors = {}
    for sampler in ("euler", "heun"):
        x = generate(
            FlowOracle(1000), cfg, 8, sampler=sampler, steps=4, device="cpu", progress=False
        )
        errors[sampler] = abs(x.std().item() - 0.3)
    assert errors["heun"] < errors["euler"]


def test_heun_counts_two_evaluations_per_step_but_the_last():
    cfg = _cfg(process="rflow")
    oracle = FlowOracle(cfg.timesteps)
    generate(oracle, cfg, 2, sampler="heun", steps=5, batch_size=2, device="cpu", progress=False)
    assert oracle.calls == network_evaluations(cfg, "heun", 5) == 9
    assert network_evaluations(cfg, "euler", 5) == 5


def test_rflow_noising_and_target_are_the_straight_path():
    cfg = _cfg(process="rflow", timesteps=100)
    sched = build_scheduler(cfg)
    x0, noise = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    t = torch.tensor([25, 75])
    xt = sched.add_noise(x0, noise, t)
    assert torch.allclose(xt[:, 0, 0, 0], torch.tensor([0.75, 0.25]))
    assert torch.equal(diffusion_target(x0, noise, t, sched), x0 - noise)


def test_logit_normal_timesteps_favour_the_middle_and_stay_in_range():
    g = torch.Generator().manual_seed(0)
    cfg = _cfg(timestep_sampling="logit_normal", timesteps=1000)
    t = sample_timesteps(cfg, 20000, g)
    assert t.min() >= 0 and t.max() < 1000
    middle = ((t >= 250) & (t < 750)).float().mean().item()
    assert middle > 0.65  # uniform: 0.5
    u = sample_timesteps(_cfg(timesteps=1000), 20000, g)
    assert ((u >= 250) & (u < 750)).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_min_snr_weights_cap_the_easy_low_noise_steps():
    cfg = _cfg(timesteps=1000, schedule="linear_beta")
    sched = build_scheduler(cfg)
    t = torch.tensor([0, 50, 500, 999])
    abar = sched.alphas_cumprod[t].double()
    snr = abar / (1 - abar)
    w = loss_weights(t, sched, "min_snr", 5.0).double()
    expected = torch.minimum(snr, torch.tensor(5.0)) / snr
    assert torch.allclose(w, expected, rtol=1e-5)
    assert w[0] < 0.01 and w[-1] == pytest.approx(1.0)  # low noise down-weighted, high noise kept
    assert loss_weights(t, sched, "none") is None


def test_weighted_loss_is_the_mean_of_weighted_per_sample_errors():
    cfg = _cfg()
    sched = build_scheduler(cfg)
    pred, x0, noise = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    noise[1] *= 3.0
    t = torch.tensor([1, 2])
    loss = diffusion_loss(pred, x0, noise, t, sched, "l1", torch.tensor([1.0, 0.5]))
    assert loss.item() == pytest.approx((1.0 * 1.0 + 0.5 * 3.0) / 2)


def test_ema_warmup_follows_early_weights_then_settles_on_the_decay():
    from torch.optim.swa_utils import AveragedModel

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    plain = AveragedModel(net, multi_avg_fn=ema_avg_fn(0.995, warmup=False))
    warm = AveragedModel(net, multi_avg_fn=ema_avg_fn(0.995, warmup=True))
    for ema in (plain, warm):
        ema.update_parameters(net)  # the first update copies the weights (0)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for ema in (plain, warm):
        ema.update_parameters(net)
    # warm-up: decay min(0.995, 2/11) at the second update -> 1 - 2/11 of the new weight
    assert warm.module.weight.item() == pytest.approx(1 - 2 / 11)
    assert plain.module.weight.item() == pytest.approx(0.005)


def test_samplers_must_fit_the_process():
    with pytest.raises(ConfigError, match="does not fit process='rflow'"):
        config.resolve("smoke", {"process": "rflow", "sampler": "ddim"})
    with pytest.raises(ConfigError, match="does not fit process='ddpm'"):
        config.resolve("smoke", {"process": "ddpm", "sampler": "heun"})
    with pytest.raises(ConfigError, match="loss_weighting"):
        config.resolve(
            "smoke", {"process": "rflow", "sampler": "euler", "loss_weighting": "min_snr"}
        )


def test_a_rectified_flow_model_trains_and_samples_on_smoke(tmp_path):
    from neurodiff.model import load_ema_model
    from neurodiff.train import train

    params = config.resolve(
        "smoke",
        {"process": "rflow", "sampler": "heun", "loss": "l2", "timestep_sampling": "logit_normal"},
    )
    images = np.random.default_rng(0).uniform(-1, 1, (8, 1, 16, 16)).astype(np.float32)
    labels = np.arange(len(images)) % 2  # control, patient, ... (the smoke model is conditional)
    result = train(params, images, tmp_path / "train", labels=labels, progress=False)
    assert result.step == params.train_steps and np.isfinite(result.final_loss)
    model, cfg, _ = load_ema_model(tmp_path / "train")
    x = generate(model, cfg, 3, sampler="heun", steps=3, progress=False)
    assert x.shape == (3, 1, 16, 16) and torch.isfinite(x).all()
    assert build_model(cfg) is not None


def test_denoising_error_of_the_exact_velocity_beats_the_noisy_input():
    from neurodiff.train import denoising_error
    from neurodiff.viz.train import plot_denoising_error

    cfg = _cfg(process="rflow", timesteps=1000, image_size=16)
    x0 = np.random.default_rng(0).normal(0.2, 0.3, (16, 1, 16, 16)).astype(np.float32)
    curve = denoising_error(FlowOracle(1000), cfg, x0, n_levels=8)
    assert len(curve) == 8 and curve["snr"].is_monotonic_decreasing
    assert (curve["mse_x0"] < curve["mse_identity"]).all()

    # a network that outputs zeros implies x0_hat = x_t: exactly the noisy input
    class Zero(torch.nn.Module):
        def forward(self, x, timesteps):
            return torch.zeros_like(x)

    zero = denoising_error(Zero(), cfg, x0, n_levels=8)
    assert np.allclose(zero["mse_x0"], zero["mse_identity"], rtol=1e-4)
    fig = plot_denoising_error({"exact": curve, "zero": zero})
    assert len(fig.axes[0].lines) == 3


def test_flow_models_get_euler_and_heun_rows_in_the_sampler_table():
    from neurodiff.sample import default_table_rows, recommend

    rows = default_table_rows(250, process="rflow")
    assert ("euler", 20) in rows and ("heun", 10) in rows
    assert not {s for s, _ in rows} & {"ddpm", "ddim", "pndm"}
    import pandas as pd

    table = pd.DataFrame(
        {
            "sampler": ["real", "euler", "euler", "heun"],
            "label": ["real (reference)", "euler-5", "euler-20", "heun-10"],
            "seconds_per_sample": [0.0, 0.1, 0.4, 0.38],
            "fid": [0.03, 0.20, 0.050, 0.047],
        }
    )
    pick = recommend(table, tolerance=0.1)
    assert pick["best"] == "heun-10" and pick["fast"] == "heun-10"
    pick = recommend(table, tolerance=0.2)
    assert pick["fast"] == "heun-10"  # euler-20 within 20 % but slower
    table.loc[2, "seconds_per_sample"] = 0.2
    assert recommend(table, tolerance=0.1)["fast"] == "euler-20"


def test_the_recipe_study_table_and_winner_come_from_the_file(tmp_path):
    import json

    from neurodiff.errors import DataError
    from neurodiff.train import best_recipe, load_recipe_study, recipe_table

    def metric(value, verdict):
        return {"value": value, "baseline": 0.03, "verdict": verdict}

    def recipe(fid_value, inside):
        keys = ("fid", "mmd_rbf", "precision", "recall", "density", "coverage")
        m = {
            k: metric(fid_value, "inside" if i < inside else "outside") for i, k in enumerate(keys)
        }
        return {
            "description": "d",
            "steps": 10,
            "images_per_second": 5.0,
            "sampler": "euler-20",
            "sample_seconds": 1.0,
            "metrics": m,
        }

    study = {"recipes": {"a": recipe(0.1, 2), "b": recipe(0.05, 5), "c": recipe(0.04, 5)}}
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps(study))
    loaded = load_recipe_study(path)
    assert best_recipe(loaded) == "c"
    table = recipe_table(loaded)
    assert table.loc["c", "inside range"] == "5/6" and table.loc["a", "fid"] == "0.1"
    assert table.loc["a", "recall"].endswith("*")
    assert "real vs real (median)" in table.index and table.loc["a", "fid real"] == "0.03"
    with pytest.raises(DataError, match="benchmarks/recipes.py"):
        load_recipe_study(tmp_path / "missing.json")
