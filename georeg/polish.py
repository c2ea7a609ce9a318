"""The polish: the model moved by the residual shift at which the structure of the whole overlap
agrees best, and a rigid or similarity model's shape corrected by the same measurement in windows
spread over the overlap (:func:`stage_polish`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .estimation import FittedModel, _lsq, apply_h, shift_matrix

if TYPE_CHECKING:
    from .pipeline import Scene


POLISH_MAX_PX = 1.5  # a larger residual shift is not a polish: the tie points and the structure disagree
POLISH_DONE_PX = 0.05  # the polish is found again through the moved model until it moves less than this
POLISH_STEPS = 3
# models whose shape the polish corrects. Not an affine (nor a homography): nine windows pin its six
# parameters down no better than the many tie points auto needs to choose it. Applied to affines in
# the benchmark, it moved S1/S2 GeoTIFF pair 176 from 0.34 to 0.60 px (and turned, 0.57 -> 0.94 px)
# and NIR-VIS City 6 from 0.59 to 0.71 px, and brought one NIR-VIS pair closer (Mountain 2, 0.66 ->
# 0.36 px). The rigid correction of the SRIF pairs turned by their GT took the median error of
# auto from 0.61 to 0.42 px (GeoTIFFs) and from 0.57 to 0.31 px (the dataset's JPEGs).
SHAPE_KINDS = ("rigid", "similarity")
SHAPE_GRID = 3  # windows per side of the overlap's lattice
SHAPE_WINDOW_PX = 256  # at most; half the overlap's shorter side on smaller scenes
SHAPE_MIN_WINDOW_PX = 96  # smaller windows place their peak no better than the tie points (see below)
SHAPE_MIN_PIXELS = 8000  # pixels of both images a window must compare
SHAPE_WINDOWS_NEEDED = {"rigid": 4, "similarity": 4}
SHAPE_TOLERANCE_PX = 0.75  # windows whose shift the fitted correction misses by more are dropped
SHAPE_STEPS = 2
SHAPE_DONE_PX = 0.1
# the structure of a small chip places its peak no better than the tie points do: real pairs cut to
# 96 px (about 7500 px compared) came out 0.16-1.77 px off polished against 0.79-1.18 px not (3MOS
# and S1/S2 crops of benchmarks/small_scenes.py), while 128 px crops (about 14000) gained (median
# 1.06 -> 0.86 px)
POLISH_MIN_PIXELS = 10000


def stage_polish(sc: Scene) -> None:
    """Move the model by the residual shift at which the structure of the whole overlap agrees
    best (:meth:`georeg.structure.StructureProbe.offset`), found again through the moved model until
    it is under POLISH_DONE_PX, when the total stays within POLISH_MAX_PX; then, for a model with
    a shape of few parameters (rigid, similarity), correct that shape by the same measurement
    made in windows spread over the overlap (:func:`_polish_shape`).

    Tie points are cut around keypoints and placed by the peak of a patch's score map; their
    positions carry a bias that their number does not average away. On SRIF optical/infrared pair
    72, off by a shift only, 89 inliers put the translation 0.88 px from the truth, where a phase
    correlation of the whole overlap was 0.20 px from it; the polish moved it to 0.42 px. A larger
    residual is not a polish: the model is kept and the report says so."""
    m = sc.model
    if not sc.cfg.estimation.polish or m is None or m.local is not None:
        return
    sc.notify(0.83, "polishing the model")
    probe = sc.structure_probe()
    matrix, total, steps = m.matrix, np.zeros(2), []
    for _ in range(POLISH_STEPS):
        inv = np.linalg.inv(matrix)
        off = probe.offset(lambda xy, inv=inv: apply_h(inv, xy), min_pixels=POLISH_MIN_PIXELS)
        if off is None:
            break
        d = np.array(off["shift_px"])
        steps.append({"shift_px": d.round(4).tolist(), "agreement": round(off["agreement"], 5),
                      "agreement_at_zero": round(off["agreement_at_zero"], 5)})
        total += d
        matrix = shift_matrix(*-d) @ matrix
        if np.abs(d).max() < POLISH_DONE_PX:
            break
    applied = bool(steps) and float(np.hypot(*total)) <= POLISH_MAX_PX
    info = {"applied": applied, "shift_px": (-total).round(4).tolist(), "steps": steps,
            "compared_pixels": probe.compared_pixels,
            "note": "the model's move on the reference grid that the structure of the overlap asked for"}
    if not steps and probe.compared_pixels < POLISH_MIN_PIXELS:
        info["reason"] = (f"the images share {probe.compared_pixels} px, fewer than the {POLISH_MIN_PIXELS} a "
                          "polish needs to beat the tie points")
    elif not steps:
        info["reason"] = "no structural peak within 3 px of the model"
    elif not applied:
        info["reason"] = f"the structure asks for {np.hypot(*total):.2f} px, more than a polish ({POLISH_MAX_PX} px)"
    if not applied:
        matrix = m.matrix
    if m.kind in SHAPE_KINDS:
        matrix, info["shape"] = _polish_shape(sc, matrix)
    if not np.array_equal(matrix, m.matrix):
        info["correction"] = (matrix @ np.linalg.inv(m.matrix)).tolist()
        res = np.linalg.norm(apply_h(matrix, sc.tp.xy_t_on_ref) - sc.tp.xy_r, axis=1)
        sc.model = FittedModel(m.kind, matrix, m.inliers, res, None, {**m.params, "polish": info})
    else:
        m.params["polish"] = info
    sc.clock.lap("polish")


def _polish_shape(sc: Scene, matrix: np.ndarray) -> tuple[np.ndarray, dict]:
    """Correct the shape of a rigid or similarity model by the structure.

    The residual shift of :meth:`~georeg.structure.StructureProbe.offset` is measured in a
    SHAPE_GRID x SHAPE_GRID lattice of windows over the overlap; a correction of the model's kind
    is fitted through the window centres moved by their shifts, dropping the window that
    disagrees most until all agree within SHAPE_TOLERANCE_PX. The
    correction is kept only when it makes the whole overlap agree better (the verdict's own
    measure, over pixels the windows share with it, so it is a check and not a proof) and moves
    the overlap's corners by no more than POLISH_MAX_PX in all. On SRIF optical/infrared pairs with
    their rotation as given, tie points alone left a shape error of 0.2-0.6 px."""
    from .structure import StructureProbe, spread_windows
    from .verdict import _corners

    kind = sc.model.kind
    size = min(SHAPE_WINDOW_PX, int(2 * min(sc.overlap.width, sc.overlap.height) / (SHAPE_GRID + 1)))
    if size < SHAPE_MIN_WINDOW_PX:
        return matrix, {"applied": False, "correction_kind": kind, "corner_move_px": 0.0, "windows": 0,
                        "steps": [], "reason": f"the overlap is too small for {SHAPE_GRID}x{SHAPE_GRID} "
                                               f"windows of {SHAPE_MIN_WINDOW_PX} px"}
    if sc.shape_probes is None:
        probes = [StructureProbe(sc.ref, sc.tgt, sc.grid, sc.overlap, windows=[w])
                  for w in spread_windows(sc.overlap, SHAPE_GRID, size)]
        sc.shape_probes = [p for p in probes if p.windows]  # a window of nodata in the reference has none
    probe, corners = sc.structure_probe(), _corners(sc.extent)
    start, steps = matrix, []

    def moved(m: np.ndarray) -> float:  # largest move of the overlap's corners from the start
        return float(np.linalg.norm(apply_h(m @ np.linalg.inv(start), corners) - corners, axis=1).max())

    before = probe.matrix_agreement(matrix)  # cached where auto's structural check measured this model
    reason = None
    for _ in range(SHAPE_STEPS):
        corr, agreeing = _shape_correction(sc.shape_probes, np.linalg.inv(matrix), kind)
        if corr is None:
            reason = (f"{agreeing} windows of the overlap agree on a shape, fewer than the "
                      f"{SHAPE_WINDOWS_NEEDED[kind]} a {kind} correction needs")
            break
        candidate = corr @ matrix
        after = probe.matrix_agreement(candidate)  # the verdict's, when the candidate is kept
        move, total = moved(corr @ start), moved(candidate)
        steps.append({"windows": agreeing, "corner_move_px": round(move, 4), "agreement": round(after, 5),
                      "agreement_before": round(before, 5)})
        if after <= before:
            reason = "the corrected shape does not make the overlap agree better"
            break
        if total > POLISH_MAX_PX:
            reason = f"the structure asks for a shape change of {total:.2f} px at the corners, more than a polish"
            break
        matrix, before = candidate, after
        if move < SHAPE_DONE_PX:
            break
    info = {"applied": matrix is not start, "correction_kind": kind, "corner_move_px": round(moved(matrix), 4),
            "windows": len(sc.shape_probes), "steps": steps}
    if matrix is start:
        info["reason"] = reason
    return matrix, info


def _shape_correction(probes: list, inv: np.ndarray, kind: str) -> tuple[np.ndarray | None, int]:
    """(the correction of ``kind`` that moves each window's centre by its residual shift under the
    model whose inverse is ``inv``, the number of windows that agree with it), dropping the window
    that disagrees most until all agree within SHAPE_TOLERANCE_PX; None when fewer than
    SHAPE_WINDOWS_NEEDED are left."""
    centres, shifts = [], []
    for wp in probes:
        off = wp.offset(lambda xy: apply_h(inv, xy), min_pixels=SHAPE_MIN_PIXELS)
        if off is not None:
            w = wp.windows[0][0]
            centres.append((w.col_off + w.width / 2, w.row_off + w.height / 2))
            shifts.append(off["shift_px"])
    c, d = np.array(centres, float).reshape(-1, 2), np.array(shifts, float).reshape(-1, 2)
    while len(c) >= SHAPE_WINDOWS_NEEDED[kind]:
        corr = _lsq(kind, c, c - d)
        worst = np.linalg.norm(apply_h(corr, c) - (c - d), axis=1)
        if worst.max() <= SHAPE_TOLERANCE_PX:
            return corr, len(c)
        keep = np.arange(len(c)) != worst.argmax()
        c, d = c[keep], d[keep]
    return None, len(c)
