"""Clouds in an optical/thermal pair: the verdict's evidence of inliers on clouds
(:func:`cloud_evidence`), and the rounds that register such a pair again with the clouds its
result followed left out of both rasters (:func:`without_clouds`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from .errors import TooFewTiePointsError
from .estimation import FittedModel
from .grid import Grid
from .raster import RasterSource

if TYPE_CHECKING:
    from .pipeline import Scene


CLOUD_WIDEN = 2  # coarse pixels (clouds.GRID_PX to the overlap's long side) the clouds left out are widened by
CLOUD_ROUNDS = 3  # attempts with the clouds left out, each leaving out those the last result followed
# a result with the clouds left out follows them, in part, when a motion of the clouds maps this share
# of its inliers within the threshold too. The ground's motion differs from the clouds' by their
# parallax everywhere: every result kept on the ground in benchmarks/cloud_masks.py (Landsat 8, B4 and
# B8 against B10) had none; an affine bent from the ground's motion to the clouds' (B8, 6.9 px off and
# reliable) 15%, the results on the clouds' motion 24-100%
CLOUD_EXPLAINED_SHARE = 0.05


def clouds_possible(ref: RasterSource, tgt: RasterSource) -> bool:
    """Whether the verdict may find the pair's inliers on clouds (see :func:`cloud_evidence`)."""
    swapped = (ref.modality, tgt.modality) == ("optical", "optical") and ref.modality_decision.by == "role"
    return not tgt.pixel_frame and ("thermal" in (ref.modality, tgt.modality) or swapped or maybe_thermal(tgt))


def maybe_thermal(tgt: RasterSource) -> bool:
    """A single band read as optical by its texture alone (no metadata, values or option said so):
    it may be a thermal band the texture model missed, and the cloud check (bright in the optical
    image where the other is dark, their contrast inverted: nothing an optical band of the same
    ground shows under the right model) is kept. Landsat 8 B10 exported to EPSG:4326 at 65 degrees
    north was read as optical (84%) and registered on the clouds' motion, 400 m off, `reliable`."""
    d = tgt.modality_decision
    return tgt.modality == "optical" and d.by == "pixels" and len(tgt.bands) == 1


