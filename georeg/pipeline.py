"""register(): the whole flow from two rasters to a co-registered raster. Orchestration only."""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rasterio.errors
from affine import Affine

from . import __version__
from .config import RegistrationConfig
from .errors import CancelledError, InputError, OutputExistsError, RasterOpenError, TooFewTiePointsError
from .estimation import MIN_INLIERS, FittedModel, describe, estimate
from .matching import TiePoints, match_tile
from .raster import Grid, RasterSource, overlap_window
from .tiling import tiles

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


@dataclass
class RegistrationResult:
    """What :func:`register` returns.

    model: the fitted model (reference-grid pixels, target -> reference);
    transform: the target's corrected geotransform when only the geotransform changed, else None;
    tie_points: GeoDataFrame of every tie point with residual and inlier flag;
    report: the JSON report as a dict; outputs: paths written.
    """

    model: FittedModel
    transform: Affine | None
    tie_points: object
    report: dict
    outputs: dict

    @property
    def rmse_px(self) -> float:
        return self.report["accuracy"]["rmse_px"]


class _Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self.t, 3)
        self.t = now


def _planned_outputs(output: str | os.PathLike, cfg: RegistrationConfig) -> dict[str, str]:
    out = {"raster": str(output)}
    for key in ("tie_points", "report", "quicklook"):
        value = getattr(cfg.output, key)
        if value:
            out[key] = str(value)
    return out


def check_outputs(outputs: dict[str, str], inputs: list[str], overwrite: bool) -> None:
    """Refuse existing outputs (without overwrite), outputs that are inputs, and missing folders."""
    resolved_inputs = {Path(p).resolve() for p in inputs if p}
    seen = set()
    for kind, path in outputs.items():
        p = Path(path)
        if p.resolve() in resolved_inputs:
            raise InputError(f"the {kind} output {path} is also an input; choose another output path")
        if p.resolve() in seen:
            raise InputError(f"two outputs share the path {path}; give each output its own path")
        seen.add(p.resolve())
        if p.exists() and not overwrite:
            raise OutputExistsError(f"output exists: {path}; use --overwrite to replace it or choose another path")
        if p.is_dir():
            raise InputError(f"the {kind} output {path} is a folder; give a file path")
        if not p.parent.exists():
            raise InputError(f"the folder of the {kind} output does not exist: {p.parent}; create it first")


def register(reference: str | os.PathLike, target: str | os.PathLike, output: str | os.PathLike,
             config: RegistrationConfig | None = None, *, progress: ProgressFn | None = None,
             cancel: Callable[[], bool] | None = None, matcher=None,
             report_extra: dict | None = None) -> RegistrationResult:
    """Co-register ``target`` (SAR, thermal, ...) onto ``reference`` (optical) and write ``output``.

    ``config`` holds every option (see :mod:`georeg.config`). ``progress(fraction, message)`` is
    called as work advances; ``cancel()`` is polled between tiles and raises
    :class:`~georeg.errors.CancelledError` when it returns True. ``matcher`` may be a preloaded
    matcher (batch workers reuse one). Returns a :class:`RegistrationResult`.
    """
    cfg = config or RegistrationConfig()
    clock = _Clock()
    outputs = _planned_outputs(output, cfg)
    check_outputs(outputs, [str(reference), str(target), cfg.reference.mask, cfg.target.mask],
                  cfg.output.overwrite)
    notify = progress or (lambda f, m: None)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise CancelledError("registration cancelled; no output was written")

    try:
        return _register(reference, target, output, cfg, outputs, clock, notify, check_cancel, matcher,
                         report_extra or {})
    except rasterio.errors.RasterioIOError as exc:
        raise RasterOpenError(f"could not read the input rasters: {str(exc).splitlines()[0][:300]}; "
                              "check that the files are complete and readable") from None


