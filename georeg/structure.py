"""How well two images' structure agrees through a model, measured without the tie points:
:class:`StructureProbe` correlates the oriented-gradient channels of the reference with those of
the target seen through a model, over the overlap or windows spread over it (:func:`_windows`,
:func:`spread_windows`). ``auto``'s structural check, the polish and the verdict ask it.
"""

from __future__ import annotations

import numpy as np
import torch
from rasterio.windows import Window

from .estimation import FittedModel, apply_h
from .features import oriented_gradient_channels
from .grid import Grid
from .matching import sample_through
from .preprocess import preprocess
from .raster import RasterSource
from .runtime import in_order

# An overlap of more than LATTICE_FROM_PX^2 pixels is probed in a LATTICE x LATTICE lattice of
# LATTICE_WINDOW_PX windows instead of four 384 px ones. Four windows hold 0.5% of a Sentinel-2
# tile and measure their own ground: the residual shifts of real SAR scenes vary by 1-3 px between
# them (terrain, the S1/S2 pairs' 1024 px quarters), so the polish moved the 10980 px mosaic's
# model by what four windows said, (0.69, 0.57) px from 1616 tie points' consensus, and a 4 x 4
# lattice by (-0.79, -0.72); 6 x 6 windows of 256 px: (-0.04, 0.14), 8 x 8: (0.01, -0.03).
LATTICE_FROM_PX = 2048
LATTICE = 6
LATTICE_WINDOW_PX = 256


def _windows(overlap: Window, size: int = 384, max_full: int = 640) -> list[Window]:
    w, h = int(overlap.width), int(overlap.height)
    if w <= max_full and h <= max_full:
        return [overlap]
    if w * h > LATTICE_FROM_PX ** 2:
        return spread_windows(overlap, LATTICE, LATTICE_WINDOW_PX)
    out = []
    for fx in (0.25, 0.75):
        for fy in (0.25, 0.75):
            cw, ch = min(size, w), min(size, h)
            out.append(Window(int(overlap.col_off + fx * w - cw / 2), int(overlap.row_off + fy * h - ch / 2), cw, ch))
    return out


def spread_windows(overlap: Window, k: int, size: int) -> list[Window]:
    """``k`` x ``k`` square windows of ``size`` px (at most the overlap's side) centred on a
    regular lattice over the overlap, kept inside it."""
    w, h = int(overlap.width), int(overlap.height)
    size = min(size, w, h)
    out = []
    for fy in (np.arange(k) + 0.5) / k:
        for fx in (np.arange(k) + 0.5) / k:
            cx = min(max(fx * w, size / 2), w - size / 2)
            cy = min(max(fy * h, size / 2), h - size / 2)
            out.append(Window(int(overlap.col_off + cx - size / 2), int(overlap.row_off + cy - size / 2), size, size))
    return out


