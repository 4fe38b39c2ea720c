"""The parameter namespace, profiles and overrides."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from neurodiff import config
from neurodiff.config import ConfigError, ModelConfig, Params, TrainConfig
from neurodiff.errors import NeurodiffError


def test_every_profile_resolves():
    for name in config.available_profiles():
        params = config.resolve(name)
        assert params.profile == name
        for cls in config.STAGES:
            assert isinstance(params.stage(cls), cls)


def test_shipped_profiles_include_the_three_tiers():
    assert {"smoke", "demo", "paper"} <= set(config.available_profiles())


def test_shared_names_agree_across_stages():
    seen: dict[str, tuple[object, object]] = {}
    for cls in config.STAGES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = (hints[f.name], f.default)
            assert seen.setdefault(f.name, key) == key, f"{f.name} differs in {cls.__name__}"


def test_demo_profile_equals_the_defaults():
    _, values = config.load_profile("demo")
    specs = config.parameter_specs()
    for name, value in values.items():
        assert Params({name: value})[name] == specs[name].default, name


def test_paper_profile_is_the_authors_setup():
    p = config.resolve("paper")
    assert (p.spatial_dims, p.image_size, p.timesteps, p.schedule) == (3, 128, 250, "cosine")
    assert (p.prediction_type, p.loss, p.optimizer, p.lr) == ("epsilon", "l1", "adam", 1e-5)
    assert (p.batch_size, p.grad_accum, p.ema_decay, p.train_steps) == (1, 2, 0.995, 100_000)
    assert (p.ema_start, p.ema_every, p.normalise, p.register) == (2000, 10, "minmax", "none")
    assert p.channels == (64, 64, 128, 192, 256)
    assert p.sampler == "ddpm" and p.steps == 250


def test_overrides_are_parsed_as_yaml_and_coerced():
    p = config.resolve(
        "demo",
        [
            "image_size=32",
            "channels=[16, 32, 64]",
            "compile=true",
            "lr=1e-3",
            "norm_num_groups=16",
            "num_head_channels=16",
        ],
    )
    assert p.image_size == 32 and p.channels == (16, 32, 64) and p.compile is True
    assert p.lr == pytest.approx(1e-3)
    assert p.stage(ModelConfig).channels == (16, 32, 64)


def test_int_is_accepted_for_float():
    assert config.resolve("demo", {"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("imag_size=64", r"unknown parameter 'imag_size'.*did you mean 'image_size'"),
        ("batch_size=abc", r"'batch_size' must be an integer; got 'abc'"),
        ("batch_size=0", r"'batch_size' must be >= 1; got 0"),
        ("train_steps=-5", r"'train_steps' must be >= 1"),
        ("schedule=cosin", r"'schedule' must be one of .*did you mean 'cosine'"),
        ("prediction_type=x0", r"'prediction_type' must be one of"),
        ("loss=huber", r"'loss' must be one of"),
        ("image_size=66", r"'image_size' must be divisible by the UNet's downsampling factor"),
        ("num_head_channels=48", r"'num_head_channels' \(48\) must divide"),  # authors: attention
        ("target_spacing=0", r"'target_spacing' must be > 0"),
        ("slice_range=[0.7, 0.2]", r"'slice_range' must be \[start, stop\]"),
        ("channels=64", r"'channels' must be a list of int"),
        ("compile=maybe", r"'compile' must be true or false"),
        ("attention_levels=[true]", r"'attention_levels' must have one entry per level"),
        ("noequals", r"must look like key=value"),
    ],
)
def test_bad_overrides_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        config.resolve("authors" if override.startswith("num_head") else "demo", [override])


def test_config_error_is_a_value_error_naming_the_parameter():
    with pytest.raises(ValueError) as info:
        config.resolve("demo", ["batch_size=0"])
    assert isinstance(info.value, NeurodiffError)
    assert info.value.parameter == "batch_size"


def test_missing_profile_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'; expected one of"):
        config.resolve("nope")
    with pytest.raises(ConfigError, match=r"profile file .*missing.yaml' does not exist"):
        config.resolve(tmp_path / "missing.yaml")


def test_profile_from_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"image_size": 32, "train_steps": 7}))
    p = config.resolve(path)
    assert (p.profile, p.image_size, p.train_steps) == ("mine", 32, 7)


def test_bad_profile_file_names_the_parameter(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: many\n")
    with pytest.raises(ConfigError, match=r"'batch_size' must be an integer.*profile 'bad'"):
        config.resolve(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"must be a mapping"):
        config.resolve(path)


def test_stage_configs_are_frozen_and_hash_stably():
    a = config.resolve("demo").stage(TrainConfig)
    b = config.resolve("demo").stage(TrainConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.lr = 1.0  # type: ignore[misc]
    assert a.hash() == b.hash()
    assert a.hash() != config.resolve("demo", {"lr": 1.234e-4}).stage(TrainConfig).hash()


def test_from_namespace_picks_known_names_only():
    ns = {"image_size": 32, "profile": "x", "unrelated": 3, "_private": 1}
    p = config.from_namespace({**ns, config.RESOLVED_FLAG: True})
    assert p.image_size == 32 and p.profile == "x"


def test_from_namespace_outside_the_runner_starts_from_the_named_profile():
    """A notebook's parameters cell shows the defaults; papermill -p or an edit changes some."""
    cell = {n: s.default for n, s in config.parameter_specs().items()}
    smoke = config.resolve("smoke")
    # papermill notebooks/03_train.ipynb out.ipynb -p profile smoke -p lr 0.0001
    p = config.from_namespace({**cell, "profile": "smoke", "lr": 0.0001})
    assert p.lr == 0.0001 and p.image_size == smoke.image_size == 16
    assert p.to_dict() == {**smoke.to_dict(), "lr": 0.0001}
    # the cell's own defaults, unchanged, are the demo profile
    assert config.from_namespace(cell).to_dict() == config.resolve("demo").to_dict()
    # a value injected as text (papermill -p channels "[8, 16]") is coerced, then compared
    with pytest.raises(config.ConfigError, match="parameter 'lr' must be a number"):
        config.from_namespace({**cell, "lr": "fast"})


