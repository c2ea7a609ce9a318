"""Writing georeg's outputs: the corrected raster, the tie-point GeoPackage, the JSON report and
the quicklook PNG. Callers pass temporary paths from :func:`georeg.atomic.staged`, which renames
them into place only when every output is complete. With :mod:`georeg.raster` (reading), this is
the only module that touches files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from .bands import alpha_band
from .config import OutputConfig
from .grid import Grid, as_written
from .interrupts import signals_held
from .preflight import creation_options_dict
from .raster import RasterSource
from .runtime import compression_threads
from .warp import dense_coords

_ORDER = {"nearest": 0, "bilinear": 1, "cubic": 3}


def _profile(src: RasterSource, grid: Grid, compress: str, nodata, creation_options=()) -> dict:
    prof = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": src.ds.count,
        "dtype": src.ds.dtypes[0], "crs": as_written(grid.crs), "transform": grid.transform,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "BIGTIFF": "IF_SAFER",
        "sparse_ok": True,  # blocks that are all nodata are not written: empty parts of a mosaic cost nothing
    }
    if compress != "none":
        prof["compress"] = compress
        prof["predictor"] = 3 if src.ds.dtypes[0].startswith("float") else 2
        if compression_threads() > 1:  # tiles compressed side by side, the same bytes in each
            prof["num_threads"] = str(compression_threads())
    if nodata is not None:
        prof["nodata"] = nodata
    for key, value in creation_options_dict(creation_options).items():  # the user's options win over georeg's
        for k in [k for k in prof if k.upper() == key]:
            del prof[k]
        prof[key] = value
    return prof


def _windows(width: int, height: int, size: int = 512):
    for r in range(0, height, size):
        for c in range(0, width, size):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def _finish(tmp_gtiff: Path, final_tmp: Path, cog: bool, compress: str, creation_options=()) -> None:
    if cog:
        opts = {"COMPRESS": compress.upper()} if compress != "none" else {}
        if opts and compression_threads() > 1:
            opts["NUM_THREADS"] = str(compression_threads())
        opts.update(creation_options_dict(creation_options))
        rasterio.shutil.copy(str(tmp_gtiff), str(final_tmp), driver="COG", BIGTIFF="IF_SAFER", **opts)
    else:
        shutil.move(str(tmp_gtiff), str(final_tmp))


def _copy_metadata(src: RasterSource, dst, extra: dict | None = None) -> None:
    dst.update_tags(**src.ds.tags())
    if extra:
        dst.update_tags(**extra)
    for i in range(1, src.ds.count + 1):
        if src.ds.descriptions[i - 1]:
            dst.set_band_description(i, src.ds.descriptions[i - 1])
        # a band's own metadata (polarisation, wavelength, band name) but not its statistics, which
        # GDAL caches there and which a resampled copy no longer has
        band_tags = {k: v for k, v in src.ds.tags(i).items() if not k.startswith("STATISTICS_")}
        if band_tags:
            dst.update_tags(i, **band_tags)
    # the samples are copied as stored: their scale, offset and units keep their physical meaning
    if any(v != 1.0 for v in src.ds.scales) or any(v != 0.0 for v in src.ds.offsets):
        dst.scales, dst.offsets = src.ds.scales, src.ds.offsets
    if any(src.ds.units):
        dst.units = src.ds.units
    try:
        dst.colorinterp = src.ds.colorinterp
    except (ValueError, rasterio.errors.RasterioError):
        pass
    for i in _paletted_bands(src):  # a scanned map keeps its colours
        try:
            dst.write_colormap(i, src.ds.colormap(i))
        except ValueError:  # marked as palette, but without a colour table
            pass


def _paletted_bands(src: RasterSource) -> list[int]:
    from rasterio.enums import ColorInterp

    return [i + 1 for i, ci in enumerate(src.ds.colorinterp) if ci == ColorInterp.palette]


def _open_for_writing(path, prof: dict):
    """rasterio.open for writing; the pixel frame's transform (x = column, y = -row) is written
    without rasterio's warning that GDAL might drop it: GeoTIFF keeps it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(path, "w", **prof)


@contextlib.contextmanager
def _staging_folder(parent: Path) -> Iterator[str]:
    """A hidden ``.georeg-PID-*`` folder in ``parent`` for a raster being written, removed on the way
    out; a SIGTERM while it is made or removed takes effect after that (:func:`signals_held`). Under
    load a SIGTERM sent the moment the folder appeared left it behind once in a CI run
    (``tests/test_hardening.py::test_sigterm_while_writing_leaves_nothing``, 2026-12-06)."""
    with signals_held():
        folder = tempfile.mkdtemp(dir=parent, prefix=f".georeg-{os.getpid()}-")
    try:
        yield folder
    finally:
        with signals_held():
            shutil.rmtree(folder, ignore_errors=True)


