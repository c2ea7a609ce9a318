"""register(): the whole flow from two rasters to a co-registered raster. Orchestration only."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio.errors
from rasterio.windows import Window

from .cloud_rounds import cloud_evidence, clouds_possible, without_clouds
from .config import RegistrationConfig
from .errors import (
    CancelledError,
    FallbackWarning,
    InputError,
    MirroredTargetWarning,
    OutputWriteError,
    RasterOpenError,
    TooFewTiePointsError,
    UncertainResultWarning,
    warn,
)
from .estimation import MIN_INLIERS, FittedModel, estimate
from .first_pass import _near_pass_was_refinement, _refine_radius, stage_first_pass
from .grid import Grid
from .matchers.base import Matcher, MatcherRoles
from .matching import TiePoints
from .passes import _fit, _inliers, _max_move, _sample, _try, sampled_pass
from .polish import stage_polish
from .preflight import preflight
from .raster import RasterSource, check_related_crs, overlap_window
from .results import RegistrationResult, stage_outputs
from .runtime import directions_side_by_side, torch_threads
from .tiling import tiles
from .working_grid import radius_factor, stage_to_reference_grid, working_grid

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


class _Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self.t, 3)
        self.t = now


def check_free_space(folder: Path, needed_bytes: int) -> None:
    import shutil

    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OutputWriteError(f"the output folder {folder} has {free / 2**20:.0f} MB free; the outputs may need up "
                               f"to {needed_bytes / 2**20:.0f} MB. Free some space or choose another folder")


def _needed_bytes(tgt: RasterSource, cfg: RegistrationConfig, grid: Grid) -> int:
    """Upper bound of the outputs' size: the corrected raster uncompressed (on the reference grid
    with align_grids) plus a margin for tie points and report."""
    import numpy as np

    ds = tgt.ds
    w, h = (grid.width, grid.height) if cfg.output.align_grids or tgt.pixel_frame else (ds.width, ds.height)
    return int(w * h * ds.count * np.dtype(ds.dtypes[0]).itemsize + 16 * 2**20)


def register(reference: str | os.PathLike, target: str | os.PathLike, output: str | os.PathLike,
             config: RegistrationConfig | None = None, *, progress: ProgressFn | None = None,
             cancel: Callable[[], bool] | None = None, matcher=None,
             report_extra: dict | None = None) -> RegistrationResult:
    """Co-register ``target`` (SAR, thermal, ...) onto ``reference`` (optical) and write ``output``.

    ``config`` holds every option (see :mod:`georeg.config`). ``progress(fraction, message)`` is
    called as work advances; ``cancel()`` is polled between tiles and raises
    :class:`~georeg.errors.CancelledError` when it returns True. ``matcher`` may be a preloaded
    matcher (batch workers reuse one) or a matcher name (as ``config.matching.matcher``). Returns a
    :class:`RegistrationResult`.
    """
    if config is not None and not isinstance(config, RegistrationConfig):
        raise InputError(f"register(): config must be a georeg RegistrationConfig; got {type(config).__name__}. "
                         "Build one with RegistrationConfig().with_options(...)")
    cfg = config or RegistrationConfig()
    if isinstance(matcher, str):  # a name: resolved against the target's modality like the option
        cfg, matcher = cfg.with_options(matching={"matcher": matcher}), None
    elif matcher is not None and not isinstance(matcher, Matcher):
        raise InputError(f"register(): matcher must be a matcher name such as 'auto' or 'baseline', or a matcher "
                         f"from georeg.matchers.load(); got {type(matcher).__name__}")
    clock = _Clock()
    outputs = preflight(reference, target, output, cfg)
    notify = progress or (lambda f, m: None)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise CancelledError("registration cancelled; no output was written")

    from .atomic import output_lock

    try:
        with output_lock(outputs["raster"]), torch_threads(cfg.matching.threads):
            scene = functools.partial(Scene, clock=clock, notify=notify, check_cancel=check_cancel, outputs=outputs)
            return _register(reference, target, cfg, scene, matcher, report_extra or {})
    except rasterio.errors.RasterioIOError as exc:
        cause = exc.__cause__ or exc.__context__ or exc  # rasterio's 'Read failed' wraps GDAL's own reason
        raise RasterOpenError(f"could not read the input rasters: {str(cause).splitlines()[0][:300]}; "
                              "check that the files are complete and readable") from None


@dataclass
class Scene:
    """One registration's state, filled in by the stages of :func:`_register` in order."""

    ref: RasterSource
    tgt: RasterSource
    cfg: RegistrationConfig
    clock: _Clock
    notify: ProgressFn
    check_cancel: Callable[[], None]
    matcher: object = None  # the matcher asked for (the report names it)
    roles: MatcherRoles | None = None  # how tile matching uses the matcher
    grid: Grid | None = None  # the working grid: the reference grid, or one between its and the target's pixels
    coarsened: tuple[float, float] | None = None  # (x, y) reference px per working px, when not the reference grid
    overlap: object = None
    tiles: list = field(default_factory=list)
    radius: int = 0  # tile search radius of the first pass, reference px
    outputs: dict = field(default_factory=dict)  # planned output paths by kind
    coarse: object = None
    geometry: object = None  # GlobalGeometry when the global stage ran
    frame: np.ndarray | None = None  # pictures of different sizes: a placement of the target to try last
    geometry_used: bool = True  # False once a shift-only result was preferred to the global geometry's
    georeferencing_check: dict | None = None  # a turned prior on few tie points against the shift passes
    prior_several_motions: bool = False  # the prior's weak model of several motions ended the first pass
    first_sample_settled: bool = False  # a first pass's sample of tiles gave enough evidence under its prior
    near: FittedModel | None = None  # the coarse shift, when the near pass through it made the first model
    near_refined: bool = False  # and that pass stood in for the refinement pass
    near_weak: bool = False  # a near pass ran and was weak (the first pass at the full radius followed)
    near_ranked: bool = False  # the near pass's model was matched with the learned ranker
    tp: TiePoints | None = None
    model: FittedModel | None = None
    reference_side: dict = field(default_factory=dict)  # a one-tile scene's reference side, kept between passes
    probe: object = None  # structure.StructureProbe, made on first use
    shape_probes: list | None = None  # one StructureProbe per window of the shape polish, made on first use
    verdict: object = None
    working: dict | None = None  # the working grid when not the reference grid, for the report
    passes: int = 0
    tiles_matched: list = field(default_factory=list)  # per matching pass, how many tiles it matched
    steps_done: int = 0
    steps_total: int = 1
    first_passes: int = 0  # first passes matched (one per prior tried)
    # the second and framed global searches when the first leaves no clear model; off for a
    # picture's mirror image, which is tried once the picture as it is has had them
    fallback_searches: bool = True
    ranked_first_passes: int = 0  # of which matched again with the learned ranker (structural weak)
    first_passes_not_retried: int = 0  # weak, but with the many inliers of several motions (not retried)
    # first-pass models that many tie points agree with (:func:`georeg.passes._several_motions`), one per prior;
    # those the first pass did not keep are the verdict's rival motions
    motions: list = field(default_factory=list)
    rivals: list = field(default_factory=list)
    first_inliers: int = 0  # how many tie points agree with the first pass's model
    clouds: dict | None = None  # an optical/thermal pair's cloud evidence under the model (clouds.cloud_like)
    # the clouds left out of a second attempt whose result was kept (see cloud_rounds.without_clouds), for the report
    clouds_left_out: dict | None = None

    @property
    def two_threads(self) -> bool:
        """Whether the coarse step reads its two rasters and the structure probe computes its windows
        two at a time (where the matching's directions run side by side)."""
        return directions_side_by_side(self.cfg.matching.threads)

    def structure_probe(self):
        """The overlap's :class:`georeg.structure.StructureProbe`, made on first use (auto's structural
        check, the polish and the verdict share it)."""
        from .structure import StructureProbe

        if self.probe is None:
            self.probe = StructureProbe(self.ref, self.tgt, self.grid, self.overlap, two_threads=self.two_threads)
        return self.probe

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """The area the model will correct (reference px); auto weighs departures at its corners,
        and the verdict judges coverage and stability over it. Between pictures without
        georeferencing the whole reference is searched, but once a model is known the area is
        the target's footprint through it: a 320 px target found inside a 1024 px reference was
        called `uncertain` for covering 19% of the reference, and its model's departures were
        weighed at corners 700 px outside it."""
        o = self.overlap
        full = (o.col_off, o.row_off, o.col_off + o.width, o.row_off + o.height)
        if self.model is None or not self.tgt.pixel_frame:
            return full
        return footprint(self.model, (0, 0, self.tgt.ds.width, self.tgt.ds.height), full)

    @property
    def base_model(self) -> str:
        """The simplest model the evidence allows: once the global stage found a rotation or scale
        and its prior was used, a rigid where its scale cannot be told from 1 and a similarity
        otherwise; else a translation.

        On georeferenced rasters a turn within GEOREF_TURN_LEFT_TO_TIE_POINTS with a scale within
        GEOREF_SCALE_LEFT_TO_TIE_POINTS of the georeferencing is left for the tie points to
        establish (``auto`` climbs from the translation on their evidence): a georeferencing is
        rarely that wrong, and the search's turn and scale on a small scene are noisy by several of
        its steps. 3MOS RCM city 6 cut to 128 px, off by a shift only: the search found -1.5 degrees
        and 0.958, which forced a similarity onto 10 tie points (4.9 px off at the corners) or a
        rigid onto 17 (4.0 px), both called reliable; correct small crops came out of the search
        turned by up to 5.5 degrees. A larger turn keeps the search's scale: a 256 px 3MOS target
        turned 8.9 degrees and scaled 0.962 came out 31 px off from a rigid base against 0.76 px from
        the similarity (both ``uncertain``)."""
        g = self.geometry
        if g is None or not g.accepted or g.is_identity_like or not self.geometry_used:
            return "translation"
        georeferenced = not self.tgt.pixel_frame
        if (georeferenced and abs(g.rotation_deg) < GEOREF_TURN_LEFT_TO_TIE_POINTS
                and abs(math.log(g.scale)) < math.log(GEOREF_SCALE_LEFT_TO_TIE_POINTS)):
            return "translation"
        return "similarity" if g.scale_resolved else "rigid"


