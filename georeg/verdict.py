"""The verdict on a registration: ``reliable``, ``uncertain`` or ``failed``, with its evidence.

A small residual is not evidence of a right answer: clouds that moved between two views, a
repeated pattern or a fit to a corner of the scene all give tight fits. The verdict therefore
rests on evidence the fit itself does not provide:

- agreement: at least half of the tie points must agree with the model;
- coverage: the share of the overlap that inlier tie points span (a 4x4 grid of cells);
- forward/backward agreement: the model fitted to the tie points found from the reference side
  alone and to those found from the target side alone must agree at the overlap's corners;
- structural agreement: the oriented-gradient structure of the two images must agree better
  after the correction than before it (when the correction moves anything by a pixel or more),
  measured over the whole overlap, where the tie points had no say in the weighting, and must
  agree at all after it (unrelated images score about 0 +- 0.03; :mod:`georeg.structure`);
- stability: the model refitted on block-bootstrap resamples of the inliers (whole cells of the
  scene are drawn, since errors of nearby tie points are correlated) must move the corners little;
- resolved geometry: the next richer model (a similarity over a translation or a rigid, an
  affine over a similarity), fitted to the same inliers, must not depart from the model by pixels at the
  overlap's corners with both the tie points (beyond two block-jackknife standard errors) and the
  image structure (a better agreement) behind it. Then the images move in a way the model does not
  follow, and its corners are an extrapolation: tie points bunched in a quarter of a NIR/VIS coast
  scene kept a translation 15 px wrong at the far side, with every other check passed;
- clouds (an optical/thermal pair): most inliers must not lie where the optical image is bright and
  the thermal one cold with their contrast inverted, nor see the two images' contrast strongly
  inverted around them, as around the edges of clouds a threshold mask leaves (:mod:`georeg.clouds`).
  Clouds move between the two sensors by their parallax and give tight, structure-improving fits to
  the wrong motion.

``failed`` is left to the estimator's own errors (too few tie points or inliers); the verdict
decides between ``reliable`` and ``uncertain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .estimation import MIN_INLIERS, FittedModel, _lsq, apply_h, describe, fit_translation
from .matching import FORWARD, TiePoints
from .model_choice import _cells, auto_chain, model_departure
from .structure import StructureProbe

MIN_COVERAGE = 0.25  # share of the overlap's 4x4 cells holding inliers
MIN_INLIER_FRACTION = 0.5  # fewer and most tie points disagree with the model (the pipeline's "weak")
MAX_DIRECTION_GAP_PX = 2.0  # forward-only vs backward-only models at the corners
MAX_UNSTABLE_PX = 3.0  # 90th percentile of the bootstrap corner displacement (typical error about half of it)
MIN_AGREEMENT = 0.08  # structural agreement after the correction: every correct reliable benchmark result
# scored 0.10 or more, the flat-terrain 3MOS RCM pairs whose rotation came out 4 px wrong 0.06
MIN_GAIN = 0.0  # corrected minus uncorrected structural agreement, when the correction moves >= 1 px
BOOTSTRAP = 40
UNRESOLVED_Z = 2.0  # block-jackknife standard errors a richer model's departure must exceed
UNRESOLVED_GAIN = 0.005  # and the gain in structural agreement it must bring (a fit to noise brings ~0)
# A georeferenced target turned by more than OVERRULE_TURN_DEG or scaled beyond OVERRULE_SCALE (either
# way) by its correction contradicts a georeferencing that is rarely that wrong: such a correction
# needs OVERRULE_TIE_POINTS inliers to be reliable. 3MOS ALOS desert 0 cut to 128 px, off by a
# shift only, came out turned by 70 degrees on 11 tie points, 108 px wrong, every other check passed
# (its structural agreement 0.09 was the best of the global search's 988 hypotheses); every correct
# reliable benchmark result turned or scaled that far rests on 75 or more.
OVERRULE_TURN_DEG = 20.0
OVERRULE_SCALE = 1.25
OVERRULE_TIE_POINTS = 30
# an optical/thermal model with this share of its inliers on cloud-like pixels is uncertain: 0.67-0.70
# on Landsat 8 B4/B10 without a mask (12.6 px off), at most 0.10 on the clear SRIF optical/infrared
# pairs and 0 on the masked Landsat pair (benchmarks/run.py --dump, 2026-12-04)
MAX_CLOUD_INLIER_SHARE = 0.4
# an optical/thermal model whose inliers this often see the two images' contrast strongly inverted
# (clouds.STRONG_INVERSION) is uncertain: 0.79-0.94 on every result that followed the clouds, a threshold
# mask's cloud edges included (14-15 px off, 16-39% of their inliers cloud-like); at most 0.36 on the
# 141 clear SRIF optical/infrared pairs (per-inlier dumps of benchmarks/cloud_masks.py --reference B8 and
# of run.py's SRIF and Landsat sets, 2026-12-06; benchmarks/HISTORY.md)
MAX_INVERTED_INLIER_SHARE = 0.6
SECOND_MOTION_SHARE = 0.2  # a second consistent motion this large (vs the inliers) makes a result uncertain


@dataclass
class Verdict:
    quality: str  # reliable | uncertain | failed
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line for the user."""
        return "; ".join(self.reasons) if self.reasons else "every check passed"

    def to_dict(self) -> dict:
        return {"quality": self.quality, "reason": self.reason, "reasons": self.reasons, **self.evidence}


