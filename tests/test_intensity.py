"""The one pair of range conversions."""

from __future__ import annotations

import numpy as np
import torch

from neurodiff.intensity import to_model_range, to_unit_range


def test_ranges_map_both_ways():
    x = np.array([-1.0, -0.5, 0.0, 1.0], dtype=np.float32)
    unit = to_unit_range(x)
    np.testing.assert_array_equal(unit, [0.0, 0.25, 0.5, 1.0])
    assert unit.dtype == np.float32
    np.testing.assert_array_equal(to_model_range(unit), x)
    # out-of-range model values are clipped to the image range
    np.testing.assert_array_equal(to_unit_range(np.array([-1.5, 1.2])), [0.0, 1.0])


def test_tensors_are_accepted():
    t = torch.tensor([[-1.0, 1.0]])
    assert isinstance(to_unit_range(t), np.ndarray)
    np.testing.assert_array_equal(to_unit_range(t), [[0.0, 1.0]])
    back = to_model_range(torch.tensor([0.0, 0.5]))
    assert isinstance(back, torch.Tensor) and back.tolist() == [-1.0, 0.0]
