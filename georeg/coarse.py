"""Coarse pass: a global shift at reduced resolution, for offsets larger than the fine search.

Both overlaps are read onto one grid of at most ``coarse_size`` pixels a side (area-averaged),
turned into oriented-gradient channels, and cross-correlated over every shift with a partially
whitened cross-power spectrum (phase correlation with exponent 0.6), zero-padded so that shifts
do not wrap. The result is a shift in reference pixels and a peak ratio as its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window

from .errors import EmptyOverlapError
from .features import oriented_gradient_channels
from .grid import Grid
from .preprocess import preprocess
from .raster import RasterSource
from .runtime import at_once


@dataclass(frozen=True)
class CoarseResult:
    shift_px: tuple[float, float]  # target content minus reference position, reference pixels
    peak_ratio: float
    factor: float
    valid_fraction: float
    accepted: bool


def _taper(valid: np.ndarray, width: int) -> np.ndarray:
    """Smooth 0-1 weight that falls to 0 at the edges of the valid region (distance-based)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1]
    return np.clip(d / max(width, 1), 0, 1).astype(np.float32)


def coarse_shift(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap: Window, coarse_size: int,
                 max_shift_px: float | None = None, min_ratio: float = 1.5, two_threads: bool = False) -> CoarseResult:
    """Estimate the global shift of the target relative to the reference over ``overlap``.
    ``two_threads``: the two rasters are read at the same time (:func:`georeg.runtime.at_once`; a
    10980 px pair's decimated reads are most of this step).

    Raises :class:`EmptyOverlapError` when no overlap pixel is valid in both rasters, or when either
    raster is constant over the overlap (a blank band: no search could find anything in it).
    """
    sub = grid.window_grid(overlap)
    factor = max(1.0, max(sub.width, sub.height) / coarse_size)
    cg = sub.scaled(factor)
    (r, rv), (t, tv) = at_once(lambda: ref.read_on_grid(cg, resampling=Resampling.average),
                               lambda: tgt.read_on_grid(cg, resampling=Resampling.average), two_threads)
    both = rv & tv
    frac = float(both.mean())
    if not rv.any() or not tv.any() or not both.any():
        raise EmptyOverlapError(
            f"the footprints overlap but no pixel there is valid in both rasters (valid: reference "
            f"{rv.mean():.0%}, target {tv.mean():.0%} of the overlap); check nodata values, masks and bands")
    for role, data, band in (("reference", r, "--ref-band"), ("target", t, "--target-band")):
        lo, hi = float(data[both].min()), float(data[both].max())
        if lo == hi:  # averaged blocks of any real image differ; a constant band has nothing to match
            raise EmptyOverlapError(
                f"the {role} has no contrast over the overlap: every valid pixel there is {lo:g}, so there "
                f"is nothing to match; check the band ({band}), the nodata value and the file")
    # each side's channels, the two sides at the same time with ``two_threads`` (the same numbers)
    fr, ft = at_once(lambda: _centred_channels(r, rv, ref), lambda: _centred_channels(t, tv, tgt), two_threads)
    with torch.inference_mode():
        h, w = r.shape
        s = (2 * h, 2 * w)
        # channel by channel: the nine padded spectra of each side at once took 0.3 GB at 1024 px
        cross = torch.fft.rfft2(ft[0], s=s) * torch.fft.rfft2(fr[0], s=s).conj()
        for c in range(1, len(ft)):
            cross += torch.fft.rfft2(ft[c], s=s) * torch.fft.rfft2(fr[c], s=s).conj()
        cross = cross / (cross.abs() ** 0.6 + 1e-9)
        corr = torch.fft.irfft2(cross, s=s)
        corr = torch.fft.fftshift(corr)  # zero shift now at (h, w)
        if max_shift_px is not None:
            lim = max_shift_px / factor
            yy = (torch.arange(s[0]) - h).abs().view(-1, 1)
            xx = (torch.arange(s[1]) - w).abs().view(1, -1)
            corr = torch.where((yy <= lim) & (xx <= lim), corr, torch.full_like(corr, -1e9))
        flat = corr.flatten()
        best = int(torch.argmax(flat))
        by, bx = divmod(best, s[1])
        peak = float(flat[best])
        ex = 3
        masked = corr.clone()
        masked[max(by - ex, 0):by + ex + 1, max(bx - ex, 0):bx + ex + 1] = -1e9
        second = float(masked.max())
        dx, dy = _subpixel(corr, bx, by)
    ratio = peak / second if second > 0 else float("inf")
    shift = ((bx + dx - w) * (sub.width / cg.width), (by + dy - h) * (sub.height / cg.height))
    return CoarseResult((float(shift[0]), float(shift[1])), float(ratio), float(factor), frac,
                        bool(ratio >= min_ratio))


def _centred_channels(data: np.ndarray, valid: np.ndarray, src: RasterSource) -> torch.Tensor:
    """A side's oriented-gradient channels, less their mean under a taper that falls to 0 at the
    edges of its valid data, times that taper."""
    img = preprocess(data, valid, src.modality, src.float_values)
    with torch.inference_mode():
        f = oriented_gradient_channels(torch.from_numpy(img)[None, None], grad_sigma=1.0, cell_sigma=1.0)[0]
        wgt = torch.from_numpy(_taper(valid, 8))
        return (f - (f * wgt).sum((1, 2), keepdim=True) / wgt.sum()) * wgt


def _subpixel(corr: torch.Tensor, x: int, y: int) -> tuple[float, float]:
    h, w = corr.shape
    if not (0 < x < w - 1 and 0 < y < h - 1):
        return 0.0, 0.0
    c = float(corr[y, x])
    lx, rx = float(corr[y, x - 1]), float(corr[y, x + 1])
    ty, by = float(corr[y - 1, x]), float(corr[y + 1, x])
    dx = (lx - rx) / (2 * (lx - 2 * c + rx) - 1e-12)
    dy = (ty - by) / (2 * (ty - 2 * c + by) - 1e-12)
    return float(np.clip(dx, -0.5, 0.5)), float(np.clip(dy, -0.5, 0.5))
