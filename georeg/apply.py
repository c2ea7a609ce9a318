"""Apply a saved registration (its JSON report) to another raster of the same scene, for example
the other bands or polarisations of the target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .atomic import staged
from .config import EstimationConfig, InputConfig, normalise_creation_options
from .errors import InputError
from .estimation import FittedModel, fit_local
from .pipeline import check_outputs
from .raster import Grid, RasterSource
from .warp import corrected_transform, output_to_source
from .writers import check_creation_options, write_resampled, write_with_transform


def model_from_report(report: dict) -> tuple[FittedModel, Grid]:
    """The fitted model and the reference grid that a report describes."""
    try:
        m = report["model"]
        r = report["reference"]
        grid = Grid(Affine(*r["transform"]), int(r["width"]), int(r["height"]),
                    CRS.from_wkt(r["crs_wkt"]) if r.get("crs_wkt") else CRS.from_string(r["crs"]))
        model = FittedModel(m["type"], np.array(m["matrix_px"], dtype=np.float64), np.zeros(0, bool), np.zeros(0))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the report is not a georeg registration report (missing or bad {exc}); "
                         "give the *_report.json written by 'georeg register'") from None
    if m["type"] == "local":
        pts = m.get("local_points_px") or {}
        est = report.get("config", {}).get("estimation", {})
        cfg = EstimationConfig(model="local", local_method=m.get("local_method") or "tps",
                               polynomial_order=est.get("polynomial_order", 2),
                               local_smoothing=est.get("local_smoothing", 1.0))
        model.local = fit_local(np.array(pts["xy_t"]), np.array(pts["xy_r"]), cfg)
    return model, grid


def check_same_scene(report: dict, src: RasterSource) -> None:
    """Refuse a raster that shares no ground with the target the report registered."""
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    t = report.get("target") or {}
    try:
        tg = Grid(Affine(*t["transform"]), int(t["width"]), int(t["height"]),
                  CRS.from_wkt(t["crs_wkt"]) if t.get("crs_wkt") else CRS.from_string(t["crs"]))
    except (KeyError, TypeError, ValueError):
        return  # an older report without the target's grid: nothing to compare with
    try:
        theirs = box(*transform_bounds(src.grid.crs, tg.crs, *src.grid.bounds, densify_pts=21))
    except Exception:  # bounds that cannot be expressed in the target's CRS at all
        theirs = None
    if theirs is None or not theirs.intersects(box(*tg.bounds)):
        raise InputError(f"{src.path} does not overlap the target this report registered ({t.get('path', '?')}, "
                         f"{tg.crs.to_string()}); a registration only applies to rasters of the same scene. "
                         "Use --force if you are sure")


def apply_report(report: str | os.PathLike | dict, raster: str | os.PathLike, output: str | os.PathLike, *,
                 align_grids: bool | None = None, resampling: str | None = None, cog: bool = False,
                 overwrite: bool = False, compress: str = "deflate", force: bool = False,
                 creation_options=None) -> dict:
    """Correct ``raster`` with the registration in ``report``; returns a small dict of what was done.
    A raster whose footprint does not overlap the registered target's is refused unless ``force``."""
    if not isinstance(report, dict):
        path = Path(report)
        if not path.exists():
            raise InputError(f"report not found: {report}")
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not text at all (a .tif)
            raise InputError(f"{path} is not a georeg report (JSON): {str(exc)[:120]}; give the *_report.json "
                             "written by 'georeg register'") from None
    if not isinstance(report, dict):
        raise InputError("the report is not a georeg registration report (not a JSON object); "
                         "give the *_report.json written by 'georeg register'")
    model, ref_grid = model_from_report(report)
    out_cfg = report.get("config", {}).get("output", {})
    align = out_cfg.get("align_grids", False) if align_grids is None else align_grids
    resampling = resampling or out_cfg.get("resampling", "bilinear")
    # the creation options of the registration (when it wrote the same format), unless new ones are given
    if creation_options is None:
        creation_options = out_cfg.get("creation_options", []) if cog == out_cfg.get("cog", False) else []
    co = normalise_creation_options(creation_options)
    check_outputs({"raster": str(output)}, [str(raster)], overwrite)
    check_creation_options(co, cog)
    with RasterSource(raster, InputConfig(), "raster") as src, \
            staged({"raster": str(output)}, overwrite=overwrite) as tmp:
        if not force:
            check_same_scene(report, src)
        if model.kind in ("translation", "similarity", "affine") and not align:
            transform, dev = corrected_transform(model, ref_grid, src.grid)
            if dev <= 0.05:
                write_with_transform(src, str(tmp["raster"]), transform, cog, compress, creation_options=co)
                return {"mode": "geotransform", "transform": list(transform)[:6], "output": str(output)}
        out_grid = ref_grid if align else src.grid
        write_resampled(src, str(tmp["raster"]), out_grid, output_to_source(model, out_grid, ref_grid, src.grid),
                        resampling, cog, compress, creation_options=co)
        return {"mode": "resampled to reference grid" if align else "resampled on raster grid", "transform": None,
                "output": str(output)}