USABLE_SHARE_HINT = 0.05  # a failure on an overlap less usable than this says how little was usable


def _with_usable_share(exc: TooFewTiePointsError, sc: Scene) -> TooFewTiePointsError:
    """``exc``, saying how little of the overlap its masks and nodata left usable when that is why."""
    share = sc.coarse.valid_fraction
    if share >= USABLE_SHARE_HINT:
        return exc
    masks = [f"--{'ref' if s.role == 'reference' else 'target'}-mask {s.cfg.mask}" for s in (sc.ref, sc.tgt)
             if s.cfg.mask]
    why = f"their masks ({', '.join(masks)}) and nodata leave out the rest (clouds?)" if masks else \
        "their nodata and empty parts leave out the rest"
    return TooFewTiePointsError(exc.found, exc.needed, exc.model, exc.stage,
                                f"{exc.hint} Only {share:.1%} of the overlap is usable in both rasters: {why}; a "
                                "scene with more clear ground, or a larger overlap, may register.".lstrip())


def _register(reference, target, cfg: RegistrationConfig, scene: Callable[..., Scene], matcher,
              report_extra: dict) -> RegistrationResult:
    """The stages in order; ``scene(ref, tgt, cfg)`` makes the Scene (clock, callbacks and outputs bound).
    Two pictures that register only as `uncertain`, or not at all, are tried once more with the
    target mirrored, unless ``search=shift``, and the mirror image is kept when it is `reliable`: a
    SAR picture in radar geometry exported without georeferencing is the map's mirror image
    (left-right for a descending pass; upside down, the left-right mirror turned half round, for an
    ascending one), which no rotation and scale can match. So is a georeferenced target whose rows
    or columns are stored the other way round from what its geotransform says (an array written
    upside down under a north-up geotransform): it is tried mirrored when it registers not at
    all, or `uncertain` with the images' structure agreeing under the result hardly at all
    (:func:`_mirror_worth_trying`). The outputs are written once, for the result kept."""
    from .verdict import clouds_doubted

    with contextlib.ExitStack() as stack:
        ref = stack.enter_context(RasterSource(reference, cfg.reference, "reference", pixel_frame_ok=True))
        tgt = stack.enter_context(RasterSource(target, cfg.target, "target", pixel_frame_ok=True))
        if ref.pixel_frame != tgt.pixel_frame:  # pixel coordinates only when neither is georeferenced
            ref.require_georeferencing()
            tgt.require_georeferencing()
        check_related_crs(ref, tgt)
        mirror = cfg.matching.search != "shift" and not tgt.placed_by_points
        # the target's warnings wait until it is known whether its mirror image is the answer, an
        # optical/thermal pair's until it is known whether the result without its clouds is
        wait = mirror or clouds_possible(ref, tgt)
        with warnings.catch_warnings(record=True) if wait else contextlib.nullcontext([]) as said:
            if wait:
                warnings.simplefilter("always")
            first = scene(ref, tgt, cfg)
            try:
                sc, failure = _registered(first, matcher), None
            except TooFewTiePointsError as exc:
                sc, failure = None, exc
        if sc is not None and clouds_doubted(sc.verdict):
            kept = without_clouds(sc, scene, _registered)
            if kept is not None:
                log.info("registered again with the clouds left out (%.0f%% of the overlap): %s",
                         100 * kept.clouds_left_out["share_of_overlap"], kept.verdict.reason)
                if kept.verdict.quality != "reliable":
                    warn(UncertainResultWarning, f"result is {kept.verdict.quality} (registered again with the "
                                                 f"clouds left out): {kept.verdict.reason}")
                return stage_outputs(kept, report_extra)
        if mirror and _mirror_worth_trying(sc, tgt):
            kept = _mirrored(stack, ref, target, cfg, scene, matcher, first)
            if kept is not None:
                log.info("the target registers as its mirror image: %s", kept.verdict.reason)
                if not tgt.pixel_frame:
                    warn(MirroredTargetWarning,
                         "the target registers only as its mirror image: its pixels are stored flipped against "
                         "its geotransform (rows upside down, or columns the other way round); the corrected "
                         "raster's geotransform holds the flip, so it lies right, but check how the target was "
                         "written")
                return stage_outputs(kept, report_extra)
        for w in said:  # the first attempt's warnings, now that its result is the one kept
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if sc is None:
            raise failure
        return stage_outputs(sc, report_extra)


