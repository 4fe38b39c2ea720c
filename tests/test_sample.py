"""Sampling: schedulers, generation, the synthetic cohort on disk, errors."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.errors import CheckpointError, ConfigError, DataError
from neurodiff.model import build_model
from neurodiff.sample import (
    generate,
    load_synthetic,
    make_scheduler,
    reverse_process,
    sampler_table,
    write_synthetic,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The smoke model is tiny: one intra-op thread is fastest, and far faster than two when the
    machine is busy (OpenMP threads then wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_cfg() -> ModelConfig:
    return config.resolve("smoke").stage(ModelConfig)  # 2D 16^2, channels (16, 32), T = 50


@pytest.fixture(scope="module")
def model(smoke_cfg):
    torch.manual_seed(0)
    return build_model(smoke_cfg).eval()


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
    with pytest.raises(ConfigError, match="'n_samples' must be a positive integer; got 0"):
        generate(model, smoke_cfg, 0, progress=False)
    with pytest.raises(ConfigError, match=r"'steps' \(51\) must be <= the model's timesteps T = 5"):
        generate(model, smoke_cfg, 2, sampler="ddim", steps=51, progress=False)
    with pytest.raises(ConfigError, match="'steps' must be a positive integer .* got 0"):
        generate(model, smoke_cfg, 2, sampler="pndm", steps=0, progress=False)
    with pytest.raises(
        ConfigError,
        match=r"'sampler' must be one of \['ddpm', 'ddim', 'pndm'\]; "
        "got 'euler'",
    ):
        generate(model, smoke_cfg, 2, sampler="euler", progress=False)
    with pytest.raises(ConfigError, match="'sample_batch_size' must be a positive integer"):
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
# the stage: a trained smoke model -> synthetic cohort on disk
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    """Params of a smoke run whose preprocessing and (2-step) training are done."""
    from neurodiff import preprocess, train

    derived = tmp_path_factory.mktemp("derived")
    params = config.resolve(
        "smoke",
        {
            "cohort": str(tiny_cohort),
            "derived_dir": str(derived),
            "qc_exclude": False,
            "train_steps": 2,
            "checkpoint_every": 2,
            "preview_every": 0,
            "n_samples": 3,
            "sample_batch_size": 2,
            "steps": 5,
            "seed": 4,
        },
    )
    preprocess.run(params)
    train.train(params, preprocess.load_split(params, "train")[0], progress=False)
    return params


@pytest.fixture(scope="module")
def synthetic(trained):
    """The result of `neurodiff sample` (3 slices, DDIM-5, seed 4) for the trained smoke model."""
    from neurodiff.sample import run

    return run(trained)


def _with(params, **overrides):
    return config.Params({**params.to_dict(), **overrides})


def test_run_writes_nifti_with_the_target_geometry_and_provenance(trained, synthetic):
    from neurodiff.io import file_sha256
    from neurodiff.preprocess import load_manifest, target_affine
    from neurodiff.sample import to_unit_range
    from neurodiff.train import latest_checkpoint, load_ema_model

    result = synthetic
    out = trained.stage_dir("synthetic")
    assert result.out_dir == out and result.n_samples == 3
    assert "3 images of 16x16" in str(result) and "ddim, 5 network evaluations" in str(result)
    files = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    assert [f.name for f in files] == [f"sub-synth000{i}_T1w.nii.gz" for i in (1, 2, 3)]

    target = load_manifest(trained)["target"]
    spacing = target["volume_spacing_mm"]
    expected = target_affine(spacing, 16) @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, np.mean(target["slices"])], [0, 0, 0, 1]]
    )
    for f in files:
        img = nib.load(f)
        assert img.shape == (16, 16, 1)
        np.testing.assert_allclose(img.affine, expected, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms(), (spacing,) * 3, rtol=1e-6)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        data = np.asarray(img.dataobj)
        assert data.dtype == np.float32
        assert 0.0 <= data.min() < data.max() <= 1.0

    # the files hold exactly the seeded samples of the latest checkpoint's EMA weights
    model, mcfg, ckpt = load_ema_model(trained)
    again = generate(model, mcfg, 3, sampler="ddim", steps=5, batch_size=2, seed=4, progress=False)
    synthetic = load_synthetic(trained)
    assert synthetic.shape == (3, 1, 16, 16) and synthetic.dtype == np.float32
    np.testing.assert_array_equal(synthetic, to_unit_range(again))

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert ckpt == latest_checkpoint(trained.stage_dir("train"))
    assert gen["CheckpointSHA256"] == file_sha256(ckpt)
    assert (gen["Sampler"], gen["Steps"], gen["Eta"], gen["Seed"]) == ("ddim", 5, 0.0, 4)
    assert gen["ParametersHash"] == trained.hash()
    assert gen["Version"]
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0].split("\t")[:2] == ["participant_id", "site"]
    assert participants[1].split("\t")[:2] == ["sub-synth0001", "synthetic"]
    assert (out / "grid.png").stat().st_size > 0


def test_interrupted_run_leaves_no_partial_nifti(trained, monkeypatch):
    import shutil

    from neurodiff import sample_plots
    from neurodiff.sample import run

    params = _with(trained, profile="interrupted")
    shutil.copytree(trained.stage_dir("train"), params.stage_dir("train"))
    shutil.copytree(trained.stage_dir("preprocessed"), params.stage_dir("preprocessed"))
    out = params.stage_dir("synthetic")

    def boom(*args, **kwargs):  # called after the NIfTI files are written
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(sample_plots, "save_grid", boom)
        with pytest.raises(KeyboardInterrupt):
            run(params)
    assert not out.exists()
    leftovers = [p for p in out.parent.rglob("*") if "synth" in p.name]
    assert leftovers == []

    run(params)  # a complete run, then an interrupted one with other sampler settings
    with monkeypatch.context() as m:
        m.setattr(sample_plots, "save_grid", boom)
        with pytest.raises(KeyboardInterrupt):
            run(_with(params, steps=4))
    # the previous complete cohort is still there, unchanged
    gen = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert gen["Steps"] == 5
    assert len(list(out.glob("sub-*/anat/*.nii.gz"))) == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".synthetic")]


def test_checkpoint_problems_are_named(trained, tmp_path):
    import shutil

    from neurodiff.sample import run

    params = _with(trained, derived_dir=str(tmp_path))
    shutil.copytree(trained.stage_dir("preprocessed"), params.stage_dir("preprocessed"))
    with pytest.raises(CheckpointError, match="no checkpoint in .*checkpoints"):
        run(params)
    shutil.copytree(trained.stage_dir("train"), params.stage_dir("train"))
    # trained with num_res_blocks=1: asking for another model names the field
    with pytest.raises(CheckpointError, match="num_res_blocks: checkpoint has 1, expected 2"):
        run(_with(params, num_res_blocks=2))
    ckpt = sorted((params.stage_dir("train") / "checkpoints").glob("step-*.pt"))[-1]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        run(params)
    assert not params.stage_dir("synthetic").exists()


def test_bad_parameters_fail_before_the_checkpoint_is_read(trained, tmp_path):
    from neurodiff.sample import run

    params = _with(trained, derived_dir=str(tmp_path))  # nothing there at all
    with pytest.raises(ConfigError, match=r"'steps' \(60\) must be <= the model's timesteps"):
        run(_with(params, steps=60))
    with pytest.raises(DataError, match="no complete preprocessed data"):
        run(params)


def test_load_synthetic_refuses_a_missing_or_foreign_folder(tmp_path):
    with pytest.raises(DataError, match="no synthetic cohort in .*run `neurodiff sample"):
        load_synthetic(tmp_path / "nothing")
    (tmp_path / "dataset_description.json").write_text('{"Name": "x"}')
    with pytest.raises(DataError, match="not a neurodiff synthetic dataset description"):
        load_synthetic(tmp_path)


def test_synthetic_volumes_reload_through_the_cohort_loader(tmp_path):
    from neurodiff.data import load_cohort

    rng = np.random.default_rng(0)
    vols = rng.uniform(0, 1, (3, 1, 16, 16, 16)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -15
    write_synthetic(tmp_path / "synthetic", vols, affine=affine, generated_by={"Seed": 0})
    table = load_cohort(tmp_path / "synthetic")
    assert table.attrs["layout"] == "bids"
    assert list(table["subject"]) == ["sub-synth0001", "sub-synth0002", "sub-synth0003"]
    assert set(table["site"]) == {"synthetic"}
    assert set(table["shape"]) == {(16, 16, 16)} and set(table["orientation"]) == {"RAS"}
    assert set(table["voxel_size"]) == {(2.0, 2.0, 2.0)}
    np.testing.assert_array_equal(load_synthetic(tmp_path / "synthetic"), vols)


def test_synthetic_slices_reload_through_the_cohort_loader(trained, synthetic):
    from neurodiff.data import load_cohort

    table = load_cohort(trained.stage_dir("synthetic"))
    assert len(table) == 3 and set(table["site"]) == {"synthetic"}
    assert set(table["shape"]) == {(16, 16, 1)}


def test_sampler_table_on_the_real_test_split(trained):
    from neurodiff.preprocess import load_split
    from neurodiff.sample import default_table_rows, to_unit_range
    from neurodiff.train import load_ema_model

    assert default_table_rows(50) == [
        ("ddpm", 50),
        ("ddim", 50),
        ("ddim", 20),
        ("ddim", 10),
        ("pndm", 50),
        ("pndm", 20),
    ]
    assert ("ddim", 250) in default_table_rows(250) and ("ddim", 250) not in default_table_rows(249)
    model, mcfg, _ = load_ema_model(trained)
    test = to_unit_range(load_split(trained, "test")[0])
    train_ = to_unit_range(load_split(trained, "train")[0])
    table = sampler_table(
        model, mcfg, test, train_, n=2, rows=[("ddpm", 50), ("ddim", 10), ("pndm", 10)]
    )
    assert list(table["label"]) == ["real (reference)", "ddpm-50", "ddim-10", "pndm-10"]
    assert list(table["steps"]) == [0, 50, 10, 10]
    assert (table["seconds_per_sample"][1:] > 0).all()
    assert np.isfinite(table[["mmd_rbf", "mmd_linear"]].to_numpy()).all()
    assert table.attrs["bandwidth"] > 0 and table.attrs["n"] == 2
    with pytest.raises(ConfigError, match="sampler_table_samples"):
        sampler_table(model, mcfg, test, n=1)
    with pytest.raises(DataError, match=r"real images must have shape \(M, 1, 16, 16\)"):
        sampler_table(model, mcfg, test[:, :, :8], n=2)


def test_figures(model, smoke_cfg):
    from matplotlib.figure import Figure

    from neurodiff.sample_plots import (
        plot_orthogonal,
        plot_reverse_process,
        plot_synthetic_vs_real,
    )

    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 1, (5, 1, 16, 16))
    vols = rng.uniform(0, 1, (2, 1, 16, 16, 16))
    assert isinstance(plot_synthetic_vs_real(imgs, imgs[::-1], n=4), Figure)
    assert isinstance(plot_synthetic_vs_real(vols, vols, n=2), Figure)
    fig = plot_orthogonal(vols, n=2)
    assert len(fig.axes) == 6
    rp = reverse_process(model, smoke_cfg, steps=5, n_snapshots=3)
    assert len(plot_reverse_process(rp).axes) == 8  # 2 rows x (3 snapshots + final)


def test_cli_sample(trained, capsys):
    from neurodiff.cli import main

    base = [
        "sample",
        "--profile",
        "smoke",
        "-p",
        f"derived_dir={trained.derived_dir}",
        "-p",
        f"cohort={trained.cohort}",
        "-p",
        "qc_exclude=false",
        "-p",
        "train_steps=2",
        "-p",
        "checkpoint_every=2",
        "-p",
        "preview_every=0",
        "-p",
        "seed=4",
    ]
    assert main([*base, "-p", "sampler=euler"]) == 2
    assert "parameter 'sampler' must be one of" in capsys.readouterr().err
    assert main([*base, "-p", "sampler=pndm", "-p", "steps=4", "-p", "n_samples=2"]) == 0
    out = capsys.readouterr().out
    assert "synthetic cohort: 2 images of 16x16" in out and "pndm, 4 network evaluations" in out
    assert len(load_synthetic(trained)) == 2


def test_provenance_summarises_generated_by(trained, synthetic):
    from neurodiff.io import folder_summary
    from neurodiff.sample import provenance

    out = trained.stage_dir("synthetic")
    record = provenance(out)
    full = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert "ModelConfig" in full and "ModelConfig" not in record
    assert record == {k: v for k, v in full.items() if k != "ModelConfig"}
    assert record["Sampler"] in ("ddpm", "ddim", "pndm") and len(record["CheckpointSHA256"]) == 64
    text = folder_summary(out)
    n_nifti = len(list(out.rglob("*.nii.gz")))
    assert n_nifti >= 1 and f", {n_nifti} *.nii.gz" in text
    assert "dataset_description.json" in text
