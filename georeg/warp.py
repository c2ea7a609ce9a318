"""Output geometry, pure and file-free: corrected geotransforms and pixel mappings for resampling.

A model maps ``xy_t`` (target as currently georeferenced, reference-grid pixels) to ``xy_r``
(reference-grid pixels). Frames and the pixel convention: :mod:`georeg.coordinates`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from affine import Affine

from .coordinates import affine_to_matrix, apply_affine, matrix_to_affine, to_crs
from .estimation import FittedModel
from .grid import GCPGrid, Grid

__all__ = ["affine_to_matrix", "matrix_to_affine", "target_to_true_map", "corrected_transform", "output_to_source",
           "dense_coords", "shift_summary", "corrected_gcps"]


def _corrected_map(model: FittedModel, ref: Grid, crs, xy: np.ndarray) -> np.ndarray:
    """Map positions (N, 2) in ``crs`` where the target shows features -> where they truly are."""
    xy_t = apply_affine(~ref.transform, to_crs(crs, ref.crs, xy))
    return to_crs(ref.crs, crs, apply_affine(ref.transform, model.forward(xy_t)))


def target_to_true_map(model: FittedModel, ref: Grid, tgt: Grid) -> Callable[[np.ndarray], np.ndarray]:
    """Target native pixels (N, 2) -> corrected map coordinates in the target's CRS."""
    return lambda c: _corrected_map(model, ref, tgt.crs, tgt.to_map(c))


def corrected_transform(model: FittedModel, ref: Grid, tgt: Grid) -> tuple[Affine, float]:
    """New geotransform for the target on its own grid, and the largest deviation in target pixels
    between it and the model over the target's extent (0 for an exact affine in one CRS)."""
    if ref.crs == tgt.crs and model.is_affine:
        a_ref = affine_to_matrix(ref.transform)
        m = a_ref @ model.matrix @ np.linalg.inv(a_ref) @ affine_to_matrix(tgt.transform)
        return matrix_to_affine(m), 0.0
    f = target_to_true_map(model, ref, tgt)
    gx, gy = np.meshgrid(np.linspace(0, tgt.width, 21), np.linspace(0, tgt.height, 21))
    c = np.c_[gx.ravel(), gy.ravel()]
    mapped = f(c)
    a = np.c_[c, np.ones(len(c))]
    sol, *_ = np.linalg.lstsq(a, mapped, rcond=None)
    t = Affine(sol[0, 0], sol[1, 0], sol[2, 0], sol[0, 1], sol[1, 1], sol[2, 1])
    dev = np.abs(apply_affine(~t, mapped) - c).max()
    return t, float(dev)