# a georeferenced target is tried mirrored when the images' structure agrees under its result by
# less than this (half of verdict.MIN_AGREEMENT). Under the first result on a target stored flipped
# the images agreed at 0.005-0.023 (S1/S2 GeoTIFF pairs 050, 176 and 268 upside down and flipped
# left to right, Landsat 8 B10 upside down against B4, the demo pair both ways: 9 of 9); the
# 256 px 3MOS pairs that georeg gets right but calls `uncertain` reach 0.063-0.071 (aligned,
# turned 2-15 degrees), and a second registration there took them from 4-44 s to 21-66 s a pair
MIRROR_MAX_AGREEMENT = 0.04


def _mirror_worth_trying(sc: Scene | None, tgt: RasterSource) -> bool:
    """Whether the target's mirror image is tried (see :func:`_register`): for a picture whenever
    the result is not `reliable`; for a georeferenced target only when it registered not at all, or
    `uncertain` with the images' structure agreeing under the result no better than unrelated
    images' nearly does (:data:`MIRROR_MAX_AGREEMENT`), as under a mirrored target's tie points:
    a result on the ground with one weak check (a second motion, a bent edge, a weak but real
    agreement) does not pay for a second registration."""
    if sc is None:
        return True
    if sc.verdict.quality == "reliable":
        return False
    return tgt.pixel_frame or sc.verdict.evidence["structure_after"] < MIRROR_MAX_AGREEMENT