def _corners(extent) -> np.ndarray:
    x0, y0, x1, y1 = extent
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [(x0 + x1) / 2, (y0 + y1) / 2]], np.float64)


def coverage(xy: np.ndarray, extent, cells: int = 4) -> float:
    """Share of the cells x cells grid over ``extent`` that hold at least one point."""
    x0, y0, x1, y1 = extent
    if len(xy) == 0:
        return 0.0
    cx = np.clip(((xy[:, 0] - x0) / max(x1 - x0, 1e-9) * cells).astype(int), 0, cells - 1)
    cy = np.clip(((xy[:, 1] - y0) / max(y1 - y0, 1e-9) * cells).astype(int), 0, cells - 1)
    return len(set(zip(cx.tolist(), cy.tolist()))) / cells ** 2


def _simple_kind(kind: str) -> str:
    return kind if kind in ("translation", "rigid", "similarity", "affine", "homography") else "affine"


def direction_gap(model: FittedModel, tp: TiePoints, extent) -> float | None:
    """Largest distance at the corners between the model refitted on forward-only and on
    backward-only inliers; None when one direction has too few."""
    kind = _simple_kind(model.kind)
    inl = model.inliers
    fwd, bwd = inl & (tp.direction == FORWARD), inl & (tp.direction != FORWARD)
    need = {"translation": 3, "rigid": 4, "similarity": 4, "affine": 6, "homography": 8}[kind]
    if fwd.sum() < need or bwd.sum() < need:
        return None
    c = _corners(extent)
    hf, hb = _lsq(kind, tp.xy_t_on_ref[fwd], tp.xy_r[fwd]), _lsq(kind, tp.xy_t_on_ref[bwd], tp.xy_r[bwd])
    return float(np.linalg.norm(apply_h(hf, c) - apply_h(hb, c), axis=1).max())


def instability(model: FittedModel, tp: TiePoints, extent, n: int = BOOTSTRAP, seed: int = 0) -> float | None:
    """90th percentile over block-bootstrap refits of the largest corner displacement, px."""
    kind = _simple_kind(model.kind)
    inl = model.inliers
    xt, xr = tp.xy_t_on_ref[inl], tp.xy_r[inl]
    if len(xt) < 4:
        return None
    cell = _cells(xr, 4)
    ids = cell[:, 0] + 4 * cell[:, 1]
    blocks = [np.flatnonzero(ids == b) for b in np.unique(ids)]
    if len(blocks) < 2:
        return None
    rng = np.random.default_rng(seed)
    c = _corners(extent)
    base = apply_h(_lsq(kind, xt, xr), c)
    moves = []
    for _ in range(n):
        pick = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        if len(np.unique(pick)) < {"translation": 2, "rigid": 3, "similarity": 3, "affine": 4, "homography": 6}[kind]:
            continue
        try:
            h = _lsq(kind, xt[pick], xr[pick])
        except np.linalg.LinAlgError:
            continue
        moves.append(np.linalg.norm(apply_h(h, c) - base, axis=1).max())
    return float(np.percentile(moves, 90)) if moves else None


