"""The figure kit: shared helpers (:mod:`._base`) and one module per chapter.

``from neurodiff import viz`` gives the helpers (:func:`central_slice`, :func:`show`,
:func:`save_grid`, :func:`figure`); the chapter modules are :mod:`.explore`, :mod:`.preprocess`,
:mod:`.train`, :mod:`.sample` and :mod:`.metrics` (``from neurodiff.viz import sample as plots``).
Every figure function takes arrays or tables and returns a :class:`matplotlib.figure.Figure`.

The chapter modules are not imported here, so that a stage writing a PNG grid (sampling,
training previews) does not import every figure of the book.
"""

from ._base import GREY, SPLIT_COLOURS, central_slice, figure, save_grid, show

__all__ = ["GREY", "SPLIT_COLOURS", "central_slice", "figure", "save_grid", "show"]
