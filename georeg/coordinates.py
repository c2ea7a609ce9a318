"""Frames, the pixel convention and the helpers that move points between them; the one place
they are described (raster.py, matching.py and warp.py refer here).

Tie points and lattices are (N, 2) float arrays of (x, y) = (column, row) pixel positions, with
pixel centres at half-integers: the top-left pixel covers [0, 1) x [0, 1) and its centre is
(0.5, 0.5), as in GDAL's geotransform, so ``transform @ (x, y)`` is a map position. Array index
(row i, column j) is the pixel whose centre is (j + 0.5, i + 0.5).

Frames: matching and estimation work in *reference-grid pixels*. A tie point's ``xy_r`` is where
the reference shows a feature; its ``xy_t_on_ref`` is where the target, read onto the reference grid
through the georeferencing it came with, shows it (not the target's own pixel indices: those are
``(~target.transform) @ map``). A model maps ``xy_t_on_ref`` to ``xy_r``.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

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


def through_matrix(m: np.ndarray, width: int, height: int, centre: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of a ``width`` x ``height`` output falls under the 3x3 matrix ``m`` (output
    position -> source position): (x, y) arrays of shape (height * width,), row-major.

    ``centre`` is where a pixel's centre sits in the matrix's frame: 0.5 for georeg's convention
    (centres at half-integers, as above), 0.0 for a matrix between array indices (most image
    datasets' ground truths). The positions returned are array indices either way, ready for
    ``scipy.ndimage.map_coordinates``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if centre:
        yy, xx = yy + centre, xx + centre
    pts = m @ np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    if centre:
        return pts[0] / pts[2] - centre, pts[1] / pts[2] - centre
    return pts[0] / pts[2], pts[1] / pts[2]


def resample_by_matrix(img: np.ndarray, out_to_img: np.ndarray, shape: tuple[int, int], centre: float = 0.0,
                       order: int = 1, mode: str = "constant") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``img`` (H, W) resampled onto an output of ``shape`` whose pixel p shows ``img`` at
    ``out_to_img`` p (see :func:`through_matrix` for ``centre``). Returns the values (h, w) and
    the source x and y array indices (h * w,) each, from which callers judge what lies inside."""
    from scipy import ndimage

    h, w = shape
    mx, my = through_matrix(out_to_img, w, h, centre)
    v = ndimage.map_coordinates(img, [my, mx], order=order, mode=mode, cval=0.0)
    return v.reshape(h, w), mx, my


def affine_to_matrix(t: Affine) -> np.ndarray:
    """A geotransform as a 3x3 matrix (pixel (x, y) -> map)."""
    return np.array([[t.a, t.b, t.c], [t.d, t.e, t.f], [0, 0, 1]], dtype=np.float64)


def matrix_to_affine(m: np.ndarray) -> Affine:
    return Affine(m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2])


def apply_affine(t: Affine, xy: np.ndarray) -> np.ndarray:
    """(N, 2) positions through a geotransform: pixels -> map with ``t``, map -> pixels with ``~t``."""
    m = affine_to_matrix(t)
    return xy @ m[:2, :2].T + m[:2, 2]


def to_crs(src_crs, dst_crs, xy: np.ndarray) -> np.ndarray:
    """(N, 2) map positions from ``src_crs`` to ``dst_crs`` (unchanged when they are equal)."""
    if src_crs == dst_crs:
        return xy
    from rasterio.warp import transform as crs_transform

    xs, ys = crs_transform(src_crs, dst_crs, xy[:, 0].tolist(), xy[:, 1].tolist())
    return np.c_[xs, ys]
