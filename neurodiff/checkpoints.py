"""Training checkpoints: paths, atomic save, safe load, rotation, EMA weights and RNG state.

A checkpoint is one ``torch.save``'d dict of tensors and plain values (see
:data:`CHECKPOINT_FORMAT` and CONTRIBUTING.md), written under a temporary name and renamed into
place, and read back with ``torch.load(..., weights_only=True)`` -- never by unpickling code.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import artifacts
from .config import ModelConfig, Params
from .errors import CheckpointError
from .io import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint_path",
    "checkpoint_step",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_ema_state",
    "rng_state",
    "rotate_checkpoints",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]


CHECKPOINT_FORMAT = "neurodiff-checkpoint/1"


_CHECKPOINT_KEYS = (
    "format",
    "step",
    "model",
    "ema",
    "optimizer",
    "lr_scheduler",
    "rng",
    "model_config",
    "train_config",
    "params_hash",
)


_CHECKPOINT_RE = re.compile(r"^step-(\d{7,})\.pt$")


def checkpoint_path(train_dir: str | Path, step: int) -> Path:
    """``<train_dir>/checkpoints/step-XXXXXXX.pt``."""
    return Path(train_dir) / "checkpoints" / f"step-{step:07d}.pt"


def list_checkpoints(train_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint in ``<train_dir>/checkpoints/``, by step."""
    folder = Path(train_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(train_dir: str | Path) -> Path | None:
    """The checkpoint of the highest step in ``<train_dir>/checkpoints/``, or None if there is none.

    Temporary files of an interrupted write (names starting with a dot) are never returned.
    """
    found = list_checkpoints(train_dir)
    return found[-1][1] if found else None


def _config_dict(cfg: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, ModelConfig):
        return cfg.to_dict()
    return ModelConfig.from_params(cfg).to_dict()


def load_checkpoint(
    path: str | Path,
    expected_model_config: ModelConfig | Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a training checkpoint safely (``torch.load(..., weights_only=True)``).

    Parameters
    ----------
    path : str or Path
        A ``step-XXXXXXX.pt`` file written by :func:`train`.
    expected_model_config : ModelConfig or mapping, optional
        If given, the checkpoint's model configuration must equal it.
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    dict
        ``format``, ``step``, ``model``, ``ema``, ``optimizer``, ``lr_scheduler``, ``rng``,
        ``model_config``, ``train_config``, ``params_hash`` (see CONTRIBUTING.md).

    Raises
    ------
    CheckpointError
        The file is missing, unreadable (corrupt, truncated, not a checkpoint), of another format,
        or was written for another model configuration (the differing fields are named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read: it is corrupt, truncated "
            f"or not a neurodiff checkpoint ({msg})",
            path=path,
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {found!r}; expected {CHECKPOINT_FORMAT!r}",
            path=path,
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is incomplete: missing {missing}", path=path
        )
    if expected_model_config is not None:
        expected = _config_dict(expected_model_config)
        found_cfg = ckpt["model_config"]
        diffs = [
            f"{k}: checkpoint has {found_cfg.get(k)!r}, expected {v!r}"
            for k, v in expected.items()
            if found_cfg.get(k) != v
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written for another model configuration "
                f"({'; '.join(diffs)}). It does not belong in this run's folder (runs are "
                "keyed by their parameters): remove it, or the run with "
                "`neurodiff clean --run KEY`",
                path=path,
            )
    return ckpt


def rng_state() -> dict[str, torch.Tensor]:
    # numpy's legacy global RNG is saved (not used by neurodiff) for code that draws from it
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_gauss], dtype=torch.float64),
        "python_state": torch.tensor(py_state, dtype=torch.int64),
        "python_meta": torch.tensor([py_version], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [math.nan if py_gauss is None else py_gauss], dtype=torch.float64
        ),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    pos, has_gauss = (int(v) for v in state["numpy_meta"])
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            pos,
            has_gauss,
            float(state["numpy_gauss"][0]),
        )
    )
    gauss = float(state["python_gauss"][0])
    random.setstate(
        (
            int(state["python_meta"][0]),
            tuple(int(v) for v in state["python_state"]),
            None if math.isnan(gauss) else gauss,
        )
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda{i}" in state:
                torch.cuda.set_rng_state(state[f"cuda{i}"].cpu(), i)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (the legacy global RNG, for third-party code)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rotate_checkpoints(train_dir: Path, keep: int) -> None:
    """Remove all but the ``keep`` newest checkpoints."""
    for _, old in list_checkpoints(train_dir)[:-keep]:
        old.unlink(missing_ok=True)


def save_checkpoint(train_dir: str | Path, step: int, state: Mapping[str, Any]) -> Path:
    """Write ``state`` as ``step-XXXXXXX.pt`` atomically (temporary name, then rename)."""
    path = checkpoint_path(train_dir, step)
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return path


def checkpoint_step(path: str | Path) -> int | None:
    """The step in a checkpoint's file name (``step-0001500.pt`` -> 1500), or None."""
    stem = Path(path).stem
    try:
        return int(stem.rsplit("-", 1)[-1])
    except ValueError:
        return None


def load_ema_state(
    params_or_train_dir: Params | str | Path,
) -> tuple[dict[str, torch.Tensor], ModelConfig, Path]:
    """The EMA weights of the latest checkpoint, with the model configuration they belong to.

    Parameters
    ----------
    params_or_train_dir : Params or path
        ``Params``: the checkpoint must match ``params``' model configuration and is looked up in
        :func:`neurodiff.artifacts.train_dir`; a path: a train folder or a checkpoint file,
        whose own model configuration is used.

    Returns
    -------
    (state_dict, model_config, checkpoint_path)
    """
    expected: ModelConfig | None = None
    if isinstance(params_or_train_dir, Params):
        train_dir = artifacts.train_dir(params_or_train_dir)
        expected = params_or_train_dir.stage(ModelConfig)
        path = latest_checkpoint(train_dir)
    else:
        p = Path(params_or_train_dir)
        train_dir, path = (p.parent.parent, p) if p.suffix == ".pt" else (p, latest_checkpoint(p))
    if path is None:
        how = (
            f"`neurodiff train --profile {params_or_train_dir.profile}` with the same parameters"
            if isinstance(params_or_train_dir, Params)
            else "`neurodiff train`"
        )
        raise CheckpointError(
            f"no checkpoint in {str(Path(train_dir) / 'checkpoints')!r}; train first ({how})",
            path=train_dir,
        )
    ckpt = load_checkpoint(path, expected_model_config=expected)
    return ckpt["ema"], ModelConfig.from_params(ckpt["model_config"]), path