def second_motion(model: FittedModel, tp: TiePoints, threshold_px: float) -> tuple[int, list[float] | None]:
    """The largest group of outlier tie points that agree on one offset from the model of their
    own, at least 1.5 thresholds away from it: clouds at other heights, a repeated pattern or a
    second surface. The offsets are the residuals under the model, so a group that moves with a
    rotated or scaled model plus a shift counts as well as one beside a translation. Returns (its
    size, its mean displacement) or (0, None)."""
    out = ~model.inliers
    if out.sum() < 4:
        return 0, None
    xt, xr = tp.xy_t_on_ref[out], tp.xy_r[out]
    res = xr - model.forward(xt)
    h, inl = fit_translation(np.zeros_like(res), res, threshold_px)
    if inl.sum() < 4 or np.linalg.norm(h[:2, 2]) < 1.5 * threshold_px:
        return 0, None
    d = (xr[inl] - xt[inl]).mean(0)
    return int(inl.sum()), [float(d[0]), float(d[1])]


def rival_motion(model: FittedModel, rivals: list[FittedModel], first_inliers: int, extent,
                 threshold_px: float) -> dict | None:
    """The first-pass model of another prior (``rivals``: each one that many tie points agreed
    with, see ``passes._several_motions``) that departs most from ``model`` at the corners of
    ``extent``, when it departs by at least 1.5 thresholds, as :func:`second_motion` asks of a
    group of outliers, and its tie points are at least SECOND_MOTION_SHARE of the
    ``first_inliers`` of the first pass kept (the same sample of tiles). The final tie points,
    matched around the kept model, cannot show a motion that far from it; that pass did: Landsat 8
    B4 against its B10 moved by (20, -20) px with the coldest tenth of B10 masked in both (a
    threshold a user might take for a cloud mask): 147 tie points agreed on the truth around no
    shift, 188 on the clouds' parallax around the coarse shift, which was kept (13.4 px off) and every
    other check passed. Returns {tie_points, shift_px (its correction at the centre), apart_px,
    first_inliers} or None."""
    c = _corners(extent)
    here = model.forward(c)
    best = None
    for r in rivals:
        apart = float(np.linalg.norm(r.forward(c) - here, axis=1).max())
        n = int(r.inliers.sum())
        if apart >= 1.5 * threshold_px and n >= SECOND_MOTION_SHARE * first_inliers and (
                best is None or apart > best["apart_px"]):
            best = {"tie_points": n, "shift_px": [float(v) for v in r.forward(c[4:])[0] - c[4]], "apart_px": apart,
                    "first_inliers": first_inliers}
    return best


def unresolved(model: FittedModel, tp: TiePoints, extent, probe: StructureProbe, after: float) -> dict | None:
    """The next richer model's departure at the corners of ``extent``, its jackknife standard
    error and its structural agreement, when the model is a translation, a rigid or a similarity
    with enough inliers to fit the next one (else None)."""
    kind = model.kind
    if kind not in ("translation", "rigid", "similarity"):
        return None
    richer = auto_chain(kind)[1]
    inl = model.inliers
    if inl.sum() < MIN_INLIERS[richer] + 2:
        return None
    xt, xr = tp.xy_t_on_ref[inl], tp.xy_r[inl]
    dep, se = model_departure(kind, richer, xt, xr, extent)
    agreement = None
    if dep > MAX_UNSTABLE_PX and np.isfinite(se):  # else nothing to doubt the model with
        fitted = _lsq(richer, xt, xr)
        polish = model.params.get("polish") or {}
        if polish.get("correction") is not None:  # compared like with like: moved as the model was
            fitted = np.asarray(polish["correction"]) @ fitted
        agreement = probe.matrix_agreement(fitted)
    return {"model": richer, "departure_px": dep, "departure_se_px": se if np.isfinite(se) else None,
            "structure": agreement, "structure_gain": None if agreement is None else agreement - after}


def _cloud_evidence(clouds: dict | None, inl: np.ndarray) -> dict | None:
    if clouds is None:
        return None
    from .clouds import STRONG_INVERSION

    flags, local = clouds["flags"], clouds["local_correlation"]
    return {"inlier_share": float(flags[inl].mean()) if inl.any() else 0.0,
            "inverted_inlier_share": float((local[inl] < STRONG_INVERSION).mean()) if inl.any() else 0.0,
            "share_of_overlap": clouds["share_of_overlap"], "coarse_px": clouds["coarse_px"]}


