"""neurodiff.train: learning, outputs, checkpoints, exact resume after SIGKILL, DDP on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from neurodiff import artifacts, config
from neurodiff.artifacts import preview_images, read_loss_log
from neurodiff.checkpoints import CHECKPOINT_FORMAT, latest_checkpoint, load_checkpoint
from neurodiff.config import ModelConfig
from neurodiff.errors import CheckpointError, DataError
from neurodiff.model import load_ema_model
from neurodiff.train import lr_factor, train
from neurodiff.viz.train import (
    plot_forward_process,
    plot_loss_curve,
    plot_noise_schedules,
    plot_previews,
)

ROOT = Path(__file__).resolve().parents[1]
# The smoke profile's model (channels [16, 32], 16 x 16 images) with a short, quiet run.
BASE = {
    "device": "cpu",
    "precision": "fp32",
    "train_steps": 6,
    "checkpoint_every": 3,
    "preview_every": 3,
    "warmup_steps": 2,
    "batch_size": 4,
}


def _params(tmp_path: Path, **overrides):
    return config.resolve("smoke", {"derived_dir": str(tmp_path / "derived"), **BASE, **overrides})


def _halves(images) -> np.ndarray:
    """Class labels 0, 1, 0, 1 ... (the smoke model is class-conditional)."""
    return np.arange(len(images)) % 2


def _blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Bright discs of random radius and centre on a dark background, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        r = rng.uniform(size * 0.2, size * 0.35)
        out[i, 0] = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r**2, 0.8, -1.0)
    return out


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return _blobs(16)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, images):
    """One finished smoke training (6 steps, checkpoints at 3 and 6)."""
    tmp = tmp_path_factory.mktemp("smoke")
    params = _params(tmp)
    result = train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    return params, result


def _tensors_equal(a, b) -> bool:
    """Deep equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


# -- learning -------------------------------------------------------------------------------


def test_loss_decreases_on_a_tiny_dataset(tmp_path, images):
    params = _params(
        tmp_path,
        train_steps=60,
        lr=2e-3,
        warmup_steps=5,
        checkpoint_every=60,
        preview_every=0,
        loss="l2",
    )
    result = train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    loss = read_loss_log(result.train_dir)["loss"].to_numpy()
    assert len(loss) == 60
    assert np.isfinite(loss).all()
    assert loss[-10:].mean() < 0.7 * loss[:5].mean()
    assert result.final_loss == pytest.approx(loss[-1], rel=1e-4)


def test_outputs_of_a_run(smoke_run):
    params, result = smoke_run
    out = artifacts.train_dir(params)
    assert result.train_dir == out and result.step == 6 and result.steps_run == 6
    assert result.effective_batch == 4 and result.world_size == 1
    # keep_checkpoints = 2 by default: steps 3 and 6, written atomically (no temporary left)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-0000003.pt",
        "step-0000006.pt",
    ]
    assert latest_checkpoint(out) == out / "checkpoints" / "step-0000006.pt"
    assert sorted(p.name for p in (out / "previews").iterdir()) == [
        "step-0000003.png",
        "step-0000006.png",
    ]
    log = read_loss_log(out)
    assert list(log.columns) == ["step", "loss", "lr", "grad_norm", "seconds"]
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6]
    # warm-up over 2 steps, then cosine decay towards 0
    assert log["lr"].iloc[0] == pytest.approx(params.lr / 2)
    assert log["lr"].iloc[1] == pytest.approx(params.lr)
    assert log["lr"].iloc[-1] < params.lr / 5
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["params_hash"] == params.hash()
    assert cfg["model_config"]["channels"] == [16, 32]
    assert cfg["effective_batch"] == 4
    assert "effective batch 4" in str(result) and "trained 6 steps" in str(result)


