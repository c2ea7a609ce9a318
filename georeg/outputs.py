"""Building and writing the outputs of a registration: corrected raster, tie points, report,
quicklook. The file writing itself is in :mod:`georeg.writers`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from .config import RegistrationConfig
from .estimation import FittedModel
from .matching import TiePoints, sample_through
from .preprocess import preprocess
from .quicklook import checkerboard, compose, vectors_panel
from .raster import Grid, RasterSource
from .warp import _apply_affine, _to_crs, corrected_transform, output_to_source
from .writers import write_png, write_report, write_resampled, write_tie_points, write_with_transform


def write_outputs(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap, model: FittedModel,
                  tp: TiePoints, cfg: RegistrationConfig, outputs: dict) -> tuple:
    """Write the corrected raster. Returns (transform or None, mode, geotransform deviation px)."""
    o = cfg.output
    path = str(outputs["raster"])
    geotransform_only = model.kind in ("translation", "similarity", "affine") and not o.align_grids
    if geotransform_only:
        transform, dev = corrected_transform(model, grid, tgt.grid)
        # across CRSs an affine geotransform approximates the model; accept it when it is tight
        if dev <= 0.05:
            write_with_transform(tgt, path, transform, o.cog, o.compress)
            return transform, "geotransform", dev
    out_grid = grid if o.align_grids else tgt.grid
    mapping = output_to_source(model, out_grid, grid, tgt.grid)
    write_resampled(tgt, path, out_grid, mapping, o.resampling, o.cog, o.compress)
    return None, ("resampled to reference grid" if o.align_grids else "resampled on target grid"), 0.0


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tie_points_frame(ref: RasterSource, tgt: RasterSource, grid: Grid, model: FittedModel, tp: TiePoints):
    import geopandas as gpd

    map_r = _apply_affine(grid.transform, tp.xy_r)
    map_t = _apply_affine(grid.transform, tp.xy_t)
    native = _apply_affine(~tgt.grid.transform, _to_crs(grid.crs, tgt.grid.crs, map_t)) if len(tp) else \
        np.zeros((0, 2))
    d = tp.xy_r - tp.xy_t
    data = {
        "id": np.arange(len(tp), dtype=np.int32),
        "tile": tp.tile.astype(np.int32),
        "direction": np.where(tp.direction == 0, "forward", "backward"),
        "score": tp.score.astype(np.float64),
        "peak_ratio": tp.peak_ratio.astype(np.float64),
        "ref_col": tp.xy_r[:, 0], "ref_row": tp.xy_r[:, 1],
        "tgt_col": native[:, 0], "tgt_row": native[:, 1],
        "ref_x": map_r[:, 0], "ref_y": map_r[:, 1],
        "tgt_x": map_t[:, 0], "tgt_y": map_t[:, 1],
        "dx_px": d[:, 0], "dy_px": d[:, 1],
        "residual_px": model.residuals_px.astype(np.float64),
        "inlier": model.inliers.astype(bool),
    }
    return gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(map_r[:, 0], map_r[:, 1]),
                            crs=grid.crs.to_wkt())


def finish_outputs(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap, model: FittedModel,
                   tp: TiePoints, cfg: RegistrationConfig, outputs: dict, report: dict):
    gdf = tie_points_frame(ref, tgt, grid, model, tp)
    if "tie_points" in outputs:
        from datetime import datetime, timezone

        mtime = Path(tgt.path).stat().st_mtime
        stamp = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        write_tie_points(gdf, str(outputs["tie_points"]), stamp)
    if "quicklook" in outputs:
        write_png(quicklook_image(ref, tgt, grid, overlap, model, tp), str(outputs["quicklook"]))
    # what a later run (batch resume) checks before it trusts these files
    report["files"] = {key: {"bytes": Path(p).stat().st_size, "sha256": file_sha256(p)}
                       for key, p in outputs.items() if key in ("raster", "tie_points")}
    if "report" in outputs:
        write_report(report, str(outputs["report"]))
    return gdf


def quicklook_image(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap, model: FittedModel,
                    tp: TiePoints, size: int = 600) -> np.ndarray:
    sub = grid.window_grid(overlap)
    factor = max(1.0, max(sub.width, sub.height) / size)
    qg = sub.scaled(factor)
    sx, sy = sub.width / qg.width, sub.height / qg.height
    off = np.array([overlap.col_off, overlap.row_off], np.float64)
    scale = np.array([sx, sy])

    def to_full(xy):
        return off + xy * scale

    def to_q(xy):
        return (xy - off) / scale

    r, rv = ref.read_on_grid(qg)
    before, bv = tgt.read_on_grid(qg)
    after, av = sample_through(tgt, qg, Window(0, 0, qg.width, qg.height),
                               lambda xy: to_q(model.inverse(to_full(xy))))
    isf = tgt.ds.dtypes[0].startswith("float")
    rn = preprocess(r, rv, "optical", ref.ds.dtypes[0].startswith("float"))
    bn = preprocess(before, bv, tgt.modality, isf)
    an = preprocess(after, av, tgt.modality, isf)
    gain = max(1.0, 8.0 / max(float(np.median(np.linalg.norm(tp.xy_r - tp.xy_t, axis=1))) / sx, 1e-3)) \
        if len(tp) else 1.0
    gain = min(gain, 20.0)
    panel = vectors_panel(rn, to_q(tp.xy_r), to_q(tp.xy_t), model.inliers, vector_gain=gain)
    return compose([panel, checkerboard(rn, bn), checkerboard(rn, an)])
