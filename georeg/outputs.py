"""Building and writing the outputs of a registration: corrected raster, tie points, report,
quicklook. The file writing itself is in :mod:`georeg.writers`."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from .config import RegistrationConfig
from .coordinates import apply_affine, to_crs
from .estimation import AFFINE_MODELS, FittedModel
from .gpkg import TiePointTable, write_gpkg
from .grid import GCPGrid, Grid, as_written
from .matching import TiePoints, sample_through
from .preprocess import preprocess
from .quicklook import compose, overlay, scale_bar, vectors_panel, zoom
from .raster import RasterSource
from .warp import corrected_gcps, corrected_transform, output_to_source
from .writers import write_png, write_report, write_resampled, write_with_transform


@dataclass(frozen=True)
class Solution:
    """What a registration's outputs are made from: both rasters, the reference grid, the
    overlap window on it, the fitted model and its tie points."""

    ref: RasterSource
    tgt: RasterSource
    grid: Grid
    overlap: Window
    model: FittedModel
    tp: TiePoints


def write_outputs(sol: Solution, cfg: RegistrationConfig, outputs: dict) -> tuple:
    """Write the corrected raster. Returns (transform or None, mode, geotransform deviation px)."""
    ref, tgt, grid, model = sol.ref, sol.tgt, sol.grid, sol.model
    o = cfg.output
    path = str(outputs["raster"])
    tags = provenance(ref, tgt, model, outputs)
    # pictures without georeferencing come out on the reference picture's pixels: a geotransform
    # would place them only for GIS software, not for an image viewer
    align = o.align_grids or tgt.pixel_frame
    return write_corrected(tgt, path, model, grid, o, align, tags)


def write_corrected(src: RasterSource, path: str, model: FittedModel, grid: Grid, o, align: bool,
                    tags: dict | None = None) -> tuple:
    """Write ``src`` corrected by ``model`` (fitted on the reference grid ``grid``): its pixels
    unchanged under a corrected geotransform, or corrected ground control points for a raster
    georeferenced by them, when that represents the model within 0.05 px; else resampled, onto
    ``grid`` (``align``) or the raster's own grid. Returns (transform or None, mode, deviation px)."""
    if isinstance(src.grid, GCPGrid) and not align:
        gcps, dev = corrected_gcps(model, grid, src.grid)
        if dev <= 0.05:
            write_with_transform(src, path, None, o, tags=tags, gcps=(gcps, as_written(src.grid.crs)))
            return None, "ground control points", dev
    elif model.kind in AFFINE_MODELS and not align:
        transform, dev = corrected_transform(model, grid, src.grid)
        # across CRSs an affine geotransform approximates the model; accept it when it is tight
        if dev <= 0.05:
            write_with_transform(src, path, transform, o, tags=tags)
            return transform, "geotransform", dev
    out_grid = grid if align else src.grid
    mapping = output_to_source(model, out_grid, grid, src.grid)
    write_resampled(src, path, out_grid, mapping, o, tags=tags)
    return None, ("resampled to reference grid" if align else "resampled on target grid"), 0.0


def provenance(ref: RasterSource, tgt: RasterSource, model: FittedModel, outputs: dict) -> dict:
    """GeoTIFF tags that say georeg made the raster, from what and how (gdalinfo and QGIS show them)."""

    from . import __version__

    # no date: two runs on the same inputs write byte-identical rasters (batch resume relies on
    # it); the report carries created_utc
    tags = {"TIFFTAG_SOFTWARE": f"georeg {__version__}",
            "GEOREG_TARGET": str(tgt.path), "GEOREG_REFERENCE": str(ref.path), "GEOREG_MODEL": model.kind}
    if "report" in outputs:
        tags["GEOREG_REPORT"] = _final_name(outputs["report"])
    return tags


