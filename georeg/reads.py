"""Reads of an opened raster (:class:`georeg.raster.RasterSource`) onto any grid: its chosen
bands resampled through its geotransform, GCPs or RPCs (GDAL's warper), or cut from its own grid
when the grid is it shifted by whole pixels; validity from GDAL's masks, nodata, undeclared fill,
the user's mask and the pixels left out (clouds); missing specks and thin gaps filled
(:mod:`georeg.missing`); coarse reads from overviews. With :mod:`georeg.raster` it is the only
place that opens rasters for reading.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .bands import FILL_HUGE, alpha_band, palette_lookup
from .errors import RasterOpenError
from .grid import Grid, excluded_on
from .missing import MAX_GAP_PX, MAX_GAP_UPSAMPLING, fill_missing

OVERVIEW_MIN_PX = 4096 * 4096  # a coarse warped read decoding more of the raster than this reads an overview


@contextlib.contextmanager
def written_quietly(mem, profile: dict):
    """``mem`` opened for writing, without rasterio's warning about a raster placed by GCPs, RPCs
    or the pixel frame (its georeferencing is written as it is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with mem.open(**profile) as out:
            yield out


class GridReads:
    """The reads of :class:`georeg.raster.RasterSource`, which mixes this class in: they use its
    opened dataset and choices (``ds``, ``bands``, ``grid``, ``cfg``, ``palette``, ``ramp``, ``unscale``,
    ``fill_value``, ``excluded``, the user's mask ``_mask_ds`` and ``mask_rule``, ...)."""

    def _combine(self, arr: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W) data and GDAL masks -> (H, W) float32 and bool validity."""
        floats = arr.dtype.kind == "f"
        arr = arr.astype(np.float32, copy=False)
        valid = np.all(masks > 0, axis=0)
        nd = self.cfg.nodata
        if nd is not None:
            valid &= np.all(arr != nd, axis=0) if not math.isnan(nd) else np.all(~np.isnan(arr), axis=0)
        if floats:  # integer samples are finite and small
            # NaN, infinities and float fill values (|v| >= FILL_HUGE: -3.4e38 specks, or a fill that
            # resampling blended into its neighbours) are never data, declared or not
            valid &= np.all(np.abs(arr) < FILL_HUGE, axis=0)
        if self.fill_value is not None and self.palette is None and self.ramp is None:
            # the undeclared fill, as nodata where every band holds it (GDAL's rule for a shared
            # nodata): it was found in the first band, and a colour with one channel at 0 is data
            valid &= ~np.all(arr == self.fill_value, axis=0)
        if self.unscale is not None and len(arr) == len(self.bands):  # not a colour table's luminance
            arr = arr * self.unscale[0] + self.unscale[1]
        if arr.shape[0] == 3:
            data = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]
        else:
            data = arr[0]
        data = np.where(valid, data, 0.0).astype(np.float32)
        return data, valid

    def read_on_grid(self, grid: Grid, window: Window | None = None,
                     resampling: Resampling = Resampling.bilinear,
                     fill_gaps: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Read the chosen band(s) onto ``grid`` (restricted to ``window`` of it). Missing specks
        are filled (:func:`georeg.missing.fill_missing`), and thin gaps unless ``fill_gaps`` is
        False (the quicklook shows them as they are).

        Returns ``(data (H, W) float32, valid (H, W) bool)``.
        """
        try:
            return self._read_on_grid(grid, window, resampling, fill_gaps)
        except rasterio.errors.RasterioError as exc:
            raise self._unreadable(exc) from None

    def _read_on_grid(self, grid: Grid, window: Window | None, resampling: Resampling,
                      fill_gaps: bool) -> tuple[np.ndarray, np.ndarray]:
        if window is None:
            window = Window(0, 0, grid.width, grid.height)
        sub = grid.window_grid(window)
        off = None if self.placed_by_points else _integer_offset(self.grid, sub)
        if self.placed_by_points:
            data, masks = self._warp_through_points(sub, resampling)
        elif off is not None:
            data, masks = self._read_native(Window(off[0], off[1], sub.width, sub.height))
        else:
            # a raster on the pixel frame is warped from that frame, not from GDAL's identity, and
            # a mirrored raster from its mirror image, not from its own geotransform
            own = self.pixel_frame or self.mirrored or bool(self.longitude_shift)
            placed = {"src_transform": self.grid.transform} if own else {}
            if self.assigned_crs is not None or self.grid.crs != self.crs:
                # the file's own CRS (or none) is not the one to read it in: the user's, or one whose
                # longitudes run past 180 as the raster's do (across the antimeridian)
                placed["src_crs"] = self.grid.crs
            ds, bands = self._pixels
            src_nodata = self._src_nodata(ds)
            if ds is self.ds and not own:
                ds = self._overview_for(sub)
            # GDAL warps a raster's own alpha band (an RGBA orthophoto, a QGIS export) as the
            # alpha, and refuses to add another
            alpha = alpha_band(ds)
            with WarpedVRT(ds, crs=sub.crs, transform=sub.transform, width=sub.width,
                           height=sub.height, resampling=resampling, add_alpha=alpha is None,
                           src_nodata=src_nodata, **placed) as vrt:
                # one read of the data and alpha bands: each read call warps again (a 10980 px
                # raster's decimated read took 9.0 s in two calls, 4.1 s in one)
                both = vrt.read([*bands, alpha or vrt.count])
                arr, alpha = both[:-1], both[-1]
            masks = np.repeat(alpha[None], len(bands), axis=0)
            data = arr
        out, valid = self._combine(data, masks)
        if not valid.all():  # the read with nothing missing (the common one) sizes no gap
            out, valid = fill_missing(out, valid, max_gap=self._max_gap(sub) if fill_gaps else 0.0)
        if self._mask_ds is not None:  # a mask the user gives is obeyed to the pixel
            valid &= self._read_external_mask(sub)
        for left_out in self.excluded:
            valid &= ~excluded_on(left_out, sub)
        return out, valid

    def _max_gap(self, sub: Grid) -> float:
        """The widest thin gap a read onto ``sub`` fills, in ``sub``'s pixels: MAX_GAP_PX of the
        raster's own pixels; none on a grid more than MAX_GAP_UPSAMPLING times finer than the
        raster, where the filled strips, resampled twice, misled the learned matcher (S1/S2 pair
        050's S1 scene averaged to 30 m with gaps, matched on a 20 m grid: a `reliable` affine 10.6
        px from the same scene's without gaps; `uncertain` unfilled)."""
        ratio = self.grid.ground_pixel_size_m / sub.ground_pixel_size_m
        if not (math.isfinite(ratio) and ratio > 0):
            return float(MAX_GAP_PX)
        return MAX_GAP_PX * ratio if ratio <= MAX_GAP_UPSAMPLING else 0.0

    def _overview_for(self, sub: Grid):
        """The dataset a warped read onto ``sub`` reads from: the raster, or, for a read at least
        twice as coarse that would otherwise decode more than OVERVIEW_MIN_PX of it, its finest
        overview no coarser than ``sub`` (a COG's or a .ovr file's, a JPEG 2000's resolution levels).
        GDAL's warper averages over every source pixel it is given (a 10980 px JPEG 2000 read at
        1024 px: 13 s from full resolution, under 1 s from its level 8)."""
        ratio = sub.ground_pixel_size_m / self.grid.ground_pixel_size_m
        if not ratio >= 2 or sub.width * sub.height * ratio * ratio < OVERVIEW_MIN_PX:
            return self.ds
        factors = self.ds.overviews(self.bands[0])
        usable = [i for i, f in enumerate(factors) if f <= ratio * 1.001]
        if not usable:
            return self.ds
        level = usable[-1]
        opened = self.__dict__.setdefault("_overview_ds", {})
        if level not in opened:
            opened[level] = rasterio.open(self.path, overview_level=level)
        return opened[level]

    def _src_nodata(self, ds) -> float | None:
        """The nodata value GDAL's warper is told for ``ds`` (the raster, or its luminance copy):
        :attr:`file_nodata` for the raster, which resampling must not blend into the data (a -3.4e38
        fill averaged into a coarse read's pixels made them -1e37); the copy's own otherwise."""
        return self.file_nodata if ds is self.ds and self.palette is None else ds.nodata

    def _warp_through_points(self, sub: Grid, resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """The chosen bands warped onto ``sub`` through the GCPs or RPCs (GDAL's warper with its GCP
        or RPC transformer, as gdalwarp does), and masks: 0 outside the raster and on nodata."""
        from rasterio.warp import reproject

        ds, bands = self._pixels
        src_nodata = self._src_nodata(ds)
        ds, bands, _ = self._placed_as_grid(ds, bands)
        data = np.full((len(bands), sub.height, sub.width), np.nan, np.float32)
        for i, b in enumerate(bands):
            reproject(rasterio.band(ds, b), data[i], dst_crs=sub.crs, dst_transform=sub.transform,
                      resampling=resampling, src_nodata=src_nodata, dst_nodata=np.nan, init_dest_nodata=True,
                      **self.grid.warp_options())
        masks = np.isfinite(data).astype(np.uint8) * 255
        return np.nan_to_num(data, nan=0.0), masks

    def _placed_as_grid(self, ds, bands: list[int]) -> tuple:
        """(dataset, bands, reproject arguments that place it) for ``ds`` placed by its GCPs as
        georeg's grids take them (:func:`georeg.grid.placing_points`): ``ds`` itself, or, for GCPs
        taken in another CRS (a lattice in longitude and latitude: in a stereographic plane; GCPs
        across the antimeridian: their longitudes continuous in a wrapped CRS), a VRT over its bands
        carrying them so. GDAL's warper takes a dataset's own GCPs and leaves the ones it is given
        aside (half a Sentinel-1 GRD over 180 degrees was read). The arguments are None for a
        dataset without GCPs."""
        from xml.sax.saxutils import escape, quoteattr

        from .grid import placing_points

        opened = self.__dict__.setdefault("_points_vrts", {})  # (decided once a dataset: a read a tile)
        key = (ds.name, tuple(bands))
        if key not in opened:
            points, crs = ds.gcps
            if not points:
                opened[key] = (ds, bands, None)
                return opened[key]
            gcps, placing_crs, tps = placing_points(list(points), crs)
            options = {"gcps": gcps, "src_crs": placing_crs, **({"SRC_METHOD": "GCP_TPS"} if tps else {})}
            if placing_crs == crs:
                opened[key] = (ds, bands, options)
                return opened[key]
            lattice = "".join(f'<GCP Id="{i}" Pixel="{g.col!r}" Line="{g.row!r}" X="{g.x!r}" Y="{g.y!r}" '
                              f'Z="{float(g.z or 0.0)!r}"/>' for i, g in enumerate(gcps))
            types = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                     "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}
            vrt_bands = "".join(
                f'<VRTRasterBand dataType="{types[ds.dtypes[b - 1]]}" band="{i + 1}"><SimpleSource><SourceFilename '
                f'relativeToVRT="0">{escape(ds.name)}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
                f'</VRTRasterBand>' for i, b in enumerate(bands))
            vrt = rasterio.open(
                f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><GCPList Projection='
                f'{quoteattr(placing_crs.to_wkt())}>{lattice}</GCPList>{vrt_bands}</VRTDataset>')
            self.__dict__.setdefault("_vrts_opened", []).append(vrt)
            opened[key] = (vrt, list(range(1, len(bands) + 1)), options)
        return opened[key]

    def valid_on(self, grid: Grid, max_size: int = 1024) -> np.ndarray:
        """Where this raster holds data, sampled at the centres of ``grid``'s pixels (a coarse grid):
        the dataset mask read decimated on the raster's own grid (block by block through GDAL's
        cache, so memory stays small whatever the raster's size), then looked up by position. For
        deciding where to work, not for matching: an external mask is not applied."""
        ds = self.ds
        f = max(1.0, max(ds.width, ds.height) / max_size)
        h, w = max(1, int(round(ds.height / f))), max(1, int(round(ds.width / f)))
        with rasterio.Env(CPL_LOG_ERRORS=False):
            m = ds.read_masks(self.bands[0], out_shape=(h, w), resampling=Resampling.nearest) > 0
        out = np.zeros((grid.height, grid.width), bool)
        t = grid.transform
        cols = np.arange(grid.width) + 0.5
        step = max(1, (1 << 18) // max(grid.width, 1))  # rows at a time: a few MB of coordinates, not 0.25 GB
        reproject = grid.crs != self.grid.crs
        if reproject:
            from rasterio.warp import transform as warp_points
        for r0 in range(0, grid.height, step):
            rows = np.arange(r0, min(r0 + step, grid.height))[:, None] + 0.5
            xs = (t.a * cols + t.b * rows + t.c).ravel()
            ys = (t.d * cols + t.e * rows + t.f).ravel()
            if reproject:
                xs, ys = (np.asarray(v) for v in warp_points(grid.crs, self.grid.crs, xs, ys))
            px = self.grid.to_pixels(np.c_[xs, ys])  # the raster's own pixels, then the decimated read's
            c = np.floor(px[:, 0] * (w / ds.width)).astype(np.int64).reshape(len(rows), grid.width)
            r = np.floor(px[:, 1] * (h / ds.height)).astype(np.int64).reshape(len(rows), grid.width)
            inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            block = out[r0:r0 + len(rows)]
            block[inside] = m[r[inside], c[inside]]
        return out

    @functools.cached_property
    def _pixels(self) -> tuple:
        """(dataset, bands) that pixels are read from: the raster and its chosen bands, or, for
        colour-table indices, an in-memory copy holding each pixel's luminance (uint8, transparent
        colours masked) with the raster's georeferencing, so that resampling blends colours, not
        indices (nearest-neighbour reads of the indices would round every offset to whole pixels);
        for colours that render one band through a ramp, a copy holding each pixel's position
        along the ramp (uint16, colours off the ramp masked), so that resampling blends values."""
        if self.palette is None and self.ramp is None:
            return self.ds, self.bands
        from rasterio.io import MemoryFile

        mem = MemoryFile()
        placed = {"crs": self.crs, "transform": self.grid.transform} if not self.placed_by_points else {}
        with written_quietly(mem, dict(driver="GTiff", width=self.ds.width, height=self.ds.height, count=1,
                                        dtype="uint8" if self.ramp is None else "uint16", tiled=True, **placed)) as out:
            for r0 in range(0, self.ds.height, 512):  # in strips: a large scanned map is not read whole
                win = Window(0, r0, self.ds.width, min(512, self.ds.height - r0))
                if self.ramp is not None:
                    grey, mask = self.ramp.values(self.ds.read(self.bands, window=win),
                                                  np.all(self.ds.read_masks(self.bands, window=win) > 0, axis=0))
                else:
                    grey, opaque = palette_lookup(self.palette, self.ds.read(self.bands[0], window=win))
                    mask = opaque & (self.ds.read_masks(self.bands[0], window=win) > 0)
                out.write(grey, 1, window=win)
                out.write_mask(mask.astype(np.uint8) * 255, window=win)
            if self.gcps:
                out.gcps = self.gcps
            if self.rpcs is not None:
                out.rpcs = self.rpcs
        self._memfile = mem  # kept open while the copy is read
        return mem.open(), [1]

    def _read_native(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Boundless read of the chosen bands on the native grid: outside pixels have mask 0."""
        ds, bands = self._pixels
        return self._boundless(bands, win, 0, all_masks=True, ds=ds)

    def _boundless(self, idx: list[int], win: Window, fill, all_masks: bool, ds=None) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``idx`` of ``ds`` (default: the raster) over ``win`` (which may reach outside the
        raster), ``fill`` outside; masks of every band (``all_masks``) or of the first, 0 outside."""
        ds = self.ds if ds is None else ds
        h, w = int(win.height), int(win.width)
        c0, r0 = int(win.col_off), int(win.row_off)
        data = np.full((len(idx), h, w), fill, dtype=ds.dtypes[idx[0] - 1])
        masks = np.zeros((len(idx) if all_masks else 1, h, w), dtype=np.uint8)
        cc0, rr0 = max(c0, 0), max(r0, 0)
        cc1, rr1 = min(c0 + w, ds.width), min(r0 + h, ds.height)
        if cc1 > cc0 and rr1 > rr0:
            inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            data[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = ds.read(idx, window=inner)
            masks[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = ds.read_masks(
                idx if all_masks else idx[:1], window=inner)
        return data, masks

    def _read_external_mask(self, grid: Grid) -> np.ndarray:
        """Where the mask the user gave marks ``grid``'s pixels usable (:mod:`georeg.masks`: non-zero,
        or a quality band's rules with its clouds widened). A mask with the raster's own size is
        taken pixel for pixel (it shares the raster's pixel grid, whatever its georeferencing says);
        otherwise it is placed by its georeferencing."""
        from .masks import MaskRule, margin_px, widen

        rule = self.mask_rule or MaskRule()  # None: the mask of a masked collar (:meth:`_mask_fill`)
        pad = margin_px(grid.ground_pixel_size_m) if rule.widens_clouds else 0
        if pad:  # read a margin around the window, so that a cloud just outside it widens into it
            grid = Grid(grid.transform @ Affine.translation(-pad, -pad), grid.width + 2 * pad,
                        grid.height + 2 * pad, grid.crs)
        usable, cloud = rule.usable(self._read_mask_band(grid, rule.band, rule.outside))
        if pad:
            usable = (usable & ~widen(cloud, pad))[pad:-pad, pad:-pad]
        return usable

    def _read_mask_band(self, grid: Grid, band: int, outside: int) -> np.ndarray:
        """Band ``band`` of the user's mask on ``grid``, by nearest neighbour, ``outside`` beyond it."""
        m = self._mask_ds
        same_pixels = (m.width, m.height) == (self.ds.width, self.ds.height)
        kwargs = {"src_crs": self.grid.crs, "src_transform": self.grid.transform} if same_pixels else {}
        if not same_pixels and m.crs is not None and m.crs == self.crs and self.grid.crs != self.crs:
            kwargs = {"src_crs": self.grid.crs}  # in the raster's CRS: its longitudes wrapped as the raster's
        placed, (b,), placed_by = self._placed_as_grid(m, [band])  # the mask's own GCPs, taken as the raster's
        if same_pixels and self.placed_by_points:
            placed_by = self.grid.warp_options()
        if not same_pixels and m.crs is None and placed_by is None:
            raise RasterOpenError(
                f"{self.role} mask {self.cfg.mask} is {m.width}x{m.height} px, not the raster's "
                f"{self.ds.width}x{self.ds.height}, and has no CRS to place it; give a mask on the raster's grid")
        if placed_by is not None:  # through ground control points: the raster's own, or the mask's
            from rasterio.warp import reproject

            out = np.full((grid.height, grid.width), outside, m.dtypes[band - 1])
            reproject(rasterio.band(placed, b), out, dst_crs=grid.crs, dst_transform=grid.transform,
                      resampling=Resampling.nearest, dst_nodata=outside, **placed_by)
            return out
        with WarpedVRT(m, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, nodata=outside, **kwargs) as vrt:
            return vrt.read(band)

    def read_native_window(self, window: Window, indexes=None) -> tuple[np.ndarray, np.ndarray]:
        """Raw read of all (or the given) bands on the native grid, boundless: returns the data
        (nodata or 0 outside; the undeclared fill of a masked collar, :attr:`fill_value`, when there is
        one) and the first band's GDAL mask (0 outside, and on that fill)."""
        idx = list(indexes) if indexes is not None else list(range(1, self.ds.count + 1))
        fill = self.output_nodata
        data, mask = self._boundless(idx, window, fill, all_masks=False)
        if self.fill_value is not None:  # only ever found where the file declares no nodata
            mask[0][np.all(data == self.fill_value, axis=0)] = 0
        return data, mask[0]


def _integer_offset(native: Grid, sub: Grid) -> tuple[int, int] | None:
    """(col, row) offset if ``sub`` is ``native`` shifted by whole pixels, else None."""
    if native.crs != sub.crs:
        return None
    a, b = native.transform, sub.transform
    if not all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in
               zip((a.a, a.b, a.d, a.e), (b.a, b.b, b.d, b.e))):
        return None
    col, row = ~a @ (b.c, b.f)
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))
