"""Shared fixtures: a tiny simulated cohort, small NIfTI writers, and no network by default."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: the test may reach hosts other than loopback")


# --------------------------------------------------------------------------------------------
# Network: only loopback (local test servers, Jupyter kernels) unless marked `network`
# --------------------------------------------------------------------------------------------


class NetworkBlockedError(OSError):
    """Raised by the test guard when code tries to reach a non-loopback host."""


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse name look-ups and connections to anything but loopback (and Unix sockets)."""
    if request.node.get_closest_marker("network"):
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                raise NetworkBlockedError(f"network access to {address!r} is blocked in tests")

    def connect(self: socket.socket, address: object) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object):
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"name look-up of {host!r} blocked in tests")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated BIDS cohort: 6 controls and 6 patients at 3 sites (A RAS uint16, B LPS int16,
    C LIA float32), fast mode (2 mm templates, voxels 2.4-3 mm, ~80 x 100 x 80). Read-only: copy
    it to modify."""
    from neurodiff.demo_data import make_demo_cohort

    out = tmp_path_factory.mktemp("tiny_cohort") / "demo"
    return make_demo_cohort(
        out, subjects=6, sites=3, seed=0, patients=6, resolution=2, progress=False
    )


def tiny_run_params(cohort: Path, derived: Path, **extra):
    """The smoke profile on ``cohort``, written under ``derived``, at the smallest run that trains,
    checkpoints and samples (2 steps, 3 images of each group, 5 sampler steps, seed 4)."""
    from neurodiff import config

    values = {
        "cohort": str(cohort),
        "derived_dir": str(derived),
        "qc_exclude": False,
        "train_steps": 2,
        "checkpoint_every": 2,
        "preview_every": 0,
        "n_samples": 3,
        "sample_batch_size": 2,
        "steps": 5,
        "seed": 4,
    }
    return config.resolve("smoke", {**values, **extra})


@pytest.fixture(scope="session")
def tiny_pools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chapter 6's pools at toy size (4 healthy for pretraining; per class 6 training, 2
    validation, 3 test, 2 at site D), fast mode. Read-only."""
    from neurodiff.demo_data import make_pools_cohort

    out = tmp_path_factory.mktemp("tiny_pools") / "pools"
    return make_pools_cohort(out, (4, 6, 2, 3, 2), seed=0, resolution=2, progress=False)


def write_nifti(
    path: Path,
    data: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a small NIfTI (default: a 16^3 smooth random volume, 2 mm RAS) and return its path."""
    import nibabel as nib

    if data is None:
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        data = rng.uniform(0, 100, (16, 16, 16))
    if affine is None:
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(data).astype(dtype), affine).to_filename(path)
    return path


@pytest.fixture
def nifti_writer():
    """The :func:`write_nifti` helper, for tests that build their own small folders."""
    return write_nifti


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module: the smoke model is tiny, and one thread is fastest,
    far faster than two when the machine is busy (OpenMP threads then wait on each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_cfg():
    """The smoke profile's model configuration: 2D 16^2, channels (16, 32), T = 50."""
    from neurodiff import config
    from neurodiff.config import ModelConfig

    return config.resolve("smoke").stage(ModelConfig)


@pytest.fixture(scope="module")
def model(smoke_cfg):
    """An untrained smoke UNet with seeded weights, in eval mode."""
    import torch

    from neurodiff.model import build_model

    torch.manual_seed(0)
    return build_model(smoke_cfg).eval()


def _study_book(profile: str, project: Path, cohort: Path, pools: Path):
    """Every notebook on ``profile`` through papermill, then a strict book build, in a copy of the
    project at ``project``: ``(project, RunReport, index.html)``."""
    from neurodiff import runner

    shutil.copy(ROOT / "_config.yml", project)
    shutil.copy(ROOT / "requirements.lock", project)
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    shutil.copytree(ROOT / "book", project / "book", ignore=shutil.ignore_patterns("executed"))
    shutil.copytree(ROOT / "benchmarks" / "results", project / "benchmarks" / "results")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEURODIFF_ROOT", str(project))
    try:
        report = runner.run_notebooks(
            profile,
            {"cohort": str(cohort), "pools_cohort": str(pools), "derived_dir": "derived"},
        )
        index = runner.build_book(strict=True, root=project)
    finally:
        mp.undo()
    return project, report, index


@pytest.fixture(scope="session")
def smoke_book(tiny_cohort, tiny_pools, tmp_path_factory):
    """The whole study on the smoke profile through papermill, then a strict book build, in a
    copy of the project: ``(project, RunReport, index.html)``."""
    return _study_book("smoke", tmp_path_factory.mktemp("project"), tiny_cohort, tiny_pools)


@pytest.fixture(scope="session")
def smoke3d_book(tiny_cohort, tiny_pools, tmp_path_factory):
    """The whole study on the ``smoke3d`` profile (the paper's 3D path at 16^3), the same way."""
    project = tmp_path_factory.mktemp("project3d")
    return _study_book("smoke3d", project, tiny_cohort, tiny_pools)


@pytest.fixture(autouse=True)
def legible_figures(monkeypatch):
    """Every figure a test makes with neurodiff.viz is checked afterwards: no text smaller than
    MIN_TEXT_PX as the book's content column shows it."""
    from neurodiff.viz import _base

    made = []
    init = _base.BookFigure.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(_base.BookFigure, "__init__", record)
    yield made
    small = [
        (fig.get_suptitle() or [ax.get_title() for ax in fig.axes][:1], size)
        for fig in made
        if (size := _base.smallest_text_px(fig)) < _base.MIN_TEXT_PX - 1e-3
    ]
    assert not small, f"figures with text under {_base.MIN_TEXT_PX} px: {small}"
