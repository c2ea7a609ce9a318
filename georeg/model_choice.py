"""How ``model="auto"`` chooses among translation (or rigid), similarity, affine and homography:
:func:`estimate_auto` climbs :func:`auto_chain` while a richer model predicts held-out blocks of
the scene better (:func:`spatial_cv_error`) and departs from the simpler one by more than its own
block-jackknife uncertainty (:func:`model_departure`), with the thresholds below. Each candidate
is fitted by :func:`georeg.estimation.estimate`.
"""

from __future__ import annotations

import numpy as np

from .config import EstimationConfig
from .errors import TooFewTiePointsError
from .estimation import MIN_INLIERS, FittedModel, _lsq, apply_h, estimate


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


def model_departure(simple: str, rich: str, xy_t: np.ndarray, xy_r: np.ndarray,
                    extent: tuple[float, float, float, float] | None = None) -> tuple[float, float]:
    """How far a least-squares ``rich`` model departs from a ``simple`` one at the corners of
    ``extent`` (x0, y0, x1, y1; default: the tie points' bounding box), and the standard error of
    that departure from a block jackknife that leaves out one quadrant of the tie points at a time.

    Tie-point errors are spatially correlated, so the jackknife over blocks, not the textbook
    formula, is what says whether a rotation, scale or shear is real or fitted to local noise.
    Returns (departure_px, standard_error_px); the error is inf when fewer than two quadrants
    can be left out."""
    if extent is None:
        (x0, y0), (x1, y1) = xy_t.min(0), xy_t.max(0)
    else:
        x0, y0, x1, y1 = extent
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    hr, hs = _lsq(rich, xy_t, xy_r), _lsq(simple, xy_t, xy_r)
    departure = float(np.linalg.norm(apply_h(hr, corners) - apply_h(hs, corners), axis=1).max())
    half = _cells(xy_r, 2)
    quadrant = half[:, 0] + 2 * half[:, 1]
    preds = [apply_h(_lsq(rich, xy_t[quadrant != q], xy_r[quadrant != q]), corners)
             for q in range(4) if MIN_INLIERS[rich] <= (quadrant != q).sum() < len(xy_t)]
    k = len(preds)
    if k < 2:
        return departure, float("inf")
    p = np.array(preds)
    se = np.sqrt((k - 1) / k * ((p - p.mean(0)) ** 2).sum(-1).sum(0))  # per corner
    return departure, float(se.max())


def affine_departure(xy_t: np.ndarray, xy_r: np.ndarray, extent: tuple[float, float, float, float] | None = None
                     ) -> tuple[float, float]:
    """:func:`model_departure` of an affine from a translation."""
    return model_departure("translation", "affine", xy_t, xy_r, extent)


AUTO_AFFINE_MIN_TIE_POINTS = 30  # five per affine parameter
# the fewest tie points for which auto considers each richer model: about five per parameter
# (four for the similarity, whose extra rotation and scale are the commonest real departures)
AUTO_MIN_TIE_POINTS = {"similarity": 16, "affine": AUTO_AFFINE_MIN_TIE_POINTS, "homography": 48}
AUTO_CHAIN = ("translation", "similarity", "affine", "homography")
# standard errors a richer model's departure must exceed: the similarity needs two, since with 16-30
# tie points in a few correlated regions a rotation of the noise clears one in about a fifth of draws.
# The homography needs four, measured where its tie points are (see estimate_auto): with 183 tie
# points on NIR-VIS City 3, errors shared over regions made one depart from the affine by 3.2
# standard errors, and it put 3 px of error at the edges of a scene whose truth is affine.
AUTO_Z = {"similarity": 2.0, "affine": 1.0, "homography": 4.0}
# Below AUTO_MIN_TIE_POINTS, down to three per parameter, a richer model is still taken when its
# departure is overwhelming: AUTO_STRONG_Z block-jackknife standard errors (a 4-block jackknife's
# t has 3 degrees of freedom, so noise reaches 4 in about 3% of draws, against 20% for one), and
# the pipeline then asks the images' structure to agree. A NIR-VIS coast scene with 28 tie points,
# most on one shore, kept a similarity 31 px wrong whose affine departed 27 +- 5.7 px.
AUTO_FEW_TIE_POINTS = {"similarity": 12, "affine": 18}
AUTO_STRONG_Z = 4.0
# A homography whose held-out blocks are predicted at least twice as well as the affine's
# (AUTO_CLEAR_CV) needs AUTO_CLEAR_Z standard errors instead of four: the cross-validation is
# evidence of its own. Errors shared within regions of an affine truth did not halve it in 700
# draws (the City 3 case of tests/test_estimation.py and 0.3-1 px shared in quarters of 55-300 tie
# points: ratio 0.65 at best); a real perspective does (the RIFT day-night pair, its target
# turned 15 deg and scaled 1.6x: ratio 0.37, departure 3.6 SE; the affine kept under four put
# 2.4 px of error at the edges, the homography 1.0 px).
AUTO_CLEAR_CV = 0.5
AUTO_CLEAR_Z = {"homography": 2.5}


def auto_chain(base: str) -> tuple[str, ...]:
    """The models ``auto`` climbs from ``base``. A ``rigid`` base (a rotation that evidence outside
    the tie points established, at a scale it could not tell from 1) climbs to the similarity and
    on as from a translation; a translation climbs straight to the similarity, since on
    georeferenced data a rotation without a scale change is no likelier than with one."""
    if base == "rigid":
        return ("rigid",) + AUTO_CHAIN[1:]
    return AUTO_CHAIN[AUTO_CHAIN.index(base):]


