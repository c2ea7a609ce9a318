"""Clouds in an optical/thermal pair, told from the pair itself.

A cloud is bright in an optical band and cold in a thermal one. Between the optical and the thermal
sensor of one product (Landsat's OLI and TIRS) a cloud moves by its parallax, so a scene whose
structure is mostly cloud gives tie points that agree with each other, with a high inlier ratio and
a clear structural gain, on the clouds' motion instead of the ground's: Landsat 8 B8 against its own
product's B10 came out `reliable` and 400 m off. Without a cloud mask georeg cannot move those tie
points to the ground, but it can see them: where the optical image is much brighter, relative to the
rest of the scene, than the thermal image is warm (the rank of one against the rank of the other),
with the two images' intensities inverted around the tie point. On clear ground in daytime the two
rise together (bright bare soil and roofs are warm, dark vegetation and water cool).

:func:`cloud_like` flags the tie points that lie on such pixels; the verdict calls a model whose
inliers mostly lie there `uncertain`.

A mask made by a threshold (the brightest tenth of the optical band, the coldest tenth of the
thermal one) takes the clouds' cores and leaves their edges and the small cumulus around them. The
masked cores no longer count among the scene's ranks, and the scattered cells between clear ground
rarely lift the smoothed rank gap, so few tie points are flagged (16-39% of the inliers of results
14-15 px off, Landsat 8 B8 against B10). What remains is the inversion itself: around those tie
points the two images' intensities run strongly against each other (a local correlation
below :data:`STRONG_INVERSION` at 79% or more of the inliers), where on clear ground, even on the
SRIF optical/infrared pairs whose contrast often inverts, at most 36% do. :func:`cloud_like` returns
each point's local correlation for that count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rasterio.windows import Window

from .grid import Grid
from .raster import RasterSource

RANK_GAP = 0.3  # the optical image's scene rank this far above the thermal image's: cloud-like
MAX_LOCAL_CORRELATION = -0.2  # and the intensities around the tie point inverted at least this much
LOCAL_RADIUS_PX = 4  # the window of that correlation: (2r+1)^2 pixels of the coarse grid
GRID_PX = 256  # long side of the coarse grid the two images are compared on
# a local correlation this low is a strong inversion: at 79-94% of the inliers of every result that
# followed the clouds (Landsat 8 B4 or B8 against B10, with no mask or a threshold mask), at most 36% of
# those of the 141 clear SRIF optical/infrared pairs (median 7%) and 0-1% of the masked Landsat pair's
STRONG_INVERSION = -0.5


def _ranks(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each valid pixel's rank among the valid pixels, in (0, 1); 0 elsewhere."""
    out = np.zeros(a.shape, np.float32)
    idx = np.flatnonzero(valid)
    if len(idx):
        order = np.argsort(a.ravel()[idx], kind="stable")
        out.ravel()[idx[order]] = (np.arange(len(idx), dtype=np.float32) + 0.5) / len(idx)
    return out


def _box_mean(a: np.ndarray, r: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.uniform_filter(a, size=2 * r + 1, mode="constant")


def cloud_like(reference: RasterSource, target: RasterSource, grid: Grid, overlap: Window,
               inverse: Callable[[np.ndarray], np.ndarray] | None, xy: np.ndarray,
               optical_is_reference: bool = True) -> dict:
    """Which of the points ``xy`` (reference px of ``grid``) lie on cloud-like pixels of the pair,
    one of whose rasters is optical (the reference when ``optical_is_reference``) and the other
    thermal.

    The reference is read on a coarse grid over ``overlap``, the target through ``inverse``
    (reference px -> target px as georeferenced; None: as it is), so that a model that follows the
    clouds lines them up. Returns {"flags": bool per point, "share_of_overlap": the share of the
    compared pixels that are cloud-like}."""
    from .matching import sample_through

    f = max(1.0, max(overlap.width, overlap.height) / GRID_PX)
    sub = grid.window_grid(overlap)
    g = sub.scaled(f)
    sx, sy = sub.width / g.width, sub.height / g.height
    ox, oy = overlap.col_off, overlap.row_off
    whole = Window(0, 0, g.width, g.height)
    r, rv = reference.read_on_grid(g, whole)
    to_target = None
    if inverse is not None:
        def to_target(p: np.ndarray) -> np.ndarray:
            q = inverse(np.asarray(p, np.float64) * (sx, sy) + (ox, oy))
            return (q - (ox, oy)) / (sx, sy)
    t, tv = sample_through(target, g, whole, to_target)
    v = rv & tv
    o, th = (r, t) if optical_is_reference else (t, r)
    optical_rank = _ranks(o, v)
    gap = optical_rank - _ranks(th, v)
    # the local (Pearson) correlation of the two images' intensities over valid pixels
    rad = LOCAL_RADIUS_PX
    w = _box_mean(v.astype(np.float32), rad)
    safe = np.maximum(w, 1e-6)
    om, tm = (_box_mean(np.where(v, a, 0).astype(np.float32), rad) / safe for a in (o, th))
    do, dt = np.where(v, o - om, 0), np.where(v, th - tm, 0)
    cov = _box_mean(do * dt, rad)
    var = _box_mean(do * do, rad) * _box_mean(dt * dt, rad)
    corr = np.where(var > 0, cov / np.sqrt(np.maximum(var, 1e-30)), 0.0)
    # the gap smoothed over the same window: a cloud's bright core and its cold core lie a few coarse
    # pixels apart when the model follows the ground
    gap_s = _box_mean(np.where(v, gap, 0), rad) / safe
    cloud = v & (gap_s > RANK_GAP) & (corr < MAX_LOCAL_CORRELATION) & (w > 0.5)
    if len(xy):
        c = np.clip(((np.asarray(xy)[:, 0] - ox) / sx).astype(int), 0, g.width - 1)
        rr = np.clip(((np.asarray(xy)[:, 1] - oy) / sy).astype(int), 0, g.height - 1)
        flags, local = cloud[rr, c], np.where(v, corr, 0.0)[rr, c]
    else:
        flags, local = np.zeros(0, bool), np.zeros(0)
    n = int(np.count_nonzero(v))
    # where the optical image is brighter than the scene's median and the two images' contrast is
    # strongly inverted: the clouds under a model that follows them, to be left out (cloud_rounds.without_clouds)
    bright_cold = v & (corr < STRONG_INVERSION) & (optical_rank > 0.5)
    return {"flags": flags, "local_correlation": local.astype(np.float64),
            "share_of_overlap": float(np.count_nonzero(cloud) / n) if n else 0.0,
            "grid_px": [g.width, g.height], "coarse_px": round(math.sqrt(sx * sy), 3),
            "grid": g, "bright_cold": bright_cold}
