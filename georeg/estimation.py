"""Transform models between target and reference pixel positions, fitted robustly.

Models: translation, rigid (rotation and shift), similarity (rotation, isotropic scale, shift),
affine, homography and ``local``. All map ``xy_t`` (where a feature sits in the target as
currently georeferenced, in reference-grid pixels) to ``xy_r`` (where it sits in the reference).
Translation uses georeg's own exhaustive 1-point RANSAC, rigid and similarity an exhaustive or
sampled 2-point RANSAC; affine and homography use kornia's RANSAC on normalised coordinates;
``local`` removes outliers with an affine RANSAC and then fits a thin-plate spline (or a polynomial)
through the inliers, forward and inverse. ``auto``, the simplest of them that the evidence
supports, is chosen in :mod:`georeg.model_choice`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import EstimationConfig
from .coordinates import as_points
from .errors import ShapeError, TooFewTiePointsError

log = logging.getLogger(__name__)

MIN_SAMPLE = {"translation": 1, "rigid": 2, "similarity": 2, "affine": 3, "homography": 4, "local": 3, "auto": 1}
MIN_INLIERS = {"translation": 4, "rigid": 5, "similarity": 5, "affine": 6, "homography": 8, "local": 10, "auto": 4}
N_PARAMS = {"translation": 2, "rigid": 3, "similarity": 4, "affine": 6, "homography": 8}
# models whose matrix is an affine: each has a least-squares fit of its own, and a geotransform holds it
AFFINE_MODELS = ("translation", "rigid", "similarity", "affine")


def apply_h(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3x3 matrix to (N, 2) points."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.c_[xy, np.ones(len(xy))] @ h.T
    return p[:, :2] / p[:, 2:3]


@dataclass
class LocalWarp:
    """A smooth local mapping (thin-plate spline or polynomial) with its inverse."""

    method: str
    forward_fn: object
    inverse_fn: object
    n_points: int

    def forward(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(self.forward_fn(np.asarray(xy, np.float64).reshape(-1, 2)))

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(self.inverse_fn(np.asarray(xy, np.float64).reshape(-1, 2)))


@dataclass
class FittedModel:
    """A fitted model; ``matrix`` is the global part (the whole model unless ``kind == 'local'``)."""

    kind: str
    matrix: np.ndarray
    inliers: np.ndarray
    residuals_px: np.ndarray
    local: LocalWarp | None = None
    params: dict = field(default_factory=dict)

    def forward(self, xy_t: np.ndarray) -> np.ndarray:
        """xy_t (N, 2) -> xy_r (N, 2)."""
        if self.local is not None:
            return self.local.forward(xy_t)
        return apply_h(self.matrix, xy_t)

    def inverse(self, xy_r: np.ndarray) -> np.ndarray:
        """xy_r (N, 2) -> xy_t (N, 2)."""
        if self.local is not None:
            return self.local.inverse(xy_r)
        return apply_h(np.linalg.inv(self.matrix), xy_r)

    @property
    def is_affine(self) -> bool:
        return self.local is None and np.allclose(self.matrix[2], [0, 0, 1], atol=1e-12)


def shift_matrix(dx: float, dy: float) -> np.ndarray:
    """The 3x3 matrix of a translation by (dx, dy) px."""
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def _normaliser(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    ca, cb = a.mean(0), b.mean(0)
    s = float(np.sqrt(((a - ca) ** 2).sum(1).mean()) + 1e-9) / np.sqrt(2)
    ta = np.array([[1 / s, 0, -ca[0] / s], [0, 1 / s, -ca[1] / s], [0, 0, 1]])
    tb = np.array([[1 / s, 0, -cb[0] / s], [0, 1 / s, -cb[1] / s], [0, 0, 1]])
    return ta, tb, s


def fit_translation(xy_t: np.ndarray, xy_r: np.ndarray, thr: float, max_eval: int = 3000,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive 1-point RANSAC: every tie point's shift is a hypothesis; the one with most
    inliers wins, then the shift is re-estimated as the inliers' mean, twice."""
    d = xy_r - xy_t
    rng = np.random.default_rng(seed)
    cand = d if len(d) <= max_eval else d[rng.choice(len(d), max_eval, replace=False)]
    score = np.empty(len(cand))
    step = max(1, 4_000_000 // max(len(d), 1))  # bounded memory: about 32 MB per chunk
    for i in range(0, len(cand), step):
        dist2 = ((d[None, :, :] - cand[i:i + step, None, :]) ** 2).sum(-1)
        score[i:i + step] = np.clip(1.0 - dist2 / thr**2, 0, None).sum(1)  # MSAC score
    best = cand[int(np.argmax(score))]
    for _ in range(3):
        inl = ((d - best) ** 2).sum(1) <= thr**2
        if inl.sum() == 0:
            break
        best = d[inl].mean(0)
    h = shift_matrix(*best)
    return h, ((d - best) ** 2).sum(1) <= thr**2


def _lsq_similarity(xy_t: np.ndarray, xy_r: np.ndarray, w: np.ndarray | None = None,
                    rigid: bool = False) -> np.ndarray:
    """Weighted least-squares similarity (rotation, isotropic scale, shift; no reflection), or with
    ``rigid`` the rotation and shift alone (scale 1: in 2-D the best rotation is the similarity's)."""
    w = np.ones(len(xy_t)) if w is None else np.asarray(w, np.float64)
    ws = w.sum()
    ct, cr = (xy_t * w[:, None]).sum(0) / ws, (xy_r * w[:, None]).sum(0) / ws
    a, b = xy_t - ct, xy_r - cr
    den = float((w * (a ** 2).sum(1)).sum()) + 1e-12
    p = float((w * (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])).sum()) / den  # s cos
    q = float((w * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])).sum()) / den  # s sin
    if rigid:
        s = float(np.hypot(p, q)) or 1.0
        p, q = p / s, q / s
    m = np.array([[p, -q], [q, p]])
    t = cr - m @ ct
    return np.array([[p, -q, t[0]], [q, p, t[1]], [0, 0, 1]], dtype=np.float64)