def without_clouds(sc: Scene, scene: Callable[..., Scene], registered: Callable[[Scene, object], Scene]
                   ) -> Scene | None:
    """An optical/thermal pair whose result followed clouds, registered again from the coarse
    stage with them left out of both rasters, and kept when that result no longer follows clouds
    and is `reliable`, or `uncertain` with the images' structure agreeing under it (too little
    clear ground left, say: 5 results 0.15-0.24 px off whose inliers covered 12% of the overlap;
    not one on 6 tie points 61 px off, under which the images agreed at 0.015); else None (its
    warnings and failure are dropped: the first result stays the answer).

    Under a model that follows the clouds they line up in the two images: bright in the optical
    one where the thermal one is cold, their contrast strongly inverted (``bright_cold`` of
    :func:`georeg.clouds.cloud_like`). Those pixels, widened by :data:`CLOUD_WIDEN` coarse pixels,
    are left out of the reference where they lie and out of the target where the model puts them
    (the clouds move by their parallax between the two sensors, the ground does not). Clouds at
    another height move by another parallax and do not line up under that model: when the next
    result follows them, they are left out too, up to :data:`CLOUD_ROUNDS` times. A result whose
    inliers the motion of clouds explains as well (:data:`CLOUD_EXPLAINED_SHARE`) follows them, at
    the edges of what was left out, whatever its verdict: Landsat 8 B8 registered onto B10, the second
    result `reliable` on the first's motion; B8 against B10 moved by (0.3, 3.2) px, a `reliable`
    affine that bent from the ground's motion to the clouds', 6.9 px off.

    Landsat 8 B8 against B10 moved by (17.8, -1.9) px, without a mask: `uncertain` 14.5 px off,
    then `reliable` 0.1 px off; B4 against it: `uncertain` 12.6 px off, then 14 px off on clouds at
    another height, then `reliable` 0.09 px off. Pictures without georeferencing are not tried."""
    from scipy import ndimage

    from .verdict import clouds_doubted, structure_agrees

    left_out: list[tuple[Grid, np.ndarray, Grid]] = []  # per round: the reference's and the target's grid
    current = sc
    clouds_motions = [sc.model]  # the models the verdict found on clouds
    threshold = sc.cfg.estimation.threshold_px
    for _ in range(CLOUD_ROUNDS):
        cm = current.clouds
        if cm is None or sc.tgt.pixel_frame or not current.model.is_affine or not cm["bright_cold"].any():
            return None
        g = cm["grid"]
        m = np.linalg.inv(current.model.matrix)  # working px -> where the target shows it, as georeferenced
        to_target = sc.grid.transform @ Affine(*m[:2].ravel()) @ ~sc.grid.transform
        left_out.append((g, ndimage.binary_dilation(cm["bright_cold"], iterations=CLOUD_WIDEN),
                         Grid(to_target @ g.transform, g.width, g.height, g.crs)))
        sc.ref.excluded = [(g_r, a) for g_r, a, _ in left_out]
        sc.tgt.excluded = [(g_t, a) for _, a, g_t in left_out]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                again = scene(sc.ref, sc.tgt, sc.cfg)
                told = again.notify  # progress starts again: say why
                again.notify = lambda fraction, message, told=told: told(fraction, f"{message} (the clouds left out)")
                again = registered(again, sc.matcher)
        except TooFewTiePointsError:
            return None
        finally:
            sc.ref.excluded, sc.tgt.excluded = [], []  # the outputs are read whole
        # a result whose inliers a motion of the clouds explains as well follows them, in part (an
        # affine can bend from the ground's motion to the clouds')
        same = any(_explained(again, m, threshold) >= CLOUD_EXPLAINED_SHARE for m in clouds_motions)
        doubted = clouds_doubted(again.verdict)
        if doubted:
            clouds_motions.append(again.model)
        if not same and not doubted and (again.verdict.quality == "reliable" or structure_agrees(again.verdict)):
            share = np.mean(np.any([a for _, a, _ in left_out], axis=0))
            again.clouds_left_out = {
                "share_of_overlap": round(float(share), 4), "rounds": len(left_out), "widened_px": CLOUD_WIDEN,
                "coarse_px": cm["coarse_px"], "first_attempt": {"quality": sc.verdict.quality,
                                                                "reason": sc.verdict.reason,
                                                                "shift_px": sc.model.matrix[:2, 2].tolist()}}
            return again
        current = again
    return None


def _explained(sc: Scene, model: FittedModel, threshold_px: float) -> float:
    """The share of ``sc``'s inliers that ``model`` maps within ``threshold_px`` too."""
    inl = sc.model.inliers
    if not inl.any():
        return 0.0
    xt, xr = sc.tp.xy_t_on_ref[inl], sc.tp.xy_r[inl]
    return float((np.linalg.norm(model.forward(xt) - xr, axis=1) < threshold_px).mean())


def cloud_evidence(sc: Scene) -> dict | None:
    """For an optical/thermal pair, which tie points lie on cloud-like pixels (:mod:`georeg.clouds`),
    the pair seen through the model; None for other pairs."""
    from .clouds import cloud_like

    kinds = (sc.ref.modality, sc.tgt.modality)
    if kinds == ("optical", "optical") and sc.ref.modality_decision.by == "role":
        # the roles swapped (Landsat B8 registered onto its B10): the reference's own pixels say
        kinds = (sc.ref.modality_from_pixels().modality, "optical")
    if kinds == ("optical", "optical") and maybe_thermal(sc.tgt):
        kinds = ("optical", "thermal")
    if sorted(kinds) != ["optical", "thermal"]:
        return None
    # the clouds a second attempt leaves out (see without_clouds) are seen here: a model that
    # follows the edges of what was left out lines up the whole clouds
    left_out = sc.ref.excluded, sc.tgt.excluded
    sc.ref.excluded, sc.tgt.excluded = [], []
    try:
        return cloud_like(sc.ref, sc.tgt, sc.grid, sc.overlap, sc.model.inverse, sc.tp.xy_r,
                          optical_is_reference=kinds[0] == "optical")
    finally:
        sc.ref.excluded, sc.tgt.excluded = left_out
