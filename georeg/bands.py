"""What a raster's bands say about themselves: which are red, green and blue, a colour table's
grey levels, an alpha band, and the values tools write as fill without declaring them."""

from __future__ import annotations

import re

import numpy as np

# values that tools write as fill without declaring them as nodata, besides 0 and an integer type's
# extremes: round negatives, and any float of magnitude 1e30 or more (float32's lowest, -3.4e38,
# is ArcGIS's and many exporters' default; NetCDF's default fill is 9.97e36)
FILL_SENTINELS = (-9999.0, -999.0, -32768.0, -32767.0)
FILL_HUGE = 1e30


# band descriptions that name a colour: "Red", "red (B4)", "SR_B4 red"; not "Red Edge 1", "infra red"
_COLOUR_WORDS = {c: re.compile(rf"(?<![a-z]){c}(?![a-z])(?!.*edge)") for c in ("red", "green", "blue")}
# the band names of Sentinel-2 (B1-B12 with B8A) and Landsat 8/9 (B1-B11, SR_B1-SR_B7, ST_B10):
# red B4, green B3, blue B2. Landsat 4-7 number them B3, B2, B1, so the numbers are trusted only
# where a band name only those two missions have is present (B8A, or B10/B11)
_BAND_NUMBER = re.compile(r"(?<![a-z0-9])(?:[a-z]{2}_)?b0?(\d{1,2}a?)(?![a-z0-9])")
_NAMED_MISSION = {"8a", "10", "11"}


def colour_bands(ds) -> tuple[list[int], str] | None:
    """The red, green and blue bands (1-based, in that order) of a raster of more than three bands,
    and how they were found: from the bands' colour interpretation, from colour words in their
    descriptions, or from Sentinel-2 / Landsat 8-9 band names (a 12-band Sentinel-2 stack's bands
    1-3 are the 60 m aerosol band, blue and green). None when not each colour is found exactly once."""
    if ds.count <= 3:
        return None
    colours = ("red", "green", "blue")

    def once(is_colour) -> list[int] | None:
        found = [[i + 1 for i in range(ds.count) if is_colour(i, c)] for c in colours]
        return [f[0] for f in found] if all(len(f) == 1 for f in found) else None

    interp = [ci.name for ci in ds.colorinterp]  # each a GDAL call: read once
    desc = [(d or "").strip().lower().replace("-", "_") for d in ds.descriptions]
    numbers = [m.group(1) if (m := _BAND_NUMBER.search(d)) else None for d in desc]
    named = bool(_NAMED_MISSION & set(numbers))
    number = {"red": "4", "green": "3", "blue": "2"}
    for source, is_colour in (
            ("colour interpretation", lambda i, c: interp[i] == c),
            ("band descriptions", lambda i, c: bool(_COLOUR_WORDS[c].search(desc[i])) and "infra" not in desc[i]),
            ("Sentinel-2 / Landsat 8-9 band names", lambda i, c: named and numbers[i] == number[c])):
        bands = once(is_colour)
        if bands is not None:
            return bands, source
    return None


def fill_sentinel(value: float, dtype) -> bool:
    """Whether ``value`` in a raster of ``dtype`` is one that tools write as fill: 0, an integer
    type's lowest or highest value, a round negative such as -9999, or a float of magnitude
    FILL_HUGE or more. NaN and infinities are not: every read takes them as missing already."""
    v, dt = float(value), np.dtype(dtype)
    if not np.isfinite(v):
        return False
    if v == 0 or v in FILL_SENTINELS:
        return True
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return v in (float(info.min), float(info.max))
    return abs(v) >= FILL_HUGE


def palette_luminance(ds, band: int) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """For a band of colour-table indices (a scanned map, a paletted PNG or GIF): the luminance of
    each index's colour and whether the colour is opaque, as lookup tables, and False; None
    otherwise. Where the colours in use lie on a colour ramp (:func:`table_ramp`: a paletted
    rendering of one band, such as a web map's temperature layer), each index's position along
    the ramp (1 to 255) in place of its luminance, colours far from the ramp not opaque, and True."""
    from rasterio.enums import ColorInterp

    table = table_colours(ds, band) if ds.colorinterp[band - 1] == ColorInterp.palette else None
    if table is None:
        return None
    rgb, opaque = table
    lut = (np.array([0.299, 0.587, 0.114]) @ rgb[:, 0, :].astype(np.float64)).astype(np.float32)
    ramp = table_ramp(ds, band, table)
    if ramp is not None:
        values, near = ramp.values(rgb, opaque[None])
        lut, opaque = np.round(1 + (values[0].astype(np.float32) - 1) * 254 / 65534), near[0]
    return lut, opaque, ramp is not None


def table_colours(ds, band: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``band``'s colour table as (its colours, (3, 1, entries) uint8; whether each is opaque), or
    None when it has none."""
    try:
        cmap = ds.colormap(band)
    except ValueError:  # no colour table after all
        return None
    rgb, opaque = np.zeros((3, 1, max(cmap) + 1), np.uint8), np.zeros(max(cmap) + 1, bool)
    for i, (r, g, b, a) in cmap.items():
        rgb[:, 0, i], opaque[i] = (r, g, b), a > 0
    return rgb, opaque


def table_ramp(ds, band: int, table: tuple[np.ndarray, np.ndarray]):
    """The colour ramp (:mod:`georeg.ramps`) that the colours of ``band``'s table (``table``: as
    :func:`table_colours` gives it) in use at the raster's centre lie on, or None."""
    from .modality import central_window
    from .ramps import find_ramp

    rgb, opaque = table
    win = central_window(ds)
    index = np.clip(ds.read(band, window=win).astype(np.int64), 0, rgb.shape[2] - 1)
    return find_ramp(rgb[:, 0, :][:, index], (ds.read_masks(band, window=win) > 0) & opaque[index])


def palette_lookup(palette: tuple, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour-table indices -> (the luminance of their colours rounded to uint8 grey levels, whether
    each colour is opaque), by the tables :func:`palette_luminance` gives; an index past the table
    takes its last colour."""
    lut, opaque = palette[:2]
    idx = np.clip(index, 0, len(lut) - 1)
    return np.round(lut[idx]).astype(np.uint8), opaque[idx]


def alpha_band(ds) -> int | None:
    """The 1-based index of ``ds``'s alpha band, or None."""
    from rasterio.enums import ColorInterp

    return next((i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha), None)