def _registered(sc: Scene, matcher) -> Scene:
    """Every stage up to the outputs."""
    stage_open(sc, matcher)
    stage_coarse(sc)
    try:
        stage_first_pass(sc)
        stage_refine(sc)
        stage_model_evidence(sc)
    except TooFewTiePointsError as exc:
        raise _with_usable_share(exc, sc) from None
    stage_polish(sc)
    stage_verdict(sc)
    stage_to_reference_grid(sc)
    return sc


def _mirrored(stack: contextlib.ExitStack, ref: RasterSource, target, cfg: RegistrationConfig,
              scene: Callable[..., Scene], matcher, first: Scene) -> Scene | None:
    """The target registered as its mirror image when that is `reliable` (for a georeferenced
    target, on at least OVERRULE_TIE_POINTS tie points), else None (its warnings and failure are
    dropped: the target as it is stays the answer). ``first``: the attempt on the target as it is,
    whose matcher serves again when the mirror image is read as the same sensor (a learned
    matcher's weights are not loaded twice)."""
    tgt = stack.enter_context(RasterSource(target, cfg.target, "target", pixel_frame_ok=True, mirrored=True))
    if matcher is None and tgt.modality == first.tgt.modality:
        matcher = first.matcher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # no second or framed search: the mirror image of a picture is a plain turn to the first
        # one, and a pair that matches neither way pays those searches once, not twice
        sc = scene(ref, tgt, cfg, fallback_searches=False)
        told = sc.notify  # progress starts again: say why
        sc.notify = lambda fraction, message: told(fraction, f"{message} (the target as its mirror image)")
        try:
            sc = _registered(sc, matcher)
        except TooFewTiePointsError:
            return None
    from .verdict import OVERRULE_TIE_POINTS

    if sc.verdict.quality != "reliable":
        return None
    if not tgt.pixel_frame and _inliers(sc.model) < OVERRULE_TIE_POINTS:
        # a mirror image overrules a georeferencing further than any turn: it needs the tie points
        # such a turn needs (verdict.OVERRULE_TIE_POINTS). 3MOS SEN_water_1 cut to 160 px, off by a
        # shift only, `uncertain` as it is, came out `reliable` as its mirror image on 14 tie
        # points, 21 px wrong; the targets stored flipped of benchmarks/HISTORY.md rest on 138-299
        log.info("the target's mirror image registers on %d tie points only; a georeferenced target is kept "
                 "mirrored on %d or more", _inliers(sc.model), OVERRULE_TIE_POINTS)
        return None
    return sc