def estimate_auto(xy_t: np.ndarray, xy_r: np.ndarray, cfg: EstimationConfig, margin: float = 0.10,
                  extent: tuple[float, float, float, float] | None = None, z: float = 1.0,
                  base: str = "translation") -> FittedModel:
    """The simplest model of translation (or rigid) < similarity < affine < homography that the
    evidence supports, starting at ``base`` (see :func:`auto_chain`).

    A richer model replaces the current one when (1) it predicts held-out blocks of the scene
    better by ``margin``, (2) it rests on at least :data:`AUTO_MIN_TIE_POINTS` tie points, and (3)
    its departure from the current model at the corners of ``extent`` (the area that will be
    corrected) exceeds ``z`` times :data:`AUTO_Z` block-jackknife standard errors: the simpler
    model's error there must be larger than the richer model's own uncertainty. With fewer tie
    points than (2) asks, down to :data:`AUTO_FEW_TIE_POINTS`, (3) asks for :data:`AUTO_STRONG_Z`
    standard errors; a homography that halves the held-out error needs :data:`AUTO_CLEAR_Z`
    (:data:`AUTO_CLEAR_CV`). Without (2) and (3), a score of noisy tie
    points on a small scene can make a richer model win the cross-validation and then extrapolate
    pixels of error to the corners. When ``base`` finds too few inliers, the next model that does
    is taken; too few tie points for anything richer keep ``base``. The homography is tried only
    over an accepted affine. Models are compared on the union of their inliers."""
    chain = auto_chain(base)
    current, reason, first = None, None, None
    for k, kind in enumerate(chain):
        try:
            current = estimate(xy_t, xy_r, cfg, model=kind)
        except TooFewTiePointsError as exc:
            first = first or exc  # the simplest model's shortfall is the one to report
            if k == len(chain) - 1 or len(xy_t) < MIN_INLIERS[chain[k + 1]]:
                raise first from None
            reason = f"{kind} found too few inliers"
            continue
        break
    steps = {}
    for kind in chain[chain.index(current.kind) + 1:]:
        if kind == "homography" and current.kind != "affine":
            # perspective terms refine an affine; without one they fit the scene's local noise
            steps[kind] = {"accepted": False, "reason": "tried only once an affine is accepted"}
            continue
        try:
            rich = estimate(xy_t, xy_r, cfg, model=kind)
        except TooFewTiePointsError:
            steps[kind] = {"accepted": False, "reason": "too few tie points"}
            continue
        ok, steps[kind] = _richer_step(current, rich, xy_t, xy_r, extent, margin, z)
        if ok:
            current = rich
    current.params["auto"] = {"chosen": current.kind, "base": base, "steps": steps}
    if reason:
        current.params["auto"]["reason"] = reason
    # the figures of the translation/affine comparison, as earlier reports carried them
    aff = steps.get("affine", {})
    if "departure_px" in aff:
        current.params["auto"].update(cv_error_px=aff["cv_error_px"], tie_points=aff["tie_points"],
                                      affine_departure_px=aff["departure_px"],
                                      affine_departure_se_px=aff["departure_se_px"])
    return current


def _richer_step(current: FittedModel, rich: FittedModel, xy_t: np.ndarray, xy_r: np.ndarray,
                 extent, margin: float, z: float) -> tuple[bool, dict]:
    """(whether ``rich`` replaces ``current``, the step's figures for the report): the rules (1)
    to (3) of :func:`estimate_auto` on the union of both models' inliers."""
    kind = rich.kind
    inl = rich.inliers | current.inliers
    it, ir, n = xy_t[inl], xy_r[inl], int(inl.sum())
    few = n < AUTO_MIN_TIE_POINTS[kind]
    if few and n < AUTO_FEW_TIE_POINTS.get(kind, AUTO_MIN_TIE_POINTS[kind]):
        return False, {"accepted": False, "reason": f"{n} tie points, {AUTO_MIN_TIE_POINTS[kind]} needed",
                       "tie_points": n}
    cv_s = spatial_cv_error(current.kind, it, ir)
    cv_r = spatial_cv_error(kind, it, ir)
    # perspective terms diverge outside the tie points: judged at the corners of the extent, a
    # homography fitted to 1 px of correlated residuals (NIR-VIS City 3, whose truth is affine)
    # departs 4.7 +- 1.3 px and then puts 3 px of error there. Its evidence must come from the
    # area the tie points cover.
    dep, se = model_departure(current.kind, kind, it, ir, None if kind == "homography" else extent)
    need_z = max(AUTO_STRONG_Z, z * AUTO_Z[kind]) if few else z * AUTO_Z[kind]
    clear = not few and kind in AUTO_CLEAR_Z and cv_r <= AUTO_CLEAR_CV * cv_s
    if clear:
        need_z = min(need_z, z * AUTO_CLEAR_Z[kind])
    ok = bool(cv_r < (1 - margin) * cv_s and dep > need_z * se)
    step = {"accepted": ok, "against": current.kind, "tie_points": n,
            "cv_error_px": {current.kind: cv_s, kind: cv_r}, "departure_px": dep, "departure_se_px": se}
    if clear:
        step["clear_cross_validation"] = f"held-out error halved: needs {need_z:g} SE"
    if few:
        step["few_tie_points"] = f"{n} tie points (under {AUTO_MIN_TIE_POINTS[kind]}): needs {need_z:g} SE"
    return ok, step