def fit_similarity(xy_t: np.ndarray, xy_r: np.ndarray, thr: float, iterations: int = 2000,
                   seed: int = 0, rigid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """2-point RANSAC for a similarity (``rigid``: scale 1), MSAC-scored, every hypothesis
    evaluated at once.

    With few tie points every pair is a hypothesis (exhaustive); otherwise ``iterations`` random
    pairs. Returns (3x3 matrix, inlier flags)."""
    n = len(xy_t)
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= iterations:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, iterations)
        j = (i + rng.integers(1, n, iterations)) % n
    dt, dr = xy_t[j] - xy_t[i], xy_r[j] - xy_r[i]
    den = (dt ** 2).sum(1)
    ok = den > 1e-6
    i, j, dt, dr, den = i[ok], j[ok], dt[ok], dr[ok], den[ok]
    if len(i) == 0:
        return np.eye(3), np.zeros(n, bool)
    p = (dt[:, 0] * dr[:, 0] + dt[:, 1] * dr[:, 1]) / den
    q = (dt[:, 0] * dr[:, 1] - dt[:, 1] * dr[:, 0]) / den
    if rigid:
        s = np.hypot(p, q) + 1e-12
        p, q = p / s, q / s
        # the pair's midpoint carries the shift (its two points disagree by the scale left out)
        i_xy_t, i_xy_r = (xy_t[i] + xy_t[j]) / 2, (xy_r[i] + xy_r[j]) / 2
    else:
        i_xy_t, i_xy_r = xy_t[i], xy_r[i]
    tx = i_xy_r[:, 0] - (p * i_xy_t[:, 0] - q * i_xy_t[:, 1])
    ty = i_xy_r[:, 1] - (q * i_xy_t[:, 0] + p * i_xy_t[:, 1])
    score = np.empty(len(i))
    step = max(1, 4_000_000 // max(n, 1))
    for k in range(0, len(i), step):
        sl = slice(k, k + step)
        px = p[sl, None] * xy_t[None, :, 0] - q[sl, None] * xy_t[None, :, 1] + tx[sl, None]
        py = q[sl, None] * xy_t[None, :, 0] + p[sl, None] * xy_t[None, :, 1] + ty[sl, None]
        d2 = (px - xy_r[None, :, 0]) ** 2 + (py - xy_r[None, :, 1]) ** 2
        score[sl] = np.clip(1.0 - d2 / thr ** 2, 0, None).sum(1)
    b = int(np.argmax(score))
    h = np.array([[p[b], -q[b], tx[b]], [q[b], p[b], ty[b]], [0, 0, 1]], dtype=np.float64)
    return h, np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1) <= thr