def stage_open(sc: Scene, matcher) -> None:
    """Overlap, tiles, and the matcher for the target's modality."""
    from .matchers import load, resolve_name, roles_for

    cfg = sc.cfg
    # refused here, before any matching, when the radius is unreasonable (a radius in pixels is
    # in the reference's, whatever grid the matching works on)
    radius = cfg.matching.max_shift_px(sc.ref.grid.ground_pixel_size_m)
    sc.grid, sc.coarsened = working_grid(sc.ref, sc.tgt, radius)
    if sc.outputs:
        check_free_space(Path(sc.outputs["raster"]).parent, _needed_bytes(sc.tgt, cfg, sc.ref.grid))
    sc.radius = int(math.ceil(radius / radius_factor(sc.coarsened)))
    sc.matcher = matcher if matcher is not None else load(resolve_name(cfg.matching.matcher, sc.tgt.modality),
                                                          cfg.matching.device)
    sc.roles = roles_for(sc.matcher)
    # pictures: where the target lies in the reference is unknown, so all of it
    sc.overlap = Window(0, 0, sc.grid.width, sc.grid.height) if sc.ref.pixel_frame else \
        overlap_window(sc.ref, sc.tgt, sc.grid)[0]
    sc.tiles = tiles(sc.overlap, cfg.matching.tile_size_px)
    if not sc.ref.pixel_frame:
        _skip_empty(sc)
    else:
        sc.frame = picture_frame(sc.ref.grid, sc.tgt.grid)
    sc.steps_total = len(_sample(sc, refine=False)) + (len(_sample(sc, refine=True)) if cfg.matching.refine else 0)
    sc.clock.lap("open")


GEOREF_TURN_LEFT_TO_TIE_POINTS = 6.0  # degrees; see Scene.base_model
GEOREF_SCALE_LEFT_TO_TIE_POINTS = 1.1  # see Scene.base_model
PICTURE_SCALE_GAP = 1.25  # pictures whose sizes differ by more than this are placed on each other


