"""Which sensor made a raster: optical, SAR or thermal, decided from the data, the file name last.

Evidence, strongest first:
1. metadata: band descriptions, tags and units (``VH``, ``sigma0``, ``dB``, ``brightness
   temperature``, ``K``, a wavelength beyond 3 micrometres, ...);
2. the values of float data: dB-like backscatter (mostly negative, within -50..+20), linear power
   (non-negative with a heavy right tail), brightness temperature in kelvin (150-400);
3. three or more bands: an optical composite;
4. the pixels' texture, for single-band integer data: first the signature of few-look speckle in
   linear (amplitude or power) data, multiplicative noise as rough in the flattest areas as
   physics says (see :func:`speckle_signature`); then a small logistic model over thirteen
   texture statistics and their pairwise products, fitted on real bands at their own resolution
   and 1.4-2.5x coarser (``training/modality.py``, coefficients in ``modality_model.json``):
   speckle is spatially near-white and present in flat areas, thermal bands are smooth;
5. words in the file name, when the texture model is less than TEXTURE_CONFIDENT (80%) sure.

:func:`detect_modality` returns the decision with the evidence behind it, for the report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

MODALITY_CLASSES = ("optical", "sar", "thermal")
LOOK_UP = object()  # a palette argument not given: the function looks the colour table up itself
# Below this the file name may break the tie. The texture model is the weakest evidence: fitted
# without one of the five datasets it gets 59% of that dataset's bands right, and a SAR scene
# averaged to 30 m keeps too little speckle for it to be sure (its largest probability 0.52-0.63)
TEXTURE_CONFIDENT = 0.8

# Fully developed speckle has a coefficient of variation of 1/sqrt(L) in intensity and 0.52/sqrt(L)
# in amplitude (L looks), whatever the brightness. A block CV of at least SPECKLE_CV in the flattest
# tenth of a band (intensity up to about 11 looks, amplitude up to 3) was never reached by an
# optical or thermal band of ../shared/data (815 bands: at most 0.24 and 0.21); 18 real SAR bands
# reach it, all of which the texture model calls SAR too.
SPECKLE_CV = 0.30
# log deviation against log mean: multiplicative noise grows with the mean (slope 1 where the
# blocks are flat; texture inside the blocks moves it either way)
SPECKLE_SLOPE = (0.5, 1.6)
SPECKLE_CORR = 0.6
# a texture sample with this share of its pixels or more at its maximum value is clipped (an 8-bit
# export stretched too far): what is left of its texture says little. Sentinel-1 VH scenes stretched
# 2-3x (34-95% at 255) were read as thermal or optical; 1.5x (11-12%) still as SAR. The reading is
# kept and the user told (see benchmarks/HISTORY.md, 2026-12-06, sixth session)
SATURATED_SHARE = 0.2
# the texture statistics' local means use a window's valid pixels alone, where at least this share of
# them is valid: missing pixels (a footprint's outside, Landsat 7's scan-line gaps) held 0 and
# dragged the means down, so that pixels along every gap counted as bright and a gapped thermal
# band read as optical (benchmarks/HISTORY.md, 2026-12-07, fourth session)
VALID_WINDOW_SHARE = 0.75
# temperature in degrees Celsius (LST products, drone thermal cameras) has dB-like values when it is
# cold, and no speckle: Landsat 8 B10 as Celsius has lag-1 correlation 0.994 and flat-area noise
# 0.001, S1/S2 dB scenes 0.78-0.86 and 0.025-0.04, even after a 5x5 boxcar 0.97 and 0.006
SMOOTH_RHO1 = 0.985
SMOOTH_NOISE = 0.003
# whole numbers over a short span (degrees Celsius in whole units: -8 to 24; a thermal band stretched
# to 8 bits) add steps to the flattest areas and noise to neighbours: Landsat 8 B10 in whole degrees
# has flat-area noise 0.004-0.006, about a fifth of one step of its range, and lag-1 correlation
# 0.983-0.995 (0.987-0.996 in hundredths). So much more is allowed, in steps of the range
QUANTUM_NOISE = 0.25
QUANTUM_RHO1 = 0.1
CELSIUS = (-60.0, 70.0, 5.0)  # p1 at least, p99 at most, and a span of at least this many degrees

# whole words, matched after "_" and "." become spaces: "s10" (a tile, a scene number) is not "s1",
# "b100" not "b10"; "sigma_0" is not matched: "gamma 0.8" or "sigma 0.5" in processing tags is no SAR
_SAR_WORDS = re.compile(
    r"(?<![a-z0-9])(s1[ab]?|sar|vv|vh|hh|hv|grd[hm]?|slc|sigma0|gamma0|beta0|backscatter|radarsat\d?|rs2|"
    r"rcm|alos\d?|palsar\d?|gf3|gaofen3|iceye|capella|umbra|nisar|saocom|asar|uavsar|terrasar|tsx|cosmo|csk|sentinel-?1[ab]?|radar)(?![a-z0-9])")
_THERMAL_WORDS = re.compile(
    r"(?<![a-z0-9])(b10|b11|tirs|thermal|lwir|tir|ir|infrared|bt|lst|flir|ecostress|"
    r"brightness temperature|surface temperature|kelvin)(?![a-z0-9])")


@dataclass(frozen=True)
class ModalityDecision:
    modality: str
    by: str  # option, metadata, values, bands, pixels, file name, default
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"decided": self.modality, "by": self.by, **self.evidence}


# near-, short-wave and colour infrared are reflected light (optical bands), not thermal emission:
# "Near Infrared" in a band description, "near-infrared.tif", "NIR", a colour-infrared aerial photo
_REFLECTED_IR = re.compile(
    r"(?<![a-z0-9])(near|short[ -]?wave|colou?r)[ -]?(infra[ -]?red|ir)(?![a-z])")


def _words(text: str) -> str | None:
    text = _REFLECTED_IR.sub(" ", text.lower().replace("_", " ").replace(".", " "))
    if _SAR_WORDS.search(text):
        return "sar"
    if _THERMAL_WORDS.search(text):
        return "thermal"
    return None


def guess_from_name(path: str) -> str | None:
    """'sar' or 'thermal' from words in a file name, else None."""
    return _words(Path(path).name)


def _grey_table(ds, band: int) -> bool:
    """Whether ``band``'s colour table holds greys only (red, green and blue within 2 of each
    other in every opaque entry)."""
    try:
        cmap = ds.colormap(band)
    except ValueError:  # no colour table after all
        return False
    return all(max(r, g, b) - min(r, g, b) <= 2 for r, g, b, a in cmap.values() if a > 0)


def _metadata_text(ds, bands: list[int]) -> str:
    """The dataset's tags and the descriptions and tags of the bands read (not of the others: the
    near-infrared fourth band of an RGBN file says nothing about its bands 1-3)."""
    parts = [str(ds.descriptions[b - 1]) for b in bands if ds.descriptions[b - 1]]
    parts += [f"{k} {v}" for k, v in ds.tags().items()]
    for b in bands:
        parts += [f"{k} {v}" for k, v in ds.tags(b).items()]
    return " ".join(parts)


def _from_metadata(ds, bands: list[int], palette=None) -> tuple[str | None, dict]:
    """What the metadata say (``palette``: the first band's :func:`georeg.bands.palette_luminance`)."""
    from rasterio.enums import ColorInterp

    if ds.colorinterp[bands[0] - 1] == ColorInterp.palette:
        if palette is not None and palette[2]:
            # one band rendered through a colour ramp (a web map's temperature layer): the positions
            # along the ramp say what it is, as a plain band's values would
            return None, {"colour_table": "a colour ramp: read as the positions of its colours along it"}
        if not _grey_table(ds, bands[0]):  # a picture in colours: a scanned map, a paletted PNG
            return "optical", {"colour_table": True}
        # a grey image stored with a table of greys (a quicklook written as paletted PNG or GIF):
        # its grey levels (the sample's luminance) say what it is, as a plain grey band's would
        return None, {"colour_table": "greys: read as the grey levels they show"}
    text = _metadata_text(ds, bands)
    units = " ".join(str(u) for u in (ds.units or ()) if u).strip().lower()
    ev: dict = {}
    if units:
        ev["units"] = units
        if units in ("k", "kelvin", "degc", "celsius", "c") or "kelvin" in units:
            return "thermal", ev
        if units in ("db", "decibel") or "sigma" in units:
            return "sar", ev
    wl = re.search(r"wavelength\S*\s+([0-9.]+)", text.lower())
    if wl:
        value = float(wl.group(1))
        micro = value / 1000.0 if value > 100 else value  # nanometres or micrometres
        ev["wavelength_um"] = micro
        if micro >= 3.0:
            return "thermal", ev
        return "optical", ev
    word = _words(text)
    if word == "thermal" and len(bands) >= 3:
        # thermal bands are single; three bands read as colour with an "IR" among them are a
        # colour-infrared picture (an aerial CIR orthophoto): the band count decides
        ev["metadata_word_ignored"] = "thermal (3 bands read as colour)"
        return None, ev
    if word:
        ev["metadata_word"] = word
    return word, ev


def _from_values(sample: np.ndarray, valid: np.ndarray, is_float: bool) -> tuple[str | None, dict]:
    if not is_float or valid.sum() < 256:
        return None, {}
    v = sample[valid].astype(np.float64)
    p1, p50, p99 = np.percentile(v, [1, 50, 99])
    ev = {"p1": float(p1), "median": float(p50), "p99": float(p99)}
    if p1 >= -60.0 and p99 <= 25.0 and p50 < 0.0:
        ev["reading"] = "dB-like backscatter"
        return "sar", ev
    if p1 >= 150.0 and p99 <= 400.0 and (p99 - p1) < 120.0:
        ev["reading"] = "brightness temperature in kelvin"
        return "thermal", ev
    if v.min() >= 0.0 and 0 < p50 < 2.0 and p99 / max(p50, 1e-12) > 4.0:
        ev["reading"] = "linear power or amplitude with a heavy tail"
        return "sar", ev
    return None, ev


def _reading_of_values(ds, band: int, sample: np.ndarray, valid: np.ndarray, texture: Callable[[], dict | None]
                       ) -> tuple[str | None, dict]:
    """The modality that real-valued pixels (float, or integers GDAL scales) tell by their range
    (:func:`_from_values`), with degrees Celsius told from dB by their smoothness (``texture()``:
    the sample's :func:`texture_features`, asked for only when the range could be Celsius). Signed
    integers below 0 are read the same way in whole, tenths or hundredths of a unit
    (:func:`_integer_celsius`)."""
    if not (ds.dtypes[band - 1].startswith("float") or scaled(ds, band)):
        return _integer_celsius(ds.dtypes[band - 1], sample, valid, texture)
    label, ev = _from_values(sample, valid, True)
    lo, hi, span = CELSIUS
    if (not ev or label not in (None, "sar") or "heavy tail" in ev.get("reading", "")
            or not (ev["p1"] >= lo and ev["p99"] <= hi and ev["p99"] - ev["p1"] >= span)):
        return label, ev
    if _smooth(texture()):
        label = "thermal"
        ev["reading"] = (f"temperature in degrees Celsius: values of {ev['p1']:.0f} to {ev['p99']:.0f} in a "
                         f"smooth image without speckle ({_smoothness(texture())})")
    return label, ev


def _smooth(feats: dict | None) -> bool:
    """Smoother than any SAR band, at its own resolution or averaged (SMOOTH_RHO1, SMOOTH_NOISE, less
    strict by QUANTUM_RHO1 and QUANTUM_NOISE of a step where the values are whole numbers:
    ``feats["quantum"]``)."""
    step = 0.0 if feats is None else feats.get("quantum", 0.0)
    return (feats is not None and feats["rho1"] >= SMOOTH_RHO1 - QUANTUM_RHO1 * step
            and feats["flat_noise"] <= SMOOTH_NOISE + QUANTUM_NOISE * step)


def _smoothness(feats: dict) -> str:
    return f"lag-1 correlation {feats['rho1']:.3f}, flat-area noise {feats['flat_noise']:.4f}"


def _integer_celsius(dtype: str, sample: np.ndarray, valid: np.ndarray, texture: Callable[[], dict | None]
                     ) -> tuple[str | None, dict]:
    """Thermal for signed integers holding values below 0 that read as degrees Celsius in whole
    units, tenths or hundredths (a land-surface temperature or a thermal camera's export as int16:
    -1937 to 2985 for Landsat 8 B10 over clouds in hundredths) in a smooth image: no reflectance or
    amplitude is negative, and dB in integers (S1 backscatter x 10 or x 100) keeps its speckle. The
    texture model, fitted on data whose 0 means no signal, read such bands as SAR."""
    if not dtype.startswith("int") or valid.sum() < 256:
        return None, {}
    p1, p99 = (float(p) for p in np.percentile(sample[valid], [1, 99]))
    lo, hi, span = CELSIUS
    if p1 >= 0:
        return None, {}
    ev = {"p1": p1, "p99": p99}
    for unit in (1, 10, 100):
        if p1 / unit >= lo and p99 / unit <= hi and (p99 - p1) / unit >= span:
            if _smooth(texture()):
                ev["reading"] = (f"temperature in {'degrees' if unit == 1 else f'1/{unit} degrees'} Celsius: "
                                 f"signed integers of {p1:.0f} to {p99:.0f} in a smooth image without speckle "
                                 f"({_smoothness(texture())})")
                return "thermal", ev
            break
    return None, ev


def texture_features(sample: np.ndarray, valid: np.ndarray) -> dict[str, float] | None:
    """Texture statistics of an (H, W) sample (ideally about 512 px, native resolution).

    Five of fine texture: lag-1 and lag-2 autocorrelation, the 10th percentile of local Laplacian
    energy over the value range (noise that remains in the flattest areas), the kurtosis of the
    Laplacian (natural images are sparse, speckle is not) and the flattest areas' share of the
    median local energy. Eight more that tell multiplicative speckle from sensor noise and scene
    texture: the 10th percentile of the coefficient of variation of 8x8 blocks (speckle keeps even
    flat areas rough in proportion to their brightness), the slope and correlation of log block
    deviation against log block mean, how the Laplacian energy changes from full resolution to 2x
    and from 2x to 4x averaging (white speckle loses most of it at once, natural scenes follow a
    power law), the mean orientation coherence of the gradients (fields, roads and coasts are
    oriented, speckle is not), the skewness of the values and the share of isolated bright pixels
    (point scatterers)."""
    # non-finite pixels (invalid) become 0, as nodata is in the training samples: the running
    # sums of the box filters would carry a NaN along the rest of its row and column
    x = np.nan_to_num(sample.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    v = valid & np.isfinite(sample)
    if v.sum() < 1024:
        return None
    p1, p99 = np.percentile(x[v], [1, 99])
    rng = max(p99 - p1, 1e-9)
    m, var = x[v].mean(), x[v].var() + 1e-12

    def rho(k: int) -> float:
        vv, vh = v[:, k:] & v[:, :-k], v[k:, :] & v[:-k, :]
        a = (((x[:, k:] - m) * (x[:, :-k] - m))[vv]).mean() if vv.any() else 0.0
        b = (((x[k:, :] - m) * (x[:-k, :] - m))[vh]).mean() if vh.any() else 0.0
        return float(0.5 * (a + b) / var)

    lap, vl = _laplacian(x, v)
    if vl.sum() < 256:
        return None
    # the array's one-pixel frame, where no Laplacian is defined, counts as flat (0), as it always did
    lapf, vlf = np.zeros_like(x), np.ones(x.shape, bool)
    lapf[1:-1, 1:-1], vlf[1:-1, 1:-1] = np.abs(lap) * vl, vl
    loc, has_lap = _valid_mean(lapf, vlf, 9)
    mean9, has_x = _valid_mean(x, v, 9)
    loc, mean9 = loc[4::9, 4::9], mean9[4::9, 4::9]
    ok = has_lap[4::9, 4::9] & has_x[4::9, 4::9] & (mean9 > p1 + 0.05 * rng) & (mean9 < p99 - 0.05 * rng)
    if ok.sum() < 10:
        return None
    p10, p50 = np.percentile(loc[ok], [10, 50]) / rng
    lv = lap[vl] - lap[vl].mean()
    kurt = float((lv ** 4).mean() / ((lv ** 2).mean() ** 2 + 1e-12))
    out = {"rho1": rho(1), "rho2": rho(2), "flat_noise": float(p10), "laplacian_kurtosis": kurt,
           "flat_share": float(p10 / max(p50, 1e-9))}
    # one step of whole-number values over the range (0 for other values): how coarse the steps are
    out["quantum"] = float(1.0 / rng) if not np.any(np.mod(x[v], 1.0)) else 0.0
    out.update(_speckle_features(x, v, p1, rng, np.abs(lap[vl]).mean()))
    return out


def _valid_mean(x: np.ndarray, v: np.ndarray, size: int, least: float = VALID_WINDOW_SHARE
                ) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the valid pixels of ``x`` in each ``size`` x ``size`` window, and whether at
    least ``least`` of the window's pixels are valid (where not, the mean is 0). Missing pixels
    (nodata, scan-line gaps) must not drag a window's mean towards their fill value."""
    share = ndimage.uniform_filter(v.astype(np.float64), size)
    ok = share >= least - 1e-9
    total = ndimage.uniform_filter(np.where(v, x, 0.0), size)
    return np.where(ok, total / np.maximum(share, 1e-9), 0.0), ok


def _laplacian(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 4-neighbour Laplacian of the interior and where all five pixels are valid."""
    lap = x[1:-1, 1:-1] - 0.25 * (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:])
    return lap, v[1:-1, 1:-1] & v[:-2, 1:-1] & v[2:, 1:-1] & v[1:-1, :-2] & v[1:-1, 2:]


def _blocks(x: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k x k blocks: their means, standard deviations and whether all their pixels are valid."""
    h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    xb = x[:h, :w].reshape(h // k, k, w // k, k)
    return xb.mean(axis=(1, 3)), xb.std(axis=(1, 3)), v[:h, :w].reshape(h // k, k, w // k, k).all(axis=(1, 3))


def _speckle_features(x: np.ndarray, v: np.ndarray, p1: float, rng: float, lap1: float) -> dict[str, float]:
    """The eight statistics of :func:`texture_features` beyond the first five (see there)."""
    mu, sd, vb = _blocks(x, v, 8)
    ok = vb & (mu > p1 + 0.02 * rng)
    cv10 = slope = corr = 0.0
    if ok.sum() > 20:
        cv10 = float(np.percentile(sd[ok] / np.maximum(mu[ok], 1e-6), 10))
        with np.errstate(invalid="ignore"):  # negative means (dB in integers): NaN, and no slope below
            lm, ls = np.log(mu[ok] + 1e-3), np.log(sd[ok] + 1e-3)
        if lm.std() > 1e-6 and ls.std() > 1e-6:
            slope = float(np.polyfit(lm, ls, 1)[0])
            corr = float(np.corrcoef(lm, ls)[0, 1])
    energy = [lap1]
    for k in (2, 4):
        d, _, dv = _blocks(x, v, k)
        lap, vl = _laplacian(d, dv)
        energy.append(np.abs(lap[vl]).mean() if vl.sum() > 50 else energy[-1])
    e1, e2, e4 = (max(float(e), 1e-9) for e in energy)
    gy, gx = np.gradient(ndimage.uniform_filter(x, 3))
    jxx, jyy, jxy = (ndimage.uniform_filter(a, 9) for a in (gx * gx, gy * gy, gx * gy))
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-9)
    inner = ndimage.binary_erosion(v, iterations=6)
    vals = x[v]
    s = vals.std() + 1e-9
    mean5, whole5 = _valid_mean(x, v, 5, least=1.0)  # isolated bright pixels, among those with all 5x5 valid
    counted = whole5 & v
    bright = np.count_nonzero((x > mean5 + 0.25 * rng) & counted) / max(np.count_nonzero(counted), 1)
    return {"block_cv10": cv10, "log_sd_slope": slope, "log_sd_corr": corr,
            "energy_1_2": math.log(e1 / e2), "energy_2_4": math.log(e2 / e4),
            "coherence": float(coh[inner].mean()) if inner.any() else 0.0,
            "skewness": float(((vals - vals.mean()) ** 3).mean() / s ** 3),
            "bright_share": float(bright)}


def speckle_signature(f: dict[str, float]) -> bool:
    """Whether texture statistics ``f`` show few-look speckle in linear data: the flattest blocks
    as rough as speckle makes them (``block_cv10``), their deviation growing with their mean."""
    return (f["block_cv10"] >= SPECKLE_CV and SPECKLE_SLOPE[0] <= f["log_sd_slope"] <= SPECKLE_SLOPE[1]
            and f["log_sd_corr"] >= SPECKLE_CORR)


FEATURES = ("rho1", "rho2", "log10(flat_noise+1e-4)", "ln(laplacian_kurtosis)", "flat_share", "block_cv10",
            "log_sd_slope", "log_sd_corr", "energy_1_2", "energy_2_4", "coherence", "skewness",
            "log10(bright_share+1e-4)")


def feature_vector(f: dict[str, float]) -> np.ndarray:
    """The texture model's inputs, in its order (:data:`FEATURES`)."""
    return np.array([f["rho1"], f["rho2"], math.log10(f["flat_noise"] + 1e-4),
                     math.log(max(f["laplacian_kurtosis"], 1.0)), f["flat_share"], f["block_cv10"],
                     f["log_sd_slope"], f["log_sd_corr"], f["energy_1_2"], f["energy_2_4"], f["coherence"],
                     f["skewness"], math.log10(f["bright_share"] + 1e-4)], np.float64)


@lru_cache(maxsize=1)
def _texture_model() -> dict | None:
    path = Path(__file__).parent / "modality_model.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def pairwise_terms(z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` followed by every product of two of their columns (squares included)."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], 1)


def model_terms(v: np.ndarray, model: dict) -> np.ndarray:
    """The texture model's terms for feature vectors ``v`` (N, len(FEATURES)): the features
    standardised by the fit's mean and deviation, then, for a model with ``"terms": "pairwise"``,
    every product of two of them (squares included), all standardised again by the fit's
    ``term_mean`` and ``term_std``."""
    z = (np.atleast_2d(v) - np.array(model["mean"])) / np.array(model["std"])
    if model.get("terms", "linear") == "linear":
        return z
    return (pairwise_terms(z) - np.array(model["term_mean"])) / np.array(model["term_std"])


def texture_probabilities(f: dict[str, float], model: dict | None = None) -> dict[str, float] | None:
    """P(optical), P(sar), P(thermal) from the texture model (None when it is not shipped)."""
    model = model or _texture_model()
    if model is None:
        return None
    logits = model_terms(feature_vector(f), model)[0] @ np.array(model["weights"]).T + np.array(model["bias"])
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return {c: float(q) for c, q in zip(model["classes"], p)}


def central_window(ds, size: int = 512, blocks: tuple[int, int] = (1, 1)):
    """A size x size window at the raster's centre (smaller rasters: all of it); ``blocks`` (kx,
    ky): that many times wider and taller."""
    from rasterio.windows import Window

    w, h = min(size * blocks[0], ds.width), min(size * blocks[1], ds.height)
    return Window((ds.width - w) // 2, (ds.height - h) // 2, w, h)


# texture is read on square ground pixels: a band's pixels this many times taller than wide on the
# ground (or wider than tall) or more are averaged along the finer axis (area-weighted, so that
# each sample pixel is as wide as it is tall). Landsat 8 B10 and S1 VH scenes exported to EPSG:4326
# (square degrees) at 62-70 degrees north read as optical on their own pixels (B10 80-99.8% sure);
# see benchmarks/HISTORY.md (2026-12-06, fifth session)
SQUARE_SAMPLE_FROM = 1.25


def _ground_aspect(ds, crs=None) -> float:
    """How many times taller than wide the pixels of ``ds`` are on the ground (1: square, unknown
    or placed by GCPs/RPCs); ``crs``: the one its geotransform is in, where not the file's."""
    from .grid import Grid

    crs = crs or ds.crs
    if crs is None or ds.transform.is_identity:
        return 1.0
    try:
        return Grid(ds.transform, ds.width, ds.height, crs).ground_aspect
    except Exception:  # a CRS pyproj cannot read: its pixels as they are
        return 1.0


def _area_weights(n: int, factor: float) -> np.ndarray:
    """(n // factor, n) weights that average ``factor`` consecutive pixels (a fraction at each end)
    into one."""
    m = max(1, int(n // factor))
    edges = np.arange(m + 1) * factor
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n)[None, :]
    w = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
    return w / w.sum(1, keepdims=True)


def _squared(data: np.ndarray, valid: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """``data`` averaged along its finer axis to square ground pixels (``aspect``: pixel height over
    width on the ground); a sample pixel is valid where all it averages is."""
    transpose = aspect < 1
    if transpose:
        data, valid, aspect = data.T, valid.T, 1 / aspect
    w = _area_weights(data.shape[1], aspect)
    out = (np.where(valid, data, 0.0).astype(np.float64) @ w.T).astype(np.float32)
    ok = ((~valid).astype(np.float32) @ (w > 0).T.astype(np.float32)) == 0
    return (out.T, ok.T) if transpose else (out, ok)


def central_sample(ds, band: int, size: int = 512, crs=None, fill_value: float | None = None, palette=LOOK_UP
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A window of about size x size pixels at the raster's centre, native resolution (pixels much
    narrower on the ground than tall, or the other way round, averaged to about square: see
    SQUARE_SAMPLE_FROM), with its validity. Without nodata, the undeclared ``fill_value`` that
    the raster was found to hold (:class:`georeg.raster.RasterSource`'s) is invalid, or else the
    black fill around a rotated or warped image (see :func:`border_fill`). ``crs``: as
    :func:`_ground_aspect`'s; ``palette``: the band's :func:`georeg.bands.palette_luminance` where
    the caller has it (by default it is looked up)."""
    aspect = _ground_aspect(ds, crs)
    square = max(aspect, 1 / aspect) >= SQUARE_SAMPLE_FROM
    stretch = (math.ceil(aspect), 1) if square and aspect > 1 else (1, math.ceil(1 / aspect)) if square else (1, 1)
    win = central_window(ds, size, stretch)
    data = ds.read(band, window=win).astype(np.float32)
    valid = ds.read_masks(band, window=win) > 0
    from .bands import FILL_HUGE, palette_lookup, palette_luminance

    if palette is LOOK_UP:
        palette = palette_luminance(ds, band)
    if palette is not None:  # colour-table indices: their colours' luminance as RasterSource reads it
        grey, opaque = palette_lookup(palette, data.astype(np.int64))
        data, valid = grey.astype(np.float32), valid & opaque

    valid &= np.abs(data) < FILL_HUGE  # not NaN, infinite or a float fill such as -3.4e38, declared or not
    if ds.nodata is not None and not math.isnan(ds.nodata):
        valid &= data != ds.nodata
    elif fill_value is not None:
        valid &= data != fill_value
    elif valid.all():
        edges = (win.row_off == 0, win.row_off + win.height == ds.height,
                 win.col_off == 0, win.col_off + win.width == ds.width)
        valid &= ~border_fill(data, edges)
    if scaled(ds, band):  # the physical values that GDAL's scale and offset give
        data = data * np.float32(ds.scales[band - 1]) + np.float32(ds.offsets[band - 1])
    if square:
        data, valid = _squared(data, valid, aspect)
    return data, valid


def scaled(ds, band: int) -> bool:
    """Whether GDAL's metadata scales or offsets ``band``'s samples into physical values."""
    sc, of = ds.scales[band - 1], ds.offsets[band - 1]
    return bool(np.isfinite(sc) and np.isfinite(of) and (sc != 1.0 or of != 0.0))


FILL_TOLERANCE = 0.012  # of the range below the 99th percentile: JPEG leaves black fill at 0-3 of 255


FILL_MIN_SHARE = 0.002  # a fill region covers at least this share of the image (speckled dark water breaks up)


def border_fill(data: np.ndarray, edges: tuple[bool, bool, bool, bool], tolerance: float = FILL_TOLERANCE,
                widen: int = 2, value: float | None = None) -> np.ndarray:
    """The black fill of a rotated or warped image saved without nodata (PNG and JPEG exports):
    the darkest values (within ``tolerance`` of the range) in regions of at least FILL_MIN_SHARE
    of the image that touch a raster edge, widened by ``widen`` px for JPEG's ringing. ``edges``:
    whether the sample's top, bottom, left and right rows are the raster's. ``tolerance=0``: the
    minimum value exactly (the zero border of a Sentinel-1 GRD file, which declares no nodata).
    ``value``: that value exactly instead of the darkest (a fill that tools write undeclared)."""
    if value is not None:
        dark = data == value
    else:
        lo = float(data.min())
        dark = data <= lo + tolerance * (float(np.percentile(data, 99)) - lo) if tolerance > 0 else data == lo
    labels, n = ndimage.label(dark)
    if n == 0:
        return dark
    rims = [rim for rim, is_edge in zip((labels[0], labels[-1], labels[:, 0], labels[:, -1]), edges) if is_edge]
    touching = np.unique(np.concatenate(rims)) if rims else np.zeros(0, labels.dtype)
    touching = touching[touching > 0]
    # pixels of each region that touches an edge (none counted where none does)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[touching] if len(touching) else np.zeros(0, np.int64)
    fill = np.isin(labels, touching[sizes >= FILL_MIN_SHARE * data.size])
    return ndimage.binary_dilation(fill, iterations=widen) if fill.any() and widen > 0 else fill


def _checked_metadata(ds, bands: list[int], texture: Callable[[], dict | None], palette=None
                      ) -> tuple[str | None, dict]:
    """:func:`_from_metadata`, with a SAR word among three or more bands read as colour kept only
    when the first band shows speckle (``texture()``: its texture features). Such a word is often
    free text (a dataset's or project's name in the tags): an S2 RGB tagged "Optical-SAR-dataset"
    scores 0.19-0.24 SAR on the texture model, S1 VH 0.91-0.94; a VV/VH/ratio composite keeps it."""
    label, ev = _from_metadata(ds, bands, palette)
    if label == "sar" and len(bands) >= 3 and not _speckled(texture()):
        ev["metadata_word_ignored"] = "sar (3 bands read as colour, the first without speckle)"
        ev.pop("metadata_word", None)
        label = None
    return label, ev


def _speckled(feats: dict[str, float] | None) -> bool:
    """Whether a band's texture features show SAR: the few-look speckle signature, or the texture
    model's most probable class."""
    if feats is None:
        return False
    probs = texture_probabilities(feats)
    return speckle_signature(feats) or (probs is not None and max(probs, key=probs.get) == "sar")


def _texture_evidence(feats: dict | None, probs: dict | None, saturated: float) -> dict:
    """What the report says of a band's texture: its statistics, the texture model's probabilities
    and, from SATURATED_SHARE on, the share of the sample clipped at its largest value."""
    out: dict = {}
    if saturated >= SATURATED_SHARE:
        out["saturated_share"] = round(saturated, 3)
    if feats is not None:
        out["texture"] = {k: round(v, 4) for k, v in feats.items()}
    if probs is not None:
        out["texture_probability"] = {k: round(v, 3) for k, v in probs.items()}
    return out


def _saturated_share(sample: np.ndarray, valid: np.ndarray) -> float:
    """The share of the valid pixels of ``sample`` at its largest value (0 when none are valid)."""
    v = sample[valid & np.isfinite(sample)]
    return float(np.count_nonzero(v == v.max()) / v.size) if v.size else 0.0


def _palette_once(ds, bands: list[int], palette):
    """``palette`` as given, or looked up once for the metadata and the sample alike (a colour
    table's ramp costs a window read)."""
    from .bands import palette_luminance

    if palette is not LOOK_UP:
        return palette
    return palette_luminance(ds, bands[0]) if len(bands) == 1 else None


def detect_modality(ds, bands: list[int], path: str, grey_as_colour: bool = False, crs=None,
                    fill_value: float | None = None, rendered=None, palette=LOOK_UP) -> ModalityDecision:
    """Optical, SAR or thermal for an opened raster (``ds``) read through ``bands``
    (``grey_as_colour``: its bands 1-3 hold one grey image, read as band 1; ``crs``: the CRS of
    its geotransform where the user assigned one; ``fill_value``: an undeclared fill it holds;
    ``rendered``: an opened one-band copy of the band that ``bands`` render through a colour
    ramp (:mod:`georeg.ramps`), whose pixels are read in their place, ``ds`` giving the metadata;
    ``palette``: the first band's :func:`georeg.bands.palette_luminance` where the caller has it)."""
    palette = _palette_once(ds, bands, palette)
    src, band = (rendered, 1) if rendered is not None else (ds, bands[0])
    # a window read (remote: a request): only when needed
    read = cache(lambda: central_sample(src, band, crs=crs, fill_value=None if rendered is not None else fill_value,
                                        palette=palette))
    texture = cache(lambda: texture_features(*read()))  # about 90 ms: only when needed
    label, meta_ev = _checked_metadata(ds, bands, texture, palette)
    evidence: dict = {"metadata": meta_ev} if meta_ev else {}
    name_word = guess_from_name(path)
    evidence["file_name"] = name_word
    if label is not None:
        return ModalityDecision(label, "metadata", evidence)
    sample, valid = read()
    label, val_ev = _reading_of_values(src, band, sample, valid, texture)
    if val_ev:
        evidence["values"] = val_ev
    if label is not None:
        return ModalityDecision(label, "values", evidence)
    if rendered is not None:
        evidence["bands"] = "3 rendering one band through a colour ramp, read as that band"
    elif len(bands) >= 3:
        evidence["bands"] = len(bands)
        return ModalityDecision("optical", "bands", evidence)
    if grey_as_colour:
        evidence["bands"] = "3 identical: one grey image stored as colour"
    feats = texture()
    probs = texture_probabilities(feats) if feats is not None else None
    evidence.update(_texture_evidence(feats, probs, _saturated_share(sample, valid)))
    if feats is not None and speckle_signature(feats):
        evidence["reading"] = (f"few-look speckle in linear data: the flattest blocks vary by "
                               f"{feats['block_cv10']:.0%} of their mean (at least {SPECKLE_CV:.0%}), more "
                               "where brighter")
        return ModalityDecision("sar", "pixels", evidence)
    if probs is not None:
        best = max(probs, key=probs.get)
        if best == "sar" and name_word in (None, "thermal") and _smooth(feats):
            # the texture model, fitted on bands whose 0 means no signal, takes a smooth band whose 0
            # is arbitrary (a thermal band stretched to 8 bits, degrees Celsius) for SAR. No SAR band
            # at its own pixel size is this smooth; SAR resampled onto finer pixels is, and matches
            # alike when read as thermal, where a thermal band read as SAR does not (HISTORY)
            evidence["smooth"] = (f"smoother than SAR at its own pixel size ({_smoothness(feats)}): thermal "
                                  f"emission, finer pixels than its resolution")
            return ModalityDecision("thermal", "pixels", evidence)
        if probs[best] >= TEXTURE_CONFIDENT or name_word is None:
            return ModalityDecision(best, "pixels", evidence)
    if name_word is not None:
        return ModalityDecision(name_word, "file name", evidence)
    return ModalityDecision("optical", "default", evidence)
