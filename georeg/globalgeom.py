"""Global geometry: rotation over the full circle and scale over 0.5x-2x, before the fine search.

For pairs whose georeferencing cannot be trusted (un-georeferenced or loosely georeferenced
imagery, a first pass that found no clear model, or ``search="rotation"``), both rasters are read
at reduced resolution (at most ``size`` px a side over the overlap), the target is resampled
through every hypothesis of a rotation x scale grid about the overlap's centre, and each
hypothesis is scored by a partially whitened correlation of oriented-gradient channels over every
shift (the coarse pass's measure). The best hypotheses are refined on a finer grid; the one whose
correlation peak stands out most (a z-score of the peak within its own surface) wins. The best
hypotheses of the next basins are refined too and kept as runners-up: when the fine matching under
the winner's prior finds no clear model, the pipeline verifies them in turn (a magnified target
can outscore the true hypothesis at 128 px, S1/S2 PNG pair 169).

Why this route and not keypoints with orientation-normalised descriptors: structural correlation
uses every pixel of the overlap, needs no repeatable keypoints across sensors (which optical/SAR
pairs rarely have at coarse scale) and no descriptor trained for rotation; on 128 px images the
whole grid costs about a second on one CPU core. The fine matching that follows recovers the
sub-pixel geometry through this prior.

Frames: the result's ``matrix`` maps where the target (as currently georeferenced) shows a
feature to where the reference has it, in reference-grid pixels (continuous, corner-based), the
convention of :class:`georeg.estimation.FittedModel`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from .features import oriented_gradient_channels
from .grid import Grid
from .preprocess import preprocess
from .raster import RasterSource

log = logging.getLogger(__name__)

COARSE_ANGLE_STEP_DEG = 10.0
SCALES = tuple(2.0 ** (k / 4) for k in range(-4, 5))  # 0.5 .. 2 in steps of 2^(1/4)
MAGNIFIED = 0.75  # scales under this can be seeded at the search's full size (0.5, 0.59, 0.71)
# the finest scale step of search_geometry (a quarter of the grid's step either side, in eighths)
FINEST_SCALE_STEP_LOG2 = math.log2(SCALES[1] / SCALES[0]) / 8
MIN_Z_RATIO = 1.15  # the winner's z-score over the best hypothesis of another basin
RUNNERS_UP = 2  # best hypotheses of other basins kept for verification
RUNNER_UP_MIN_Z = 0.4  # ... when their z-score is at least this share of the winner's


@dataclass(frozen=True)
class GlobalGeometry:
    """The global similarity found by :func:`search_geometry` and its evidence."""

    matrix: np.ndarray  # 3x3, reference-grid px, xy_t -> xy_r
    rotation_deg: float
    scale: float
    shift_px: tuple[float, float]  # at the overlap's centre, reference pixels
    z_score: float  # peak of the winner's correlation surface, in standard deviations
    z_ratio: float  # winner's z over the best hypothesis of another rotation/scale basin
    identity_z: float  # z-score of the unrotated, unscaled hypothesis
    hypotheses: int
    factor: float  # reference pixels per search pixel
    accepted: bool
    rank: int = 0  # 0: the search's winner; k: its k-th runner-up (another basin)
    runners_up: tuple[GlobalGeometry, ...] = ()
    verification: tuple[dict, ...] = ()  # the priors the fine matching tried, when the winner's was weak
    other_search: dict | None = None  # the run's other global search (first_pass._finer_global_stage), summarised

    def inverse(self, xy_r: np.ndarray) -> np.ndarray:
        """(N, 2) reference-grid px -> (N, 2) target positions (reference-grid px as georeferenced)."""
        from .estimation import apply_h

        return apply_h(np.linalg.inv(self.matrix), xy_r)

    @property
    def is_identity_like(self) -> bool:
        """Rotation within 1 degree and scale within 2%: the fine search needs no prior warp."""
        return abs(self.rotation_deg) < 1.0 and abs(self.scale - 1.0) < 0.02

    @property
    def near_identity(self) -> bool:
        """Rotation within 1 degree and scale within one finest step of the search (2.2%): as near
        to no rotation or scale as the search can tell (:attr:`is_identity_like` stops at 2%, so
        the step either side of 1, 1.022 or 0.979, falls outside it)."""
        return abs(self.rotation_deg) < 1.0 and not self.scale_resolved

    @property
    def scale_resolved(self) -> bool:
        """Whether the scale is more than one finest step of the search (2.2%) from 1. Its score
        surface is broad in scale (SRIF pair 48, scale 1, comes out one step low), so within a step
        the fine matching starts from a rigid model and its tie points decide on the scale."""
        return abs(math.log2(self.scale)) > FINEST_SCALE_STEP_LOG2 * 1.01

    def to_dict(self) -> dict:
        return {"rotation_deg": self.rotation_deg, "scale": self.scale, "shift_px": list(self.shift_px),
                "z_score": self.z_score, "z_ratio": self.z_ratio, "identity_z": self.identity_z,
                "hypotheses": self.hypotheses, "factor": self.factor, "accepted": self.accepted,
                "matrix_px": self.matrix.tolist(), "rank": self.rank,
                "runners_up": [{"rotation_deg": g.rotation_deg, "scale": g.scale, "z_score": g.z_score}
                               for g in self.runners_up],
                "verification": list(self.verification), "other_search": self.other_search}

    def summary(self) -> dict:
        """The search's outcome in brief (for the report of a run that searched twice)."""
        return {"rotation_deg": self.rotation_deg, "scale": self.scale, "z_score": self.z_score,
                "z_ratio": self.z_ratio, "factor": self.factor, "accepted": self.accepted, "rank": self.rank,
                "verification": list(self.verification)}