def picture_frame(ref: Grid, tgt: Grid) -> np.ndarray | None:
    """Two pictures without georeferencing share the pixel frame, corners at the origin. When their
    sizes differ by more than PICTURE_SCALE_GAP (in the square root of their areas), one more
    prior is that both show the same ground: the target scaled onto the reference, centre on
    centre (3x3, target px -> reference px), from which :func:`georeg.first_pass._framed_global_stage` searches.
    Without it a picture half the reference's size lies on its top-left quarter, and the search,
    whose shift and scale are about the overlap's centre, found neither (S1/S2 PNG pair 163 with
    the SAR at 512 px: `uncertain`, 650 px off). None when the sizes are alike."""
    f = math.sqrt(ref.width * ref.height / (tgt.width * tgt.height))
    if abs(math.log(f)) < math.log(PICTURE_SCALE_GAP):
        return None
    return np.array([[f, 0.0, ref.width / 2 - f * tgt.width / 2], [0.0, f, ref.height / 2 - f * tgt.height / 2],
                     [0.0, 0.0, 1.0]])


VALIDITY_SIZE = 512  # coarse map of where both rasters hold data, long side in pixels


def _skip_empty(sc: Scene) -> None:
    """On a scene of several tiles, a coarse map of where both rasters hold data shrinks the overlap
    to that part and drops the tiles without data: a 60000 px mosaic whose data is one 2000 px
    block costs about what the block costs. Two cheap decimated reads (sparse blocks are not even
    stored): the whole overlap at 512 px, then the part with data at up to 2048 px, so that the
    trimmed overlap is within a few pixels of the data and is not cut into more tiles than needed."""
    from .tiling import trim_to_valid, with_data

    if len(sc.tiles) <= 4:
        return
    window = sc.overlap
    for size in (VALIDITY_SIZE, 4 * VALIDITY_SIZE):
        both = _both_valid(sc, window, size)
        if not both.any():
            return  # stage_coarse says so with its own message
        trimmed = trim_to_valid(window, both, 0)
        if (trimmed.width, trimmed.height) == (window.width, window.height):
            break  # `both` maps `window` itself: reused below
        window = trimmed
    else:
        both = _both_valid(sc, window, VALIDITY_SIZE)  # the last trim changed the window
    kept = with_data(tiles(window, sc.cfg.matching.tile_size_px), window, both, 0)
    if len(kept) < len(sc.tiles):
        log.info("data of both rasters cover %d of %d tiles; overlap trimmed to %dx%d px", len(kept), len(sc.tiles),
                 window.width, window.height)
        sc.overlap, sc.tiles = window, kept


def _both_valid(sc: Scene, window, size: int) -> np.ndarray:
    sub = sc.grid.window_grid(window)
    cg = sub.scaled(max(1.0, max(sub.width, sub.height) / size))
    both = sc.ref.valid_on(cg, 4 * size) & sc.tgt.valid_on(cg, 4 * size)
    sc.check_cancel()
    return both


def stage_coarse(sc: Scene) -> None:
    """A global shift at reduced resolution (also the check that the overlap holds valid data)."""
    from .coarse import CoarseResult, coarse_shift

    sc.notify(0.02, "coarse pass")
    if sc.cfg.matching.coarse:
        sc.coarse = coarse_shift(sc.ref, sc.tgt, sc.grid, sc.overlap, sc.cfg.matching.coarse_size_px,
                                 two_threads=sc.two_threads)
    else:
        check = coarse_shift(sc.ref, sc.tgt, sc.grid, sc.overlap, 64,  # cheap validity check of the overlap
                             two_threads=sc.two_threads)
        sc.coarse = CoarseResult((0.0, 0.0), 0.0, 1.0, check.valid_fraction, False)
    sc.clock.lap("coarse")
    sc.check_cancel()
    log.info("coarse shift %.1f, %.1f px (peak ratio %.2f, %s)", *sc.coarse.shift_px, sc.coarse.peak_ratio,
             "used" if sc.coarse.accepted else "not used")