def test_checkpoint_round_trip(smoke_run):
    params, _ = smoke_run
    path = latest_checkpoint(artifacts.train_dir(params))
    ckpt = torch.load(path, weights_only=True)  # safe loading works
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["step"] == 6
    assert ckpt["model_config"] == params.stage(ModelConfig).to_dict()
    assert ckpt["train_config"]["train_steps"] == 6 and ckpt["params_hash"] == params.hash()
    assert all(isinstance(v, torch.Tensor) for v in ckpt["rng"].values())
    again = load_checkpoint(path, expected_model_config=params.stage(ModelConfig))
    assert _tensors_equal(again["model"], ckpt["model"])
    # the EMA differs from the raw weights (it averages them) and is what the sampler gets
    assert not _tensors_equal(ckpt["ema"], ckpt["model"])
    for source in (params, artifacts.train_dir(params), path):
        model, mcfg, found = load_ema_model(source)
        assert found == path and mcfg == params.stage(ModelConfig) and not model.training
        assert _tensors_equal(model.state_dict(), ckpt["ema"])


def test_finished_run_is_not_repeated(smoke_run, images):
    params, first = smoke_run
    again = train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    assert again.steps_run == 0 and again.step == 6
    assert "reused the finished run" in str(again)
    assert again.final_loss == pytest.approx(first.final_loss, rel=1e-4)


def test_changed_parameters_train_a_new_run_and_keep_the_old(tmp_path, images):
    first = train(
        _params(tmp_path, train_steps=3, preview_every=0),
        images,
        labels=_halves(images),
        progress=False,
    )
    longer = train(
        _params(tmp_path, train_steps=5, preview_every=0),
        images,
        labels=_halves(images),
        progress=False,
    )
    assert longer.train_dir != first.train_dir
    assert longer.resumed_from is None and longer.steps_run == 5
    other_lr = train(
        _params(tmp_path, train_steps=3, lr=3e-4, preview_every=0), images, labels=_halves(images)
    )
    assert other_lr.train_dir not in (first.train_dir, longer.train_dir)
    assert other_lr.steps_run == 3
    # the first run is intact, and asking for it again reuses it
    assert latest_checkpoint(first.train_dir).name == "step-0000003.pt"
    again = train(
        _params(tmp_path, train_steps=3, preview_every=0),
        images,
        labels=_halves(images),
        progress=False,
    )
    assert again.train_dir == first.train_dir and again.steps_run == 0
    # where outputs go does not name the run: the same key under another derived_dir
    moved = _params(tmp_path / "elsewhere", train_steps=3, preview_every=0)
    assert artifacts.train_dir(moved).name == first.train_dir.name
    # resume=false starts the same run over and removes its old checkpoints first
    fresh = _params(tmp_path, train_steps=3, checkpoint_every=2, resume=False, preview_every=0)
    result = train(fresh, images, labels=np.arange(len(images)) % 2, progress=False)
    assert result.train_dir == first.train_dir
    assert result.resumed_from is None and result.steps_run == 3
    names = [p.name for p in (result.train_dir / "checkpoints").iterdir()]
    assert sorted(names) == ["step-0000002.pt", "step-0000003.pt"]


def test_gradient_accumulation_and_ema_schedule(tmp_path, images):
    params = _params(
        tmp_path,
        train_steps=4,
        checkpoint_every=4,
        grad_accum=2,
        ema_start=3,
        ema_every=2,
        preview_every=0,
        compile=False,
        channels_last=True,
    )
    result = train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    assert result.effective_batch == 8
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["ema_updates"] == 1  # only step 4 is >= ema_start and a multiple of ema_every
    # a first EMA update copies the weights
    assert _tensors_equal(ckpt["ema"], ckpt["model"])


def test_lr_schedule():
    cfg = config.TrainConfig(lr=1.0, warmup_steps=10, train_steps=110)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0, abs=1e-12)
    const = config.TrainConfig(lr_schedule="constant", warmup_steps=0)
    assert lr_factor(500, const) == 1.0


# -- bad input ------------------------------------------------------------------------------


def test_dataset_smaller_than_one_batch(tmp_path, images):
    with pytest.raises(DataError, match="has 3 images, fewer than one batch: batch_size=4"):
        train(_params(tmp_path), images[:3], labels=np.arange(3) % 2, progress=False)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((8, 1, 32, 32), np.float32), r"shape \(N, 1, 16, 16\).*got \(8, 1, 32, 32\)"),
        (np.zeros((8, 16, 16), np.float32), r"got \(8, 16, 16\)"),
        (
            np.full((8, 1, 16, 16), 3.0, np.float32),
            r"scaled to \[-1, 1\]; found values in \[3, 3\]",
        ),
        (np.full((8, 1, 16, 16), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((8, 1, 16, 16), np.int16), "floating point"),
        ([1, 2, 3], "array .* or a torch Dataset; got list"),
    ],
)
def test_bad_training_images(tmp_path, bad, match):
    with pytest.raises(DataError, match=match):
        train(_params(tmp_path), bad, progress=False)


