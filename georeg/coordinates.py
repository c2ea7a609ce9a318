"""Point arrays as georeg's functions take them.

Tie points and lattices are (N, 2) float arrays of (x, y) = (column, row) pixel positions, with
pixel centres at half-integers: the top-left pixel covers [0, 1) x [0, 1) and its centre is
(0.5, 0.5), as in GDAL's geotransform.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError


def as_points(a, name: str = "points") -> np.ndarray:
    """``a`` as a float64 (N, 2) array of (x, y); anything else raises :class:`ShapeError`.

    A (2, N) array is refused rather than reshaped: reshaping it would pair x of one point with
    x of the next and give a wrong answer without a word."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = " (it looks transposed: pass a.T)" if arr.ndim == 2 and arr.shape[0] == 2 else ""
        raise ShapeError(f"{name} must be an (N, 2) array of (x, y) pixel positions; got shape "
                         f"{arr.shape}{hint}")
    return arr