def test_profile_dir_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODIFF_ROOT", str(tmp_path))
    p = config.resolve("smoke")
    assert p.profile_dir() == tmp_path / "data" / "derived" / "smoke"
    assert p.path("/abs/x") == Path("/abs/x")


def test_shared_fields_are_declared_once():
    """profile, derived_dir, seed, device and precision come from one mixin each."""
    from neurodiff.config import fields as F

    for cls in config.STAGES:
        own = set(cls.__dataclass_fields__) - {
            name
            for base in cls.__mro__[1:]
            if dataclasses.is_dataclass(base)
            for name in base.__dataclass_fields__
        }
        assert not own & {"profile", "derived_dir", "seed", "device", "precision"}, cls
    assert issubclass(TrainConfig, F.PrecisionFields) and issubclass(TrainConfig, F.RunFields)
    assert issubclass(config.SampleConfig, F.PrecisionFields)
    specs = config.parameter_specs()
    assert specs["precision"].stages == ("train", "sample")
    assert "sampling" in specs["precision"].help and "training" in specs["precision"].help


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            {"sampler": "ddim", "steps": 60},
            r"'steps' \(60\) must be <= the model's timesteps \(50\)",
        ),
        ({"sampler": "pndm", "prediction_type": "v_prediction"}, "'pndm' needs an epsilon"),
    ],
)
def test_checks_across_stages_run_when_params_are_built(override, match):
    with pytest.raises(ConfigError, match=match) as err:
        config.resolve("smoke", override)
    assert err.value.parameter in ("steps", "sampler")
    # ddpm always uses all timesteps: a larger 'steps' is not an error there
    assert config.resolve("smoke", {"sampler": "ddpm", "steps": 60}).steps == 60


# --------------------------------------------------------------------------------------------
# the sampler rules (neurodiff.config.samplers), written once
# --------------------------------------------------------------------------------------------


def test_which_samplers_fit_which_process():
    assert config.samplers_for("ddpm") == ("ddpm", "ddim", "pndm")
    assert config.samplers_for("rflow") == ("euler", "heun")
    assert {p: config.samplers_for(p) for p in ("ddpm", "rflow")} == config.SAMPLERS_BY_PROCESS
    assert set(config.SAMPLERS) == {s for p in ("ddpm", "rflow") for s in config.samplers_for(p)}
    # the sample stage's choices are the samplers the rules know
    assert config.parameter_specs()["sampler"].choices == config.SAMPLERS
    with pytest.raises(ConfigError, match="'process' must be one of") as err:
        config.samplers_for("gan")
    assert err.value.parameter == "process"
    for process in ("ddpm", "rflow"):
        fast = config.default_fast_sampler(process)
        reference, steps = config.reference_sampler(process, 250)
        assert {fast, reference} <= set(config.samplers_for(process)) and steps == 250
        assert config.check_sampler(process, "epsilon", 250, reference, steps) == 250
        assert config.check_sampler(process, "epsilon", 250, fast, 50) == 50


@pytest.mark.parametrize(
    ("args", "parameter", "match"),
    [
        (("ddpm", "epsilon", 50, "lms", 5), "sampler", r"'sampler' must be one of \['ddpm'"),
        (("rflow", "epsilon", 50, "ddim", 5), "sampler", "'ddim' does not fit process='rflow'"),
        (("ddpm", "epsilon", 50, "heun", 5), "sampler", "'heun' does not fit process='ddpm'"),
        (("ddpm", "epsilon", 50, "ddim", 0), "steps", "'steps' must be a positive integer"),
        (("ddpm", "epsilon", 50, "euler", 5), "sampler", "does not fit process='ddpm'"),
        (("rflow", "epsilon", 50, "euler", 51), "steps", r"\(51\) must be <= .* timesteps \(50\)"),
        (("ddpm", "sample", 50, "pndm", 5), "sampler", "'pndm' needs an epsilon-prediction"),
    ],
)
def test_check_sampler_names_the_parameter(args, parameter, match):
    with pytest.raises(ConfigError, match=match) as err:
        config.check_sampler(*args)
    assert err.value.parameter == parameter
    assert not config.sampler_fits(*args[:2], args[3]) or parameter == "steps"


def test_ddpm_takes_all_timesteps_whatever_steps_says():
    assert config.uses_all_timesteps("ddpm") and not config.uses_all_timesteps("ddim")
    assert config.check_sampler("ddpm", "v_prediction", 50, "ddpm", None) == 50
    assert config.check_sampler("ddpm", "v_prediction", 50, "ddpm", 60) == 50
    assert config.check_sampler("ddpm", "v_prediction", 50, "ddim", 50) == 50
