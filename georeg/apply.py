"""Apply a saved registration (its JSON report) to another raster of the same scene, for example
the other bands or polarisations of the target."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .atomic import staged
from .config import EstimationConfig, InputConfig, OutputConfig
from .errors import ConfigError, InputError
from .grid import Grid
from .paths import check_raster_path
from .preflight import check_creation_options, check_outputs
from .raster import RasterSource, placed_in_own_crs

if TYPE_CHECKING:
    from .estimation import FittedModel


def _crs(side: dict) -> CRS | None:
    """The CRS of a report's input; None for the pixel frame of inputs without georeferencing."""
    if side.get("frame") == "pixels":
        return None
    return CRS.from_wkt(side["crs_wkt"]) if side.get("crs_wkt") else CRS.from_string(side["crs"])


def _pixel_frame(report: dict) -> bool:
    return (report.get("target") or {}).get("frame") == "pixels"


def model_from_report(report: dict) -> tuple[FittedModel, Grid]:
    """The fitted model and the reference grid that a report describes."""
    from .estimation import FittedModel, fit_local

    try:
        m = report["model"]
        r = report["reference"]
        grid = Grid(Affine(*r["transform"]), int(r["width"]), int(r["height"]), _crs(r))
        model = FittedModel(m["type"], np.array(m["matrix_px"], dtype=np.float64), np.zeros(0, bool), np.zeros(0))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the report is not a georeg registration report (missing or bad {exc}); "
                         "give the *_report.json written by 'georeg register'") from None
    if m["type"] == "local":
        pts = m.get("local_points_px") or {}
        # the registration's own estimation settings (those this version knows), as the report recorded them
        est = report.get("config", {}).get("estimation", {})
        known = {k: v for k, v in est.items() if k in EstimationConfig.__dataclass_fields__}
        cfg = replace(EstimationConfig(**known), model="local", local_method=m.get("local_method") or "tps")
        model.local = fit_local(np.array(pts["xy_t"]), np.array(pts["xy_r"]), cfg)
    return model, grid


def check_same_scene(report: dict, src: RasterSource) -> None:
    """Refuse a raster that shares no ground with the target the report registered."""
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    t = report.get("target") or {}
    try:
        tg = Grid(Affine(*t["transform"]), int(t["width"]), int(t["height"]), _crs(t))
    except (KeyError, TypeError, ValueError):
        return  # an older report without the target's grid: nothing to compare with
    if tg.crs is None:  # pixel coordinates: the same scene is the target's pixel grid
        if (src.grid.width, src.grid.height) != (tg.width, tg.height):
            raise InputError(f"{src.path} is {src.grid.width}x{src.grid.height} px, but the target this report "
                             f"registered in pixel coordinates ({t.get('path', '?')}) is {tg.width}x{tg.height} px; "
                             "a registration without georeferencing only applies to rasters on the target's "
                             "pixel grid. Use `force=True` if you are sure")
        return
    try:
        theirs = box(*transform_bounds(src.grid.crs, tg.crs, *src.grid.bounds, densify_pts=21))
    except Exception:  # bounds that cannot be expressed in the target's CRS at all
        theirs = None
    if theirs is None or not theirs.intersects(box(*tg.bounds)):
        raise InputError(f"{src.path} does not overlap the target this report registered ({t.get('path', '?')}, "
                         f"{tg.crs.to_string()}); a registration only applies to rasters of the same scene. "
                         "Use `force=True` if you are sure")


APPLY_OPTIONS = ("align_grids", "resampling", "cog", "overwrite", "compress", "creation_options")


def apply_report(report: str | os.PathLike | dict, raster: str | os.PathLike, output: str | os.PathLike, *,
                 force: bool = False, crs: str | None = None, **options) -> dict:
    """Correct ``raster`` with the registration in ``report``; returns a small dict of what was done.
    A raster whose footprint does not overlap the registered target's is refused unless ``force``.
    ``crs``: the CRS of the raster's georeferencing where the file has none or a wrong one (as
    :attr:`InputConfig.crs`); by default the file's, else, for a file without one, the CRS the
    registration assigned to its target.

    ``options`` are :class:`~georeg.config.OutputConfig` fields: ``align_grids`` and
    ``resampling`` (default: as in the registration), ``cog``, ``overwrite``, ``compress``, and
    ``creation_options`` (default: the registration's, when it wrote the same format)."""
    report = _load_report(report)
    oc = _output_options(report, options)
    check_outputs({"raster": str(output)}, [str(raster)], oc.overwrite)
    check_creation_options(list(oc.creation_options), oc.cog)
    check_raster_path(os.fspath(raster), "raster")
    # the checks above need neither torch nor the matchers: a mistake is answered before they load
    from .outputs import write_corrected

    model, ref_grid = model_from_report(report)
    pictures = _pixel_frame(report)
    align = oc.align_grids or pictures  # pictures: onto the reference picture's pixels, as registered
    # a target registered as its mirror image (a picture in radar geometry, a raster stored
    # flipped against its geotransform) is placed so again
    mirrored = bool((report.get("target") or {}).get("mirrored"))
    with RasterSource(raster, InputConfig(crs=crs or _assigned_crs(report, raster)), "raster",
                      pixel_frame_ok=pictures, mirrored=mirrored, decide_modality=False) as src, \
            staged({"raster": str(output)}, overwrite=oc.overwrite) as tmp:
        if src.pixel_frame != pictures:  # a georeferenced raster takes a georeferenced report
            raise InputError(f"{src.path} is georeferenced, but this report registered rasters without "
                             "georeferencing, in pixel coordinates; apply it to a raster on the target's "
                             "pixel grid without georeferencing")
        if not force:
            check_same_scene(report, src)
        transform, mode, _ = write_corrected(src, str(tmp["raster"]), model, ref_grid, oc, align)
        return {"mode": mode.replace("target grid", "raster grid"),
                "transform": list(transform)[:6] if transform is not None else None, "output": str(output)}


def _assigned_crs(report: dict, raster) -> str | None:
    """The CRS the registration assigned to its target (``--target-crs``), for a raster that has
    none of its own: the other bands of that target are read in it too."""
    t = report.get("target") or {}
    if not t.get("crs_assigned") or placed_in_own_crs(os.fspath(raster)) is not False:
        return None  # the file's own CRS, or a file RasterSource will say what is wrong with
    return t.get("crs_wkt") or t.get("crs")


def _load_report(report) -> dict:
    """A report dict, or the JSON file it names; anything else raises InputError."""
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
    return report


def _output_options(report: dict, options: dict) -> OutputConfig:
    """The output options of this apply: those given, else the registration's where that is the
    default (alignment, resampling, creation options for the same format), else georeg's."""
    unknown = sorted(set(options) - set(APPLY_OPTIONS))
    if unknown:
        raise ConfigError(f"apply_report(): unknown option(s) {unknown}; expected some of {list(APPLY_OPTIONS)}")
    given = {k: v for k, v in options.items() if v is not None}
    out_cfg = report.get("config", {}).get("output", {})
    cog = bool(given.get("cog", False))
    same_format = cog == out_cfg.get("cog", False)
    defaults = {"align_grids": out_cfg.get("align_grids", False), "resampling": out_cfg.get("resampling", "bilinear"),
                "creation_options": out_cfg.get("creation_options", []) if same_format else []}
    return OutputConfig(**{**defaults, **given})