def _register(reference, target, output, cfg: RegistrationConfig, outputs: dict, clock: _Clock, notify,
              check_cancel, matcher, report_extra: dict) -> RegistrationResult:
    from .matchers import load

    with RasterSource(reference, cfg.reference, "reference") as ref, \
            RasterSource(target, cfg.target, "target") as tgt:
        from .matchers import resolve_name

        m = matcher if matcher is not None else load(resolve_name(cfg.matching.matcher, tgt.modality),
                                                      cfg.matching.device)
        dense = load("baseline", m.device) if getattr(m, "learned", False) else None
        grid = ref.grid
        overlap, _ = overlap_window(ref, tgt)
        clock.lap("open")
        notify(0.02, "coarse pass")
        max_shift_px = cfg.matching.max_shift_px(grid.pixel_size)
        from .coarse import coarse_shift

        coarse = None
        if cfg.matching.coarse:
            coarse = coarse_shift(ref, tgt, grid, overlap, cfg.matching.coarse_size)
        else:
            from .coarse import CoarseResult
            coarse_shift(ref, tgt, grid, overlap, 64)  # cheap validity check of the overlap
            coarse = CoarseResult((0.0, 0.0), 0.0, 1.0, 1.0, False)
        clock.lap("coarse")
        check_cancel()
        prior_shift = np.array(coarse.shift_px) if coarse.accepted else np.zeros(2)
        log.info("coarse shift %.1f, %.1f px (peak ratio %.2f, %s)", *coarse.shift_px, coarse.peak_ratio,
                 "used" if coarse.accepted else "not used")

        tile_list = tiles(overlap, cfg.matching.tile_size)
        n_steps = len(tile_list) * (2 if cfg.matching.refine else 1)
        step = [0]

        def run_pass(inverse, radius: int) -> TiePoints:
            found = []
            for i, tile in enumerate(tile_list):
                check_cancel()
                area = tile.width * tile.height / cfg.matching.tile_size ** 2
                n_kp = max(8, int(round(cfg.matching.keypoints_per_tile * min(1.0, area))))
                found.append(match_tile(ref, tgt, grid, tile, i, inverse, radius, m, cfg.matching, n_kp, dense))
                step[0] += 1
                notify(0.05 + 0.8 * min(1.0, step[0] / n_steps), f"matching tile {i + 1}/{len(tile_list)}")
            return TiePoints.concat(found)

        est = cfg.estimation
        # the area the model will correct: auto weighs an affine's departure at its corners
        extent = (overlap.col_off, overlap.row_off, overlap.col_off + overlap.width, overlap.row_off + overlap.height)
        radius1 = int(math.ceil(max_shift_px))
        first_kind = est.model if est.model in ("translation", "auto") else "affine"
        tp1 = run_pass(lambda xy: xy + prior_shift, radius1)
        model1 = _try(lambda: estimate(tp1.xy_t, tp1.xy_r, est, model=first_kind, extent=extent), None)
        alt = np.array(coarse.shift_px)
        if not coarse.accepted and np.abs(alt - prior_shift).max() > 1.0 and _weak(model1):
            # The coarse shift fell short of its confidence threshold, and the search around the
            # unshifted prior found no clear model: the coarse shift is the other hypothesis (it
            # matters when the true shift lies beyond max_shift). Keep whichever explains more.
            log.info("first pass weak (%s); trying the coarse shift %.1f, %.1f px as the prior",
                     _describe_fit(model1, tp1), *alt)
            n_steps += len(tile_list)
            tp_alt = run_pass(lambda xy: xy + alt, radius1)
            model_alt = _try(lambda: estimate(tp_alt.xy_t, tp_alt.xy_r, est, model=first_kind, extent=extent), None)
            if _inliers(model_alt) > _inliers(model1):
                tp1, model1 = tp_alt, model_alt
        clock.lap("pass1")
        if model1 is None:  # raise the estimator's own error, with its advice
            model1 = estimate(tp1.xy_t, tp1.xy_r, est, model=first_kind, extent=extent)
        tp, model, passes = tp1, model1, 1
        if est.model != first_kind:
            model = _try(lambda: estimate(tp1.xy_t, tp1.xy_r, est, extent=extent), model1)
        if cfg.matching.refine:
            radius2 = int(cfg.matching.refine_radius_px + math.ceil(est.threshold_px))
            tp2 = run_pass(model1.inverse, radius2)
            clock.lap("pass2")
            model2 = _try(lambda: estimate(tp2.xy_t, tp2.xy_r, est, extent=extent), None)
            if model2 is not None and model2.inliers.sum() >= MIN_INLIERS[est.model]:
                tp, model, passes = tp2, model2, 2
            else:
                log.warning("refinement pass found too few tie points; keeping the first pass")
        check_cancel()
        clock.lap("estimation")

        notify(0.86, "writing outputs")
        from .atomic import staged
        from .outputs import finish_outputs, write_outputs

        with staged(outputs) as tmp:
            transform, mode, deviation = write_outputs(ref, tgt, grid, overlap, model, tp, cfg, tmp)
            check_cancel()
            clock.lap("write")
            report = _report(ref, tgt, grid, overlap, model, tp, cfg, coarse, passes, mode, transform,
                             deviation, clock.stages, outputs, len(tile_list))
            report["matcher"] = m.info()
            report.update(report_extra)
            gdf = finish_outputs(ref, tgt, grid, overlap, model, tp, cfg, tmp, report)
            check_cancel()
        notify(1.0, "done")
    return RegistrationResult(model, transform, gdf, report, outputs)