def _geometry(fine: _Scene, hyp: tuple[float, float], scored: tuple[float, float, float], **evidence
              ) -> GlobalGeometry:
    """A hypothesis (angle, scale) and its (z, shift x, shift y) at search resolution, as a
    :class:`GlobalGeometry` in reference-grid pixels; ``evidence``: its remaining fields."""
    (angle, scale), (z, dx, dy) = hyp, scored
    c = fine.centre_search
    full = fine.to_full()
    # the peak at (dx, dy) means the warped target shows at x + d what the reference shows at x,
    # so the reference has it d before where the hypothesis puts it
    m_full = full @ _similarity(angle, scale, c, (-dx, -dy)) @ np.linalg.inv(full)
    if fine.frame is not None:  # the hypothesis is relative to the target's prior placement
        m_full = m_full @ fine.frame
        scale = scale * math.sqrt(abs(np.linalg.det(fine.frame[:2, :2])))
    centre_full = full @ np.array([c[0], c[1], 1.0])
    shift = (m_full @ centre_full)[:2] - centre_full[:2]
    angle = (angle + 180.0) % 360.0 - 180.0
    return GlobalGeometry(m_full, float(angle), float(scale), (float(shift[0]), float(shift[1])), float(z),
                          factor=float(fine.factor), **evidence)