def stage_refine(sc: Scene) -> None:
    """Fit the requested model and refine through the first model with a small radius."""
    est = sc.cfg.estimation
    model1 = sc.model
    if est.model != model1.kind:
        sc.model = _try(lambda: estimate(sc.tp.xy_t_on_ref, sc.tp.xy_r, est, extent=sc.extent, base=sc.base_model),
                        model1)
    sc.near_refined = _near_pass_was_refinement(sc)
    if sc.near_refined:
        sc.steps_total -= len(_sample(sc, refine=True))
    if sc.cfg.matching.refine and not sc.near_refined:
        radius2 = _refine_radius(sc)
        # one refinement pass; after an accepted global rotation/scale prior, a second when the first
        # moved the model by more than a pixel (the first model can still be a pixel or two off).
        # Not otherwise: on the loosely aligned S1/S2 pair 050 a second pass taken by one run and not
        # by its shifted copy made the two disagree by 0.9 px, for no gain on NIR-VIS (2.35 -> 2.21 px).
        # A geometry that was searched but not used as the prior (identity-like, or explaining fewer
        # tie points than the shift passes) does not count: the 10980 px mosaic paid 36 tiles for it
        through = model1
        prior = sc.geometry is not None and sc.geometry.accepted and sc.geometry_used
        for k in range(2 if prior else 1):
            if k:
                sc.steps_total += len(_sample(sc, refine=True))
            tp2, model2 = sampled_pass(sc, through.inverse, radius2, None, refine=True)
            sc.clock.lap("pass2")
            if model2 is None or model2.inliers.sum() < MIN_INLIERS[est.model]:
                warn(FallbackWarning, "refinement pass found too few tie points; keeping the previous pass")
                break
            moved = _max_move(through, model2, sc.extent)
            sc.tp, sc.model, sc.passes = tp2, model2, sc.passes + 1
            if moved < 1.0:
                break
            through = model2
    sc.reference_side.clear()  # the tile matching is over: its features are not held through the probes
    sc.check_cancel()
    sc.clock.lap("estimation")


def stage_model_evidence(sc: Scene) -> None:
    """``auto`` only: a richer model than the simplest the evidence allows must also make the two
    images agree better over the whole overlap (structure the tie points had no say in) than the
    simpler model fitted to the same tie points; otherwise the simpler model is kept."""
    auto = sc.model.params.get("auto")
    if sc.cfg.estimation.model != "auto" or not auto or sc.model.kind == sc.base_model:
        return
    from .model_choice import auto_chain

    probe = sc.structure_probe()
    chosen = sc.model
    score = probe.model_agreement(chosen)
    scores = {chosen.kind: score}
    chain = auto_chain(sc.base_model)
    for kind in reversed(chain[:chain.index(chosen.kind)]):
        simpler = _fit(sc, sc.tp, kind)
        if simpler is None:
            continue
        scores[kind] = probe.model_agreement(simpler)
        if scores[kind] >= score - STRUCTURE_MARGIN:
            log.info("auto: the %s does not improve the structural agreement over the %s (%.4f vs %.4f); "
                     "keeping the %s", chosen.kind, kind, score, scores[kind], kind)
            simpler.params["auto"] = {**auto, "chosen": kind,
                                      "overruled": f"{chosen.kind} did not improve the structural agreement"}
            chosen, score = simpler, scores[kind]
    chosen.params["auto"]["structure"] = scores
    sc.model = chosen
    sc.clock.lap("estimation")


def stage_verdict(sc: Scene) -> None:
    """reliable or uncertain, with the evidence (see :mod:`georeg.verdict`)."""
    from .verdict import judge, rival_motion

    sc.notify(0.84, "checking the result")
    threshold = sc.cfg.estimation.threshold_px
    sc.clouds = cloud_evidence(sc)
    sc.verdict = judge(sc.structure_probe(), sc.model, sc.tp, sc.extent, threshold,
                       georeferenced=not sc.tgt.pixel_frame, clouds=sc.clouds,
                       rival=rival_motion(sc.model, sc.rivals, sc.first_inliers, sc.extent, threshold))
    sc.clock.lap("verdict")
    if sc.verdict.quality != "reliable":
        warn(UncertainResultWarning, f"result is {sc.verdict.quality}: {sc.verdict.reason}")


def footprint(model: FittedModel, target_extent, within) -> tuple[float, float, float, float]:
    """The bounding box of ``target_extent`` (as placed on the reference grid) through ``model``,
    clipped to ``within``; ``within`` itself when that leaves less than 16 px either way."""
    x0, y0, x1, y1 = target_extent
    c = model.forward(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64))
    if not np.isfinite(c).all():
        return within
    box = (max(c[:, 0].min(), within[0]), max(c[:, 1].min(), within[1]),
           min(c[:, 0].max(), within[2]), min(c[:, 1].max(), within[3]))
    return box if box[2] - box[0] >= 16 and box[3] - box[1] >= 16 else within


STRUCTURE_MARGIN = 0.001  # a richer model must raise the structural agreement by more than this


