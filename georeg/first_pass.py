"""The first pass and its fallbacks (:func:`stage_first_pass`): the near pass that starts from the
coarse shift, the shift passes, and, where the georeferencing cannot be trusted, the global search
of rotation and scale (:mod:`georeg.globalgeom`) with its finer and framed second tries and the
runners-up verified by the tile matching."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .estimation import FittedModel, estimate, shift_matrix
from .matching import TiePoints
from .passes import (
    _best,
    _clearly_more,
    _describe_fit,
    _first_kind,
    _inliers,
    _matched_sample,
    _max_move,
    _ranked_again,
    _sample,
    _several_motions,
    _shift_prior,
    _weak,
    pass_roles,
    sampled_pass,
)

if TYPE_CHECKING:
    from .pipeline import Scene

log = logging.getLogger(__name__)


# 'auto' does not search rotation and scale on an overlap less usable than this (in both rasters):
# nothing is found there, slowly (a 320 px pair under 99.6% cloud searched for 27 s, twice, before failing)
GLOBAL_MIN_USABLE_SHARE = 0.02


NEAR_COARSE_FACTOR = 2.0  # coarse grid px per working px at most for the near pass
# inliers the near pass needs, as a share of the keypoints it searched (both directions): a
# coarse shift 20 px off (beyond the refinement radius) left 9 tie points for 222 keypoints on a
# 320 px synthetic pair, 7 of them agreeing on a wrong model that was not weak by fraction
NEAR_MIN_INLIERS = 0.25


def _near_prior(sc: Scene) -> FittedModel | None:
    """The coarse shift as a translation, when the tile matching starts from it with a refinement
    pass (:func:`stage_first_pass`): accepted, found on a grid at most NEAR_COARSE_FACTOR times
    coarser than the working grid (its sub-pixel peak is then within a pixel or two of the tie
    points' shift, inside the refinement radius), with ``matching.near_pass`` and refinement on,
    rotation not asked to be searched, and a global model (the local one matches every tile)."""
    m, c = sc.cfg.matching, sc.coarse
    if not (m.near_pass and m.refine and m.search != "rotation" and c.accepted and c.factor <= NEAR_COARSE_FACTOR
            and sc.cfg.estimation.model != "local"):
        return None
    return FittedModel("translation", shift_matrix(-c.shift_px[0], -c.shift_px[1]), np.ones(0, bool), np.zeros(0))


def _refine_radius(sc: Scene) -> int:
    return int(sc.cfg.matching.refine_radius_px + math.ceil(sc.cfg.estimation.threshold_px))


def _near_pass(sc: Scene) -> bool:
    """A first pass at the refinement radius through the coarse shift (:func:`_near_prior`). Its
    model becomes the first model unless it is weak (the coarse peak was a decoy, or the scene
    is turned or scaled beyond the radius); the first pass at the full radius then follows as
    without it. Whether it made the first model."""
    near = _near_prior(sc)
    if near is None:
        return False
    sc.first_passes += 1
    roles = pass_roles(sc, False)
    radius, kind = _refine_radius(sc), _first_kind(sc)
    tp, model = _matched_sample(sc, near.inverse, radius, kind, False, roles)
    sc.near_ranked = roles.ranker is not None
    again = _ranked_again(sc, roles, near.inverse, radius, kind, tp, model, _near_weak(tp, model))
    if again is not None:  # as a weak first pass is (sampled_pass)
        tp, model = _best(tp, model, *again)
        sc.near_ranked = tp is again[0]
    sc.clock.lap("pass1")
    if _near_weak(tp, model):
        log.info("the pass through the coarse shift is weak (%s, %d keypoints searched); a first pass at the "
                 "full radius", _describe_fit(model, tp), tp.searched)
        sc.near_weak = True
        sc.steps_total += len(_sample(sc, refine=False))
        return False
    sc.tp, sc.model, sc.passes, sc.near = tp, model, 1, near
    return True


def _near_weak(tp: TiePoints, model: FittedModel | None) -> bool:
    return _weak(model) or _inliers(model) < NEAR_MIN_INLIERS * tp.searched


def _near_pass_was_refinement(sc: Scene) -> bool:
    """Whether the near pass already was the refinement pass: it matched the refinement's tiles
    with its matchers (the learned ranker where a refinement pass adds it: a weak structural near
    pass is matched again with it) through a model that lies within a pixel of the model it
    found, where a refinement pass would stop."""
    if sc.near is None or _sample(sc, refine=False) != _sample(sc, refine=True):
        return False
    if (pass_roles(sc, refine=True).ranker is not None) != sc.near_ranked:
        return False
    return _max_move(sc.near, sc.model, sc.extent) < 1.0


def stage_first_pass(sc: Scene) -> None:
    """Find the first model. A confident coarse shift on a small scene is refined at once
    (:func:`_near_pass`); unless that gives a clear model:
    when the coarse pass found no clear shift (or ``search='rotation'``),
    the global geometry (rotation and scale) is searched first, and a clear rotation or scale
    becomes the prior of the tile matching. Otherwise, or when that finds no clear model, match
    around the coarse shift, then around the other shift hypothesis, and finally try the global
    geometry if no clear model came out, unless many tie points agree with the model
    (:func:`_several_motions`)."""
    if _near_pass(sc):
        return
    radius = sc.radius
    search = sc.cfg.matching.search
    if search == "auto" and sc.coarse.valid_fraction < GLOBAL_MIN_USABLE_SHARE:
        log.info("%.1f%% of the overlap is usable in both rasters: too little to search rotation and scale",
                 100 * sc.coarse.valid_fraction)
        search = "shift"
    tp, model = None, None
    if search == "rotation" or (search == "auto" and not sc.coarse.accepted):
        tp, model = _global_stage(sc, None, None, radius, fallback=search != "rotation")
    if search == "auto" and _turn_on_few_tie_points(sc, model):
        tp, model = _georeferencing_against_turn(sc, tp, model, radius)
    settled = sc.prior_several_motions = _prior_with_several_motions(sc, model)
    if search != "rotation" and _weak(model) and not settled:
        tp_g, model_g = tp, model
        sc.geometry_used = False  # the shift passes fit from a translation
        tp, model = _best(*_shift_passes(sc, radius), tp_g, model_g)
        sc.geometry_used = tp is not None and tp is tp_g
        # a weak model that many tie points agree with is a scene of several motions, not a
        # geometry the shift passes missed (the 10980 px mosaic searched 6 s for an identity)
        if search == "auto" and _weak(model) and not _several_motions(model) and sc.geometry is None:
            sc.clock.lap("pass1")
            tp, model = _global_stage(sc, tp, model, radius, fallback=True)
    # a global search ran (never with search="shift") and left no clear model
    if _weak(model) and sc.geometry is not None and sc.fallback_searches and not settled:
        sc.clock.lap("pass1")
        tp, model = _finer_global_stage(sc, tp, model, radius)
    if (_weak(model) and sc.geometry is not None and sc.frame is not None and sc.fallback_searches
            and not settled):
        sc.clock.lap("pass1")
        tp, model = _framed_global_stage(sc, tp, model, radius)
    sc.clock.lap("pass1")
    if model is None:  # raise the estimator's own error, with its advice
        model = estimate(tp.xy_t_on_ref, tp.xy_r, sc.cfg.estimation, model=_first_kind(sc), extent=sc.extent,
                         base=sc.base_model)
    sc.tp, sc.model, sc.passes = tp, model, 1
    sc.rivals, sc.first_inliers = [m for m in sc.motions if m is not model], max(_inliers(model), 0)


def _turn_on_few_tie_points(sc: Scene, model: FittedModel | None) -> bool:
    """Whether the global search's turn or scale made the first model of a georeferenced target
    from fewer tie points than :data:`georeg.verdict.OVERRULE_TIE_POINTS`: the search's prior was
    used, it is beyond what the tie points are left to establish on their own
    (:attr:`Scene.base_model`), and the model is not weak."""
    from .verdict import OVERRULE_TIE_POINTS

    return (not sc.tgt.pixel_frame and sc.geometry is not None and sc.geometry_used
            and sc.base_model != "translation" and not _weak(model) and _inliers(model) < OVERRULE_TIE_POINTS)


def _prior_with_several_motions(sc: Scene, model: FittedModel | None) -> bool:
    """Whether the global search's turn or scale made a first model that is weak only as a scene
    of several motions is (:func:`_several_motions`: many tie points agree with it, close to half
    of them). A wrong prior does not gather hundreds of agreeing tie points, so the fallbacks
    after it (the shift passes, a second and a framed search) would only look for the same
    geometry again, or under no turn at all, where a sample that finds nothing goes on over every
    tile: the 10980 px S2/S1 mosaic (blocks of three pairs whose residual offsets differ) with its
    target turned 12 degrees had 962 of 1982 tie points agree under the search's prior (49%), then
    matched all 121 tiles twice with no turn, and found the same rigid model after 875 s."""
    if sc.geometry is None or not sc.geometry_used or not _weak(model) or not _several_motions(model):
        return False
    log.info("the global search's prior (rotation %.1f deg, scale %.3f) gave a model that %d tie points "
             "agree with, %.0f%% of them: several motions in the scene, not another geometry to look for",
             sc.geometry.rotation_deg, sc.geometry.scale, _inliers(model), 100 * model.inliers.mean())
    return True


def _georeferencing_against_turn(sc: Scene, tp, model, radius: int):
    """A turn or scale that a few tie points found under the global search's prior
    (:func:`_turn_on_few_tie_points`) against the georeferencing: match around the coarse shift
    as well (:func:`_shift_passes`) and keep the turned model only when it makes the two images
    agree better over the whole overlap (:meth:`georeg.structure.StructureProbe.model_agreement`,
    structure the tie points had no say in) than the shift passes' model. A georeferencing is
    rarely turned or scaled that far; on a tie, it wins.

    3MOS Redarsat rural 1 cut to 128 px, off by a shift only: the coarse shift was right but fell
    short of its confidence, the search put -11 degrees and 0.94x first (z 5.0, the identity 3.98),
    and 10 tie points under that prior agreed on -8.4 degrees: 16.8 px off at the corners, every
    check of the verdict passed. The truth's translation agrees better with the images (0.127
    against 0.120)."""
    probe = sc.structure_probe()
    turned = probe.model_agreement(model)
    log.info("the global search's prior (rotation %.1f deg, scale %.3f) gave a model on %d tie points; "
             "matching around the coarse shift as well", sc.geometry.rotation_deg, sc.geometry.scale, _inliers(model))
    sc.geometry_used = False  # the shift passes fit from a translation
    sc.steps_total += len(_sample(sc, refine=False))
    tp_s, model_s = _shift_passes(sc, radius)
    shifted = None if _weak(model_s) else probe.model_agreement(model_s)
    keep_shift = shifted is not None and shifted >= turned
    sc.georeferencing_check = {
        "turned": {"kind": model.kind, "inliers": _inliers(model), "structure": turned},
        "shift": {"kind": None if model_s is None else model_s.kind, "inliers": max(_inliers(model_s), 0),
                  "structure": shifted},
        "kept": "shift" if keep_shift else "turned",
        "rule": "the turned model must make the images agree better than the shift passes' model"}
    if keep_shift:
        log.info("the shift passes' %s agrees with the images as well as the turned %s (%.4f vs %.4f): kept",
                 model_s.kind, model.kind, shifted, turned)
        return tp_s, model_s
    sc.geometry_used = True
    return tp, model


def _shift_passes(sc: Scene, radius: int):
    """Match around the coarse shift (or none); when that is weak and the coarse pass fell short
    of its confidence, around the coarse shift as the other hypothesis (it matters when the true
    shift lies beyond max_shift). Keeps whichever explains more."""
    shift = np.array(sc.coarse.shift_px) if sc.coarse.accepted else np.zeros(2)
    tp, model = sampled_pass(sc, _shift_prior(shift), radius, _first_kind(sc))
    alt = np.array(sc.coarse.shift_px)
    if not sc.coarse.accepted and np.abs(alt - shift).max() > 1.0 and _weak(model):
        log.info("first pass weak (%s); trying the coarse shift %.1f, %.1f px as the prior",
                 _describe_fit(model, tp), *alt)
        sc.steps_total += len(_sample(sc, refine=False))
        tp_alt, model_alt = sampled_pass(sc, _shift_prior(alt), radius, _first_kind(sc))
        tp, model = _best(tp, model, tp_alt, model_alt)
    return tp, model


FINER_GLOBAL_SIZE = 192  # px across the overlap of the second global search (the first: 128)


def _finer_global_stage(sc: Scene, tp, model, radius: int):
    """Every prior so far left the tile matching without a clear model: search rotation and scale
    again at FINER_GLOBAL_SIZE px and verify that search's priors. Its result replaces the one so
    far only when it explains clearly more (:func:`_clearly_more`). On S1/S2 PNG pair 169 turned
    12.3 degrees and scaled 0.935, the 128 px search put a 0.5x target first (z 13.1) and neither
    runner-up was right; at 192 px the true geometry wins by 5.2x the next basin (12.0 degrees,
    0.937). Paid only where nothing else worked, about 9 s on a 1024 px pair, and not where the
    first search saw the overlap at full resolution or clearly found no rotation or scale (an
    accepted identity, within the search's finest steps: the 4096 and 10980 px S1/S2 mosaics,
    whose weakness is their second motion, paid 7-8 s for a second identity; the 256 px 3MOS
    pair Redarsat_mountain_4 shifted by (-5.7, 4.8) px, accepted at 0.5 degrees and 1.022, paid
    10 s for a 0.65x winner that the shift passes' translation then outvoted). This search also
    seeds magnified scales at its full size (S1/S2 pair 176 turned -176.3 degrees and magnified
    1.9x: at 192 px it finds -176.5 degrees and 0.511 by 3.0x the next basin, where without those
    seeds it put -44.5 degrees first)."""
    first = sc.geometry
    if first.factor <= 1.0 or (first.accepted and first.near_identity):
        return tp, model
    log.info("no prior gave a clear model (%s); searching rotation and scale at %d px",
             _describe_fit(model, tp), FINER_GLOBAL_SIZE)
    return _another_search(sc, tp, model, radius, size=FINER_GLOBAL_SIZE, seed_magnified=True)


def _another_search(sc: Scene, tp, model, radius: int, **search):
    """Search rotation and scale once more (``search``: :func:`_global_stage`'s size,
    seed_magnified, frame) and verify its priors. Its result replaces the one so far only when it
    explains clearly more (:func:`_clearly_more`); ``sc.geometry`` is the search kept, with the
    other summarised as its ``other_search``."""
    first, used_before = sc.geometry, sc.geometry_used
    tp_s, model_s = _global_stage(sc, None, None, radius, fallback=True, **search)
    second = sc.geometry
    if tp_s is not None and (tp is None or _clearly_more(model_s, model)):
        kept, other, (tp, model) = second, first, (tp_s, model_s)
    else:
        kept, other, sc.geometry_used = first, second, used_before
    sc.geometry = replace(kept, other_search={**other.summary(), "used": False})  # the one not used
    return tp, model


def _framed_global_stage(sc: Scene, tp, model, radius: int):
    """Pictures of different sizes (:func:`picture_frame`) that no prior so far gave a clear model:
    search rotation and scale once more from the placement where both show the same ground, and
    keep it when it explains clearly more. Last, because a smaller picture is as often a crop at
    the reference's scale, which the searches before find (S1 crops of 320 px in the 1024 px S2
    picture of pair 176): S1/S2 PNG pair 163 with the SAR at 512 px failed every search before
    (`uncertain`, 650 px off) and registers within 0.5 px of the full-size pair through this one."""
    log.info("no prior gave a clear model (%s); searching rotation and scale with the target's picture "
             "stretched onto the reference's", _describe_fit(model, tp))
    return _another_search(sc, tp, model, radius, frame=sc.frame)


def _global_stage(sc: Scene, tp, model, radius: int, fallback: bool, size: int = 128, seed_magnified: bool = False,
                  frame: np.ndarray | None = None):
    """Rotation over the full circle and scale over 0.5x-2x (searched at ``size`` px across the
    overlap); the tile matching again under that prior. With ``fallback`` (a shift-only search
    was or will be tried), an unclear or identity-like geometry changes nothing, and the result
    that explains more tie points is kept."""
    from .globalgeom import search_geometry

    if tp is not None:
        log.info("first pass weak (%s); searching rotation and scale", _describe_fit(model, tp))
    sc.notify(0.05 + 0.8 * min(1.0, sc.steps_done / max(sc.steps_total, 1)), "searching rotation and scale")
    geometry = search_geometry(sc.ref, sc.tgt, sc.grid, sc.overlap, size=size, seed_magnified=seed_magnified,
                               frame=frame)
    sc.clock.lap("global")
    sc.check_cancel()
    sc.geometry = geometry
    if fallback and (not geometry.accepted or geometry.is_identity_like):
        sc.geometry_used = False
        return tp, model
    sc.steps_total += len(_sample(sc, refine=False))
    sc.geometry_used = True
    tp_g, model_g = sampled_pass(sc, geometry.inverse, radius, _first_kind(sc))
    if _weak(model_g) and not _several_motions(model_g):  # see _prior_with_several_motions
        tp_g, model_g = _verify_runners_up(sc, geometry, tp_g, model_g, radius, fallback)
    if tp is None or _inliers(model_g) > _inliers(model):
        return tp_g, model_g
    sc.geometry_used = False
    return tp, model


def _verify_runners_up(sc: Scene, geometry, tp, model, radius: int, fallback: bool):
    """The winner's prior left the tile matching without a clear model: try the search's
    runners-up (other basins) as priors, in order, until one gives a clear model (at least half of
    its tie points agree). The prior that the most tie points agree with is kept (``sc.geometry``
    then records every prior tried): a learned matcher's extra candidates can leave the true prior
    just under half (S1/S2 PNG pair 169: 165 of 342, against 6 of 109 for the winner). A prior
    ranked lower by the search must explain clearly more (:func:`_clearly_more`): on a 256 px
    3MOS pair turned 9.5 degrees the winner (9.0 degrees, right) had 9 inliers, a runner-up
    (-147.5 degrees at 2.18x) 10, and the result went 500 px astray. Identity-like runners-up
    are left to the shift passes when those are tried (``fallback``)."""
    tried = [{"rank": 0, "rotation_deg": geometry.rotation_deg, "scale": geometry.scale,
              "inliers": max(_inliers(model), 0), "tie_points": len(tp)}]
    chosen, best = geometry, (tp, model)
    for alt in geometry.runners_up:
        if fallback and alt.is_identity_like:
            continue
        log.info("the global winner's prior is weak (%s); verifying runner-up %d: rotation %.1f deg, scale %.3f",
                 _describe_fit(model, tp), alt.rank, alt.rotation_deg, alt.scale)
        sc.geometry = replace(alt, accepted=True)  # the fit's base model follows the prior on trial
        sc.steps_total += len(_sample(sc, refine=False))
        tp_a, model_a = sampled_pass(sc, alt.inverse, radius, _first_kind(sc))
        tried.append({"rank": alt.rank, "rotation_deg": alt.rotation_deg, "scale": alt.scale,
                      "inliers": max(_inliers(model_a), 0), "tie_points": len(tp_a)})
        if _clearly_more(model_a, best[1]):
            chosen, best = sc.geometry, (tp_a, model_a)
        if not _weak(model_a):
            break
    sc.geometry = replace(chosen, verification=tuple(tried))
    return best
