"""Feature extractors for the distribution metrics (FID, feature MMD, precision/recall, audit).

Every distribution metric on images is computed in some feature space, and the feature space sets
the scale of the number: the same synthetic set gives FID in the thousands on ImageNet logits and
below 0.01 on MedicalNet features. So an extractor always carries a :attr:`~FeatureExtractor.name`
that is reported next to every value computed from it.

Extractors (the ``extractor`` parameter):

``random`` (default)
    A ResNet-10 (``monai.networks.nets.resnet10``, half width, 256 features after global average
    pooling) with **random, seeded weights** and no training. Random embeddings are a documented
    choice outside natural images (Naeem et al. 2020, "Reliable fidelity and diversity metrics for
    generative models", sec. 5): they need no download, are deterministic given the seed and the
    torch version, and carry no ImageNet bias. Their absolute scale means nothing; only the
    comparison with the real-vs-real baseline computed with the *same* extractor does.
    2D images go through the 2D network; 3D volumes are read **2.5D**: the 2D network is applied
    to ``slices_per_axis`` evenly spaced slices along each of the three axes (central 80 %), the
    features are averaged per axis and the three axis vectors concatenated (768 features).
``random3d``
    The same random ResNet-10 built with 3D convolutions, applied to whole volumes (3D only).
``inception``
    The FID Inception-v3 through ``torchmetrics.image.fid.NoTrainInceptionV3`` (2048 pool
    features; 2.5D for volumes). Needs the ``torch-fidelity`` package and its weights file in the
    torch hub cache; both are checked first and a :class:`~neurodiff.errors.MetricError` says
    what is missing.
``medicalnet:<path>``
    A user-provided MedicalNet 3D ResNet (Chen et al. 2019, "Med3D") state dict, e.g.
    ``resnet_10_23dataset.pth``. Depth, block type and shortcut type are read from the state dict;
    the network is ``monai.networks.nets.ResNet`` and the file is loaded with
    ``torch.load(..., weights_only=True)``. 3D only.

All extractors take ``(N, 1, *spatial)`` float arrays in [0, 1] and return ``(N, F)`` float64.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import MetricError
from .intensity import to_model_range

__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "get_extractor",
    "load_medicalnet",
]

log = logging.getLogger(__name__)

EXTRACTORS = ("random", "random3d", "inception", "medicalnet:<path>")
"""The accepted values of the ``extractor`` parameter."""

# torch-fidelity's FID Inception weights, as fetched into ``<torch hub dir>/checkpoints``.
_INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


class FeatureExtractor:
    """A named, frozen network mapping images to feature vectors.

    Parameters
    ----------
    name : str
        Reported next to every value computed from these features.
    net : callable
        Maps a float32 tensor ``(B, 1, *spatial)`` (already prepared by ``prepare``) to
        ``(B, F)``.
    spatial_dims : {2, 3}
        The dimensionality ``net`` takes.
    prepare : callable
        Maps a batch in [0, 1] to the network's input convention.
    slices_per_axis : int or None
        If set and the images are 3D while ``spatial_dims`` is 2, read volumes 2.5D.
    device : torch.device
    batch_size : int
        Images per forward pass.
    """

    def __init__(
        self,
        name: str,
        net: Callable[[torch.Tensor], torch.Tensor],
        spatial_dims: int,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        *,
        slices_per_axis: int | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.net = net
        self.spatial_dims = spatial_dims
        self.prepare = prepare
        self.slices_per_axis = slices_per_axis
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._base_name = name

    @property
    def name(self) -> str:
        return self._base_name

    def name_for(self, image_dims: int) -> str:
        """The name as reported for images of ``image_dims`` spatial dimensions."""
        if image_dims == 3 and self.spatial_dims == 2:
            return f"{self._base_name}, 2.5D ({self.slices_per_axis} slices x 3 axes)"
        return self._base_name

    def check(self, image_dims: int) -> None:
        """Raise :class:`MetricError` if images of ``image_dims`` dimensions cannot be read."""
        if image_dims not in (2, 3):
            raise MetricError(
                f"feature extractor {self.name!r} takes 2D or 3D images "
                f"(N, 1, H, W[, D]); got {image_dims} spatial dimensions"
            )
        if image_dims == 2 and self.spatial_dims == 3:
            raise MetricError(
                f"feature extractor {self.name!r} is 3D and needs volumes "
                "(N, 1, H, W, D); got 2D images. Use extractor=random for 2D"
            )
        if image_dims == 3 and self.spatial_dims == 2 and not self.slices_per_axis:
            raise MetricError(f"feature extractor {self.name!r} is 2D only; got 3D volumes")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of ``images`` ``(N, 1, *spatial)`` in [0, 1] -> ``(N, F)`` float64."""
        image_dims = images.ndim - 2
        self.check(image_dims)
        if image_dims == 3 and self.spatial_dims == 2:
            return self._features_2p5d(images)
        return self._features(images)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.net(self.prepare(x)).reshape(len(x), -1).double().cpu().numpy()

    def _features(self, images: np.ndarray) -> np.ndarray:
        from tqdm.auto import tqdm

        starts = range(0, len(images), self.batch_size)
        out = [
            self._forward(images[s : s + self.batch_size])
            for s in tqdm(
                starts, desc=f"features ({self.name})", leave=False, disable=len(starts) <= 4
            )
        ]
        return np.concatenate(out, axis=0)

    def _features_2p5d(self, volumes: np.ndarray) -> np.ndarray:
        """2.5D: the 2D network on evenly spaced central slices along each axis, averaged per axis,
        the three axis vectors concatenated. ``(N, 1, H, W, D)`` -> ``(N, 3F)``."""
        n = len(volumes)
        per_axis = []
        for axis in (2, 3, 4):
            size = volumes.shape[axis]
            idx = np.unique(
                np.round(np.linspace(0.1, 0.9, self.slices_per_axis) * (size - 1)).astype(int)
            )
            sl = np.take(volumes, idx, axis=axis)  # (N, 1, ..., S, ...)
            sl = np.moveaxis(sl, axis, 1)  # (N, S, 1, a, b)
            flat = sl.reshape(n * len(idx), 1, *sl.shape[3:])
            f = self._features(flat).reshape(n, len(idx), -1).mean(axis=1)
            per_axis.append(f)
        return np.concatenate(per_axis, axis=1)


