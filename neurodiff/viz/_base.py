"""The figure kit's shared pieces: one figure factory, one central-slice helper, one grid writer.

Conventions of every figure in :mod:`neurodiff.viz`:

* functions take arrays (or tables) and return a :class:`matplotlib.figure.Figure`; none reads a
  file (notebooks read through :mod:`neurodiff.artifacts`) and none calls ``plt.show()``;
* images are ``(N, 1, X, Y)`` axial slices or ``(N, 1, X, Y, Z)`` volumes in RAS voxel order;
  a slice is drawn as nilearn draws it: the first array axis left to right, the second bottom to
  top (``imshow(a.T, origin="lower")``): anterior up, the subject's right on the viewer's right
  (neurological convention);
* figures are built with the object API (:class:`~matplotlib.figure.Figure`), not pyplot, so that
  writing PNGs from a worker process or a headless run needs no display and leaves no state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_path

__all__ = [
    "COLUMN_PX",
    "GREY",
    "MIN_TEXT_PX",
    "SPLIT_COLOURS",
    "BookFigure",
    "central_slice",
    "figure",
    "save_grid",
    "show",
    "smallest_text_px",
]

#: Keyword arguments of ``imshow`` for every grey-scale image.
GREY: dict[str, Any] = {"cmap": "gray", "interpolation": "nearest", "origin": "lower"}
#: One colour per split, in every figure that shows splits.
SPLIT_COLOURS = {"train": "#4477aa", "test": "#ee6677", "excluded": "#bbbbbb"}


#: Width of the book's content column in CSS pixels (measured in a 1280 px wide browser window;
#: wider figures are scaled down to it, narrower ones are shown at their own size).
COLUMN_PX = 660
#: The smallest text, in CSS pixels as displayed in that column, that any figure may hold.
MIN_TEXT_PX = 9.0


def _display_scale(fig: Figure) -> float:
    """CSS pixels on the page per pixel of the saved image (at most 1)."""
    return min(1.0, COLUMN_PX / (fig.get_figwidth() * fig.dpi))


def _text_artists(fig: Figure):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def smallest_text_px(fig: Figure) -> float:
    """The size, in CSS pixels as shown in the book's column, of the smallest text of ``fig``
    (draws it first, so that tick labels exist); ``inf`` for a figure without text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    sizes = [t.get_fontsize() for t in _text_artists(fig)]
    return min(sizes) * fig.dpi / 72 * _display_scale(fig) if sizes else math.inf


class BookFigure(Figure):
    """A figure whose text is never smaller than :data:`MIN_TEXT_PX` as the book shows it.

    A wide figure is scaled down to the content column, and its fonts with it; before every
    draw, any text (titles, labels, tick labels, legends, table cells) that would end up smaller
    than :data:`MIN_TEXT_PX` is enlarged to it, and the constrained layout then makes room.
    Written by hand: matplotlib sizes text in points of the figure, and knows nothing of the page
    that will show it.
    """

    def min_fontsize(self) -> float:
        """The smallest font size in points that is legible once displayed."""
        return MIN_TEXT_PX * 72 / (self.dpi * _display_scale(self))

    def draw(self, renderer):
        lowest = self.min_fontsize() + 1e-6
        for ax in self.axes:
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.label1 for t in axis.get_major_ticks() + axis.get_minor_ticks()]
                if any(lab.get_fontsize() < lowest for lab in labels):
                    axis.set_tick_params(which="both", labelsize=lowest)
        for text in _text_artists(self):
            if text.get_fontsize() < lowest:
                text.set_fontsize(lowest)
        return super().draw(renderer)


def figure(*args: Any, **kwargs: Any) -> BookFigure:
    """A new :class:`BookFigure` (object API; no pyplot state; text legible in the book)."""
    return BookFigure(*args, **kwargs)


def central_slice(image: Any) -> np.ndarray:
    """One 2D array ``(X, Y)`` to draw from an image.

    Accepts ``(1, X, Y)`` or ``(X, Y)`` slices and ``(1, X, Y, Z)`` or ``(X, Y, Z)`` volumes (the
    central axial slice, fixed Z), as numpy arrays or torch tensors; returns float32.
    """
    if hasattr(image, "detach"):  # torch.Tensor
        image = image.detach().float().cpu().numpy()
    a = np.asarray(image, dtype=np.float32)
    if a.ndim in (3, 4) and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a[:, :, a.shape[2] // 2]
    if a.ndim != 2:
        raise ValueError(
            f"central_slice: 'image' must be (1, X, Y), (X, Y), (1, X, Y, Z) or (X, Y, Z); "
            f"got shape {np.shape(image)}"
        )
    return a


def show(ax, image: Any, vmin: float = 0.0, vmax: float = 1.0) -> None:
    """Draw the central slice of ``image`` on ``ax`` in grey, without ticks."""
    ax.imshow(central_slice(image).T, vmin=vmin, vmax=vmax, **GREY)
    ax.set_xticks([])
    ax.set_yticks([])


def save_grid(
    images: Any,
    path: str | Path,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    max_images: int = 64,
    ncols: int | None = None,
    dpi: int = 100,
) -> Path:
    """Write a PNG grid of (the central axial slices of) up to ``max_images`` images, atomically.

    Parameters
    ----------
    images : array or tensor
        ``(N, 1, *spatial)`` in ``value_range``.
    path : path
        The PNG to write.
    value_range : (low, high)
        Grey levels: ``(0, 1)`` for images, ``(-1, 1)`` for the model's range.
    ncols : int, optional
        Columns; default 8, or a square grid for up to 16 images.
    """
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images)[:max_images]
    n = len(images)
    if n == 0:
        raise ValueError("save_grid: 'images' is empty; nothing to draw")
    ncols = min(ncols or (math.ceil(math.sqrt(n)) if n <= 16 else 8), n)
    nrows = math.ceil(n / ncols)
    fig = figure(figsize=(1.2 * ncols, 1.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k < n:
            show(ax, images[k], *value_range)
        else:
            ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1, 0.02, 0.02)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, facecolor="black", format="png")
    return Path(path)