def fit_kornia(xy_t: np.ndarray, xy_r: np.ndarray, model: str, cfg: EstimationConfig
               ) -> tuple[np.ndarray, np.ndarray]:
    from kornia.geometry.ransac import RANSAC

    ta, tb, s = _normaliser(xy_t, xy_r)
    a = torch.from_numpy(apply_h(ta, xy_t)).float()
    b = torch.from_numpy(apply_h(tb, xy_r)).float()
    ransac = RANSAC(model_type=model, inl_th=cfg.threshold_px / s, max_iter=cfg.ransac_iterations,
                    confidence=cfg.confidence, seed=cfg.seed, batch_size=256)
    with torch.no_grad():
        hn, _ = ransac(a, b)
    hn = hn.double().numpy()
    if not np.any(hn):
        return np.eye(3), np.zeros(len(xy_t), bool)
    h = np.linalg.inv(tb) @ hn @ ta
    h /= h[2, 2]
    res = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1)
    return h, res <= cfg.threshold_px


def _lsq_affine(xy_t: np.ndarray, xy_r: np.ndarray) -> np.ndarray:
    a = np.c_[xy_t, np.ones(len(xy_t))]
    sol, *_ = np.linalg.lstsq(a, xy_r, rcond=None)
    return np.vstack([sol.T, [0, 0, 1]])


def _irls(kind: str, xy_t: np.ndarray, xy_r: np.ndarray, h: np.ndarray, scale: float,
          iterations: int = 10) -> np.ndarray:
    """Iteratively reweighted least squares with Tukey's biweight (cut-off ``scale``), started from
    ``h``: the result depends on the data, not on which minimal samples RANSAC happened to draw."""
    if kind not in AFFINE_MODELS:
        return h
    for _ in range(iterations):
        r = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1)
        w = np.where(r < scale, (1 - (r / scale) ** 2) ** 2, 0.0)
        if w.sum() < 1e-9 or (w > 0).sum() < MIN_SAMPLE[kind]:
            break
        if kind == "translation":
            d = ((xy_r - xy_t) * w[:, None]).sum(0) / w.sum()
            new = shift_matrix(*d)
        elif kind in ("rigid", "similarity"):
            new = _lsq_similarity(xy_t, xy_r, w, rigid=kind == "rigid")
        else:
            sw = np.sqrt(w)[:, None]
            sol, *_ = np.linalg.lstsq(np.c_[xy_t, np.ones(len(xy_t))] * sw, xy_r * sw, rcond=None)
            new = np.vstack([sol.T, [0, 0, 1]])
        if np.abs(new - h).max() < 1e-9:
            h = new
            break
        h = new
    return h