def _features(img: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return oriented_gradient_channels(torch.from_numpy(img)[None, None], cell_sigma=1.0)[0].numpy()


class StructureProbe:
    """Correlation of the oriented-gradient channels of the reference and of the target seen
    through a model, over the overlap (or four 384 px windows spread over a large one, a lattice of
    windows over one beyond LATTICE_FROM_PX: :func:`_windows`), at full
    resolution. The reference side is computed once; each model costs one resampling of the target."""

    def __init__(self, ref: RasterSource, tgt: RasterSource, grid: Grid, overlap: Window,
                 windows: list[Window] | None = None, two_threads: bool = False):
        """``two_threads``: the windows' features are computed two at a time (see
        :func:`georeg.runtime.in_order`; the pipeline asks
        :func:`georeg.runtime.directions_side_by_side`)."""
        self.tgt, self.grid, self.two_threads = tgt, grid, two_threads
        self._by_model: dict[int, tuple[FittedModel, float]] = {}  # local models
        self._by_matrix: dict[bytes, float] = {}
        read = ((win, *ref.read_on_grid(grid, win)) for win in (_windows(overlap) if windows is None else windows))

        def features(item):
            win, r, rv = item
            if rv.sum() < 256:
                return None
            return win, rv, _features(preprocess(r, rv, ref.modality, ref.float_values))

        self.windows = [w for w in in_order(features, read, two_threads) if w is not None]

    def model_agreement(self, model: FittedModel) -> float:
        """:meth:`agreement` through ``model``, computed once per model (auto's structural check,
        the polish and the verdict ask for the same ones)."""
        if model.local is None:
            return self.matrix_agreement(model.matrix)
        key = id(model)
        if key not in self._by_model:
            self._by_model[key] = (model, self.agreement(model.inverse))
        return self._by_model[key][1]

    def matrix_agreement(self, matrix: np.ndarray) -> float:
        """:meth:`agreement` through a 3x3 model ``matrix`` (target -> reference px), computed once
        per matrix."""
        key = np.asarray(matrix, np.float64).tobytes()
        if key not in self._by_matrix:
            inv = np.linalg.inv(matrix)
            self._by_matrix[key] = self.agreement(lambda xy: apply_h(inv, xy))
        return self._by_matrix[key]

    def _centred(self, inverse):
        """Per window holding 64 pixels or more of both images: the reference's and the target's
        (seen through ``inverse``) oriented-gradient channels, each less its mean over the
        window's pixels of both eroded by 4 (float32, the means summed in float64), and those
        pixels as 0/1 weights (float32)."""
        from scipy import ndimage

        def centred(item):
            rv, fr, t, tv = item
            wgt = ndimage.binary_erosion(rv & tv, iterations=4)
            n = int(np.count_nonzero(wgt))
            if n < 64:
                return None
            ft = _features(preprocess(t, tv, self.tgt.modality, self.tgt.float_values))
            w = wgt.astype(np.float32)
            return fr - _weighted_mean(fr, w, n), ft - _weighted_mean(ft, w, n), w

        read = ((rv, fr, *sample_through(self.tgt, self.grid, win, inverse)) for win, rv, fr in self.windows)
        yield from (c for c in in_order(centred, read, self.two_threads) if c is not None)

    def offset(self, inverse, max_lag: int = 3, min_pixels: int = 0) -> dict | None:
        """The residual shift (reference px) at which the structure of the target seen through
        ``inverse`` (reference px -> target px) agrees best with the reference's: the target's
        content that the model puts at ``p + shift`` belongs at ``p``. The correlation of the
        oriented-gradient channels is summed over the probe's windows, climbed from no shift over
        whole-pixel lags, and a parabola through the peak and its neighbours places it between
        pixels. Returns {"shift_px": [dx, dy], "agreement": at the peak's whole-pixel lag,
        "agreement_at_zero": at no shift}, or None when the windows hold fewer than ``min_pixels``
        of both images (:attr:`compared_pixels` says how many) or the climb reaches ``max_lag`` (no
        peak near the model: nothing to polish)."""
        lag = max_lag
        pairs = []
        den_r = den_t = 0.0
        self.compared_pixels = 0
        for a, b, wgt in self._centred(inverse):
            if min(wgt.shape) <= 4 * lag:
                continue
            a, b = a * wgt, b * wgt
            h, w = wgt.shape
            core = np.ascontiguousarray(a[:, lag:h - lag, lag:w - lag])
            pairs.append((core, b))
            self.compared_pixels += int(np.count_nonzero(wgt))
            den_r += float(np.einsum("ijk,ijk->", core, core))
            den_t += float(np.einsum("ijk,ijk->", b[:, lag:h - lag, lag:w - lag], b[:, lag:h - lag, lag:w - lag]))
        if not pairs or den_r <= 0 or den_t <= 0 or self.compared_pixels < min_pixels:
            return None
        norm = np.sqrt(den_r * den_t)
        memo: dict[tuple[int, int], float] = {}

        def corr(dx: int, dy: int) -> float:
            if (dx, dy) not in memo:
                memo[dx, dy] = sum(float(np.einsum("ijk,ijk->", c, b[:, lag + dy:b.shape[1] - lag + dy,
                                                                  lag + dx:b.shape[2] - lag + dx]))
                                   for c, b in pairs) / norm
            return memo[dx, dy]

        x = y = 0
        while True:
            best = max(((x + i, y + j) for i in (-1, 0, 1) for j in (-1, 0, 1)), key=lambda q: corr(*q))
            if best == (x, y):
                break
            x, y = best
            if max(abs(x), abs(y)) >= lag:
                return None

        def vertex(m: float, c: float, p: float) -> float:
            d = m - 2 * c + p
            return 0.0 if d >= 0 else float(np.clip(0.5 * (m - p) / d, -0.5, 0.5))

        c = corr(x, y)
        return {"shift_px": [x + vertex(corr(x - 1, y), c, corr(x + 1, y)),
                             y + vertex(corr(x, y - 1), c, corr(x, y + 1))],
                "agreement": c, "agreement_at_zero": corr(0, 0)}

    def agreement(self, inverse) -> float:
        """``inverse``: reference px -> target px (None: as georeferenced)."""
        num = den_r = den_t = 0.0
        for a, b, wgt in self._centred(inverse):  # sums of products in float64, no float64 copies
            aw = a * wgt
            num += float(np.einsum("ijk,ijk->", aw, b, dtype=np.float64))
            den_r += float(np.einsum("ijk,ijk->", aw, a, dtype=np.float64))
            b *= wgt  # b is this window's own array
            den_t += float(np.einsum("ijk,ijk->", b, b, dtype=np.float64))
        return float(num / np.sqrt(den_r * den_t)) if den_r > 0 and den_t > 0 else 0.0


def _weighted_mean(f: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(C, 1, 1) float32 means of the channels of ``f`` over the ``n`` pixels where ``w`` is 1,
    summed in float64."""
    return (np.einsum("ijk,jk->i", f, w, dtype=np.float64) / n).astype(np.float32)[:, None, None]
