"""Transform models between target and reference pixel positions, fitted robustly.

All models map ``xy_t`` (where a feature sits in the target as currently georeferenced, in
reference-grid pixels) to ``xy_r`` (where it sits in the reference). Translation uses georeg's own
exhaustive 1-point RANSAC; affine and homography use kornia's RANSAC on normalised coordinates;
``local`` removes outliers with an affine RANSAC and then fits a thin-plate spline (or a polynomial)
through the inliers, forward and inverse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import EstimationConfig
from .errors import TooFewTiePointsError

log = logging.getLogger(__name__)

MIN_SAMPLE = {"translation": 1, "affine": 3, "homography": 4, "local": 3, "auto": 1}
MIN_INLIERS = {"translation": 4, "affine": 6, "homography": 8, "local": 10, "auto": 4}


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
    h = np.array([[1, 0, best[0]], [0, 1, best[1]], [0, 0, 1]], dtype=np.float64)
    return h, ((d - best) ** 2).sum(1) <= thr**2


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
    if kind not in ("translation", "affine"):
        return h
    for _ in range(iterations):
        r = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1)
        w = np.where(r < scale, (1 - (r / scale) ** 2) ** 2, 0.0)
        if w.sum() < 1e-9 or (w > 0).sum() < MIN_SAMPLE[kind]:
            break
        if kind == "translation":
            d = ((xy_r - xy_t) * w[:, None]).sum(0) / w.sum()
            new = np.array([[1, 0, d[0]], [0, 1, d[1]], [0, 0, 1]], dtype=np.float64)
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
    if kind in ("translation", "affine") and len(xy_t) >= MIN_SAMPLE[kind]:
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
             weights: np.ndarray | None = None, extent: tuple[float, float, float, float] | None = None
             ) -> FittedModel:
    """Fit ``model`` (default ``cfg.model``) robustly to tie points (N, 2) -> (N, 2).

    ``extent`` (x0, y0, x1, y1 in the tie points' pixel frame) is the area the model will
    correct; ``auto`` checks an affine's departure from a translation at its corners.
    Raises :class:`TooFewTiePointsError` when there are fewer tie points or inliers than needed.
    """
    kind = model or cfg.model
    xy_t = np.asarray(xy_t, np.float64).reshape(-1, 2)
    xy_r = np.asarray(xy_r, np.float64).reshape(-1, 2)
    if kind == "auto":
        if len(xy_t) < MIN_INLIERS["translation"]:
            raise TooFewTiePointsError(len(xy_t), MIN_INLIERS["translation"], "auto", "tie points")
        return estimate_auto(xy_t, xy_r, cfg, extent=extent)
    if xy_t.shape != xy_r.shape:
        raise ValueError(f"xy_t and xy_r must both be (N, 2); got {xy_t.shape} and {xy_r.shape}")
    needed = max(cfg.min_inliers, MIN_INLIERS[kind])
    if len(xy_t) < needed:
        raise TooFewTiePointsError(len(xy_t), needed, kind, "tie points")
    if kind == "translation":
        h, inl = fit_translation(xy_t, xy_r, cfg.threshold_px, seed=cfg.seed)
    elif kind == "local":
        # the global affine only screens gross outliers, so it gets a generous threshold
        from dataclasses import replace

        h, inl = fit_kornia(xy_t, xy_r, "affine", replace(cfg, threshold_px=3 * cfg.threshold_px))
    else:
        h, inl = fit_kornia(xy_t, xy_r, kind, cfg)
        if kind == "affine" and inl.sum() < needed:
            # kornia occasionally misses a model that an exhaustive translation seed finds
            h0, inl0 = fit_translation(xy_t, xy_r, cfg.threshold_px, seed=cfg.seed)
            if inl0.sum() > inl.sum():
                h, inl = _lsq_affine(xy_t[inl0], xy_r[inl0]), inl0
    for _ in range(3):
        if inl.sum() < MIN_SAMPLE[kind]:
            break
        h = _refit("affine" if kind == "local" else kind, xy_t[inl], xy_r[inl], h)
        thr = cfg.threshold_px * (3 if kind == "local" else 1)
        new = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1) <= thr
        if np.array_equal(new, inl):
            break
        inl = new
    if kind in ("translation", "affine") and inl.sum() >= MIN_SAMPLE[kind]:
        h = _irls(kind, xy_t, xy_r, h, 2.0 * cfg.threshold_px)
        inl = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1) <= cfg.threshold_px
    if inl.sum() < needed:
        raise TooFewTiePointsError(int(inl.sum()), needed, kind, "inlier tie points",
                                   hint=f"{len(xy_t)} tie points were found but only {int(inl.sum())} agree "
                                   f"within {cfg.threshold_px} px. Try a larger --max-shift, a simpler "
                                   "--model (translation), another band, or check that both rasters show "
                                   "the same area.")
    local = None
    if kind == "local":
        for _ in range(2):  # fit, drop what the smooth model does not explain, refit
            local = fit_local(xy_t[inl], xy_r[inl], cfg)
            res = np.linalg.norm(local.forward(xy_t) - xy_r, axis=1)
            inl = res <= cfg.threshold_px
            if inl.sum() < needed:
                raise TooFewTiePointsError(int(inl.sum()), needed, kind, "inlier tie points")
    else:
        res = np.linalg.norm(apply_h(h, xy_t) - xy_r, axis=1)
    return FittedModel(kind, h, inl, res, local)


def _lsq(kind: str, xy_t: np.ndarray, xy_r: np.ndarray) -> np.ndarray:
    if kind == "translation":
        d = (xy_r - xy_t).mean(0)
        return np.array([[1, 0, d[0]], [0, 1, d[1]], [0, 0, 1]], dtype=np.float64)
    return _lsq_affine(xy_t, xy_r)


def _cells(xy: np.ndarray, cells: int) -> np.ndarray:
    """(N, 2) column and row, 0..cells-1, of each point on a cells x cells grid over its bounding box."""
    lo, hi = xy.min(0), xy.max(0) + 1e-9
    return np.floor((xy - lo) / (hi - lo) * cells).astype(int)


def spatial_cv_error(kind: str, xy_t: np.ndarray, xy_r: np.ndarray, folds: int = 4, cells: int = 4) -> float:
    """Median held-out residual when the model is fitted on some blocks of the scene and tested
    on the others. Errors of nearby tie points are correlated (same structures, same local
    distortion), so block-wise hold-out is what tells a real rotation or scale from a fit to
    local noise."""
    cell = _cells(xy_r, cells)
    fold = (cell[:, 0] + cell[:, 1] * cells) % folds
    errs = []
    for f in range(folds):
        train, test = fold != f, fold == f
        if train.sum() < MIN_INLIERS[kind] or test.sum() == 0:
            continue
        h = _lsq(kind, xy_t[train], xy_r[train])
        errs.append(np.linalg.norm(apply_h(h, xy_t[test]) - xy_r[test], axis=1))
    return float(np.median(np.concatenate(errs))) if errs else float("inf")


def affine_departure(xy_t: np.ndarray, xy_r: np.ndarray, extent: tuple[float, float, float, float] | None = None
                     ) -> tuple[float, float]:
    """How far a least-squares affine departs from a translation at the corners of ``extent``
    (x0, y0, x1, y1; default: the tie points' bounding box), and the standard error of that
    departure from a block jackknife that leaves out one quadrant of the tie points at a time.

    Tie-point errors are spatially correlated, so the jackknife over blocks, not the textbook
    formula, is what says whether a rotation, scale or shear is real or fitted to local noise.
    Returns (departure_px, standard_error_px); the error is inf when fewer than two quadrants
    can be left out."""
    if extent is None:
        (x0, y0), (x1, y1) = xy_t.min(0), xy_t.max(0)
    else:
        x0, y0, x1, y1 = extent
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    ha, ht = _lsq("affine", xy_t, xy_r), _lsq("translation", xy_t, xy_r)
    departure = float(np.linalg.norm(apply_h(ha, corners) - apply_h(ht, corners), axis=1).max())
    half = _cells(xy_r, 2)
    quadrant = half[:, 0] + 2 * half[:, 1]
    preds = [apply_h(_lsq("affine", xy_t[quadrant != q], xy_r[quadrant != q]), corners)
             for q in range(4) if MIN_INLIERS["affine"] <= (quadrant != q).sum() < len(xy_t)]
    k = len(preds)
    if k < 2:
        return departure, float("inf")
    p = np.array(preds)
    se = np.sqrt((k - 1) / k * ((p - p.mean(0)) ** 2).sum(-1).sum(0))  # per corner
    return departure, float(se.max())


AUTO_AFFINE_MIN_TIE_POINTS = 30  # five per affine parameter


def estimate_auto(xy_t: np.ndarray, xy_r: np.ndarray, cfg: EstimationConfig, margin: float = 0.10,
                  extent: tuple[float, float, float, float] | None = None, z: float = 1.0) -> FittedModel:
    """Translation unless an affine is clearly better and its extra parameters are worth it.

    The affine is kept when (1) it predicts held-out blocks of the scene better by ``margin``,
    (2) it rests on at least :data:`AUTO_AFFINE_MIN_TIE_POINTS` tie points, and (3) its departure
    from a translation at the corners of ``extent`` (the area that will be corrected) exceeds
    ``z`` block-jackknife standard errors: the translation's error there must be larger than the
    affine's own uncertainty. Without (2) and (3), a score of noisy tie points on a small scene
    can make an affine win the cross-validation and then extrapolate pixels of error to the
    corners. A distortion that leaves too few tie points within the threshold of any translation
    still gets the affine; too few tie points for an affine give the translation. Both models are
    compared on the union of their inliers."""
    try:
        aff = estimate(xy_t, xy_r, cfg, model="affine")
    except TooFewTiePointsError:
        tr = estimate(xy_t, xy_r, cfg, model="translation")
        tr.params["auto"] = {"chosen": "translation", "reason": "too few tie points for an affine"}
        return tr
    try:
        tr = estimate(xy_t, xy_r, cfg, model="translation")
    except TooFewTiePointsError:
        aff.params["auto"] = {"chosen": "affine", "reason": "translation found too few inliers"}
        return aff
    inl = aff.inliers | tr.inliers
    it, ir, n = xy_t[inl], xy_r[inl], int(inl.sum())
    cv_t = spatial_cv_error("translation", it, ir)
    cv_a = spatial_cv_error("affine", it, ir)
    dep, se = affine_departure(it, ir, extent)
    better = cv_a < (1 - margin) * cv_t
    chosen = aff if (better and n >= AUTO_AFFINE_MIN_TIE_POINTS and dep > z * se) else tr
    chosen.params["auto"] = {"chosen": chosen.kind, "cv_error_px": {"translation": cv_t, "affine": cv_a},
                             "tie_points": n, "affine_departure_px": dep,
                             "affine_departure_se_px": se}
    return chosen


def describe(model: FittedModel, centre_xy: np.ndarray) -> dict:
    """Human-readable parameters: shift at ``centre_xy``, rotation (deg), scales, shear."""
    c = np.asarray(centre_xy, np.float64).reshape(1, 2)
    shift = (model.forward(c) - c)[0]
    a = model.matrix[:2, :2] if model.local is None else model.matrix[:2, :2]
    sx = float(np.hypot(a[0, 0], a[1, 0]))
    sy = float(np.hypot(a[0, 1], a[1, 1]))
    rot = float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    shear = float((a[0, 0] * a[0, 1] + a[1, 0] * a[1, 1]) / (sx * sy + 1e-12))
    return {"shift_px_at_centre": [float(shift[0]), float(shift[1])], "rotation_deg": rot,
            "scale_x": sx, "scale_y": sy, "shear": shear}
