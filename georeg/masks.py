"""Which pixels a mask raster the user gives (``--ref-mask``, ``--target-mask``) marks as usable.

A plain mask: its non-zero pixels are usable. A product's own quality band, handed over as it is,
is read by its product's rules instead, so that clouds are masked without a script first:

- a Sentinel-2 L2A scene classification (``SCL``, uint8 classes 0-11): not usable are no data
  (0), saturated or defective pixels (1), cloud shadows (3) and clouds of medium and high
  probability (8, 9);
- a Landsat Collection 2 pixel quality band (``QA_PIXEL``, uint16 bits): not usable where it
  flags fill (bit 0), dilated cloud (1), cloud (3) or cloud shadow (4);
- a Landsat quality band (``BQA``, uint16 bits) of Collection 1 (not usable: fill bit 0, cloud
  bit 4, cloud confidence bits 5-6 at least medium, cloud shadow confidence bits 7-8 high) or of
  Landsat 8's pre-collection products (fill bit 0, cloud confidence bits 14-15 at least medium).
  The two layouts differ; a pre-collection band uses bits 13-15 (its cloud confidence is set
  wherever it was determined), Collection 1 never does, and that decides;
- a Harmonized Landsat Sentinel-2 quality band (HLS ``Fmask``, uint8 bits): not usable where it
  flags cloud (bit 1), adjacent to cloud or shadow (bit 2) or cloud shadow (bit 3), and its fill
  (255). A band named Fmask whose values are classes 0-4 (and 255) is the Fmask algorithm's own
  output instead: cloud shadow (2) and cloud (4) and fill (255) are not usable;
- a Sentinel-2 cloud probability (``MSK_CLDPRB``, uint8 percent): not usable from 35%, where
  Sen2Cor's scene classification starts its medium-probability clouds;
- Earth Engine's Sentinel-2 ``QA60`` (bits): not usable where it flags opaque clouds (bit 10). Its
  values must be 0, 1024, 2048 or 3072; an all-zero band (Earth Engine's collections left it
  empty from 2022 to early 2024) masks nothing, with a warning.

Cirrus (SCL class 10, the cirrus bits) stays usable: thin cirrus veils the ground without hiding
its structure, and masking it would take a fifth of some scenes (18% of the Landsat scene in
``../shared/data``) for no gain.

A quality band is recognised by its product's name in the file name (``..._SCL_20m.jp2``,
``..._QA_PIXEL.TIF``, ``..._BQA.TIF``, ``HLS.L30....v2.0.Fmask.tif``, ``MSK_CLDPRB_20m.jp2``) or in
a band description (Google Earth Engine exports name their bands so; the described band is then
read), and its values must fit the product (an ``SCL`` of 8-bit classes up to 11, a Landsat band of
16-bit integers, either with some value above 1, so that a 0/1 mask made from such a band and named
after it stays a plain mask): otherwise the raster is a plain mask and a warning says so. Clouds
whose band does not already dilate them (all but ``QA_PIXEL`` and HLS ``Fmask``) are widened by
:data:`CLOUD_MARGIN_M`, as their soft edges and the haze around them are not surface either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputWarning, warn

CLOUD_MARGIN_M = 150.0  # clouds of the bands that do not dilate them widened by this much (5 Landsat pixels)
SCL_USABLE = (2, 4, 5, 6, 7, 10, 11)
SCL_CLOUD = (3, 8, 9)  # widened; 0 and 1 (no data, defective) are not
CLDPRB_CLOUD = 35  # percent: Sen2Cor's medium-probability clouds start here
QA60_VALUES = (0, 1024, 2048, 3072)
_SAMPLE_PX = 1024  # the values are checked on a read decimated to this size


@dataclass(frozen=True)
class MaskRule:
    """How a mask raster's band ``band`` is read: ``kind`` one of ``nonzero``, ``s2-scl``,
    ``landsat-qa-pixel``, ``landsat-bqa-c1``, ``landsat-bqa-pre``, ``hls-fmask``, ``fmask-classes``,
    ``s2-cldprb``, ``s2-qa60``."""

    kind: str = "nonzero"
    band: int = 1
    reason: str = "a plain mask: non-zero pixels are usable"

    @property
    def outside(self) -> int:
        """The value read beyond the mask's extent, which the rule takes as unusable (a Landsat
        band's fill bit, Fmask's fill 255, a cloud probability of 100%; 0 otherwise)."""
        return {"hls-fmask": 255, "fmask-classes": 255, "s2-cldprb": 100}.get(
            self.kind, 1 if self.kind.startswith("landsat") else 0)

    @property
    def widens_clouds(self) -> bool:
        return self.kind in ("s2-scl", "landsat-bqa-c1", "landsat-bqa-pre", "fmask-classes", "s2-cldprb", "s2-qa60")

    def usable(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(usable, cloud) boolean arrays of the band's values; ``cloud`` is what is to be widened
        (every unusable pixel is in ``~usable``; ``cloud`` is a subset of it)."""
        v = values
        if self.kind == "nonzero":
            return v != 0, np.zeros(v.shape, bool)
        if self.kind == "s2-scl":
            return np.isin(v, SCL_USABLE), np.isin(v, SCL_CLOUD)
        if self.kind == "fmask-classes":
            return np.isin(v, (0, 1, 3)), np.isin(v, (2, 4))
        if self.kind == "s2-cldprb":
            cloud = v >= CLDPRB_CLOUD
            return ~cloud, cloud
        if self.kind == "s2-qa60":
            cloud = (v.astype(np.uint32) >> 10) & 1 == 1
            return ~cloud, cloud
        if self.kind == "hls-fmask":
            v = v.astype(np.uint32)
            return (v != 255) & ((v & 0b1110) == 0), np.zeros(v.shape, bool)
        v = v.astype(np.uint32)
        fill = (v & 1) != 0
        if self.kind == "landsat-qa-pixel":
            return (v & 0b11011) == 0, np.zeros(v.shape, bool)
        if self.kind == "landsat-bqa-c1":
            cloud = ((v >> 4) & 1 == 1) | ((v >> 5) & 3 >= 2) | ((v >> 7) & 3 == 3)
        else:  # landsat-bqa-pre
            cloud = (v >> 14) & 3 >= 2
        cloud &= ~fill
        return ~(fill | cloud), cloud

    def to_dict(self) -> dict:
        return {"kind": self.kind, "band": self.band, "reason": self.reason}


