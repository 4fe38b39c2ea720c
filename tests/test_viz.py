"""The figure kit's shared helpers: one central slice, one grid writer."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch

from neurodiff import viz


def test_central_slice_of_slices_and_volumes():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(viz.central_slice(vol), vol[0, :, :, 2])
    np.testing.assert_array_equal(viz.central_slice(vol[0]), vol[0, :, :, 2])
    img = np.ones((1, 5, 6))
    assert viz.central_slice(img).shape == (5, 6)
    assert viz.central_slice(torch.zeros(1, 5, 6)).shape == (5, 6)
    with pytest.raises(ValueError, match=r"'image' must be .* got shape \(5,\)"):
        viz.central_slice(np.zeros(5))


def test_save_grid_writes_one_png_with_every_image(tmp_path):
    images = np.zeros((6, 1, 8, 8), dtype=np.float32)
    images[:, 0, 4, 4] = 1.0
    path = viz.save_grid(images, tmp_path / "grid.png", ncols=3, dpi=50)
    assert path == tmp_path / "grid.png"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left
    png = matplotlib.image.imread(path)
    assert png.shape[:2] == (120, 180)  # 2 rows x 3 columns of 1.2 inches at 50 dpi
    # model-range images: -1 is black, 1 is white
    viz.save_grid(np.full((4, 1, 8, 8), 1.0), tmp_path / "white.png", value_range=(-1, 1))
    white = matplotlib.image.imread(tmp_path / "white.png")
    assert white[..., :3].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'images' is empty"):
        viz.save_grid(np.zeros((0, 1, 8, 8)), tmp_path / "none.png")


def test_text_too_small_for_the_column_is_enlarged():
    from neurodiff.viz._base import COLUMN_PX, MIN_TEXT_PX, figure, smallest_text_px

    wide = figure(figsize=(14, 3), dpi=100)  # 1400 px, shown at COLUMN_PX: scaled by ~0.47
    ax = wide.add_subplot()
    ax.set_title("title", fontsize=8)
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=5)
    assert smallest_text_px(wide) >= MIN_TEXT_PX - 1e-6
    assert wide.min_fontsize() == pytest.approx(MIN_TEXT_PX * 72 * 14 / COLUMN_PX)
    narrow = figure(figsize=(4, 3), dpi=100)  # shown at its own size
    narrow.add_subplot().set_title("t", fontsize=12)
    # untouched, already legible: the smallest text is a tick label at matplotlib's 10 pt
    assert smallest_text_px(narrow) == pytest.approx(10 * 100 / 72)