def test_corrupt_or_foreign_checkpoints(tmp_path, smoke_run):
    params, _ = smoke_run
    good = latest_checkpoint(artifacts.train_dir(params))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "step-0000001.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt' cannot be read: it is corrupt"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pt' cannot be read"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="has format None; expected 'neurodiff-checkpoint/1'"):
        load_checkpoint(foreign)
    other = params.stage(ModelConfig).to_dict() | {"channels": [32, 64], "timesteps": 100}
    with pytest.raises(
        CheckpointError,
        match=r"another model configuration \(channels: checkpoint "
        r"has \[16, 32\], expected \[32, 64\]; timesteps",
    ):
        load_checkpoint(good, expected_model_config=other)


def test_a_model_parameter_change_trains_without_error(tmp_path, images):
    train(
        _params(tmp_path, train_steps=3, preview_every=0),
        images,
        labels=_halves(images),
        progress=False,
    )
    for change in ({"timesteps": 80}, {"schedule": "linear_beta"}):
        other = _params(tmp_path, train_steps=3, preview_every=0, **change)
        assert (
            train(other, images, labels=np.arange(len(images)) % 2, progress=False).steps_run == 3
        )


def test_resume_refuses_a_corrupt_or_foreign_checkpoint(tmp_path, images):
    params = _params(tmp_path, train_steps=3, preview_every=0)
    first = train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    other = _params(tmp_path, train_steps=6, timesteps=80, preview_every=0)
    folder = artifacts.train_dir(other)
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(latest_checkpoint(first.train_dir), folder / "checkpoints")
    with pytest.raises(CheckpointError, match=r"timesteps: checkpoint has 50, expected 80"):
        train(other, images, labels=np.arange(len(images)) % 2, progress=False)
    # a corrupt latest checkpoint stops the run before training
    latest_checkpoint(first.train_dir).write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="step-0000003.pt' cannot be read"):
        train(params, images, labels=np.arange(len(images)) % 2, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_ema_model(tmp_path / "nowhere")


# -- training in another process ----------------------------------------------------------


@pytest.fixture
def launch(tmp_path, images):
    """Start a training script in a fresh Python process (as a user or torchrun would).

    ``launch(source, overrides, out, prefix=(), wait=True)`` writes ``source`` (a template with
    ``{overrides!r}``) and the test images under ``tmp_path`` and runs
    ``python [prefix] script images.npy out``: to completion (a ``CompletedProcess``) or, with
    ``wait=False``, in the background (a ``Popen`` with stderr piped).
    """
    data = tmp_path / "images.npy"
    np.save(data, images)

    def start(source, overrides, out, *, prefix=(), wait=True, env=None):
        script = tmp_path / f"script_{len(list(tmp_path.glob('script_*.py')))}.py"
        script.write_text(source.format(overrides=overrides))
        cmd = [sys.executable, *prefix, str(script), str(data), str(out)]
        if wait:
            return subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
            )
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    return start


# -- exact resume after SIGKILL -------------------------------------------------------------