_PRODUCTS = (("SCL", "s2-scl"), ("QA_PIXEL", "landsat-qa-pixel"), ("BQA", "landsat-bqa"), ("FMASK", "fmask"),
             ("MSK_CLDPRB", "s2-cldprb"), ("CLDPRB", "s2-cldprb"), ("QA60", "s2-qa60"))


def _named(text: str) -> str | None:
    """The product a file stem or band description names, by whole word (``T11SLT_..._SCL_20m``)."""
    up = text.upper()
    for name, kind in _PRODUCTS:
        digits = r"\d*" if name == "FMASK" else ""  # the Fmask algorithm's 'Fmask4'
        if re.search(rf"(?:^|[^A-Z0-9]){name}{digits}(?:$|[^A-Z0-9])", up):
            return kind
    return None


def _fits(kind: str, sample: np.ndarray, dtype: str, top: int, what: str) -> bool:
    """Whether a band named for ``kind`` holds values of that product (``what`` names it in a warning)."""
    if kind == "s2-cldprb":  # percentages: a clear scene's may be all 0
        return dtype == "uint8" and top <= 100
    if kind == "s2-qa60":  # empty (all 0) is a QA60 band too: it flags no cloud
        fits = np.issubdtype(sample.dtype, np.integer) and bool(np.isin(sample, QA60_VALUES).all())
        if fits and top == 0:
            warn(InputWarning, f"{what} is a QA60 band that flags no cloud anywhere: Earth Engine's Sentinel-2 "
                               "collections left QA60 empty from 2022 to early 2024. Nothing is masked; give the "
                               "scene's SCL or MSK_CLDPRB band instead")
        return fits
    # a 0/1 mask made from a quality band and named after it is a plain mask: its 1 is not SCL's
    # "defective" nor a Landsat band's fill bit
    return top >= 2 and {"s2-scl": dtype == "uint8" and top <= 11, "hls-fmask": dtype == "uint8",
                         "fmask-classes": dtype == "uint8"}.get(kind, dtype == "uint16")


