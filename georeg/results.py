"""What a registration returns and writes: :class:`RegistrationResult`, the output stage
(:func:`stage_outputs`: the raster, the tie points, the report and the quicklook, staged and put in
place together) and the JSON report."""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from . import __version__
from .errors import OutputWriteError
from .estimation import FittedModel, describe
from .gpkg import TiePointTable
from .grid import as_written
from .raster import RasterSource

if TYPE_CHECKING:
    from .pipeline import Scene


@dataclass
class RegistrationResult:
    """What :func:`register` returns.

    model: the fitted model (reference-grid pixels, target -> reference);
    transform: the target's corrected geotransform when only the geotransform changed, else None;
    tie_points: GeoDataFrame of every tie point with residual and inlier flag (built from
    ``tie_point_table`` when first asked for: geopandas is imported then, not by every run);
    report: the JSON report as a dict; outputs: paths written.
    """

    model: FittedModel
    transform: Affine | None
    tie_point_table: TiePointTable
    report: dict
    outputs: dict

    @functools.cached_property
    def tie_points(self):
        return self.tie_point_table.to_geodataframe()

    @property
    def rmse_px(self) -> float:
        return self.report["residuals"]["rmse_px"]

    @property
    def quality(self) -> str:
        """'reliable' or 'uncertain' (a failed registration raises instead); see ``report['verdict']``."""
        return self.report["quality"]


def stage_outputs(sc: Scene, report_extra: dict) -> RegistrationResult:
    """Write the raster, the tie points, the report and the quicklook, all or nothing."""
    from .errors import GeoregError

    sc.notify(0.86, "writing outputs")
    try:
        return _write_staged(sc, report_extra)
    except OSError as exc:
        if isinstance(exc, GeoregError):
            raise
        raise OutputWriteError(f"could not write the outputs ({exc.strerror or exc}"
                               f"{': ' + exc.filename if getattr(exc, 'filename', None) else ''}); "
                               "nothing was written. Check the free space and permissions of the output folder"
                               ) from None


def _write_staged(sc: Scene, report_extra: dict) -> RegistrationResult:
    from . import passes  # the first-pass rule's thresholds, as the passes read them now
    from .atomic import staged
    from .outputs import Solution, finish_outputs, write_outputs

    outputs = sc.outputs
    sol = Solution(sc.ref, sc.tgt, sc.grid, sc.overlap, sc.model, sc.tp)
    with staged(outputs, overwrite=sc.cfg.output.overwrite) as tmp:
        transform, mode, deviation = write_outputs(sol, sc.cfg, tmp)
        sc.check_cancel()
        sc.clock.lap("write")
        report = _report(sc, mode, transform, deviation)
        report["matcher"] = sc.matcher.info()
        if sc.roles.ranker is not None:
            report["matcher"]["first_passes"] = {
                "matched": sc.first_passes, "ranked_again": sc.ranked_first_passes,
                "weak_not_ranked_again": sc.first_passes_not_retried,
                "rule": ("learned ranker in every first pass" if sc.cfg.matching.rank_first_pass else
                         "structural matcher alone, again with the learned ranker where its model was weak "
                         f"(not where at least {passes.SEVERAL_MOTIONS_INLIERS} tie points and "
                         f"{passes.SEVERAL_MOTIONS_FRACTION:.0%} of them agree: several motions)")}
        report["global_geometry"] = sc.geometry.to_dict() if sc.geometry is not None else None
        if sc.geometry is not None:
            report["global_geometry"]["used"] = sc.geometry_used
            report["global_geometry"]["georeferencing_check"] = sc.georeferencing_check
            report["global_geometry"]["several_motions"] = sc.prior_several_motions
        report["working_grid"] = sc.working
        report["quality"] = sc.verdict.quality
        report["verdict"] = sc.verdict.to_dict()
        report.update(report_extra)
        table = finish_outputs(sol, tmp, report)
        sc.check_cancel()
    sc.notify(1.0, "done")
    return RegistrationResult(sc.model, transform, table, report, outputs)


