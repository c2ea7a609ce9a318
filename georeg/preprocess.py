"""Per-modality preprocessing: (H, W) float32 + (H, W) bool valid -> (H, W) float32 in about [0, 1].

- optical: robust percentile stretch.
- sar: linear power/amplitude floats go to dB; then a Lee speckle filter; then the stretch.
- thermal: light Gaussian denoising; then the stretch.
Invalid pixels are set to 0 and never enter the statistics.
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


def preprocess(img: np.ndarray, valid: np.ndarray, modality: str, dtype_is_float: bool) -> np.ndarray:
    """Normalise one image for matching; see the module docstring for the steps."""
    if img.shape != valid.shape or img.ndim != 2:
        raise ValueError(f"expected (H, W) image and mask of one shape; got {img.shape} and {valid.shape}")
    x = img.astype(np.float32, copy=False)
    if modality == "sar":
        if dtype_is_float and valid.any() and float(x[valid].min()) >= 0 and float(x[valid].max()) < 1e5:
            x = to_db(x, valid)
        x = lee_filter(x, valid, 5)
    elif modality == "thermal":
        x = ndimage.gaussian_filter(x, 0.7)
    return robust_stretch(x, valid)
