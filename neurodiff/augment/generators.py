"""The experiment's generators: pretrained once on healthy subjects, fine-tuned per draw.

* :func:`pretrained` -- the class-conditional model of the chapter-3 recipe (at
  ``generator_channels``) trained on the **healthy pretraining pool** only, every image labelled
  with the first group: the paper's setting, a healthy multi-site cohort disjoint from every test
  subject. Its second group's embedding is never trained here.
* :func:`fine_tuned` -- that model fine-tuned on **exactly one draw's** ``n`` patients and ``n``
  controls, then sampled per class. It sees no other subject of the training pool, so a gain of
  the C arms at small ``n`` is not the pool's patients leaking in.
* :func:`pool_generator` -- the same fine-tuning on the whole training pool (arm ``C_pool``), the
  leaky design kept as an arm so that the leak is measured.

Weights and samples are kept in the run's ``work/`` folder (:mod:`neurodiff.artifacts`), so a
killed run does not train them again.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import artifacts
from ..conditioning import ClassGuided, null_class
from ..config import AugmentConfig, ModelConfig, Params, SampleConfig, TrainConfig
from ..finetune import FitSettings, fit_diffusion
from ..model import build_model
from ..sampling import generate
from .pools import Pools

__all__ = ["fine_tuned", "generator_config", "pool_generator", "pretrained", "sample_classes"]

log = logging.getLogger(__name__)


def generator_config(params: Params) -> ModelConfig:
    """The generators' model: the chapter-3 recipe at ``generator_channels``."""
    return params.stage(AugmentConfig).generator_config(params.stage(ModelConfig))


def _settings(params: Params, steps: int, lr: float) -> FitSettings:
    t: TrainConfig = params.stage(TrainConfig)
    return FitSettings(
        steps=steps,
        lr=lr,
        batch_size=t.batch_size,
        warmup=min(t.warmup_steps, steps // 5),
        ema_decay=t.ema_decay,
        grad_clip=t.grad_clip,
        precision=t.precision,
        device=t.device,
    )


def pretrained(params: Params, pools: Pools) -> dict[str, torch.Tensor]:
    """The healthy-pretrained weights (trained once per run folder, then read back)."""
    found = artifacts.load_work_weights(params, "pretrained")
    if found is not None:
        return found
    acfg: AugmentConfig = params.stage(AugmentConfig)
    pool = pools["pretrain"]
    log.info(
        "pretraining the generator on the healthy pool: %d images of %d subjects, %d steps",
        len(pool.y),
        len(pool.subjects()),
        acfg.pretrain_steps,
    )
    model = fit_diffusion(
        generator_config(params),
        pool.images,
        np.zeros(len(pool.y), dtype=np.int64),  # all healthy: the first group
        _settings(params, acfg.pretrain_steps, params.stage(TrainConfig).lr),
        seed=acfg.seed,
    )
    state = model.state_dict()
    artifacts.write_work_weights(params, "pretrained", state)
    return state


def sample_classes(params: Params, model: torch.nn.Module, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` samples of each group (first group first): ``(2 * per_class, 1, H, W)``
    in [-1, 1], with the chapter-4 sampler and guidance of ``params``."""
    cfg = generator_config(params)
    s: SampleConfig = params.stage(SampleConfig)
    out = []
    for label in (0, 1):
        guided = ClassGuided(model, label, null_class(cfg), s.guidance_scale)
        x = generate(
            guided,
            cfg,
            per_class,
            sampler=s.sampler,
            steps=s.steps,
            eta=s.eta,
            churn=s.churn,
            batch_size=s.sample_batch_size,
            seed=int(np.random.default_rng([seed, label]).integers(2**31)),
            device=s.device,
            precision=s.precision,
            progress=False,
        )
        out.append(x.numpy())
    return np.concatenate(out).astype(np.float32)


def fine_tuned(
    params: Params,
    init: dict[str, torch.Tensor],
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    seed: int,
) -> torch.nn.Module:
    """The pretrained model fine-tuned on ``images`` (labels 0/1) for ``steps`` steps."""
    acfg: AugmentConfig = params.stage(AugmentConfig)
    return fit_diffusion(
        generator_config(params),
        images,
        labels,
        _settings(params, steps, acfg.finetune_lr),
        seed=seed,
        init=init,
    )


def pool_generator(params: Params, pools: Pools, init: dict[str, torch.Tensor]) -> np.ndarray:
    """Arm C_pool's synthetic images: ``2 * max(augment_synthetic)`` per class from the
    pretrained model fine-tuned on the whole training pool (made once, then read back)."""
    found = artifacts.load_work_arrays(params, "pool_samples")
    if found is not None:
        return found["images"]
    acfg: AugmentConfig = params.stage(AugmentConfig)
    pool = pools["train"]
    log.info(
        "fine-tuning C_pool's generator on the whole training pool (%d subjects), %d steps",
        len(pool.subjects()),
        acfg.pool_finetune_steps,
    )
    model = fine_tuned(
        params, init, pool.images, pool.y, acfg.pool_finetune_steps, seed=acfg.seed + 1
    )
    artifacts.write_work_weights(params, "pool_generator", model.state_dict())
    images = sample_classes(params, model, 2 * max(acfg.augment_synthetic), seed=acfg.seed + 2)
    artifacts.write_work_arrays(params, "pool_samples", {"images": images})
    return images


def load_generator(params: Params, name: str) -> torch.nn.Module | None:
    """A generator kept in ``work/`` (``"pretrained"``, ``"pool_generator"``) as a model."""
    state = artifacts.load_work_weights(params, name)
    if state is None:
        return None
    model = build_model(generator_config(params))
    model.load_state_dict(state)
    return model.eval()
