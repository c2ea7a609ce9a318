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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio.errors
from rasterio.windows import Window

from .cloud_rounds import cloud_evidence, clouds_possible, without_clouds
from .config import MatchingConfig, RegistrationConfig
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
from .estimation import MIN_INLIERS, FittedModel, estimate, shift_matrix
from .grid import Grid
from .matchers.base import Matcher, MatcherRoles
from .matching import Sources, TiePoints, keypoints_for, match_tile, read_tile
from .polish import stage_polish
from .preflight import preflight
from .raster import RasterSource, overlap_window
from .results import RegistrationResult, stage_outputs
from .runtime import directions_side_by_side, read_ahead, torch_threads
from .tiling import central_part, spread, tiles
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
    probe: object = None  # verdict.StructureProbe, made on first use
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
    # first-pass models that many tie points agree with (:func:`_several_motions`), one per prior;
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
        """The overlap's :class:`georeg.verdict.StructureProbe`, made on first use (auto's structural
        check, the polish and the verdict share it)."""
        from .verdict import StructureProbe

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
# 'auto' does not search rotation and scale on an overlap less usable than this (in both rasters):
# nothing is found there, slowly (a 320 px pair under 99.6% cloud searched for 27 s, twice, before failing)
GLOBAL_MIN_USABLE_SHARE = 0.02


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
    centre (3x3, target px -> reference px), from which :func:`_framed_global_stage` searches.
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
    learned ranker (:func:`sampled_pass`) nor a rotation and scale search (:func:`stage_first_pass`)
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
    agree better over the whole overlap (:meth:`georeg.verdict.StructureProbe.model_agreement`,
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


def _best(tp_a, model_a, tp_b, model_b):
    """The (tie points, model) whose model more tie points agree with; the first on a tie."""
    if tp_a is None or _inliers(model_b) > _inliers(model_a):
        return tp_b, model_b
    return tp_a, model_a


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
    from .estimation import auto_chain

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
STRUCTURE_MARGIN = 0.001  # a richer model must raise the structural agreement by more than this


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