def _similarity(theta_deg: float, scale: float, centre: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """3x3: rotate by theta and scale about ``centre``, then shift (x right, y down, so a positive
    angle turns x towards y)."""
    c, s = math.cos(math.radians(theta_deg)) * scale, math.sin(math.radians(theta_deg)) * scale
    a = np.array([[c, -s], [s, c]])
    t = centre - a @ centre + np.asarray(shift, np.float64)
    return np.array([[a[0, 0], a[0, 1], t[0]], [a[1, 0], a[1, 1], t[1]], [0, 0, 1]], np.float64)


class _Scene:
    """Both rasters at search resolution: reference on its coarse overlap grid, the target on a
    grid twice as large about the same centre (room for scale and shift), features per hypothesis."""

    def __init__(self, ref: RasterSource, tgt: RasterSource, grid: Grid, overlap: Window, size: int,
                 finer: _Scene | None = None):
        """Read both rasters at ``size`` px across the overlap; or, given ``finer`` (a scene at twice
        this resolution), pool its pixels 2x2 instead of reading again: a decimated read of a raster
        without overviews scans every pixel (1.5 s each for a 10980 px pair, four of them)."""
        self.off = np.array([overlap.col_off, overlap.row_off], np.float64)
        self.frame = self.prior = None  # a prior placement of the target (:meth:`set_frame`)
        if finer is None:
            sub = grid.window_grid(overlap)
            self.factor = max(1.0, max(sub.width, sub.height) / size)
            cg = sub.scaled(self.factor)
            self.sx, self.sy = sub.width / cg.width, sub.height / cg.height
            r, rv = ref.read_on_grid(cg, resampling=Resampling.average)
            h, w = r.shape
            # target canvas: 2x the overlap about its centre, same pixel size
            pad_c, pad_r = int(math.ceil(w / 2)), int(math.ceil(h / 2))
            tg = Grid(cg.transform @ Affine.translation(-pad_c, -pad_r), w + 2 * pad_c, h + 2 * pad_r, cg.crs)
            t, tv = tgt.read_on_grid(tg, resampling=Resampling.average)
        else:
            (r, rv, t, tv), (pad_c, pad_r) = finer._halved()
            self.factor, self.sx, self.sy = 2 * finer.factor, 2 * finer.sx, 2 * finer.sy
        self._raw = (r, rv, t, tv)  # as read, before preprocessing (the coarser level pools them)
        self.h, self.w = r.shape
        self.tpad = np.array([pad_c, pad_r], np.float64)
        self.r_valid = rv
        rn = preprocess(r, rv, ref.modality, ref.float_values)
        tn = preprocess(t, tv, tgt.modality, tgt.float_values)
        self.t_img = torch.from_numpy(np.stack([tn, tv.astype(np.float32)]))[None]  # (1, 2, Ht, Wt)
        with torch.inference_mode():
            fr = _features(torch.from_numpy(rn)[None, None])[0]
            wr = torch.from_numpy(rv.astype(np.float32))
            fr = (fr - (fr * wr).sum((1, 2), keepdim=True) / wr.sum().clamp(min=1)) * _taper(wr)
        self.fft_size = (2 * self.h, 2 * self.w)
        self.fr_hat = torch.fft.rfft2(fr, s=self.fft_size).conj()  # (C, 2h, w+1)
        self.centre_search = np.array([self.w / 2, self.h / 2])

    def _halved(self) -> tuple[tuple[np.ndarray, ...], tuple[int, int]]:
        """The raw rasters pooled 2x2 (the mean of the valid pixels; valid where any is) over
        whole pixel pairs, and the target canvas's padding at that resolution. The coarse pixel
        (i, j) is fine pixels (2i, 2j)-(2i+1, 2j+1) of the reference, so ``sx`` and ``sy`` double
        and the origin stays; the target canvas keeps that alignment from an even offset."""
        r, rv, t, tv = self._raw
        h, w = self.h // 2, self.w // 2
        pad_c, pad_r = int(self.tpad[0]) // 2, int(self.tpad[1]) // 2
        c0, r0 = int(self.tpad[0]) - 2 * pad_c, int(self.tpad[1]) - 2 * pad_r  # 0 or 1 fine pixel
        ht, wt = h + 2 * pad_r, w + 2 * pad_c
        return (*_pool2(r, rv, 0, 0, h, w), *_pool2(t, tv, r0, c0, ht, wt)), (pad_c, pad_r)

    def to_full(self) -> np.ndarray:
        """3x3: search-grid px (continuous) -> reference-grid px."""
        return np.array([[self.sx, 0, self.off[0]], [0, self.sy, self.off[1]], [0, 0, 1]], np.float64)

    def warped(self, mats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Target resampled onto the reference search grid through each ``xy_t -> xy_r`` matrix
        (search px) -> (B, 1, h, w) image and (B, h, w) validity."""
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float64)
        pts = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5, np.ones(xx.size)])
        ht, wt = self.t_img.shape[-2:]
        grids = []
        for m in mats:
            q = np.linalg.inv(m) @ pts
            qx = q[0] / q[2] + self.tpad[0] - 0.5
            qy = q[1] / q[2] + self.tpad[1] - 0.5
            grids.append(np.stack([qx / (wt - 1) * 2 - 1, qy / (ht - 1) * 2 - 1], -1).reshape(self.h, self.w, 2))
        g = torch.from_numpy(np.stack(grids)).float()
        out = F.grid_sample(self.t_img.expand(len(mats), -1, -1, -1), g, mode="bilinear",
                            padding_mode="zeros", align_corners=True)
        valid = out[:, 1] > 0.999
        return torch.where(valid, out[:, 0], torch.zeros_like(out[:, 0]))[:, None], valid

    def set_frame(self, frame: np.ndarray | None) -> None:
        """A prior placement of the target (3x3, reference-grid px, target as placed -> reference)
        that every hypothesis starts from; ``None`` for none."""
        full = self.to_full()
        self.frame = frame
        self.prior = None if frame is None else np.linalg.inv(full) @ frame @ full

    def _cross_power(self, ft: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) centred target channels -> (B, 2h, w + 1) cross-power spectrum with the
        reference's, summed over the channels: ``(rfft2(ft, s) * fr_hat).sum(1)`` bit for bit, a
        channel at a time, without the (B, C, 2h, w + 1) spectrum (2-3x faster on one thread)."""
        cross = None
        for c in range(ft.shape[1]):
            spec = torch.fft.rfft2(ft[:, c], s=self.fft_size).mul_(self.fr_hat[c])
            cross = spec if cross is None else cross.add_(spec)
        return cross

    def score(self, mats: list[np.ndarray]) -> list[tuple[float, float, float]]:
        """(z-score of the correlation peak, shift x, shift y in search px) for each matrix
        (after the scene's prior placement, :meth:`set_frame`)."""
        out = []
        if self.prior is not None:
            mats = [m @ self.prior for m in mats]
        with torch.inference_mode():
            for i in range(0, len(mats), 24):
                chunk = mats[i:i + 24]
                img, valid = self.warped(chunk)
                ft = _features(img)
                wt = valid.float()
                both = wt * torch.from_numpy(self.r_valid.astype(np.float32))
                mean = (ft * wt[:, None]).sum((2, 3), keepdim=True) / wt.sum((1, 2)).clamp(min=1).view(-1, 1, 1, 1)
                ft = ft.sub_(mean).mul_(_taper_batch(wt)[:, None])
                cross = self._cross_power(ft)
                cross.div_(cross.abs().pow_(0.6).add_(1e-9))
                corr = torch.fft.fftshift(torch.fft.irfft2(cross, s=self.fft_size), dim=(-2, -1))
                # too little common area makes any score meaningless
                share = both.mean((1, 2))
                z, sx, sy = _peaks(corr, self.h, self.w)
                for k in range(len(chunk)):
                    out.append((z[k], sx[k], sy[k]) if share[k] > 0.05 else (0.0, 0.0, 0.0))
        return out


def _pool2(a: np.ndarray, valid: np.ndarray, r0: int, c0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) means over 2x2 blocks of ``a[r0:, c0:]`` of its valid pixels, and where any was valid."""
    a = a[r0:r0 + 2 * h, c0:c0 + 2 * w]
    v = valid[r0:r0 + 2 * h, c0:c0 + 2 * w].astype(np.float32)
    n = v.reshape(h, 2, w, 2).sum((1, 3))
    total = np.where(v > 0, a, 0).reshape(h, 2, w, 2).sum((1, 3))  # invalid pixels may hold NaN
    return (total / np.maximum(n, 1)).astype(np.float32), n > 0


def _features(img: torch.Tensor) -> torch.Tensor:
    return oriented_gradient_channels(img, n_orient=6, grad_sigma=1.0, cell_sigma=1.0)


def _taper(valid: torch.Tensor, width: int = 6) -> torch.Tensor:
    return _taper_batch(valid[None], width)[0]


def _taper_batch(valid: torch.Tensor, width: int = 6) -> torch.Tensor:
    """(B, H, W) 0/1 -> weight that rises from 0 near the edge of the valid region to 1 about
    ``width`` px inside it (a box mean of the mask, stretched; cheap and batched)."""
    k = 2 * width + 1
    m = F.avg_pool2d(valid[:, None], (1, k), stride=1, padding=(0, width), count_include_pad=True)
    m = F.avg_pool2d(m, (k, 1), stride=1, padding=(width, 0), count_include_pad=True)
    return ((m[:, 0] - 0.5) * 2).clamp(0, 1) * valid


def _peaks(corr: torch.Tensor, h: int, w: int) -> tuple[list[float], list[float], list[float]]:
    """(B, 2h, 2w) correlation surfaces (zero shift at (h, w)) -> z-score of each peak within its
    surface and its sub-pixel shift (x, y) in search pixels."""
    b, hh, ww = corr.shape
    flat = corr.reshape(b, -1)
    best = flat.argmax(1)
    by, bx = best // ww, best % ww
    z = (flat.gather(1, best[:, None])[:, 0] - flat.mean(1)) / (flat.std(1) + 1e-12)
    byc, bxc = by.clamp(1, hh - 2), bx.clamp(1, ww - 2)
    ar = torch.arange(b)
    c = corr[ar, byc, bxc]
    lx, rx, ty, bt = corr[ar, byc, bxc - 1], corr[ar, byc, bxc + 1], corr[ar, byc - 1, bxc], corr[ar, byc + 1, bxc]
    dx = ((lx - rx) / (2 * (lx - 2 * c + rx) - 1e-12)).clamp(-0.5, 0.5)
    dy = ((ty - bt) / (2 * (ty - 2 * c + bt) - 1e-12)).clamp(-0.5, 0.5)
    inside = (bx > 0) & (bx < ww - 1) & (by > 0) & (by < hh - 1)
    dx, dy = torch.where(inside, dx, 0.0), torch.where(inside, dy, 0.0)
    return z.tolist(), (bx + dx - w).tolist(), (by + dy - h).tolist()


def _basin_distance(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    da = abs((a[0] - b[0] + 180.0) % 360.0 - 180.0)
    ds = abs(math.log2(a[1] / b[1]))
    return da, ds


def _calibrated(scene: _Scene, hyps: list[tuple[float, float]], null: dict[float, tuple[float, float]]
                ) -> list[tuple[float, float, float]]:
    """Scores of ``hyps`` as (robust z against the null of their scale, shift x, shift y)."""
    c = scene.centre_search
    raw = scene.score([_similarity(a, s, c) for a, s in hyps])
    out = []
    for (_, s), (z, dx, dy) in zip(hyps, raw):
        med, mad = _null_at(null, s)
        out.append(((z - med) / mad, dx, dy))
    return out


def _null_at(null: dict[float, tuple[float, float]], s: float) -> tuple[float, float]:
    keys = sorted(null)
    ls = math.log2(s)
    lk = [math.log2(k) for k in keys]
    i = int(np.clip(np.searchsorted(lk, ls), 1, len(keys) - 1)) if len(keys) > 1 else 0
    if len(keys) == 1:
        return null[keys[0]]
    a, b = keys[i - 1], keys[i]
    t = float(np.clip((ls - lk[i - 1]) / (lk[i] - lk[i - 1]), 0, 1))
    return tuple((1 - t) * np.array(null[a]) + t * np.array(null[b]))


def _null(scores: np.ndarray, scale_of: np.ndarray) -> dict[float, tuple[float, float]]:
    """Per-scale median and MAD of the peak z-scores: most hypotheses of a scale are wrong, so
    these describe what a wrong hypothesis scores at that scale (magnified targets correlate more
    smoothly and score higher by chance; the calibration removes that bias)."""
    out = {}
    for s in np.unique(scale_of):
        v = scores[scale_of == s]
        med = float(np.median(v))
        out[float(s)] = (med, float(np.median(np.abs(v - med)) * 1.4826 + 1e-6))
    return out


def _basins(hyps, scores, k: int, angle_sep: float, scale_sep: float) -> list[tuple[float, float]]:
    order = np.argsort([-z for z, _, _ in scores])
    picked: list[tuple[float, float]] = []
    for j in order:
        h = hyps[j]
        if any(_basin_distance(h, b)[0] < angle_sep and _basin_distance(h, b)[1] < scale_sep for b in picked):
            continue
        picked.append(h)
        if len(picked) >= k:
            break
    return picked


def search_geometry(ref: RasterSource, tgt: RasterSource, grid: Grid, overlap: Window, size: int = 128,
                    scales: tuple[float, ...] = SCALES, seed_magnified: bool = False,
                    frame: np.ndarray | None = None) -> GlobalGeometry:
    """Rotation (full circle), scale (``scales``, 0.5x-2x by default) and shift of the target.

    Three levels: every 7.5 degrees x every scale at half ``size``, plus every 3 degrees at scale
    1 at ``size`` (georeferenced data rarely has a large scale error, and full resolution finds a
    weak cross-modal signal that half resolution loses) and, with ``seed_magnified``, every 7.5
    degrees at the scales under MAGNIFIED at ``size`` (a magnified target shows a smaller ground:
    at scale 0.5 a quarter of the overlap, 32 px at half of a 128 px search); the best basins of
    these are refined at ``size`` and the winner once more. ``seed_magnified`` is for a second
    search only: on weak 256 px 3MOS pairs that need no turn (RCM_plain_1 and 7) those seeds put
    a false 0.59x winner first in 5 of 8 shifted copies, where the search without them was right
    in 7, and verifying it cost 13-15 s per pair. Scores are z-scores of the correlation peak
    calibrated per scale against the hypotheses of that scale. Accepted when the winner beats
    every hypothesis outside its basin by MIN_Z_RATIO. ``frame``: a prior placement of the
    target (3x3, reference-grid px, target as placed -> reference) that every hypothesis starts
    from; the result's matrix and scale include it.
    """
    fine = _Scene(ref, tgt, grid, overlap, size)
    halvable = size >= 64 and min(fine.h, fine.w) >= 2
    coarse = _Scene(ref, tgt, grid, overlap, size // 2, finer=fine) if halvable else fine
    for scene in (fine, coarse):
        scene.set_frame(frame)
    hyps1 = [(float(a), float(s)) for s in scales for a in np.arange(-180.0, 180.0, 7.5)]
    raw1 = coarse.score([_similarity(a, s, coarse.centre_search) for a, s in hyps1])
    z1 = np.array([z for z, _, _ in raw1])
    sc1 = np.array([s for _, s in hyps1])
    null1 = _null(z1, sc1)
    cal1 = [((z - null1[s][0]) / null1[s][1], dx, dy) for (z, dx, dy), (_, s) in zip(raw1, hyps1)]
    # null at full resolution: every scale at a spread of angles
    hyps_n = [(float(a), float(s)) for s in scales for a in np.arange(-165.0, 180.0, 30.0)]
    raw_n = fine.score([_similarity(a, s, fine.centre_search) for a, s in hyps_n])
    null2 = _null(np.array([z for z, _, _ in raw_n]), np.array([s for _, s in hyps_n]))
    hyps2 = [(float(a), 1.0) for a in np.arange(-180.0, 180.0, 3.0)]
    cal2 = _calibrated(fine, hyps2, null2)
    sstep = math.log2(scales[1] / scales[0]) if len(scales) > 1 else 0.25
    # a magnified target (scale well under 1) shows a smaller ground than the overlap: at half
    # ``size`` it keeps too few pixels to rank, so with ``seed_magnified`` those scales are seeded
    # at ``size`` as well
    hyps3 = ([(float(a), float(s)) for s in scales if s < MAGNIFIED for a in np.arange(-180.0, 180.0, 7.5)]
             if halvable and seed_magnified else [])
    cal3m = _calibrated(fine, hyps3, null2) if hyps3 else []
    seeds = (_basins(hyps1, cal1, 8, 15.0, sstep * 1.01) + _basins(hyps2, cal2, 4, 10.0, 0.01)
             + (_basins(hyps3, cal3m, 4, 15.0, sstep * 1.01) if cal3m else []))
    cand = [((a + da + 180.0) % 360.0 - 180.0, s * 2.0 ** ds) for a, s in seeds
            for da in (-4.5, -3.0, -1.5, 0.0, 1.5, 3.0, 4.5) for ds in (-sstep / 2, 0.0, sstep / 2)]
    cal3 = _calibrated(fine, cand, null2)
    best = cand[int(np.argmax([z for z, _, _ in cal3]))]
    fine_h = [(best[0] + da, best[1] * 2.0 ** ds) for da in (-1.0, -0.5, 0.0, 0.5, 1.0)
              for ds in (-sstep / 4, -sstep / 8, 0.0, sstep / 8, sstep / 4)]
    cal4 = _calibrated(fine, fine_h, null2)
    j = int(np.argmax([z for z, _, _ in cal4]))
    (angle, scale), (z, dx, dy) = fine_h[j], cal4[j]
    everything = list(zip(hyps2, cal2)) + list(zip(hyps3, cal3m)) + list(zip(cand, cal3))

    def basin(h, of) -> bool:
        return _basin_distance(h, of)[0] <= 7.5 and _basin_distance(h, of)[1] <= sstep

    others = [r[0] for h, r in everything if not basin(h, (angle, scale))]
    z_other = max(others) if others else 0.0
    ratio = z / max(z_other, 1e-6) if z > 0 else 0.0
    identity = _calibrated(fine, [(0.0, 1.0)], null2)[0][0]
    n_hyp = len(hyps1) + len(hyps_n) + len(hyps2) + len(cal3m) + len(cand) + len(fine_h) + 1
    # runners-up: the best hypothesis of each next basin, refined as the winner was
    runners, taken = [], [(angle, scale)]
    for h, r in sorted(everything, key=lambda hr: -hr[1][0]):
        if len(runners) == RUNNERS_UP or r[0] < RUNNER_UP_MIN_Z * z:
            break
        if any(basin(h, t) for t in taken):
            continue
        taken.append(h)
        grid_h = [(h[0] + da, h[1] * 2.0 ** ds) for da in (-1.0, -0.5, 0.0, 0.5, 1.0)
                  for ds in (-sstep / 4, -sstep / 8, 0.0, sstep / 8, sstep / 4)]
        cal_h = _calibrated(fine, grid_h, null2)
        n_hyp += len(grid_h)
        k = int(np.argmax([v for v, _, _ in cal_h]))
        runners.append(_geometry(fine, grid_h[k], cal_h[k], z_ratio=float(cal_h[k][0] / max(z, 1e-6)),
                                 identity_z=float(identity), hypotheses=len(grid_h), accepted=False,
                                 rank=len(runners) + 1))
    res = _geometry(fine, (angle, scale), (z, dx, dy), z_ratio=float(ratio), identity_z=float(identity),
                    hypotheses=n_hyp, accepted=bool(ratio >= MIN_Z_RATIO), runners_up=tuple(runners))
    log.info("global geometry: rotation %.1f deg, scale %.3f, shift %.1f, %.1f px (z %.1f, %.2fx the next "
             "basin; identity z %.1f) %s", res.rotation_deg, res.scale, *res.shift_px, res.z_score, res.z_ratio,
             res.identity_z, "accepted" if res.accepted else "not accepted")
    return res