def _report(sc: Scene, mode: str, transform, deviation: float) -> dict:
    """The JSON report (the stages add the matcher, the global geometry and the verdict)."""
    import kornia
    import rasterio
    import torch

    from .warp import shift_summary

    grid, overlap, model, tp, cfg, coarse = sc.grid, sc.overlap, sc.model, sc.tp, sc.cfg, sc.coarse
    timings = sc.clock.stages
    inl = model.inliers
    res = model.residuals_px[inl]
    px = grid.pixel_size
    rmse = float(np.sqrt(np.mean(res ** 2))) if res.size else float("nan")
    ce90 = float(np.percentile(res, 90)) if res.size else float("nan")
    x0, y0 = overlap.col_off, overlap.row_off
    centre = (x0 + overlap.width / 2, y0 + overlap.height / 2)
    linear_unit = grid.map_unit  # "px" in the pixel frame (both inputs without georeferencing)

    def side(src: RasterSource) -> dict:
        crs = as_written(src.grid.crs)
        return {"path": src.path, "crs": crs.to_string() if crs else None, "crs_wkt": crs.to_wkt() if crs else None,
                "frame": "pixels" if src.pixel_frame else "ground control points" if src.gcps is not None else
                "rational polynomial coefficients" if src.rpcs is not None else "georeferenced",
                "gcps": len(src.gcps[0]) if src.gcps is not None else None,
                # how the GCPs place the pixels between them (:func:`georeg.grid.placing_points`)
                "gcps_taken_by": src.grid.taken_by if src.gcps is not None else None,
                "rpc_height_m": src.grid.rpc_height if src.rpcs is not None else None,
                "edge_fill_masked": round(src.fill_share, 4), "edge_fill_value": src.fill_value,
                # the same undeclared value inside the footprint, in scan-line gaps (Landsat 7)
                "scan_line_gaps": round(src.fill_inside_share, 4),
                "mask": {"path": src.cfg.mask, **src.mask_rule.to_dict()} if src.mask_rule is not None else None,
                "mirrored": src.mirrored,  # placed on its mirror image (see _register)
                # the CRS the user assigned (--ref-crs/--target-crs), and the file's own it replaced
                "crs_assigned": src.assigned_crs is not None,
                # read 360 degrees off the file's longitudes (a 0-360 product): the report's map
                # positions are in -180..180, the corrected copy of the target in the file's own
                "longitude_shift_deg": src.longitude_shift,
                "crs_in_file": (src.ds.crs.to_string() or src.ds.crs.to_wkt()) if src.ds.crs else None,
                "transform": list(src.grid.transform)[:6], "width": src.grid.width,
                "height": src.grid.height, "pixel_size": src.grid.pixel_size, "bands": src.band_label,
                "dtype": src.ds.dtypes[0], "modality": src.modality,
                "modality_evidence": src.modality_decision.to_dict()}

    return {
        "georeg_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": side(sc.ref),
        "target": side(sc.tgt),
        "config": cfg.to_dict(),
        "model": {
            "type": model.kind,
            "requested": cfg.estimation.model,
            "auto": model.params.get("auto"),
            "polish": model.params.get("polish"),
            "matrix_px": model.matrix.tolist(),
            "matrix_note": "3x3, reference-grid pixels, maps where the target shows a feature to where "
                           "the reference has it (global part for 'local')",
            "parameters": describe(model, np.array(centre)),
            "local_method": model.local.method if model.local is not None else None,
            "local_points_px": ({"xy_t": tp.xy_t_on_ref[inl].tolist(), "xy_r": tp.xy_r[inl].tolist()}
                                if model.local is not None else None),
            "output_mode": mode,
            "corrected_transform": list(transform)[:6] if transform is not None else None,
            "geotransform_deviation_px": deviation,
        },
        "shift": shift_summary(model, (x0, y0, x0 + overlap.width, y0 + overlap.height), grid),
        "residuals": {  # of the tie points against the fit: agreement, not accuracy against a truth
            "rmse_px": rmse, "ce90_px": ce90,
            "rmse_map": rmse * px, "ce90_map": ce90 * px, "map_unit": linear_unit,
            "median_residual_px": float(np.median(res)) if res.size else float("nan"),
            "note": "residuals of the inlier tie points of the final pass under the fitted model",
        },
        "counts": {
            "tiles": len(sc.tiles), "passes": sc.passes, "tiles_matched": list(sc.tiles_matched),
            "first_pass": ("near the coarse shift" if sc.near is not None else
                           "full radius after a weak near pass" if sc.near_weak else "full radius"),
            "near_pass_was_refinement": sc.near_refined,
            "tie_points": int(len(tp)), "inliers": int(inl.sum()),
            "forward": int((tp.direction == 0).sum()), "backward": int((tp.direction == 1).sum()),
        },
        "coarse": {"shift_px": list(coarse.shift_px), "peak_ratio": coarse.peak_ratio,
                   "factor": coarse.factor, "used": coarse.accepted},
        "overlap_window": {"col_off": int(x0), "row_off": int(y0), "width": int(overlap.width),
                           "height": int(overlap.height)},
        "timings_s": {**timings, "total": round(sum(timings.values()), 3)},
        "cpu_threads": torch.get_num_threads(),  # torch's, while it ran (`threads`)
        "versions": {"georeg": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "kornia": kornia.__version__, "rasterio": rasterio.__version__,
                     "gdal": rasterio.__gdal_version__, "numpy": np.__version__},
        "outputs": sc.outputs,
        "clouds_left_out": sc.clouds_left_out,
    }