_SCRIPT = """
import sys, time
import numpy as np
from neurodiff import artifacts, config
from neurodiff.train import train

overrides = {overrides!r}
params = config.resolve("smoke", overrides)
images = np.load(sys.argv[1])

def slow_down(state):  # leaves the parent time to kill us between checkpoints
    time.sleep(0.4)

labels = np.arange(len(images)) % 2
train(params, images, sys.argv[2], labels=labels, progress=False, callback=slow_down)
"""


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, images, launch):
    overrides = {
        "derived_dir": str(tmp_path),
        **BASE,
        "train_steps": 10,
        "checkpoint_every": 4,
        "preview_every": 4,
        "keep_checkpoints": 5,
        "grad_accum": 2,
        "ema_start": 2,
    }
    killed = tmp_path / "killed"
    proc = launch(_SCRIPT, overrides, killed, wait=False)
    first = killed / "checkpoints" / "step-0000004.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert latest_checkpoint(killed).name in ("step-0000004.pt", "step-0000008.pt")
    assert not (killed / "checkpoints" / "step-0000010.pt").exists()

    params = config.resolve("smoke", overrides)
    resumed = train(params, images, killed, labels=np.arange(len(images)) % 2, progress=False)
    assert resumed.resumed_from in (4, 8) and resumed.step == 10
    straight = train(
        params, images, tmp_path / "straight", labels=np.arange(len(images)) % 2, progress=False
    )
    assert straight.resumed_from is None

    a = load_checkpoint(latest_checkpoint(killed))
    b = load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    for key in ("model", "ema", "optimizer", "lr_scheduler"):
        assert _tensors_equal(a[key], b[key]), key
    log_a, log_b = read_loss_log(killed), read_loss_log(tmp_path / "straight")
    assert log_a["step"].tolist() == list(range(1, 11))
    np.testing.assert_array_equal(log_a["loss"], log_b["loss"])


# -- DDP on CPU -----------------------------------------------------------------------------

