"""Undeclared fill: pixels that a raster leaves at one value outside its footprint (a collar), at
its edges (a picture's black corners, a SAR product's zero border) or in scan-line gaps, without
declaring that value as nodata or a mask. Found on reads through an opened rasterio dataset (this
module opens no paths; :class:`georeg.raster.RasterSource` turns what it finds into a mask).

Tie points on the fill's rim would be outliers, and the verdict would count the fill as overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

from .bands import fill_sentinel
from .missing import MAX_GAP_PX, scan_line_strips, thin_run_pixels

FILL_SEARCH_PX = 4096  # a GCP raster's zero border (or a collar) is looked for on a read at most this size
COLLAR_INTERIOR_ZEROS = 1e-4  # the fill value elsewhere (share of the raster) that makes a rim of it ground, not fill
SCAN_GAPS_EXPLAINED = 0.9  # of the fill value's pixels inside the collar, at least this share in scan-line strips
SCAN_GAPS_THIN = 0.05  # of the value's pixels, at least this share in thin runs before scan-line strips are looked for
SCAN_GAPS_MIN_SHARE = 0.02  # 0 on this share of a 256 px read or more may be scan-line gaps: looked for at full size
MAX_FILL_PIXELS = 8192 * 8192  # pictures up to this size are searched for black edge fill (one band read whole)


@dataclass(frozen=True)
class Collar:
    """A collar of one undeclared fill value: ``fill`` (bool) on a read of the raster ``size``
    (width, height) px, which may be coarser than the raster; ``inside_share``: of that read, the
    pixels at the value inside the footprint (scan-line gaps), kept out by the value itself."""

    fill: np.ndarray
    value: float
    inside_share: float

    @property
    def size(self) -> tuple[int, int]:
        return self.fill.shape[1], self.fill.shape[0]


def declares_none(ds, bands: list[int], nodata: float | None) -> bool:
    """Whether the raster declares neither nodata (``nodata``: the user's or the file's) nor a
    mask of its own on ``bands``: an undeclared fill is looked for only then."""
    return nodata is None and all(MaskFlags.all_valid in ds.mask_flag_enums[b - 1] for b in bands)


def decimated(ds, band: int, size: int) -> tuple[np.ndarray, float]:
    """``band`` read by nearest neighbour at most ``size`` px wide, and the decimation factor."""
    f = max(1.0, max(ds.width, ds.height) / size)
    shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
    return ds.read(band, out_shape=shape, resampling=Resampling.nearest), f


def zero_border(ds, band: int) -> tuple[np.ndarray, float]:
    """The zero border of a SAR product placed by GCPs (a Sentinel-1 GRD declares no nodata), on a
    read decimated to FILL_SEARCH_PX, and the decimation factor."""
    from .modality import border_fill

    data, f = decimated(ds, band, FILL_SEARCH_PX)
    return border_fill(data, (True, True, True, True), tolerance=0.0, widen=1 if f > 1 else 0), f


def black_edges(ds, band: int) -> np.ndarray | None:
    """A picture's black edge fill (a rotated or warped export) at full size; None for a picture
    over MAX_FILL_PIXELS (not read whole)."""
    from .modality import border_fill

    if ds.width * ds.height > MAX_FILL_PIXELS:
        return None
    return border_fill(ds.read(band).astype(np.float32), (True, True, True, True))


def fill_collar(data: np.ndarray, value: float, f: float) -> np.ndarray | None:
    """The collar of fill ``value`` in ``data`` (a read ``f`` times coarser than the raster): the
    area of that value that reaches the edges, as :func:`constant_collar` takes it; None when the
    value also lies inside other than in scan-line gaps."""
    from .modality import border_fill

    if not any((edge == value).any() for edge in (data[0], data[-1], data[:, 0], data[:, -1])):
        return None
    fill = border_fill(data, (True, True, True, True), tolerance=0.0, widen=0, value=value)
    at_value = data == value
    inside = at_value & ~fill
    # the value in thin runs too: scan-line gaps (Landsat 7's level-1 files: 0 outside the footprint
    # and in the gaps, no nodata declared), which may reach the collar. Found, they are fill all the
    # same, left to the fill value (exact at full resolution) and kept out of the collar's mask (a
    # decimated, dilated mask would widen them past MAX_GAP_PX); a quick look first
    thin = thin_run_pixels(at_value, MAX_GAP_PX / f) if f <= MAX_GAP_PX / 4 else 0.0
    strips = scan_line_strips(at_value, MAX_GAP_PX / f) if thin >= max(
        SCAN_GAPS_THIN * at_value.sum(), SCAN_GAPS_EXPLAINED * inside.sum()) else None
    if strips is None:  # ground at the value inside (dark water in 8-bit SAR) makes the rim ground too
        return fill if fill.any() and inside.mean() <= COLLAR_INTERIOR_ZEROS else None
    fill &= ~strips
    inside = at_value & ~fill
    # bar a strip's ends at the array's edge, too short to tell (SCAN_GAPS_EXPLAINED), and the gaps'
    # thinnest pieces, a pixel or two wide near the middle of a Landsat 7 scene, in runs too short
    # for strips: a crop there has no collar and gaps of that kind only
    rest = inside & ~strips
    unexplained = np.count_nonzero(rest)
    if not fill.any() and unexplained <= np.count_nonzero(inside & strips):  # (most of it in strips)
        unexplained -= thin_run_pixels(rest, MAX_GAP_PX / f)
    return fill if unexplained <= (1 - SCAN_GAPS_EXPLAINED) * inside.sum() else None


def gaps_on_edge_rows(ds, band: int, small: np.ndarray | None) -> bool:
    """Whether the first and last rows (of ``small``, a 256 px read of a remote raster or one
    with overviews, when given) hold 0 on SCAN_GAPS_MIN_SHARE of their pixels or more: scan-line
    gaps, which run nearly along the rows, cross them wherever the corners miss them. A row of
    a local file is a strip or a row of tiles."""
    rows = (small[0], small[-1]) if small is not None else [
        ds.read(band, window=Window(0, r, ds.width, 1))[0] for r in (0, ds.height - 1)]
    return np.count_nonzero(np.concatenate(rows) == 0) >= SCAN_GAPS_MIN_SHARE * 2 * len(rows[0])


def constant_collar(ds, band: int, remote: bool) -> Collar | None:
    """The collar of a georeferenced raster that declares no nodata but leaves its footprint's
    outside at one fill value (Landsat level-1 and Sentinel-2 files at 0; float exports at
    -3.4e38 or -9999, integer ones at their type's extremes: :func:`fill_sentinel`), as a fill
    mask on a read at most FILL_SEARCH_PX wide; None when the raster has none, or when the value
    also lies inside it (dark water at 0 in an 8-bit SAR image is ground, not fill). The four
    corner pixels decide first (a footprint's outside takes at least one, and gives the value; a
    decimated read of a large raster without overviews decompresses all of it), then a 256 px
    read, then the full search. ``remote``: the raster is read over a network (a 256 px read
    costs less there than four corner pixels, each a full-resolution tile)."""
    dtype = ds.dtypes[band - 1]
    if np.dtype(dtype).kind not in "uif":
        return None

    small = None
    if remote:
        small = decimated(ds, band, 256)[0]
        corners = [small[r, c] for r in (0, -1) for c in (0, -1)]
    else:
        corners = [ds.read(band, window=Window(c, r, 1, 1))[0, 0]
                   for c in (0, ds.width - 1) for r in (0, ds.height - 1)]
    values = [float(v) for v in corners if fill_sentinel(v, dtype)]
    if 0.0 not in values and np.dtype(dtype).kind in "ui":
        if small is None and ds.overviews(band):  # (a JPEG 2000's resolution levels: 0.1 s, its rows 2-4 s)
            small = decimated(ds, band, 256)[0]
        if gaps_on_edge_rows(ds, band, small):
            values.append(0.0)  # a crop of a Landsat 7 band with no corner in a gap
    full = None
    # the value most corners hold first
    for value in sorted(set(values), key=lambda v: -values.count(v)):
        small = decimated(ds, band, 256)[0] if small is None else small
        # a 256 px read shows a collar; scan-line gaps, thinner than its pixels, only that the
        # value is common there
        if fill_collar(small, value, max(ds.width, ds.height) / 256) is None and not (
                np.count_nonzero(small == value) >= SCAN_GAPS_MIN_SHARE * small.size and value == 0):
            continue
        full = decimated(ds, band, FILL_SEARCH_PX) if full is None else full
        data, f = full
        fill = fill_collar(data, value, f)
        if fill is None:
            continue
        if f > 1:
            from scipy import ndimage

            fill = ndimage.binary_dilation(fill)
        return Collar(fill, value, float(np.count_nonzero((data == value) & ~fill)) / data.size)
    return None
