"""A pass over the overlap's tiles: which tiles it matches (:func:`_sample`, :func:`pass_windows`),
matching them (:func:`match_pass`), the model their tie points fit (:func:`sampled_pass`,
:func:`_matched_sample`), and the small judgements of a fit the first pass and its fallbacks share
(:func:`_weak`, :func:`_inliers`, :func:`_best`, :func:`_several_motions`). The passes themselves
run as the pipeline's stages (:mod:`georeg.first_pass`, :func:`georeg.pipeline.stage_refine`)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from rasterio.windows import Window

from .config import MatchingConfig
from .errors import TooFewTiePointsError
from .estimation import FittedModel, estimate
from .matchers.base import MatcherRoles
from .matching import Sources, TiePoints, keypoints_for, match_tile, read_tile
from .runtime import read_ahead
from .tiling import central_part, spread

if TYPE_CHECKING:
    from .pipeline import Scene

log = logging.getLogger(__name__)


def _shift_prior(shift: np.ndarray):
    return lambda xy: xy + shift


FIRST_PASS_TILES = 16  # the first pass only has to bring the model within the refinement radius


def _sample(sc: Scene, refine: bool) -> list[int]:
    """The tiles a pass matches first, spread over the overlap: at most ``max_tiles`` in the
    refinement pass, whose tie points make the result (a global model is fixed long before a
    10980 px scene's 121 tiles are all matched), at most FIRST_PASS_TILES of them in the first
    pass, and every tile for the refinement of the ``local`` model, which warps by the tie points'
    density. ``max_tiles=0``: every tile in both passes."""
    limit = sc.cfg.matching.max_tiles
    if refine and sc.cfg.estimation.model == "local":
        return list(range(len(sc.tiles)))
    return spread(sc.tiles, limit if refine or not limit else min(limit, FIRST_PASS_TILES))


PASS_KEYPOINTS = 1536  # keypoints per direction that a sampled pass shares among its tiles


def pass_windows(sc: Scene, which: list[int], budget: bool) -> list[Window]:
    """The windows a pass over the tiles ``which`` matches: the tiles themselves, or, with
    ``budget``, the central part of each, shrunk so that together they hold PASS_KEYPOINTS per
    direction at the configured keypoint density once the whole tiles would hold more (and at
    least four patches wide). A pass's model needs a few thousand tie points, and its accuracy
    comes from how widely they spread over the scene: refitting a 36-tile pass of a 10980 px scene
    on the tie points of each tile's central 512 px moved its translation by 0.10 px (on a random
    quarter of them, 0.05 px), while the choice of the tiles moved it by 0.2 px. Reading, features
    and keypoint detection cost by the area matched, so a small window saves them too.
    ``max_tiles=0`` (every tile) matches the whole tiles."""
    m = sc.cfg.matching
    whole = [sc.tiles[i] for i in which]
    full = sum(keypoints_for(t, m) for t in whole)
    if not budget or not m.max_tiles or full <= PASS_KEYPOINTS:
        return whole
    factor = max(math.sqrt(PASS_KEYPOINTS / full), 4 * m.patch_size_px / m.tile_size_px)
    return [central_part(t, factor) for t in whole]


def match_pass(sc: Scene, inverse, radius: int, which: list[int], windows: list[Window],
               more: bool = False, roles: MatcherRoles | None = None) -> TiePoints:
    """Match the tiles ``which`` (indices into ``sc.tiles``), each in its window of ``windows``,
    through ``inverse`` (reference px -> target px) within ``radius`` px. ``more``: these tiles
    extend the last pass. ``roles``: the matchers of this pass (default: the scene's)."""
    roles = roles or sc.roles
    if more:
        sc.tiles_matched[-1] += len(which)
    else:
        sc.tiles_matched.append(len(which))
    n_pass = len(sc.tiles_matched)
    sources = Sources(sc.ref, sc.tgt, sc.grid, sc.reference_side if len(sc.tiles) == 1 else None)
    settings = [_tile_settings(sc, window) for window in windows]
    found = []
    # over several tiles the next tile is read in a thread of its own while this one is matched
    with read_ahead(lambda j: read_tile(sources, windows[j], inverse, radius, roles.dense, settings[j]),
                    len(which), len(which) > 1 and sc.two_threads) as reads:
        for j, (i, window) in enumerate(zip(which, windows)):
            sc.check_cancel()
            # the label names the tile being matched now
            sc.notify(0.05 + 0.8 * min(1.0, sc.steps_done / max(sc.steps_total, 1)),
                      f"matching tile {j + 1}/{len(which)}" + (f" (pass {n_pass})" if n_pass > 1 else ""))
            tp = match_tile(sources, window, inverse, radius, roles, settings[j], next(reads))
            tp.tile[:] = i
            found.append(tp)
            sc.steps_done += 1
    return TiePoints.concat(found)


def _tile_settings(sc: Scene, window: Window) -> MatchingConfig:
    """The matching settings of one tile. A scene of one tile under half a tile's area gets a whole
    tile's keypoints, not a share by its area: a small scene's model rests on its few tie points
    (a nearly whole tile keeps its share: S1/S2 pair 050 shifted by (40, -40) px, 984 px of
    overlap, then chose another model than the unshifted pair, 1.4 px apart). Measured with
    ``benchmarks/run.py --limit 8`` (every benchmark scene is one tile), ``auto``: NIR-VIS with its
    GT homography (512 px) 62% -> 75% within 1 px and 1 -> 0 results wrong but reliable; SRIF
    optical/IR (256 px) 88% -> 100%; no set lower. The baseline lost the two 3MOS RCM pairs
    (both uncertain before and after). Larger scenes keep their density and budget, and so does
    the ``local`` model, whose thin-plate spline is smoothed for that density (with a whole tile's
    tie points a 384 px synthetic scene's warp followed their noise to 1.5 px)."""
    m = sc.cfg.matching
    area = min(1.0, window.width * window.height / m.tile_size_px ** 2)
    if len(sc.tiles) != 1 or sc.cfg.estimation.model == "local" or area >= 0.5:
        return m
    return replace(m, keypoints_per_tile=max(4, round(m.keypoints_per_tile / area)))


def pass_roles(sc: Scene, refine: bool) -> MatcherRoles:
    """The matchers of a pass: the scene's, but without the learned ranker in a refinement pass
    unless ``matching.rank_refinement`` asks for it, and in a first pass unless
    ``matching.rank_first_pass`` does (:func:`sampled_pass` then adds it where that pass is weak)."""
    m = sc.cfg.matching
    if sc.roles.ranker is not None and not (m.rank_refinement if refine else m.rank_first_pass):
        return MatcherRoles(sc.roles.dense)
    return sc.roles


SAMPLE_MIN_INLIERS = 0.1  # of the keypoints the sampled tiles were given, for the sample to settle a pass
# a sample short of that whose model this many tie points agree with is matched again through that
# model (at most SAMPLE_REFITS times) before the pass goes on over the other tiles; chance agreement
# under a wrong prior stayed at 9-30 of 600-1100 tie points on the 10980 px mosaic
SAMPLE_REFIT_INLIERS = 50
SAMPLE_REFITS = 2


def sampled_pass(sc: Scene, inverse, radius: int, kind: str | None, refine: bool = False):
    """A matching pass over the sample of :func:`_sample` (in the windows :func:`pass_windows`
    gives) and the model of ``kind`` fitted to it.
    When the sample's content gave too little evidence (no model, or fewer inliers than
    SAMPLE_MIN_INLIERS of its keypoints: water, clouds, a featureless part), the pass goes on over
    the remaining tiles, whole, and the model is fitted to all of them; but first a sample whose
    model SAMPLE_REFIT_INLIERS tie points agree with is matched again through that model, and a
    first pass does not go on once another prior's first pass found enough in the same sample
    (then the prior is wrong, not the content). A model that many tie
    points agree with but that is weak by fraction (a scene with several motions, hard content)
    is not helped by more tiles of the same scene; the stages after the pass judge it. A first
    pass that ran without the scene's learned ranker (:func:`pass_roles`) and came out weak is
    matched again with it, and the result more tie points agree with is kept, unless many tie
    points agree with it (:func:`_several_motions`). Returns (tie points, model or None)."""
    roles = pass_roles(sc, refine)
    if not refine:
        sc.first_passes += 1
    tp, model = _matched_sample(sc, inverse, radius, kind, refine, roles)
    if not refine:
        again = _ranked_again(sc, roles, inverse, radius, kind, tp, model, _weak(model))
        if again is not None:
            tp, model = _best(*again, tp, model)
        if _several_motions(model):
            sc.motions.append(model)
    return tp, model


def _ranked_again(sc: Scene, roles: MatcherRoles, inverse, radius: int, kind: str | None, tp, model, weak: bool):
    """A first pass matched with ``roles`` that came out ``weak``, matched again with the scene's
    learned ranker when ``roles`` left it out (:func:`pass_roles`) and many tie points do not agree
    with the model (:func:`_several_motions`): the structural matcher alone left this prior
    without a clear model, and the learned ranker tells the right candidate from the structural
    decoys where the modalities differ most. (tie points, model) of the ranked pass, or None."""
    if not weak or roles.ranker is not None or sc.roles.ranker is None:
        return None
    if _several_motions(model):
        sc.first_passes_not_retried += 1
        return None
    log.info("first pass on the structural matcher weak (%s); again with the learned ranker", _describe_fit(model, tp))
    sc.steps_total += len(_sample(sc, refine=False))
    sc.ranked_first_passes += 1
    return _matched_sample(sc, inverse, radius, kind, False, sc.roles)


SEVERAL_MOTIONS_INLIERS = 100  # a weak model with at least this many inliers
SEVERAL_MOTIONS_FRACTION = 0.4  # and at least this share of the tie points: several motions


def _several_motions(model: FittedModel | None) -> bool:
    """A weak first-pass model that many tie points agree with, close to half of them: the scene
    has several motions (blocks of different pairs, terrain, clouds over the ground) rather than
    decoys the structural matcher fell for or a geometry the shift passes missed, so neither the
    learned ranker (:func:`sampled_pass`) nor a rotation and scale search (:func:`georeg.first_pass.stage_first_pass`)
    changes it. The learned retries of ``benchmarks/run.py --held-out --limit 8`` on 256-512 px
    scenes started from 4-90 inliers at 9-50%; the unmasked Landsat B4/B10 pair from 179 of 362,
    retried to 179 of 365 (`uncertain` either way); the 10980 px mosaic of ``scene_speed.py`` from
    880 of 2021, retried to 1128 of 2861 in 24 s of its 67 and then searched for rotation and scale
    in 6-8 s, for an identity and the same final shift."""
    if model is None:
        return False
    return _inliers(model) >= SEVERAL_MOTIONS_INLIERS and bool(model.inliers.mean() >= SEVERAL_MOTIONS_FRACTION)


def _matched_sample(sc: Scene, inverse, radius: int, kind: str | None, refine: bool, roles: MatcherRoles):
    """:func:`sampled_pass` with the matchers ``roles``."""
    first = _sample(sc, refine)
    # the local model warps by the tie points' density: its refinement matches whole tiles
    windows = pass_windows(sc, first, budget=not (refine and sc.cfg.estimation.model == "local"))
    tp = match_pass(sc, inverse, radius, first, windows, roles=roles)
    model = _fit(sc, tp, kind)
    rest = sorted(set(range(len(sc.tiles))) - set(first))
    need = SAMPLE_MIN_INLIERS * sum(2 * keypoints_for(w, sc.cfg.matching) for w in windows)
    for _ in range(SAMPLE_REFITS if rest and not refine else 0):
        # a prior good near the scene's centre only (the global search's turn and scale, a step of
        # them off, move a 10980 px scene's edges by 100 px or more: beyond the radius) leaves many
        # tie points agreeing there: the sample again through their model, before any more tiles
        if _inliers(model) >= need or _inliers(model) < SAMPLE_REFIT_INLIERS:
            break
        log.info("%d sampled tiles gave %s; matching them again through that model", len(first),
                 _describe_fit(model, tp))
        sc.steps_total += len(first)
        tp_r = match_pass(sc, model.inverse, radius, first, windows, roles=roles)
        model_r = _fit(sc, tp_r, kind)
        if _inliers(model_r) <= _inliers(model):
            break
        tp, model = tp_r, model_r
    enough = _inliers(model) >= need
    if not refine and enough:
        sc.first_sample_settled = True
    if not rest or enough:
        return tp, model
    if not refine and sc.first_sample_settled:
        # another prior's pass over the same sample found evidence there: it is this prior that
        # finds nothing, and the other tiles would say the same (the 10980 px mosaic turned 12
        # degrees, matched under no turn: 9 of 791 tie points agreed, then 105 more tiles, 400 s)
        log.info("%d sampled tiles gave %s under this prior, where another prior found enough: not matching "
                 "the other %d", len(first), _describe_fit(model, tp), len(rest))
        return tp, model
    log.info("%d sampled tiles gave %s; matching the other %d", len(first), _describe_fit(model, tp), len(rest))
    sc.steps_total += len(rest)
    more = match_pass(sc, inverse, radius, rest, [sc.tiles[i] for i in rest], more=True, roles=roles)
    tp = TiePoints.concat([tp, more])
    model = _fit(sc, tp, kind)
    return tp, model


def _fit(sc: Scene, tp: TiePoints, kind: str | None) -> FittedModel | None:
    est = sc.cfg.estimation
    return _try(lambda: estimate(tp.xy_t_on_ref, tp.xy_r, est, model=kind, extent=sc.extent, base=sc.base_model), None)


def _first_kind(sc: Scene) -> str:
    requested = sc.cfg.estimation.model
    return requested if requested in ("translation", "rigid", "similarity", "auto") else "affine"


def _best(tp_a, model_a, tp_b, model_b):
    """The (tie points, model) whose model more tie points agree with; the first on a tie."""
    if tp_a is None or _inliers(model_b) > _inliers(model_a):
        return tp_b, model_b
    return tp_a, model_a


def _max_move(a: FittedModel, b: FittedModel, extent) -> float:
    """Largest distance between two models' predictions at the corners of ``extent``, px."""
    x0, y0, x1, y1 = extent
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    return float(np.linalg.norm(a.forward(corners) - b.forward(corners), axis=1).max())


def _try(fn, default):
    try:
        return fn()
    except TooFewTiePointsError:
        return default


WEAK_INLIER_FRACTION = 0.5
RUNNER_UP_MARGIN = (4, 1.25)  # inliers a lower-ranked prior needs beyond the higher one's: more, ratio


def _inliers(model: FittedModel | None) -> int:
    return -1 if model is None else int(model.inliers.sum())


def _clearly_more(model: FittedModel | None, than: FittedModel | None) -> bool:
    """Whether ``model`` has clearly more inliers than ``than`` (the fit through a prior the global
    search ranked higher): by RUNNER_UP_MARGIN, a count and a ratio. A few inliers either way
    are what chance gives a wrong prior on a small scene."""
    more, ratio = RUNNER_UP_MARGIN
    n, m = _inliers(model), _inliers(than)
    return n >= m + more and n >= ratio * m


def _weak(model: FittedModel | None) -> bool:
    """No model, or one that fewer than half of the tie points agree with."""
    return model is None or model.inliers.mean() < WEAK_INLIER_FRACTION


def _describe_fit(model: FittedModel | None, tp: TiePoints) -> str:
    return "no model" if model is None else f"{_inliers(model)} of {len(tp)} tie points agree"