def _random_resnet(spatial_dims: int, seed: int) -> nn.Module:
    """MONAI ResNet-10 at half width with seeded random (Kaiming) weights, in eval mode.

    Eval mode matters: the batch norms then use their initial running statistics (identity), so
    a sample's features do not depend on which other samples share its batch.
    """
    from monai.networks.nets import resnet10

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = resnet10(
            spatial_dims=spatial_dims,
            n_input_channels=1,
            feed_forward=False,
            widen_factor=0.5,
            conv1_t_stride=2,
        )
    return net.eval()


def _zscore_foreground(x: torch.Tensor) -> torch.Tensor:
    """MedicalNet's input convention: each volume standardised by its non-zero voxels.

    (MedicalNet also fills the background with random noise; we keep features deterministic.)
    """
    out = torch.empty_like(x)
    for i, v in enumerate(x):
        fg = v[v > 0]
        fg = fg if fg.numel() > 1 else v.reshape(-1)
        out[i] = (v - fg.mean()) / fg.std().clamp_min(1e-6)
    return out


def load_medicalnet(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, str]:
    """Build a MONAI 3D ResNet from a MedicalNet state dict; return ``(net, description)``.

    Accepts a bare state dict or ``{"state_dict": ...}`` (MedicalNet's release format), with or
    without the ``module.`` prefix of ``DataParallel``. Depth and block type are read from the
    keys (blocks per layer, ``conv3`` = bottleneck), the shortcut type from the presence of
    ``downsample`` weights (A = parameter-free), the width from ``conv1``. The segmentation head
    (``conv_seg``) and any ``fc`` are dropped: features are the global-average-pooled layer-4 maps.

    Raises
    ------
    MetricError
        The file is missing, unreadable, or not a ResNet state dict.
    """
    from monai.networks.nets import ResNet

    path = Path(path).expanduser()
    if not path.is_file():
        raise MetricError(
            f"MedicalNet weights file {str(path)!r} does not exist; "
            "expected a .pth state dict such as resnet_10_23dataset.pth "
            "(extractor=medicalnet:<path to the file>)",
            path=path,
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise MetricError(
            f"cannot read MedicalNet weights {str(path)!r}: {exc}", path=path
        ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetricError(
            f"MedicalNet weights {str(path)!r} are not a state dict of tensors", path=path
        )
    state = {
        k.removeprefix("module."): v
        for k, v in state.items()
        if not k.removeprefix("module.").startswith(("conv_seg", "fc."))
    }
    w = state.get("conv1.weight")
    if w is None or w.ndim != 5:
        raise MetricError(
            f"MedicalNet weights {str(path)!r} hold no 3D 'conv1.weight'; "
            "expected a MedicalNet (Med3D) ResNet",
            path=path,
        )
    layers = []
    for li in range(1, 5):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layer{li}\.(\d+)\.", k))}
        if not blocks:
            raise MetricError(
                f"MedicalNet weights {str(path)!r} have no 'layer{li}' blocks", path=path
            )
        layers.append(max(blocks) + 1)
    bottleneck = "layer1.0.conv3.weight" in state
    block = "bottleneck" if bottleneck else "basic"
    shortcut = "B" if any(k.startswith("layer2.0.downsample.0.") for k in state) else "A"
    bias_down = "layer2.0.downsample.0.bias" in state
    widen = w.shape[0] / 64
    depth = {
        (1, 1, 1, 1): 10,
        (2, 2, 2, 2): 18,
        (3, 4, 6, 3): 34 if not bottleneck else 50,
        (3, 4, 23, 3): 101,
        (3, 8, 36, 3): 152,
        (3, 24, 36, 3): 200,
    }.get(tuple(layers))
    net = ResNet(
        block,
        layers,
        [64, 128, 256, 512],
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_size=tuple(w.shape[2:]),
        conv1_t_stride=2,
        widen_factor=widen,
        shortcut_type=shortcut,
        bias_downsample=bias_down,
        feed_forward=False,
    )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise MetricError(
            f"MedicalNet weights {str(path)!r} do not fit a MONAI ResNet "
            f"(layers {layers}, {block} blocks, shortcut {shortcut}): " + " ".join(first),
            path=path,
        ) from None
    desc = f"medicalnet-resnet{depth or '?'}:{path.name}"
    return net.eval().to(device), desc


def _inception(device: torch.device) -> nn.Module:
    """torchmetrics' FID Inception-v3 (pool3, 2048 features), after checking it can load offline."""
    missing = [m for m in ("torch_fidelity", "torchvision") if importlib.util.find_spec(m) is None]
    if missing:
        raise MetricError(
            "extractor 'inception' needs the packages torch-fidelity and torchvision "
            f"(missing: {', '.join(missing)}; `pip install torch-fidelity`) and the FID Inception "
            f"weights {_INCEPTION_WEIGHTS} in {Path(torch.hub.get_dir()) / 'checkpoints'}. "
            "Use extractor=random (offline) or extractor=medicalnet:<path> instead"
        )
    weights = Path(torch.hub.get_dir()) / "checkpoints" / _INCEPTION_WEIGHTS
    if not weights.is_file():
        raise MetricError(
            f"extractor 'inception' needs the FID Inception weights {weights} (torch-fidelity "
            "downloads them on first use; copy the file there for offline use). Use "
            "extractor=random or extractor=medicalnet:<path> instead",
            path=weights,
        )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except Exception as exc:
        raise MetricError(f"extractor 'inception' could not be built: {exc}") from None
    return net.eval().to(device)


def _to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    # torch-fidelity's Inception takes uint8 RGB and resizes to 299 x 299 itself.
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)


def get_extractor(
    spec: str,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    slices_per_axis: int = 16,
) -> FeatureExtractor:
    """The feature extractor named by the ``extractor`` parameter.

    Parameters
    ----------
    spec : str
        ``random`` | ``random3d`` | ``inception`` | ``medicalnet:<path to weights>``.
    seed : int
        Seed of the random weights (``random``, ``random3d``).
    device : torch.device or str
    batch_size : int
        Images (or slices) per forward pass.
    slices_per_axis : int
        Slices per axis when a 2D extractor reads volumes (2.5D).

    Raises
    ------
    MetricError
        Unknown name, missing weights file or missing package.
    """
    spec = (spec or "").strip()
    device = torch.device(device)
    if spec == "random":
        net = _random_resnet(2, seed).to(device)
        return FeatureExtractor(
            f"random-resnet10 (seed {seed})",
            net,
            2,
            to_model_range,  # the random ResNet reads the model range [-1, 1]
            slices_per_axis=slices_per_axis,
            device=device,
            batch_size=batch_size,
        )
    if spec == "random3d":
        net = _random_resnet(3, seed).to(device)
        return FeatureExtractor(
            f"random-resnet10-3d (seed {seed})",
            net,
            3,
            to_model_range,  # the random ResNet reads the model range [-1, 1]
            device=device,
            batch_size=max(1, batch_size // 16),
        )
    if spec == "inception":
        net = _inception(device)
        return FeatureExtractor(
            "inception-v3 (torch-fidelity, pool3)",
            net,
            2,
            _to_uint8_rgb,
            slices_per_axis=slices_per_axis,
            device=device,
            batch_size=batch_size,
        )
    if spec.startswith("medicalnet:") and spec != "medicalnet:":
        net, desc = load_medicalnet(spec.split(":", 1)[1], device)
        return FeatureExtractor(
            desc, net, 3, _zscore_foreground, device=device, batch_size=max(1, batch_size // 16)
        )
    raise MetricError(
        f"unknown feature extractor {spec!r} (parameter 'extractor'); expected "
        f"one of {', '.join(EXTRACTORS)}"
    )
