"""Missing pixels inside a raster's data, filled when it is read: scattered specks (NaN, -inf,
nodata specks) and thin strips (Landsat 7's scan-line gaps). The area outside a footprint, larger
gaps and what a user's mask excludes stay missing."""

from __future__ import annotations

import numpy as np

MAX_HOLE_PX = 100  # the largest patch of missing pixels inside the data that a read fills
# the longest run of missing pixels, along a row or a column, between data on both sides that a
# read fills, in the raster's own pixels: Landsat 7's scan-line gaps (its scan line corrector
# failed in 2003) are up to 14 px wide at 30 m, 20 px along a row or column that crosses them at
# 45 degrees
MAX_GAP_PX = 20
GAP_ELONGATION = 3  # a gap is filled only if it is a strip at least this many times MAX_GAP_PX long
MAX_GAP_UPSAMPLING = 1.5  # no thin gap is filled on a grid more than this many times finer than the raster


def _across_gaps(data: np.ndarray, valid: np.ndarray, axis: int,
                 max_gap: float) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Along ``axis``: the pixels in runs of at most ``max_gap`` missing pixels with data on both
    sides (not a run that reaches the array's edge), as indices; the straight line between the
    data on either side at each; and each one's run length."""
    v = valid if axis == 0 else valid.T
    # only lines where the data come back after a gap (two stretches of data or more): a convex
    # footprint's lines have one, and the common read pays for this count alone
    stretches = v[0].astype(np.int32) + np.count_nonzero(v[1:] & ~v[:-1], axis=0)
    lines = np.flatnonzero(stretches >= 2)
    if not len(lines):
        return (np.zeros(0, np.intp),) * 2, np.zeros(0, np.float32), np.zeros(0, np.float32)
    v = v[:, lines]
    n = v.shape[0]
    idx = np.arange(n, dtype=np.int32)[:, None]
    before = np.maximum.accumulate(np.where(v, idx, np.int32(-1)), axis=0)
    after = np.minimum.accumulate(np.where(v, idx, np.int32(n))[::-1], axis=0)[::-1]
    run = after - before - 1
    rows, sub = np.nonzero((run > 0) & (run <= max_gap) & (before >= 0) & (after < n))
    b, a = before[rows, sub], after[rows, sub]
    cols = lines[sub]
    d = data if axis == 0 else data.T
    lo, hi = d[b, cols], d[a, cols]
    line = lo + (hi - lo) * ((rows - b) / (a - b)).astype(np.float32)
    at = (rows, cols) if axis == 0 else (cols, rows)
    return at, line, (a - b - 1).astype(np.float32)


def _fill_thin_gaps(data: np.ndarray, valid: np.ndarray, max_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Missing pixels with data on both sides within ``max_gap`` along their row or their column,
    and the straight lines across them along both (weighted by the inverse of the gap's length
    there): continuous with the data at the gap's edges (a smoothed mean is not, and its steps
    along every gap were edges the matching would follow). A run that reaches the array's edge
    is not filled along that axis: the outside of a footprint stays out, however close the edge
    of the read window. Returns the filled values (0 elsewhere) and which pixels they are."""
    num = np.zeros(data.shape, np.float32)
    den = np.zeros(data.shape, np.float32)
    for axis in (0, 1):
        at, line, run = _across_gaps(data, valid, axis, max_gap)
        num[at] += line / run
        den[at] += 1 / run
    gaps = den > 0
    if gaps.any():
        # strips, not blobs: a gap at least GAP_ELONGATION times as long as it may be wide (a
        # picture's dark pixels at its nodata value, and the notches that JPEG's ringing leaves
        # along a black border, are left as they were)
        from scipy import ndimage

        labels, _ = ndimage.label(gaps, structure=np.ones((3, 3), bool))
        long = [0] + [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) >= GAP_ELONGATION * max_gap
                      for sl in ndimage.find_objects(labels)]
        gaps = np.asarray(long, bool)[labels]
    num[gaps] /= den[gaps]
    num[~gaps] = 0
    return num, gaps


def fill_missing(data: np.ndarray, valid: np.ndarray, sigma: float = 2.0,
                 max_gap: float = MAX_GAP_PX) -> tuple[np.ndarray, np.ndarray]:
    """Missing pixels inside the data, filled from the valid pixels around them and counted valid:
    patches of at most MAX_HOLE_PX pixels (8-connected, not touching the array's edge) with the
    Gaussian-weighted mean of their surroundings (``sigma``): scattered NaN or -inf (a dB image
    whose power was 0 here and there) or nodata specks. Resampled, 1% of them spoil 4-8% of the
    pixels, and no patch was left valid enough to match. And thin gaps (:func:`_fill_thin_gaps`, at
    most ``max_gap`` px across: Landsat 7's scan-line gaps) by straight lines across them: 22% of
    a scene missing in strips left no patch 98% valid, and its tie points came from the other
    image's keypoints alone. The area outside the footprint and larger gaps stay invalid, and so
    do the pixels a user's mask excludes (applied after this)."""
    if valid.all() or not valid.any():
        return data, valid
    from scipy import ndimage

    labels, n = ndimage.label(~valid, structure=np.ones((3, 3), bool))
    if n == 0:
        return data, valid
    sizes = np.bincount(labels.ravel())
    small = sizes <= MAX_HOLE_PX
    small[0] = False
    # a patch at the array's edge may be the part of a larger one (a turned picture's black corner,
    # the outside of the raster) that the read window cuts off
    small[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
    holes = small[labels]
    if max_gap >= 1:  # a gap is at least a pixel long
        across, gaps = _fill_thin_gaps(data, valid, max_gap)
        gaps &= ~holes
    else:
        across, gaps = data, np.zeros_like(valid)
    if not holes.any() and not gaps.any():
        return data, valid
    out = data.copy()
    if holes.any():
        w = valid.astype(np.float32)
        den = ndimage.gaussian_filter(w, sigma, truncate=4.0)
        num = ndimage.gaussian_filter(np.where(valid, data, 0.0).astype(np.float32), sigma, truncate=4.0)
        holes &= den > 1e-3
        out[holes] = num[holes] / den[holes]
    out[gaps] = across[gaps]
    return out, valid | holes | gaps


def thin_run_pixels(missing: np.ndarray, max_gap: float = MAX_GAP_PX, step: int = 8) -> float:
    """About how many pixels of ``missing`` lie in runs of at most ``max_gap`` with data on both
    sides, along the rows or along the columns, whichever holds more: counted on every ``step``-th
    column and row (a quick look before :func:`scan_line_strips`, which labels every pixel)."""
    best = 0
    for axis, lines in ((0, missing[:, ::step]), (1, missing[::step, :])):
        at, _, _ = _across_gaps(np.zeros(lines.shape, np.float32), ~lines, axis, max_gap)
        best = max(best, len(at[0]))
    return float(best * step)


SCAN_STRIPS_MIN = 4  # strips of one fill value that make scan-line gaps, at the least
SCAN_STRIPS_ALIGNED = 0.9  # the share of the strips' pixels along one direction (within SCAN_STRIPS_DEG)
SCAN_STRIPS_DEG = 10.0


def scan_line_strips(missing: np.ndarray, max_gap: float = MAX_GAP_PX) -> np.ndarray | None:
    """The pixels of ``missing`` that are scan-line gaps: thin strips (at most ``max_gap`` px
    across a row or a column, at least GAP_ELONGATION times that long, as :func:`fill_missing`
    fills them), at least SCAN_STRIPS_MIN of them and SCAN_STRIPS_ALIGNED of their pixels along
    one direction, as a scanner's lines run; None when ``missing`` holds no such strips. A
    river or a road at the same value meanders or crosses others: not scan lines."""
    from scipy import ndimage

    _, strips = _fill_thin_gaps(np.zeros(missing.shape, np.float32), ~missing, max_gap)
    labels, n = ndimage.label(strips, structure=np.ones((3, 3), bool))
    if n < SCAN_STRIPS_MIN:
        return None
    yy, xx = np.nonzero(labels)
    lab = labels[yy, xx]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    my, mx = (np.bincount(lab, w, n + 1) / np.maximum(count, 1) for w in (yy, xx))
    dy, dx = yy - my[lab], xx - mx[lab]
    syy, sxx, sxy = (np.bincount(lab, w, n + 1) for w in (dy * dy, dx * dx, dx * dy))
    angle = np.degrees(0.5 * np.arctan2(2 * sxy, sxx - syy))[1:]  # each strip's long axis, -90..90
    weight = count[1:]
    main = angle[np.argmax(weight)]
    off = np.abs((angle - main + 90.0) % 180.0 - 90.0)
    if weight[off <= SCAN_STRIPS_DEG].sum() < SCAN_STRIPS_ALIGNED * weight.sum():
        return None
    return strips