_DDP_SCRIPT = """
import os, sys
import numpy as np
import torch
from neurodiff import artifacts, config
from neurodiff.train import train

torch.set_num_threads(1)
params = config.resolve("smoke", {overrides!r})
images = np.load(sys.argv[1])
final = {{}}

def keep_final(state):
    if state.step == params.train_steps:
        final["model"] = {{k: v.clone() for k, v in state.model.state_dict().items()}}
        final["ema"] = {{k: v.clone() for k, v in state.ema.state_dict().items()}}
        final["world_size"] = state.world_size

labels = np.arange(len(images)) % 2
result = train(params, images, sys.argv[2], labels=labels, progress=False, callback=keep_final)
torch.save(final, os.path.join(sys.argv[2], f"rank{{os.environ['RANK']}}.pt"))
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int = 2) -> tuple[str, ...]:
    """``python`` arguments that start ``nproc`` local processes under torchrun."""
    return (
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
    )


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, launch):
    overrides = {
        "derived_dir": str(tmp_path),
        **BASE,
        "train_steps": 4,
        "checkpoint_every": 4,
        "preview_every": 0,
        "batch_size": 2,
        "grad_accum": 2,
    }
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = launch(_DDP_SCRIPT, overrides, out, prefix=_torchrun(), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert _tensors_equal(r0["model"], r1["model"])
    assert _tensors_equal(r0["ema"], r1["ema"])
    # rank 0 alone wrote the outputs; the effective batch counts both ranks
    ckpt = load_checkpoint(latest_checkpoint(out))
    assert _tensors_equal(ckpt["model"], r0["model"])
    assert json.loads((out / "config.json").read_text())["effective_batch"] == 2 * 2 * 2
    assert read_loss_log(out)["step"].tolist() == [1, 2, 3, 4]


# -- figures --------------------------------------------------------------------------------


def test_figures(smoke_run, images):
    params, _ = smoke_run
    mcfg = params.stage(ModelConfig)
    fig = plot_noise_schedules(250)
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 2
    assert [line.get_label() for line in fig.axes[0].lines] == ["linear", "cosine"]
    abar = fig.axes[0].lines[1].get_ydata()
    assert len(abar) == 250 and abar[0] > 0.99 and abar[-1] < 0.01 and np.all(np.diff(abar) < 0)
    fig = plot_forward_process(images[0], mcfg)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[0].get_title().startswith("t = 0\n")
    assert fig.axes[0].images[0].get_array().shape == images[0, 0].T.shape
    shown = np.asarray(fig.axes[0].images[0].get_array()).ravel()
    assert np.corrcoef(shown, images[0, 0].T.ravel())[0, 1] > 0.95  # t = 0: the clean image
    loss = read_loss_log(artifacts.train_dir(params))
    fig = plot_loss_curve(loss, window=2)
    assert isinstance(fig, Figure)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), loss["step"])
    previews = preview_images(artifacts.train_dir(params))
    assert [step for step, _ in previews] == [3, 6]
    assert previews[0][1].ndim == 3  # an RGB(A) image
    fig = plot_previews(previews)
    assert isinstance(fig, Figure) and [a.get_title() for a in fig.axes] == ["step 3", "step 6"]
    assert fig.axes[1].images[0].get_array().shape == previews[1][1].shape


def test_select_subjects_spans_sites_and_keeps_whole_subjects():
    import pandas as pd

    from neurodiff.train import select_subjects

    index = pd.DataFrame(
        {
            "subject": [f"s{i // 2}" for i in range(24)],
            "site": [("A", "B", "C")[(i // 2) % 3] for i in range(24)],
        }
    )
    images = np.arange(24, dtype=np.float32).reshape(24, 1, 1, 1)
    kept, kept_index = select_subjects(images, index, 3, seed=1)
    assert kept_index["subject"].nunique() == 3
    assert set(kept_index["site"]) == {"A", "B", "C"}
    assert len(kept) == len(kept_index) == 6  # two slices per subject, none split
    np.testing.assert_array_equal(
        kept[:, 0, 0, 0], index.index[index.subject.isin(kept_index.subject)].to_numpy()
    )
    assert select_subjects(images, index, 0)[0] is images
    assert select_subjects(images, index, 99)[0] is images
    again = select_subjects(images, index, 3, seed=1)[1]["subject"].tolist()
    assert again == kept_index["subject"].tolist()  # the seed fixes the draw


def test_select_subjects_gives_every_group_an_equal_share():
    """With a group column, a small subset never lacks a group (3 patients of 18 subjects)."""
    import pandas as pd

    from neurodiff.train import select_subjects

    subjects = [f"s{i:02d}" for i in range(18)]
    groups = ["control"] * 15 + ["patient"] * 3
    index = pd.DataFrame(
        {
            "subject": subjects,
            "site": [("A", "B", "C")[i % 3] for i in range(18)],
            "group": groups,
        }
    )
    images = np.zeros((18, 1, 1, 1), dtype=np.float32)
    for n, seed in ((2, 0), (2, 1), (4, 7)):
        kept = select_subjects(images, index, n, seed=seed)[1]
        assert kept["group"].value_counts().to_dict() == {"control": n // 2, "patient": n // 2}
    six = select_subjects(images, index, 6, seed=2)[1]
    assert set(six.loc[six["group"] == "control", "site"]) == {"A", "B", "C"}


def test_ddp_in_3d_then_resume_on_another_world_size(tmp_path, caplog):
    """The paper's path: two gloo processes train the smoke3d model, rank 0 alone writes the
    checkpoint, and one process resumes it (another world size) to the end."""
    rng = np.random.default_rng(0)
    volumes = rng.uniform(-1, 1, (8, 1, 16, 16, 16)).astype(np.float32)
    data = tmp_path / "volumes.npy"
    np.save(data, volumes)
    overrides = {
        "derived_dir": str(tmp_path),
        "device": "cpu",
        "precision": "fp32",
        "train_steps": 2,
        "checkpoint_every": 2,
        "preview_every": 0,
        "batch_size": 2,
    }
    script = tmp_path / "ddp3d.py"
    script.write_text(_DDP_SCRIPT.replace('"smoke"', '"smoke3d"').format(overrides=overrides))
    out = tmp_path / "ddp3d"
    out.mkdir()
    cmd = [sys.executable, *_torchrun(), str(script), str(data), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world_size"] == 2 and _tensors_equal(r0["model"], r1["model"])
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step-0000002.pt"]  # written once, by rank 0
    ckpt = load_checkpoint(out / "checkpoints" / checkpoints[0])
    assert ckpt["world_size"] == 2 and _tensors_equal(ckpt["model"], r0["model"])

    params = config.resolve("smoke3d", {**overrides, "train_steps": 4})
    with caplog.at_level("WARNING", logger="neurodiff.train.loop"):
        resumed = train(params, volumes, out, labels=np.arange(8) % 2, progress=False)
    assert resumed.resumed_from == 2 and resumed.step == 4 and resumed.world_size == 1
    assert "written by 2 process(es) with 1" in caplog.text
    assert read_loss_log(out)["step"].tolist() == [1, 2, 3, 4]