def _refit(kind: str, xy_t: np.ndarray, xy_r: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Least-squares refit on the inliers (affine, translation); homographies keep kornia's fit."""
    if kind in AFFINE_MODELS and len(xy_t) >= MIN_SAMPLE[kind]:
        return _lsq(kind, xy_t, xy_r)
    return h


def _poly_terms(xy: np.ndarray, order: int, centre: np.ndarray, scale: float) -> np.ndarray:
    u = (xy - centre) / scale
    cols = [np.ones(len(u))]
    for k in range(1, order + 1):
        for i in range(k + 1):
            cols.append(u[:, 0] ** (k - i) * u[:, 1] ** i)
    return np.stack(cols, 1)


def _fit_poly(src: np.ndarray, dst: np.ndarray, order: int):
    centre, scale = src.mean(0), float(src.std() + 1e-9)
    coef, *_ = np.linalg.lstsq(_poly_terms(src, order, centre, scale), dst, rcond=None)
    return lambda xy: _poly_terms(xy, order, centre, scale) @ coef


def _fit_tps(src: np.ndarray, dst: np.ndarray, smoothing: float):
    from scipy.interpolate import RBFInterpolator

    # unit-free coordinates, so that ``smoothing`` does not depend on the scene size
    centre, scale = src.mean(0), float(src.std() + 1e-9)
    rbf = RBFInterpolator((src - centre) / scale, dst - src, kernel="thin_plate_spline",
                          smoothing=smoothing, degree=1)
    return lambda xy: xy + rbf((xy - centre) / scale)


def fit_local(xy_t: np.ndarray, xy_r: np.ndarray, cfg: EstimationConfig) -> LocalWarp:
    if cfg.local_method == "polynomial":
        needed = (cfg.polynomial_order + 1) * (cfg.polynomial_order + 2) // 2
        if len(xy_t) < needed:
            raise TooFewTiePointsError(len(xy_t), needed, f"local polynomial order {cfg.polynomial_order}",
                                       "inliers")
        fwd = _fit_poly(xy_t, xy_r, cfg.polynomial_order)
        inv = _fit_poly(xy_r, xy_t, cfg.polynomial_order)
    else:
        fwd = _fit_tps(xy_t, xy_r, cfg.local_smoothing)
        inv = _fit_tps(xy_r, xy_t, cfg.local_smoothing)
    return LocalWarp(cfg.local_method, fwd, inv, len(xy_t))


def estimate(xy_t: np.ndarray, xy_r: np.ndarray, cfg: EstimationConfig, model: str | None = None,
             extent: tuple[float, float, float, float] | None = None, base: str = "translation") -> FittedModel:
    """Fit ``model`` (default ``cfg.model``) robustly to tie points (N, 2) -> (N, 2).

    ``extent`` (x0, y0, x1, y1 in the tie points' pixel frame) is the area the model will
    correct; ``auto`` checks a richer model's departure from a simpler one at its corners.
    ``base`` is the simplest model ``auto`` may return (``rigid`` or ``similarity`` once a rotation
    or scale was established by evidence outside these tie points, such as the global geometry
    search).
    Raises :class:`TooFewTiePointsError` when there are fewer tie points or inliers than needed.
    """
    kind = model or cfg.model
    xy_t, xy_r = as_points(xy_t, "xy_t"), as_points(xy_r, "xy_r")
    if xy_t.shape != xy_r.shape:
        raise ShapeError(f"xy_t and xy_r must hold the same number of points; got {len(xy_t)} and {len(xy_r)}")
    if kind == "auto":
        if len(xy_t) < MIN_INLIERS["translation"]:
            raise TooFewTiePointsError(len(xy_t), MIN_INLIERS["translation"], "auto", "tie points")
        from .model_choice import estimate_auto  # it fits each candidate model through this function

        return estimate_auto(xy_t, xy_r, cfg, extent=extent, base=base)
    needed = max(cfg.min_inliers, MIN_INLIERS[kind])
    if len(xy_t) < needed:
        raise TooFewTiePointsError(len(xy_t), needed, kind, "tie points")
    h, inl = _robust_seed(xy_t, xy_r, cfg, kind, needed)
    h, inl = _polish(xy_t, xy_r, cfg, kind, h, inl)
    if inl.sum() < needed:
        raise TooFewTiePointsError(int(inl.sum()), needed, kind, "inlier tie points",
                                   hint=f"{len(xy_t)} tie points were found but only {int(inl.sum())} agree "
                                   f"within {cfg.threshold_px} px.")
    if kind == "local":
        local, inl, res = _fit_local_inliers(xy_t, xy_r, cfg, inl, needed)
        return FittedModel(kind, h, inl, res, local)
    return FittedModel(kind, h, inl, np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1), None)