def output_to_source(model: FittedModel | None, out: Grid, ref: Grid, tgt: Grid
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """Output-grid pixels (N, 2) -> target native pixels (N, 2) to sample for the corrected image.
    ``model=None`` gives the uncorrected mapping (used for 'before' views)."""
    def f(xy_out: np.ndarray) -> np.ndarray:
        m = to_crs(out.crs, ref.crs, apply_affine(out.transform, xy_out))
        xy_r = apply_affine(~ref.transform, m)
        xy_t = model.inverse(xy_r) if model is not None else xy_r
        m_t = to_crs(ref.crs, tgt.crs, apply_affine(ref.transform, xy_t))
        return tgt.to_pixels(m_t)
    return f


def corrected_gcps(model: FittedModel, ref: Grid, tgt: GCPGrid) -> tuple[list, float]:
    """The target's ground control points with their map positions corrected by ``model`` (same
    pixels, same CRS, same heights), and the largest deviation in target pixels, over a lattice
    of the target, between GDAL's transformer on the corrected points and the old one followed
    by the model."""
    from rasterio.control import GroundControlPoint

    gcps = list(tgt.gcps)
    xy = np.array([[g.x, g.y] for g in gcps], np.float64)
    moved = _corrected_map(model, ref, tgt.crs, xy)
    new = [GroundControlPoint(row=g.row, col=g.col, x=float(x), y=float(y), z=g.z, id=g.id, info=g.info)
           for g, (x, y) in zip(gcps, moved)]
    # compared in one direction (pixels -> map) on both sides: GDAL fits its polynomial both ways,
    # and the two fits are not exact inverses of each other where no polynomial of the order fits
    gx, gy = np.meshgrid(np.linspace(0, tgt.width, 21), np.linspace(0, tgt.height, 21))
    c = np.c_[gx.ravel(), gy.ravel()]
    wanted = target_to_true_map(model, ref, tgt)(c)
    got = tgt.placed_by(new).to_map(c)
    return new, float(np.abs(apply_affine(~tgt.transform, got) - apply_affine(~tgt.transform, wanted)).max())


AFFINE_TOL_PX = 1e-6  # lattice residual below which dense_coords treats a mapping as affine


def dense_coords(mapping: Callable[[np.ndarray], np.ndarray], col_off: int, row_off: int, width: int,
                 height: int, step: int = 16) -> np.ndarray:
    """Map the pixel centres of a window through ``mapping``: (height, width, 2).

    The mapping is evaluated on a lattice every ``step`` pixels and interpolated bilinearly in
    between, which is exact for affine mappings and sub-millipixel for the smooth others.
    """
    xs = np.arange(width) + col_off + 0.5
    ys = np.arange(height) + row_off + 0.5
    gx = np.unique(np.r_[xs[::step], xs[-1]])
    gy = np.unique(np.r_[ys[::step], ys[-1]])
    mx, my = np.meshgrid(gx, gy)
    lat = mapping(np.c_[mx.ravel(), my.ravel()]).reshape(len(gy), len(gx), 2)
    if len(gx) == 1 or len(gy) == 1:
        mx, my = np.meshgrid(xs, ys)
        return mapping(np.c_[mx.ravel(), my.ravel()]).reshape(height, width, 2)
    # an affine mapping (translation to affine models on one CRS): two outer sums, no interpolation
    design = np.c_[mx.ravel(), my.ravel(), np.ones(mx.size)]
    coef = np.linalg.lstsq(design, lat.reshape(-1, 2), rcond=None)[0]  # (3, 2)
    if np.abs(design @ coef - lat.reshape(-1, 2)).max() < AFFINE_TOL_PX:
        out = np.empty((height, width, 2))
        for k in range(2):
            np.add((ys * coef[1, k] + coef[2, k])[:, None], xs * coef[0, k], out=out[..., k])
        return out
    fx = np.interp(xs, gx, np.arange(len(gx)))
    fy = np.interp(ys, gy, np.arange(len(gy)))
    x0 = np.clip(np.floor(fx).astype(int), 0, len(gx) - 2)
    y0 = np.clip(np.floor(fy).astype(int), 0, len(gy) - 2)
    wx = (fx - x0)[None, :, None]
    wy = (fy - y0)[:, None, None]
    a = lat[y0][:, x0]
    b = lat[y0][:, x0 + 1]
    c = lat[y0 + 1][:, x0]
    d = lat[y0 + 1][:, x0 + 1]
    return (1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * c + wx * d)


def shift_summary(model: FittedModel, window_xy: tuple[float, float, float, float], grid: Grid) -> dict:
    """Mean and maximum displacement over a window (x0, y0, x1, y1) of the reference grid
    ``grid``, in its pixels, in map units (x east, y north for a north-up grid; ``map_unit``) and,
    where it has a CRS, in ground metres (``mean_m``, ``max_m``: at the window's centre, see
    :meth:`georeg.grid.Grid.map_offsets_m`)."""
    x0, y0, x1, y1 = window_xy
    gx, gy = np.meshgrid(np.linspace(x0, x1, 11), np.linspace(y0, y1, 11))
    p = np.c_[gx.ravel(), gy.ravel()]
    d = model.forward(p) - p
    mean = d.mean(0)
    lin = affine_to_matrix(grid.transform)[:2, :2]
    dm = d @ lin.T
    mean_m = dm.mean(0)
    out = {"mean_px": [float(mean[0]), float(mean[1])],
           "mean_map": [float(mean_m[0]), float(mean_m[1])],
           "max_px": float(np.linalg.norm(d, axis=1).max()),
           "max_map": float(np.linalg.norm(dm, axis=1).max()),
           "map_unit": grid.map_unit}
    ground = grid.map_offsets_m(dm, ((x0 + x1) / 2, (y0 + y1) / 2))
    if ground is not None:
        mg = ground.mean(0)
        out.update(mean_m=[float(mg[0]), float(mg[1])], max_m=float(np.linalg.norm(ground, axis=1).max()))
    return out