def mask_rule(ds, path: str, role: str) -> MaskRule:
    """How to read the mask raster ``ds`` (opened from ``path``) given for the ``role`` raster."""
    kind, band, where = None, 1, ""
    for i, desc in enumerate(ds.descriptions or ()):
        kind = _named(desc or "")
        if kind:
            band, where = i + 1, f"band {i + 1} is described as {desc!r}"
            break
    if kind is None:
        stem = Path(str(path).rstrip("/")).name
        kind = _named(stem)  # whole words: 'x_BQA.TIF', 'NETCDF:"x.nc":SCL'
        where = f"its file name {stem!r}"
    scale = max(1, max(ds.width, ds.height) // _SAMPLE_PX)
    sample = ds.read(band, out_shape=(max(1, ds.height // scale), max(1, ds.width // scale)))
    dtype = ds.dtypes[band - 1]
    if kind is None:
        values = np.unique(sample)
        if ds.nodatavals[band - 1] is not None:  # the mask's own nodata is unusable, not a class
            values = values[values != ds.nodatavals[band - 1]]
        if np.issubdtype(sample.dtype, np.integer) and 2 < len(values) <= 64:
            warn(InputWarning, f"the {role} mask {path} holds {len(values)} distinct values "
                               f"({', '.join(str(x) for x in values[:8])}{', ...' if len(values) > 8 else ''}): "
                               "georeg takes every non-zero pixel as usable. A product's quality band is read "
                               "by its own rules when its name (SCL, QA_PIXEL, BQA, Fmask, MSK_CLDPRB, QA60) is in "
                               "the file name or a band description; otherwise give a mask of 0 (unusable) and 1")
        return MaskRule()
    product = {"s2-scl": "SCL", "landsat-qa-pixel": "QA_PIXEL", "landsat-bqa": "BQA", "fmask": "Fmask",
               "s2-cldprb": "MSK_CLDPRB", "s2-qa60": "QA60"}[kind]
    top = int(sample.max(initial=0))
    if kind == "fmask":  # HLS's bits, or the Fmask algorithm's classes 0-4 (255: fill)
        below_fill = int(sample[sample != 255].max(initial=0))
        kind = "fmask-classes" if below_fill <= 4 else "hls-fmask"
    fits = _fits(kind, sample, dtype, top, f"the {role} mask {path}")
    if not fits:
        expected = {"s2-scl": "8-bit classes 0-11", "hls-fmask": "8-bit quality bits",
                    "fmask-classes": "8-bit classes 0-4", "s2-cldprb": "8-bit percentages 0-100",
                    "s2-qa60": "the values 0, 1024, 2048 and 3072"}.get(kind, "16-bit quality bits")
        warn(InputWarning, f"the {role} mask {path} is named like a {product} band ({where}) but holds {dtype} "
                           f"values {int(sample.min(initial=0))} to {top}, not {expected}: it is read as a plain "
                           "mask (non-zero pixels usable)")
        return MaskRule()
    if kind == "landsat-bqa":
        kind = "landsat-bqa-pre" if top >= 1 << 13 else "landsat-bqa-c1"
    names = {"s2-scl": "a Sentinel-2 scene classification (SCL)",
             "landsat-qa-pixel": "a Landsat Collection 2 pixel quality band (QA_PIXEL)",
             "landsat-bqa-c1": "a Landsat Collection 1 quality band (BQA; bits 13-15 unused)",
             "landsat-bqa-pre": "a Landsat 8 pre-collection quality band (BQA; cloud confidence in bits 14-15)",
             "hls-fmask": "a Harmonized Landsat Sentinel-2 quality band (Fmask bits)",
             "fmask-classes": "an Fmask classification (classes 0-4, 255 fill)",
             "s2-cldprb": "a Sentinel-2 cloud probability (MSK_CLDPRB, clouds from 35%)",
             "s2-qa60": "a Sentinel-2 QA60 band (opaque clouds, bit 10)"}
    return MaskRule(kind, band, f"{names[kind]}, by {where}")


def widen(cloud: np.ndarray, pixels: int) -> np.ndarray:
    """``cloud`` dilated by ``pixels`` steps of the 4-neighbourhood (a diamond, as
    ``scipy.ndimage.binary_dilation`` with ``iterations``)."""
    if pixels <= 0 or not cloud.any():
        return cloud
    from scipy import ndimage

    return ndimage.binary_dilation(cloud, iterations=pixels)


def margin_px(ground_pixel_m: float) -> int:
    """Cloud margin in pixels of a grid whose pixels are ``ground_pixel_m`` on the ground (3 without a
    ground size: rasters without georeferencing)."""
    if not np.isfinite(ground_pixel_m) or ground_pixel_m <= 0:
        return 3
    return int(round(CLOUD_MARGIN_M / ground_pixel_m))