def write_with_transform(src: RasterSource, path: str, transform: Affine | None, options: OutputConfig,
                         progress: Callable[[float], None] | None = None, tags: dict | None = None,
                         gcps: tuple | None = None) -> None:
    """Copy the target's pixels unchanged under a new geotransform, or new ground control points
    ``gcps`` = (points, CRS) with ``transform=None`` (format from ``options``: cog, compress,
    creation_options)."""
    cog, compress, creation_options = options.cog, options.compress, options.creation_options
    # the file's own longitudes where georeg read them 360 degrees off (RasterSource.longitude_shift)
    grid = Grid(src.file_transform(transform) if transform is not None else Affine.identity(), src.ds.width,
                src.ds.height, src.crs)
    # the undeclared fill of a masked collar is declared: the copy opens with its collar transparent
    prof = _profile(src, grid, compress, src.file_nodata, () if cog else creation_options)
    if gcps is not None:
        del prof["transform"], prof["crs"]
    with _staging_folder(Path(path).parent) as td:
        tmp = Path(td) / "data.tif"
        wins = list(_windows(grid.width, grid.height))
        # an internal mask carries the validity of a raster without nodata; its alpha band, copied
        # with the other bands, already does
        has_mask = (src.ds.nodata is None and alpha_band(src.ds) is None
                    and any(f.name == "per_dataset" for f in src.ds.mask_flag_enums[0]))
        with _open_for_writing(tmp, prof) as dst:
            for i, w in enumerate(wins):
                dst.write(src.ds.read(window=w), window=w)
                if has_mask:
                    dst.write_mask(src.ds.read_masks(1, window=w), window=w)
                if progress:
                    progress((i + 1) / len(wins))
            if gcps is not None:
                dst.gcps = gcps
            _copy_metadata(src, dst, tags)
        _finish(tmp, Path(path), cog, compress, creation_options)


def write_resampled(src: RasterSource, path: str, out: Grid, mapping: Callable[[np.ndarray], np.ndarray],
                    options: OutputConfig, progress: Callable[[float], None] | None = None,
                    tags: dict | None = None) -> None:
    """Resample the target onto ``out``; ``mapping`` takes output pixels to target native pixels
    (resampling and format from ``options``: resampling, cog, compress, creation_options)."""
    cog, compress, creation_options = options.cog, options.compress, options.creation_options
    nodata = src.output_nodata  # declared, or an undeclared collar's fill (then declared), or 0
    # a raster with an alpha band gets 0 outside in every band, alpha included (transparent); a
    # declared nodata 0 would also hide its black pixels, and shadow the alpha in GDAL
    declared = None if src.ds.nodata is None and alpha_band(src.ds) is not None else nodata
    prof = _profile(src, out, compress, declared, () if cog else creation_options)
    if out == src.grid:  # on the target's own grid: in the file's own longitudes (RasterSource.longitude_shift)
        prof["transform"] = src.file_transform(out.transform)
    order = 0 if _paletted_bands(src) else _ORDER[options.resampling]  # an index between two colours is no colour
    with _staging_folder(Path(path).parent) as td:
        tmp = Path(td) / "data.tif"
        wins = list(_windows(out.width, out.height))
        with _open_for_writing(tmp, prof) as dst:
            for i, w in enumerate(wins):
                dst.write(_resample_window(src, mapping, w, order, nodata), window=w)
                if progress:
                    progress((i + 1) / len(wins))
            _copy_metadata(src, dst, tags)
        _finish(tmp, Path(path), cog, compress, creation_options)


def _resample_window(src: RasterSource, mapping, w: Window, order: int, nodata) -> np.ndarray:
    h, wd = int(w.height), int(w.width)
    coords = dense_coords(mapping, int(w.col_off), int(w.row_off), wd, h)  # (h, w, 2), corner-based
    out = np.full((src.ds.count, h, wd), nodata, dtype=src.ds.dtypes[0])
    cx, cy = coords[..., 0], coords[..., 1]
    inside = (cx >= 0) & (cy >= 0) & (cx <= src.ds.width) & (cy <= src.ds.height)
    if not inside.any():
        return out
    pad = 4
    c0 = int(np.floor(cx[inside].min())) - pad
    r0 = int(np.floor(cy[inside].min())) - pad
    c1 = int(np.ceil(cx[inside].max())) + pad
    r1 = int(np.ceil(cy[inside].max())) + pad
    read = Window(c0, r0, c1 - c0, r1 - r0)
    data, masks = src.read_native_window(read)
    ix, iy = cx - c0 - 0.5, cy - r0 - 0.5
    m = (masks > 0).astype(np.float32)
    valid = ndimage.map_coordinates(m, [iy, ix], order=0, mode="constant", cval=0) > 0
    valid &= inside
    # missing pixels take no part in the interpolation: the weights of the valid ones are
    # renormalised (as GDAL's warper does), so no nodata value, such as -9999 or an undeclared
    # -3.4e38 collar, bleeds into the pixels along the data's edge
    holes = order > 0 and not m.all()
    if holes:
        weight = ndimage.map_coordinates(m, [iy, ix], order=order, mode="nearest")
        valid &= weight > 0.25  # a bilinear read's nearest pixel weighs at least that
        weight = np.where(valid, weight, 1.0)
    for b in range(src.ds.count):
        band = np.where(m > 0, data[b].astype(np.float32), 0.0) if holes else data[b].astype(np.float32)
        vals = ndimage.map_coordinates(band, [iy, ix], order=order, mode="nearest")
        if holes:
            vals /= weight
        if np.issubdtype(out.dtype, np.integer):
            info = np.iinfo(out.dtype)
            vals = np.clip(np.rint(vals), info.min, info.max)
        out[b][valid] = vals[valid].astype(out.dtype)
    return out


def write_report(report: dict, path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_png(rgb: np.ndarray, path: str) -> None:
    from PIL import Image

    # 256 colours are plenty for a picture to look at, and keep it far smaller than the rasters
    Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        path, format="PNG", optimize=True)
