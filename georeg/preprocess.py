"""Per-modality preprocessing: (H, W) float32 + (H, W) bool valid -> (H, W) float32 in about [0, 1].

- optical: robust percentile stretch.
- sar: linear power/amplitude floats go to dB; then a Lee speckle filter; then the stretch.
- thermal: light Gaussian denoising; then the stretch.
Invalid pixels never enter the statistics. Those in small holes (scattered NaN or -inf of a dB
image whose linear power was 0, masked cloud pixels) take the mean of the valid pixels around
them, so that they do not become dots that keypoints and gradients take for the scene's
structure; the others (outside the footprint, large masked areas) are set to 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MODALITY_STEPS = {
    "optical": "percentile stretch 1-99%",
    "sar": "dB for non-negative float (linear) data, 5x5 Lee speckle filter, percentile stretch 1-99%",
    "thermal": "Gaussian sigma 0.7, percentile stretch 1-99%",
}


def robust_stretch(img: np.ndarray, valid: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Map the [lo, hi] percentiles of the valid pixels to [0, 1] and clip."""
    vals = img[valid]
    if vals.size < 16:
        return np.zeros_like(img, dtype=np.float32)
    if vals.size > 2_000_000:
        vals = vals[:: vals.size // 1_000_000]
    p0, p1 = np.percentile(vals, [lo, hi])
    scale = 1.0 / max(float(p1 - p0), 1e-6)
    out = np.clip((img - p0) * scale, 0.0, 1.0).astype(np.float32)
    out[~valid] = 0.0
    return out


def lee_filter(img: np.ndarray, valid: np.ndarray, size: int = 5) -> np.ndarray:
    """Lee speckle filter: local mean plus a variance-weighted share of the local detail."""
    w = valid.astype(np.float32)
    x = np.where(valid, img, 0.0).astype(np.float32)
    n = ndimage.uniform_filter(w, size) + 1e-6
    mean = ndimage.uniform_filter(x, size) / n
    sq = ndimage.uniform_filter(x * x, size) / n
    var = np.maximum(sq - mean * mean, 0.0)
    noise = float(np.median(var[valid])) if valid.any() else 0.0
    gain = var / np.maximum(var + noise, 1e-12)
    return (mean + gain * (x - mean)).astype(np.float32)


def to_db(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """10*log10 of linear SAR values, with a floor at the 0.1 percentile of the positive ones."""
    pos = img[valid & (img > 0)]
    floor = float(np.percentile(pos, 0.1)) if pos.size else 1e-6
    return (10.0 * np.log10(np.maximum(img, max(floor, 1e-10)))).astype(np.float32)


def small_holes(valid: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Invalid pixels whose surroundings are mostly valid (at least half of the Gaussian weight of
    ``sigma``): scattered NaN, -inf or masked pixels and thin cracks, not the area outside a
    footprint or a large masked area."""
    if valid.all():
        return np.zeros_like(valid)
    return ~valid & (ndimage.gaussian_filter(valid.astype(np.float32), sigma, truncate=3.0) >= 0.5)


def fill_small_holes(img: np.ndarray, valid: np.ndarray, holes: np.ndarray | None = None,
                     sigma: float = 2.0) -> np.ndarray:
    """``img`` with its :func:`small_holes` (or ``holes``) set to the Gaussian-weighted mean of the
    valid pixels around them, and its other invalid pixels to 0."""
    if valid.all():
        return img
    holes = small_holes(valid, sigma) if holes is None else holes
    out = np.where(valid, img, 0.0).astype(np.float32)
    if holes.any():
        num = ndimage.gaussian_filter(out, sigma, truncate=3.0)
        den = ndimage.gaussian_filter(valid.astype(np.float32), sigma, truncate=3.0)
        out[holes] = num[holes] / np.maximum(den[holes], 1e-6)
    return out


def preprocess(img: np.ndarray, valid: np.ndarray, modality: str, dtype_is_float: bool,
               holes: np.ndarray | None = None) -> np.ndarray:
    """Normalise one image for matching; see the module docstring for the steps. ``holes``: the
    :func:`small_holes` of ``valid`` when the caller has them."""
    if img.shape != valid.shape or img.ndim != 2:
        raise ValueError(f"expected (H, W) image and mask of one shape; got {img.shape} and {valid.shape}")
    x = img.astype(np.float32, copy=False)
    if modality == "sar":
        if dtype_is_float and valid.any() and float(x[valid].min()) >= 0 and float(x[valid].max()) < 1e5:
            x = to_db(x, valid)
        x = lee_filter(x, valid, 5)
    elif modality == "thermal":
        x = ndimage.gaussian_filter(x, 0.7)
    return fill_small_holes(robust_stretch(x, valid), valid, holes)