def _other_motions(n2: int, shift2, inliers: int, rival: dict | None) -> list[str]:
    """The reasons a second motion among the tie points (:func:`second_motion`) or another first
    pass's (:func:`rival_motion`) give."""
    out = []
    if n2 >= max(6, SECOND_MOTION_SHARE * inliers):
        out.append(f"{n2} other tie points agree on a different motion ({shift2[0]:.1f}, {shift2[1]:.1f} px) "
                   f"than the model's {inliers}: clouds, parallax or a repeated pattern? mask them")
    if rival is not None:
        out.append(f"matched from another starting point, {rival['tie_points']} tie points agreed on a motion "
                   f"{rival['apart_px']:.1f} px from the model's at the corners ({rival['first_inliers']} on the "
                   "model's in its first pass): clouds, parallax or a repeated pattern? mask them")
    return out


def _cloud_reasons(cloudy: dict) -> list[str]:
    """One reason when the inliers lie on clouds by either count (see :func:`_cloud_evidence`)."""
    advice = ("clouds, which move between the two sensors by their parallax{}; mask them (--ref-mask and "
              "--target-mask with the product's quality band: Landsat QA_PIXEL or BQA, Sentinel-2 SCL, HLS Fmask)")
    if cloudy["inlier_share"] >= MAX_CLOUD_INLIER_SHARE:
        return [f"{cloudy['inlier_share']:.0%} of the inliers lie where the optical image is bright and the thermal "
                "image cold, their contrast inverted: "
                + advice.format(f" (at most {MAX_CLOUD_INLIER_SHARE:.0%} expected)")]
    if cloudy["inverted_inlier_share"] >= MAX_INVERTED_INLIER_SHARE:
        return [f"around {cloudy['inverted_inlier_share']:.0%} of the inliers the optical image's bright structure "
                "lies on the thermal image's cold structure (their contrast strongly inverted; at most "
                f"{MAX_INVERTED_INLIER_SHARE:.0%} expected, clear ground rises in both): "
                + advice.format(", the edges of the clouds a threshold mask leaves included")]
    return []


def clouds_doubted(verdict: Verdict) -> bool:
    """Whether ``verdict`` finds the inliers on clouds."""
    cloudy = verdict.evidence.get("cloud_like")
    return cloudy is not None and bool(_cloud_reasons(cloudy))


def structure_agrees(verdict: Verdict) -> bool:
    """Whether the images' structure agrees under the model by ``verdict``'s checks: at all after the
    correction, and better than before it when it moves a pixel or more."""
    ev = verdict.evidence
    after = ev["structure_after"]
    return after >= MIN_AGREEMENT and (ev["correction_px"] < 1.0 or after - ev["structure_before"] > MIN_GAIN)