def _final_name(staged_path) -> str:
    """The final file name of a staged ``.NAME.partial-PID.EXT`` path."""
    import re

    name = Path(staged_path).name
    m = re.fullmatch(r"\.(.+)\.partial-\d+(\.[^.]*)", name)
    return m.group(1) + m.group(2) if m else name


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tie_points_table(ref: RasterSource, tgt: RasterSource, grid: Grid, model: FittedModel, tp: TiePoints
                     ) -> TiePointTable:
    map_r = apply_affine(grid.transform, tp.xy_r)
    map_t = apply_affine(grid.transform, tp.xy_t_on_ref)
    native = tgt.grid.to_pixels(to_crs(grid.crs, tgt.grid.crs, map_t)) if len(tp) else \
        np.zeros((0, 2))
    d = tp.xy_r - tp.xy_t_on_ref
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
    return TiePointTable(data, map_r[:, 0], map_r[:, 1], as_written(grid.crs))


def finish_outputs(sol: Solution, outputs: dict, report: dict) -> TiePointTable:
    """Write the tie points, the quicklook and (last, with the checksums of the others) the report;
    returns the tie points."""
    tgt = sol.tgt
    table = tie_points_table(sol.ref, tgt, sol.grid, sol.model, sol.tp)
    if "tie_points" in outputs:
        from datetime import datetime, timezone

        # the target file's time makes the GeoPackage reproducible; a remote target has none here
        mtime = 0.0 if tgt.remote else Path(tgt.local_file).stat().st_mtime
        stamp = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        write_gpkg(table, str(outputs["tie_points"]), stamp)
    if "quicklook" in outputs:
        write_png(quicklook_image(sol, report=report), str(outputs["quicklook"]))
    # what a later run (batch resume) checks before it trusts these files
    report["files"] = {key: {"bytes": Path(p).stat().st_size, "sha256": file_sha256(p)}
                       for key, p in outputs.items() if key in ("raster", "tie_points")}
    if "report" in outputs:
        write_report(report, str(outputs["report"]))
    return table


def quicklook_image(sol: Solution, size: int = 480, crop: int = 72, report: dict | None = None) -> np.ndarray:
    """The quicklook figure (see :mod:`georeg.quicklook`): tie-point vectors over the reference at
    about ``size`` px, and a ``crop`` px window of full-resolution pixels before and after."""
    ref, tgt, grid, overlap, model, tp = sol.ref, sol.tgt, sol.grid, sol.overlap, sol.model, sol.tp
    sub = grid.window_grid(overlap)
    factor = max(1.0, max(sub.width, sub.height) / size)
    qg = sub.scaled(factor)
    sx, sy = sub.width / qg.width, sub.height / qg.height
    off = np.array([overlap.col_off, overlap.row_off], np.float64)
    scale = np.array([sx, sy])

    def to_q(xy):
        return (xy - off) / scale

    r, rv = ref.read_on_grid(qg, fill_gaps=False)  # the pictures show the data as they are
    rn = preprocess(r, rv, "optical", ref.float_values)
    shift = float(np.median(np.linalg.norm(tp.xy_r - tp.xy_t_on_ref, axis=1))) / sx if len(tp) else 0.0
    # vectors drawn about 12 panel px long whatever the correction; the title says by how much
    gain = float(np.clip(12.0 / max(shift, 1e-3), 1.0, 50.0)) if len(tp) else 1.0
    gain = float(round(gain)) if gain >= 2 else round(gain, 1)
    panel = vectors_panel(rn, to_q(tp.xy_r), to_q(tp.xy_t_on_ref), model.inliers, vector_gain=gain)
    panel = scale_bar(panel, sx * grid.ground_pixel_size_m)
    before, after, _ = _before_after(sol, crop)
    side = (panel.shape[0] - 2 * 28) // 2  # two stacked crops as tall as the vectors panel
    n_in = int(model.inliers.sum())
    columns = [[(f"tie points: {n_in} inliers (green), {len(tp) - n_in} outliers (red); vectors x{gain:g}", panel)],
               [(f"before ({crop} px crop)", zoom(before, side)),
                ("after: reference magenta, target green", zoom(after, side))]]
    return compose(columns, _heading(ref, tgt, model, report))


