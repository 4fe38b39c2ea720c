"""Stage 3: train the diffusion model (``neurodiff train``, also under ``torchrun``).

Modules: :mod:`.stage` (:func:`train`, :func:`run`), :mod:`.loop` (the loop and what it saves),
:mod:`.data` (validation, the resumable sampler, subject subsets), :mod:`.helpers` (process group,
LR factor, EMA update, noise seeds, loss log), :mod:`.diagnostics` (denoising error per noise
level), :mod:`.recipes` (the recipe study's results for chapter 3). Checkpoint files are
:mod:`neurodiff.checkpoints`' business.

One training step (Ho et al. 2020, Algorithm 1): draw clean images x0 from the training set, a
timestep t (uniform, or logit-normal) and noise eps ~ N(0, I) per image, noise the images with the
forward process q(x_t | x_0) (MONAI's ``DiffusionInferer``; a straight line from x0 to eps for
rectified flow), let the UNet predict eps, v or x0 (the velocity x0 - eps for rectified flow) and
take an optimiser step on the L1/L2 error, optionally min-SNR weighted. Around that loop:

- **optimiser** Adam or AdamW, linear learning-rate warm-up then cosine decay (or constant),
  gradient clipping and gradient accumulation;
- **EMA** of the weights (``torch.optim.swa_utils.AveragedModel``), updated every ``ema_every``
  steps from step ``ema_start``, optionally with a warm-up of the decay (``ema_warmup``); the EMA
  weights are what the sampler uses;
- **precision** bf16 autocast on CUDA, and on CPUs with native bf16 arithmetic
  (``precision=auto``); ``fp32`` forces full precision; optional ``torch.compile`` and
  ``channels_last``;
- **checkpoints** every ``checkpoint_every`` steps and at the end, written atomically and rotated
  (``keep_checkpoints``). ``resume=true`` continues from the latest one *exactly*: the data order
  depends only on (seed, epoch) and each step's noise and timesteps only on (seed, step, rank), so
  a run killed and resumed ends with the same weights as an uninterrupted one;
- **outputs** in :func:`neurodiff.artifacts.train_dir`: ``checkpoints/step-XXXXXXX.pt``,
  ``loss.csv`` (step, loss, lr, grad_norm), ``previews/step-XXXXXXX.png`` (a few DDIM steps from
  the EMA weights) and ``config.json``.

Several processes (``torchrun --nproc_per_node=N -m neurodiff train --profile P``) train with
PyTorch DDP: NCCL on GPUs, gloo on CPU; each process draws its own ``batch_size`` images through a
``DistributedSampler``; rank 0 alone logs, shows the progress bar and writes files. The
**effective batch** of one optimiser step is ``batch_size x world size x grad_accum``.
"""

from ..artifacts import read_loss_log
from ..checkpoints import CHECKPOINT_FORMAT, latest_checkpoint, load_checkpoint
from ..model import load_ema_model
from ..sampling import preview_samples
from .data import select_subjects
from .diagnostics import denoising_error, denoising_reading, implied_x0
from .helpers import lr_factor
from .loop import PREVIEW_IMAGES, PREVIEW_STEPS, TrainState
from .recipes import (
    RECIPES_FILE,
    best_recipe,
    describe_recipe,
    find_recipe_study,
    load_recipe_study,
    recipe_curves,
    recipe_table,
)
from .stage import TrainResult, run, train

__all__ = [
    "CHECKPOINT_FORMAT",
    "PREVIEW_IMAGES",
    "PREVIEW_STEPS",
    "RECIPES_FILE",
    "TrainResult",
    "TrainState",
    "best_recipe",
    "describe_recipe",
    "denoising_curve",
    "denoising_error",
    "denoising_reading",
    "find_recipe_study",
    "implied_x0",
    "latest_checkpoint",
    "load_checkpoint",
    "load_ema_model",
    "load_recipe_study",
    "lr_factor",
    "preview_samples",
    "read_loss_log",
    "recipe_curves",
    "recipe_table",
    "run",
    "select_subjects",
    "train",
]


def denoising_curve(params, n_levels: int = 16):
    """:func:`denoising_error` of the run's EMA model on its held-out test images."""
    from .. import artifacts
    from ..device import resolve_device

    device = resolve_device(params.device)
    model, cfg, _ = load_ema_model(params, device)
    images, _ = artifacts.load_split(params, "test")
    return denoising_error(model, cfg, images, n_levels=n_levels, seed=params.seed, device=device)