def judge(probe: StructureProbe, model: FittedModel, tp: TiePoints, extent, threshold_px: float = 3.0,
          georeferenced: bool = False, clouds: dict | None = None, rival: dict | None = None) -> Verdict:
    """``reliable`` when every check passes, ``uncertain`` with the reasons otherwise.
    ``georeferenced``: the target's georeferencing is a prior that a turn or scale far from it
    must overrule with enough tie points (:data:`OVERRULE_TIE_POINTS`). ``rival``: another first
    pass's motion (:func:`rival_motion`)."""
    c = _corners(extent)
    moved = float(np.linalg.norm(model.forward(c) - c, axis=1).max())
    inl = model.inliers
    cov = coverage(tp.xy_r[inl], extent)
    gap = direction_gap(model, tp, extent)
    unstable = instability(model, tp, extent)
    n2, shift2 = second_motion(model, tp, threshold_px)
    before = probe.agreement(None)
    after = probe.model_agreement(model)
    richer = unresolved(model, tp, extent, probe, after)
    turn = describe(model, c[4])["rotation_deg"]
    scale = float(np.sqrt(abs(np.linalg.det(model.matrix[:2, :2]))))  # isotropic: the area's
    # The corner checks are in pixels of the coarser picture: a target whose content is coarser
    # than the working grid (scale > 1) places its tie points to a fraction of its own pixel.
    unit = max(1.0, scale)
    max_gap, max_unstable = MAX_DIRECTION_GAP_PX * unit, MAX_UNSTABLE_PX * unit
    ev = {"coverage": cov, "direction_gap_px": gap, "instability_px": unstable,
          "structure_before": before, "structure_after": after, "correction_px": moved,
          "inlier_fraction": float(inl.mean()) if len(inl) else 0.0,
          "second_motion": {"tie_points": n2, "shift_px": shift2}, "rival_motion": rival, "richer_model": richer,
          "turn_deg": turn, "scale": scale, "cloud_like": _cloud_evidence(clouds, inl),
          "thresholds": {"inlier_fraction": MIN_INLIER_FRACTION, "coverage": MIN_COVERAGE,
                         "direction_gap_px": max_gap, "instability_px": max_unstable,
                         "coarser_pixel_px": unit,
                         "structure_after": MIN_AGREEMENT, "richer_model_z": UNRESOLVED_Z,
                         "richer_model_gain": UNRESOLVED_GAIN, "overrule_turn_deg": OVERRULE_TURN_DEG,
                         "overrule_scale": OVERRULE_SCALE, "overrule_tie_points": OVERRULE_TIE_POINTS,
                         "cloud_like_inlier_share": MAX_CLOUD_INLIER_SHARE,
                         "inverted_inlier_share": MAX_INVERTED_INLIER_SHARE}}
    reasons = []
    if len(inl) and inl.mean() < MIN_INLIER_FRACTION:
        reasons.append(f"only {inl.mean():.0%} of the tie points agree with the model "
                       f"(at least {MIN_INLIER_FRACTION:.0%} expected)")
    if cov < MIN_COVERAGE:
        reasons.append(f"the inliers cover {cov:.0%} of the overlap (at least {MIN_COVERAGE:.0%} expected)")
    if gap is None:
        reasons.append("tie points from one matching direction alone are too few to confirm the model")
    elif gap > max_gap:
        reasons.append(f"reference-side and target-side tie points disagree by {gap:.1f} px at the corners "
                       f"(at most {max_gap:.1f} expected)")
    if unstable is not None and unstable > max_unstable:
        reasons.append(f"the model moves by {unstable:.1f} px at the corners when the tie points are resampled "
                       f"(at most {max_unstable:.1f} expected)")
    reasons += _other_motions(n2, shift2, int(inl.sum()), rival)
    if (richer is not None and richer["structure_gain"] is not None
            and richer["departure_px"] > max(max_unstable, UNRESOLVED_Z * richer["departure_se_px"])
            and richer["structure_gain"] > UNRESOLVED_GAIN):
        motion = {"translation": "rotation or scale", "rigid": "scale"}.get(model.kind, "shear")
        article = "an" if richer["model"][0] in "aeiou" else "a"
        reasons.append(f"the images also show a {motion} that the {model.kind} does not follow: {article} "
                       f"{richer['model']} fitted to the same tie points "
                       f"departs from it by {richer['departure_px']:.1f} +- {richer['departure_se_px']:.1f} px "
                       f"at the corners and makes the images agree better; the tie points are too few or "
                       f"too bunched to fit it reliably")
    if (georeferenced and (abs(turn) > OVERRULE_TURN_DEG or not 1 / OVERRULE_SCALE <= scale <= OVERRULE_SCALE)
            and inl.sum() < OVERRULE_TIE_POINTS):
        reasons.append(f"the correction turns the target by {turn:.0f} degrees and scales it by {scale:.2f} "
                       f"against its georeferencing on {int(inl.sum())} tie points: overruling a "
                       f"georeferencing that far takes at least {OVERRULE_TIE_POINTS}")
    cloudy = ev["cloud_like"]
    if cloudy is not None and inl.sum():
        reasons += _cloud_reasons(cloudy)
    if after < MIN_AGREEMENT:
        reasons.append(f"the images share little structure even after the correction (agreement {after:.3f}, "
                       f"at least {MIN_AGREEMENT} expected; unrelated images score about 0): too little to "
                       "confirm the tie points")
    if moved >= 1.0 and after - before <= MIN_GAIN:
        reasons.append(f"the correction ({moved:.1f} px) does not improve the structural agreement of the "
                       f"images ({before:.3f} before, {after:.3f} after)")
    return Verdict("uncertain" if reasons else "reliable", reasons, ev)