def _before_after(sol: Solution, crop: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Before/after overlays of a ``crop`` px window at full resolution, centred on the inlier tie
    point nearest the overlap's centre (structure is there), else on the centre."""
    ref, tgt, grid, overlap, model, tp = sol.ref, sol.tgt, sol.grid, sol.overlap, sol.model, sol.tp
    centre = np.array([overlap.col_off + overlap.width / 2, overlap.row_off + overlap.height / 2])
    pts = tp.xy_r[model.inliers] if model.inliers.any() else np.zeros((0, 2))
    c = pts[np.argmin(np.linalg.norm(pts - centre, axis=1))] if len(pts) else centre
    half = crop // 2
    hi = (max(overlap.col_off, overlap.col_off + overlap.width - crop),
          max(overlap.row_off, overlap.row_off + overlap.height - crop))
    c0 = int(np.clip(round(c[0]) - half, overlap.col_off, hi[0]))
    r0 = int(np.clip(round(c[1]) - half, overlap.row_off, hi[1]))
    win = Window(c0, r0, crop, crop)
    cg = grid.window_grid(win)
    r, rv = ref.read_on_grid(cg, fill_gaps=False)
    b, bv = tgt.read_on_grid(cg, fill_gaps=False)
    a, av = sample_through(tgt, cg, Window(0, 0, crop, crop),
                           lambda xy: model.inverse(xy + np.array([c0, r0], np.float64)) - np.array([c0, r0]),
                           fill_gaps=False)
    isf = tgt.float_values
    rn = preprocess(r, rv, "optical", ref.float_values)
    return (overlay(rn, preprocess(b, bv, tgt.modality, isf)), overlay(rn, preprocess(a, av, tgt.modality, isf)),
            f"col {c0}, row {r0}")


def shift_text(sh: dict) -> str:
    """A report's mean shift as the CLI and the quicklook print it: 'shift +1.23, -4.56 px (+12.3,
    +45.6 m)'; degrees of a geographic CRS with their ground metres ('(+0.0001234, -0.0000456
    degree, about +6.2, -5.0 m)'), feet and Mercator's metres too ('(+30.0, -60.0 m, about +15.0,
    -30.0 m on the ground)'); in the pixel frame of pictures (map unit px) the map part would say
    it again."""
    text = f"shift {sh['mean_px'][0]:+.2f}, {sh['mean_px'][1]:+.2f} px"
    unit, (mx, my) = sh.get("map_unit", ""), sh["mean_map"]
    if unit == "degree":
        text += f" ({mx:+.7f}, {my:+.7f} degree"
        gm = sh.get("mean_m")
        text += f", about {gm[0]:+.1f}, {gm[1]:+.1f} m)" if gm else ")"
    elif unit != "px":
        text += f" ({mx:+.1f}, {my:+.1f} {unit}"
        gm = sh.get("mean_m")
        if gm and (unit != "m" or abs(math.hypot(*gm) - math.hypot(mx, my)) > GROUND_NOTED * math.hypot(mx, my)):
            # feet, or metres of a projection whose scale there is off by more than GROUND_NOTED
            # (World and Web Mercator: 1/cos(latitude), 1.2 at 34 degrees north, 2 at 60)
            text += f", about {gm[0]:+.1f}, {gm[1]:+.1f} m on the ground"
        text += ")"
    return text


GROUND_NOTED = 0.02  # see shift_text


def quality_text(report: dict) -> str:
    """The verdict with the precision it measured, as the CLI prints it: 'reliable; the model
    moves up to 1.0 px at the corners when its tie points are resampled'. ``reliable`` means no
    check found a gross error; the bootstrap movement says how far to trust the last pixel."""
    verdict = report.get("verdict") or {}
    text = report.get("quality", "?")
    moves = verdict.get("instability_px")
    if moves is not None:
        text += f"; the model moves up to {moves:.1f} px at the corners when its tie points are resampled"
    left_out = report.get("clouds_left_out")
    if left_out:
        text += (f"; matched again with the clouds left out ({left_out['share_of_overlap']:.0%} of the overlap): "
                 f"the first result followed them")
    return text


def modality_text(report: dict) -> str:
    """How the target was read and matched, from a report, as the CLI prints it: 'target read as
    sar (from its pixels: texture 96% sar), matched with kgl-opt-sar'. The texture model is the
    weakest evidence, so its confidence is shown; below TEXTURE_CONFIDENT the user is told how to
    override."""
    from .modality import TEXTURE_CONFIDENT
    ev = report["target"].get("modality_evidence") or {}
    modality = report["target"].get("modality", "?")
    by = ev.get("by", "")
    why = {"option": "as given", "role": "the reference", "metadata": "from its metadata",
           "values": "from its values", "bands": "from its band count", "file name": "from its file name",
           "default": "by default: no evidence"}.get(by, "")
    probs = ev.get("texture_probability") or {}
    if by == "pixels":
        why = "from its pixels" + (": few-look speckle" if "reading" in ev else
                                   ": smoother than SAR at its own pixel size" if "smooth" in ev else
                                   f": texture {probs.get(modality, 0):.0%} {modality}" if probs else "")
    text = f"target read as {modality}" + (f" ({why})" if why else "")
    if "colour ramp" in f"{ev.get('bands')} {(ev.get('metadata') or {}).get('colour_table')}":
        text += ", its colours as the one band they render through a colour ramp"
    matcher = report.get("matcher")
    matcher = matcher.get("name") if isinstance(matcher, dict) else matcher
    if matcher:
        text += f", matched with {matcher}"
    unsure = by in ("file name", "default") or (by == "pixels" and "reading" not in ev
                                                  and probs.get(modality, 1.0) < TEXTURE_CONFIDENT)
    saturated = ev.get("saturated_share") if by == "pixels" else None
    if by == "values" and "Celsius" in str((ev.get("values") or {}).get("reading", "")):
        # smoothness told degrees Celsius from dB, but SAR in dB resampled onto pixels 3-4 times
        # finer is smooth too (README: limits)
        text += "; SAR in dB resampled onto finer pixels reads so too"
        unsure = True
    elif by == "pixels" and "smooth" in ev:
        text += "; SAR resampled onto finer pixels reads so too"
        unsure = True
    if saturated is not None:  # a clipped export: its texture is weak evidence, however confident
        text += f"; {saturated:.0%} of its sample is saturated at its largest value, which hides its texture"
        unsure = True
    if unsure:
        text += "; pass --modality if that is not the sensor"
    if report["target"].get("mirrored"):
        # the model turns the mirror image (flipped left to right) by about half a turn when the
        # target was stored upside down
        turn = abs(((report.get("model") or {}).get("parameters") or {}).get("rotation_deg") or 0.0)
        flip = "upside down" if turn > 135 else "flipped left to right"
        text += (f"; registered as its mirror image ({flip}): it matched no rotation as it is, "
                 + ("as a picture in radar geometry does" if report["target"].get("frame") == "pixels" else
                    "its pixels are stored flipped against its geotransform"))
    return text


def mask_text(report: dict) -> str:
    """How the masks that are products' quality bands were read, as the CLI prints it ('' when no
    mask is one): 'masks: reference l8_BQA.tif as a Landsat 8 pre-collection quality band (BQA; ...)'."""
    from pathlib import Path

    read = {}
    for role in ("reference", "target"):
        m = report.get(role, {}).get("mask") or {}
        if m.get("kind", "nonzero") != "nonzero":
            what = m.get("reason", m["kind"]).split(", by ")[0]
            band = f" band {m['band']}" if m.get("band", 1) != 1 else ""
            read.setdefault(f"{Path(str(m.get('path'))).name}{band} as {what}", []).append(role)
    parts = [f"{' and '.join(roles)} {how}" for how, roles in read.items()]
    return "masks: " + "; ".join(parts) if parts else ""


def _heading(ref: RasterSource, tgt: RasterSource, model: FittedModel, report: dict | None) -> str:
    from pathlib import Path

    text = f"{Path(tgt.path).name} ({tgt.modality}) onto {Path(ref.path).name}: {model.kind}"
    if report:
        sh = report.get("shift", {})
        if "mean_px" in sh:
            text += ", " + shift_text(sh)
        if report.get("quality"):
            text += f"; verdict: {report['quality']}"
    return text