def _robust_seed(xy_t, xy_r, cfg: EstimationConfig, kind: str, needed: int) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC (or an exhaustive seed for a translation): the first matrix and its inliers."""
    if kind == "translation":
        return fit_translation(xy_t, xy_r, cfg.threshold_px, seed=cfg.seed)
    if kind in ("rigid", "similarity"):
        return fit_similarity(xy_t, xy_r, cfg.threshold_px, cfg.ransac_iterations, seed=cfg.seed,
                              rigid=kind == "rigid")
    if kind == "local":
        # the global affine only screens gross outliers, so it gets a generous threshold
        from dataclasses import replace

        return fit_kornia(xy_t, xy_r, "affine", replace(cfg, threshold_px=3 * cfg.threshold_px))
    h, inl = fit_kornia(xy_t, xy_r, kind, cfg)
    if kind == "affine" and inl.sum() < needed:
        # kornia occasionally misses a model that an exhaustive translation seed finds
        h0, inl0 = fit_translation(xy_t, xy_r, cfg.threshold_px, seed=cfg.seed)
        if inl0.sum() > inl.sum():
            h, inl = _lsq_affine(xy_t[inl0], xy_r[inl0]), inl0
    return h, inl


def _polish(xy_t, xy_r, cfg: EstimationConfig, kind: str, h: np.ndarray, inl: np.ndarray):
    """Refit on the inliers until they stop changing, then (for the matrix models) a robust
    reweighted fit; returns the matrix and its inliers."""
    for _ in range(3):
        if inl.sum() < MIN_SAMPLE[kind]:
            break
        h = _refit("affine" if kind == "local" else kind, xy_t[inl], xy_r[inl], h)
        thr = cfg.threshold_px * (3 if kind == "local" else 1)
        new = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1) <= thr
        if np.array_equal(new, inl):
            break
        inl = new
    if kind in AFFINE_MODELS and inl.sum() >= MIN_SAMPLE[kind]:
        h = _irls(kind, xy_t, xy_r, h, 2.0 * cfg.threshold_px)
        inl = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1) <= cfg.threshold_px
    return h, inl


def _fit_local_inliers(xy_t, xy_r, cfg: EstimationConfig, inl: np.ndarray, needed: int):
    """The local warp: fit, drop what the smooth model does not explain, refit (twice); the warp
    rests on exactly the points flagged as inliers (the report carries them, and 'georeg apply'
    rebuilds the warp from them). Returns the warp, its inliers and the residuals."""
    for _ in range(2):
        local = fit_local(xy_t[inl], xy_r[inl], cfg)
        res = np.linalg.norm(local.forward(xy_t) - xy_r, axis=1)
        inl = res <= cfg.threshold_px
        if inl.sum() < needed:
            raise TooFewTiePointsError(int(inl.sum()), needed, "local", "inlier tie points")
    local = fit_local(xy_t[inl], xy_r[inl], cfg)
    return local, inl, np.linalg.norm(local.forward(xy_t) - xy_r, axis=1)


def _lsq(kind: str, xy_t: np.ndarray, xy_r: np.ndarray) -> np.ndarray:
    if kind == "translation":
        d = (xy_r - xy_t).mean(0)
        return shift_matrix(*d)
    if kind in ("rigid", "similarity"):
        return _lsq_similarity(xy_t, xy_r, rigid=kind == "rigid")
    if kind == "homography":
        return _lsq_homography(xy_t, xy_r)
    return _lsq_affine(xy_t, xy_r)


def _lsq_homography(xy_t: np.ndarray, xy_r: np.ndarray) -> np.ndarray:
    """Normalised direct linear transform (algebraic least squares)."""
    ta, tb, _ = _normaliser(xy_t, xy_r)
    a, b = apply_h(ta, xy_t), apply_h(tb, xy_r)
    x, y, u, v = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.empty((2 * len(x), 9))
    rows[0::2] = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], 1)
    rows[1::2] = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], 1)
    # only the nine right singular vectors are needed; the full left factor is 2N x 2N (profiled on
    # a 1024 px pair: 27 fits in the model choice, 0.83 s of its 0.85 s; now 20x less per fit)
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(tb) @ hn @ ta
    return h / h[2, 2]


def describe(model: FittedModel, centre_xy: np.ndarray) -> dict:
    """Human-readable parameters: shift at ``centre_xy``, rotation (deg), scales, shear."""
    c = np.asarray(centre_xy, np.float64).reshape(1, 2)
    shift = (model.forward(c) - c)[0]
    a = model.matrix[:2, :2]  # the global part (the whole model unless it is local)
    sx = float(np.hypot(a[0, 0], a[1, 0]))
    sy = float(np.hypot(a[0, 1], a[1, 1]))
    rot = float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    shear = float((a[0, 0] * a[0, 1] + a[1, 0] * a[1, 1]) / (sx * sy + 1e-12))
    return {"shift_px_at_centre": [float(shift[0]), float(shift[1])], "rotation_deg": rot,
            "scale_x": sx, "scale_y": sy, "shear": shear}