def _try(fn, default):
    try:
        return fn()
    except TooFewTiePointsError:
        return default


WEAK_INLIER_FRACTION = 0.5


def _inliers(model: FittedModel | None) -> int:
    return -1 if model is None else int(model.inliers.sum())


def _weak(model: FittedModel | None) -> bool:
    """No model, or one that fewer than half of the tie points agree with."""
    return model is None or model.inliers.mean() < WEAK_INLIER_FRACTION


def _describe_fit(model: FittedModel | None, tp: TiePoints) -> str:
    return "no model" if model is None else f"{_inliers(model)} of {len(tp)} tie points agree"


def _report(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap, model: FittedModel, tp: TiePoints,
            cfg: RegistrationConfig, coarse, passes: int, mode: str, transform, deviation: float,
            timings: dict, outputs: dict, n_tiles: int) -> dict:
    import kornia
    import rasterio
    import torch

    from .warp import shift_summary

    inl = model.inliers
    res = model.residuals_px[inl]
    px = grid.pixel_size
    rmse = float(np.sqrt(np.mean(res ** 2))) if res.size else float("nan")
    ce90 = float(np.percentile(res, 90)) if res.size else float("nan")
    x0, y0 = overlap.col_off, overlap.row_off
    centre = (x0 + overlap.width / 2, y0 + overlap.height / 2)
    linear_unit = "m" if (grid.crs.is_projected and (grid.crs.linear_units or "").startswith("met")) else \
        (grid.crs.linear_units or "map units")

    def side(src: RasterSource) -> dict:
        return {"path": src.path, "crs": src.grid.crs.to_string(), "crs_wkt": src.grid.crs.to_wkt(),
                "transform": list(src.grid.transform)[:6], "width": src.grid.width,
                "height": src.grid.height, "pixel_size": src.grid.pixel_size, "bands": src.band_label,
                "dtype": src.ds.dtypes[0], "modality": src.modality}

    return {
        "georeg_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": side(ref),
        "target": side(tgt),
        "config": cfg.to_dict(),
        "model": {
            "type": model.kind,
            "requested": cfg.estimation.model,
            "auto": model.params.get("auto"),
            "matrix_px": model.matrix.tolist(),
            "matrix_note": "3x3, reference-grid pixels, maps where the target shows a feature to where "
                           "the reference has it (global part for 'local')",
            "parameters": describe(model, np.array(centre)),
            "local_method": model.local.method if model.local is not None else None,
            "local_points_px": ({"xy_t": tp.xy_t[inl].tolist(), "xy_r": tp.xy_r[inl].tolist()}
                                if model.local is not None else None),
            "output_mode": mode,
            "corrected_transform": list(transform)[:6] if transform is not None else None,
            "geotransform_deviation_px": deviation,
        },
        "shift": {**shift_summary(model, (x0, y0, x0 + overlap.width, y0 + overlap.height), grid.transform),
                  "map_unit": linear_unit},
        "accuracy": {
            "rmse_px": rmse, "ce90_px": ce90,
            "rmse_map": rmse * px, "ce90_map": ce90 * px, "map_unit": linear_unit,
            "median_residual_px": float(np.median(res)) if res.size else float("nan"),
            "note": "residuals of the inlier tie points of the final pass under the fitted model",
        },
        "counts": {
            "tiles": n_tiles, "passes": passes,
            "tie_points": int(len(tp)), "inliers": int(inl.sum()),
            "forward": int((tp.direction == 0).sum()), "backward": int((tp.direction == 1).sum()),
        },
        "coarse": {"shift_px": list(coarse.shift_px), "peak_ratio": coarse.peak_ratio,
                   "factor": coarse.factor, "used": coarse.accepted},
        "overlap_window": {"col_off": int(x0), "row_off": int(y0), "width": int(overlap.width),
                           "height": int(overlap.height)},
        "timings_s": {**timings, "total": round(sum(timings.values()), 3)},
        "versions": {"georeg": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "kornia": kornia.__version__, "rasterio": rasterio.__version__,
                     "gdal": rasterio.__gdal_version__, "numpy": np.__version__},
        "outputs": outputs,
    }
