"""Stage 3: train the DDPM (``neurodiff train``, also under ``torchrun`` for several GPUs).

Modules: :mod:`.stage` (:func:`train`, :func:`run`), :mod:`.loop` (the loop and what it saves),
:mod:`.data` (validation, the resumable sampler, subject subsets), :mod:`.helpers` (process group,
LR factor, noise seeds, loss log). Checkpoint files are :mod:`neurodiff.checkpoints`' business.

One training step (Ho et al. 2020, Algorithm 1): draw clean images x0 from the training set, a
timestep t ~ U{0..T-1} and noise eps ~ N(0, I) per image, noise the images with the forward process
q(x_t | x_0) (MONAI's ``DiffusionInferer``), let the UNet predict eps (or v, or x0) and take an
optimiser step on the L1/L2 error. Around that loop:

- **optimiser** Adam or AdamW, linear learning-rate warm-up then cosine decay (or constant),
  gradient clipping and gradient accumulation;
- **EMA** of the weights (``torch.optim.swa_utils.AveragedModel``), updated every ``ema_every``
  steps from step ``ema_start``; the EMA weights are what the sampler uses;
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
from .helpers import lr_factor
from .loop import PREVIEW_IMAGES, PREVIEW_STEPS, TrainState
from .stage import TrainResult, run, train

__all__ = [
    "CHECKPOINT_FORMAT",
    "PREVIEW_IMAGES",
    "PREVIEW_STEPS",
    "TrainResult",
    "TrainState",
    "latest_checkpoint",
    "load_checkpoint",
    "load_ema_model",
    "lr_factor",
    "preview_samples",
    "read_loss_log",
    "run",
    "select_subjects",
    "train",
]
