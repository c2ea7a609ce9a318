"""The working grid: the pixels the matching works on (the reference's own, or a grid of the same
extent coarsened towards a much coarser target's pixels, refined towards a much finer target's, or
made square on the ground), and the stage that brings a result on it back to reference pixels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import rasterio.errors
from rasterio.windows import Window

from .estimation import FittedModel, LocalWarp
from .grid import GCPGrid, Grid
from .matching import TiePoints
from .raster import RasterSource, overlap_window

if TYPE_CHECKING:
    from .pipeline import Scene


COARSEN_FROM = 1.5  # pixels this many times the other raster's or larger: match on pixels between the two
# ... and on no fewer than this many across the overlap (the square root of its area in working
# pixels) where the finer raster allows: a small overlap on a coarse raster's pixels keeps too few
# for the tie points and the verdict. A target much coarser than the reference: Landsat 8 B4
# (30 m, 603 x 627 px) against B10 averaged to 60, 70 and 100 m, the BQA mask given, `uncertain`
# 10-125 m off on 7-26 tie points when matched on the target's pixels, `reliable` 6-7 m off on
# 83-101 on the reference's; the S1 scenes of S1/S2 pairs 050 and 176 averaged to 60 m on their
# 1024 px S2 references: 19.7 and 19.5 m from the 10 m result on the 60 m grid, 9.2 and 3.9 m on
# a 20 m one (384 px: 7.3 and 6.1 m; 768 px, no coarsening left: 050 `uncertain`). A reference
# much coarser than the target: those S2 references averaged to 60 m under the 10 m S1 scenes of
# 050, 176 and 268, 13.5, 16.9 and 9.6 m from the 10 m result on the reference's 171 px, 8.2, 5.4
# and 4.6 m on a 20 m grid. See benchmarks/HISTORY.md (2026-12-06)
MIN_WORKING_PX = 512
# a refined grid keeps the search radius (``--max-shift``) within this many of its pixels: S2
# references of pairs 050 and 176 averaged to 100 m under their 10 m S1 scenes, refined 5x to
# MIN_WORKING_PX, searched 200 px and took 50 and 63 s (four first passes, each weak), against
# 0.4-0.5 s on the reference's own pixels
MAX_REFINED_RADIUS_PX = 128
# pixels this many times taller than wide on the ground (or wider than tall) or more: match on square
# ones. S1/S2 pairs 050, 176 and 268 placed at 35, 60 and 70 degrees north and both exported to
# EPSG:4326 (square degrees): on the reference's own pixels 1.2-2.0, 1.1-5.0 and 4.9-11.9 m from the
# same pair in UTM (at 70 degrees 73-98 tie points, one `reliable` 11.9 m off), on square ones 0.4-0.8,
# 1.0-2.0 and 1.3-3.3 m (at 45 degrees a wash); see benchmarks/HISTORY.md (2026-12-06, fifth session)
SQUARE_FROM = 1.2


def working_grid(ref: RasterSource, tgt: RasterSource,
                 radius_px: float = 0.0) -> tuple[Grid, tuple[float, float] | None]:
    """The grid the matching works on: the reference grid, or, where the two rasters' pixel sizes
    differ by COARSEN_FROM or more, a grid of the same extent whose pixels lie between the two:
    coarsened towards a much coarser target's pixels (a 10 m SAR scene on a 2.5 m orthophoto) no
    further than keeps MIN_WORKING_PX working pixels across the overlap, or, when a much coarser
    reference has fewer than that across the overlap, refined towards the target's pixels until
    it has them, no further than keeps the search radius ``radius_px`` (reference pixels) within
    MAX_REFINED_RADIUS_PX working pixels. On the finer raster's own pixels a coarse one is an
    upsampled blur, a 64 px patch holds 16 of its pixels, and the work grows with the square of
    the ratio: a 1024 px S1 scene on its S2 reference upsampled 4x took 57.7 s for an uncertain
    result, against 6.7 s on the 10 m grid (whole process).

    A reference whose pixels are SQUARE_FROM times taller than wide on the ground or more (square
    degrees of a geographic CRS, EPSG:4326 as Earth Engine and many portals export, are twice as
    tall as wide at 60 degrees north) is matched on square ground pixels of the same area: the
    matchers' patches and features assume them. Returns the grid and (x, y) reference px per
    working px (below 1 on a refined axis), or None."""
    if ref.pixel_frame or isinstance(ref.grid, GCPGrid):
        return ref.grid, None
    f = _uniform_factor(ref, tgt, radius_px)
    aspect = ref.grid.ground_aspect
    sq = math.sqrt(aspect) if max(aspect, 1 / aspect) >= SQUARE_FROM else 1.0
    if f == 1.0 and sq == 1.0:
        return ref.grid, None
    grid = ref.grid.scaled((f * sq, f / sq))
    return grid, (ref.grid.width / grid.width, ref.grid.height / grid.height)


def radius_factor(coarsened: tuple[float, float] | None) -> float:
    """Reference px per working px for the search radius: the coarser axis's on a coarsened or
    refined grid, the square root of their product (the ground size of a reference pixel, as
    ``--max-shift`` in metres reads it) on square working pixels for non-square reference ones."""
    if coarsened is None:
        return 1.0
    sx, sy = coarsened
    return max(sx, sy) if abs(math.log(sx / sy)) < math.log(1.1) else math.sqrt(sx * sy)


def _uniform_factor(ref: RasterSource, tgt: RasterSource, radius_px: float) -> float:
    """Reference px per working px along both axes by the pixel-size rule of :func:`working_grid`
    (1.0: the reference's own pixels)."""
    f = _pixel_size_in(tgt.grid, ref.grid.crs) / math.sqrt(abs(ref.grid.transform.determinant))
    if not math.isfinite(f) or 1 / COARSEN_FROM < f < COARSEN_FROM:
        return 1.0
    overlap = overlap_window(ref, tgt)[0]
    room = math.sqrt(overlap.width * overlap.height) / MIN_WORKING_PX  # the factor leaving MIN_WORKING_PX across
    f = min(f, room) if f > 1 else max(f, min(room, 1.0), radius_px / MAX_REFINED_RADIUS_PX)
    return 1.0 if 1 / COARSEN_FROM < f < COARSEN_FROM else f


def _pixel_size_in(grid: Grid, crs) -> float:
    """The side of ``grid``'s central pixel in ``crs``'s units (the square root of its area), so that
    two rasters' pixels compare in one unit (a Mercator unit is not a metre on the ground)."""
    from .coordinates import to_crs

    k = max(1.0, min(64.0, grid.width / 4, grid.height / 4))
    cx, cy = grid.width / 2, grid.height / 2
    try:
        p = to_crs(grid.crs, crs, grid.to_map(np.array([[cx, cy], [cx + k, cy], [cx, cy + k]])))
    except (rasterio.errors.RasterioError, ValueError):  # sizes that cannot be compared: no coarsening
        return float("nan")
    (ax, ay), (bx, by) = p[1] - p[0], p[2] - p[0]
    return math.sqrt(abs(ax * by - ay * bx)) / k


def stage_to_reference_grid(sc: Scene) -> None:
    """After matching on a coarsened (or refined) grid: the tie points, the model, the overlap and the verdict's
    pixel figures in reference pixels, for the outputs and the report."""
    if sc.coarsened is None:
        return
    sx, sy = sc.coarsened
    s = np.diag([sx, sy, 1.0])
    s_inv = np.diag([1 / sx, 1 / sy, 1.0])
    m = sc.model
    local = m.local
    if local is not None:
        fwd, inv = local.forward, local.inverse
        local = LocalWarp(local.method, lambda xy: fwd(np.asarray(xy) / (sx, sy)) * (sx, sy),
                          lambda xy: inv(np.asarray(xy) / (sx, sy)) * (sx, sy), local.n_points)
    params = dict(m.params)
    if params.get("polish"):  # its shifts in reference pixels, each axis by its own factor
        polish = params["polish"]
        params["polish"] = {**polish, "shift_px": (np.array(polish["shift_px"]) * (sx, sy)).round(4).tolist(),
                            "steps": [{**st, "shift_px": (np.array(st["shift_px"]) * (sx, sy)).round(4).tolist()}
                                      for st in polish["steps"]]}
        if polish.get("correction") is not None:
            params["polish"]["correction"] = (s @ np.asarray(polish["correction"]) @ s_inv).tolist()
        if polish.get("shape"):  # corner moves: on the scale of the coarser axis
            shape = polish["shape"]
            params["polish"]["shape"] = {
                **shape, "corner_move_px": round(shape["corner_move_px"] * max(sx, sy), 4),
                "steps": [{**st, "corner_move_px": round(st["corner_move_px"] * max(sx, sy), 4)}
                          for st in shape["steps"]]}
    sc.model = FittedModel(m.kind, s @ m.matrix @ s_inv, m.inliers, m.residuals_px * math.sqrt(sx * sy), local,
                           params)
    tp = sc.tp
    sc.tp = TiePoints(tp.xy_r * (sx, sy), tp.xy_t_on_ref * (sx, sy), tp.score, tp.peak_ratio, tp.direction, tp.tile)
    o = sc.overlap
    c0, r0 = int(round(o.col_off * sx)), int(round(o.row_off * sy))
    c1 = min(sc.ref.grid.width, int(round((o.col_off + o.width) * sx)))
    r1 = min(sc.ref.grid.height, int(round((o.row_off + o.height) * sy)))
    sc.overlap = Window(c0, r0, c1 - c0, r1 - r0)
    whys = []
    if abs(math.log(sx * sy)) >= 2 * math.log(1.1):
        whys.append(("the target's pixels are much coarser than the reference's: matching, estimation and the "
                     "verdict worked on the reference grid coarsened towards them (no further than keeps "
                     f"{MIN_WORKING_PX} px across the overlap)") if sx * sy > 1 else (
            f"the reference's pixels are much coarser than the target's and fewer than {MIN_WORKING_PX} lie "
            "across the overlap: matching, estimation and the verdict worked on the reference grid refined "
            f"towards the target's pixels (to {MIN_WORKING_PX} px across the overlap, no finer than the target's "
            f"pixels, and keeping the search radius within {MAX_REFINED_RADIUS_PX} px)"))
    if abs(math.log(sx / sy)) >= math.log(1.1):
        whys.append(f"the reference's pixels are {max(sx / sy, sy / sx):.2f} times "
                    f"{'taller than wide' if sx > sy else 'wider than tall'} on the ground (square degrees of a "
                    "geographic CRS away from the equator, or a grid of unequal sides): matching, estimation and "
                    "the verdict worked on square pixels of the same ground area")
    why = "; ".join(whys)
    sc.working = {"transform": list(sc.grid.transform)[:6], "width": sc.grid.width, "height": sc.grid.height,
                  "reference_px_per_px": [sx, sy],
                  "note": f"{why}. The model, shift, residuals, tie points and the verdict's figures below are "
                          "in reference pixels; the verdict's reasons, the coarse pass, the global geometry and "
                          "the auto steps in working pixels"}
    sc.grid = sc.ref.grid
    if sc.verdict is not None:
        sc.verdict.evidence = _scaled_px(sc.verdict.evidence, math.sqrt(sx * sy))


def _scaled_px(d, f: float, px: bool = False):
    """``d`` with every number under a key ending in ``_px`` (``px``: ``d`` is under one)
    multiplied by ``f``, in nested dicts and lists."""
    if isinstance(d, dict):
        return {k: _scaled_px(v, f, k.endswith("_px")) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_scaled_px(x, f, px) for x in d]
    return d * f if px and isinstance(d, (int, float)) and not isinstance(d, bool) else d
