"""Tiles over the overlap window: near-equal windows of at most ``tile_size`` pixels a side.

Matching reads each tile plus a margin, so memory depends on the tile size, not the scene size.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window


def tiles(window: Window, tile_size: int) -> list[Window]:
    """Split ``window`` into near-equal tiles no larger than ``tile_size`` (row-major order)."""
    w, h = int(window.width), int(window.height)
    nx, ny = max(1, math.ceil(w / tile_size)), max(1, math.ceil(h / tile_size))
    xs = [int(window.col_off) + round(i * w / nx) for i in range(nx + 1)]
    ys = [int(window.row_off) + round(j * h / ny) for j in range(ny + 1)]
    return [Window(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for j in range(ny) for i in range(nx)]


def expand(window: Window, margin: int) -> Window:
    return Window(window.col_off - margin, window.row_off - margin,
                  window.width + 2 * margin, window.height + 2 * margin)


def central_part(window: Window, factor: float) -> Window:
    """The part of ``window`` around its centre, ``factor`` (0-1] of its width and height."""
    w, h = max(1, int(round(window.width * factor))), max(1, int(round(window.height * factor)))
    return Window(window.col_off + (window.width - w) // 2, window.row_off + (window.height - h) // 2, w, h)


def trim_to_valid(window: Window, valid: np.ndarray, margin: int) -> Window:
    """The part of ``window`` where ``valid`` (a coarse boolean map of the window, True where both
    rasters hold data) is true, grown by ``margin`` full-resolution pixels and one coarse pixel.
    Returns ``window`` itself when nothing is valid."""
    rows, cols = np.nonzero(valid)
    if not len(rows):
        return window
    h, w = valid.shape
    fy, fx = window.height / h, window.width / w
    c0 = max(0, int(math.floor((cols.min() - 1) * fx)) - margin)
    r0 = max(0, int(math.floor((rows.min() - 1) * fy)) - margin)
    c1 = min(int(window.width), int(math.ceil((cols.max() + 2) * fx)) + margin)
    r1 = min(int(window.height), int(math.ceil((rows.max() + 2) * fy)) + margin)
    return Window(int(window.col_off) + c0, int(window.row_off) + r0, c1 - c0, r1 - r0)


def with_data(tile_list: list[Window], window: Window, valid: np.ndarray, margin: int) -> list[Window]:
    """The tiles (of ``window``) that touch valid data of both rasters within ``margin`` px; ``valid``
    is the coarse map of ``window`` used by :func:`trim_to_valid`."""
    h, w = valid.shape
    fy, fx = window.height / h, window.width / w
    keep = []
    for t in tile_list:
        c0 = max(0, int(math.floor((t.col_off - window.col_off - margin) / fx)) - 1)
        r0 = max(0, int(math.floor((t.row_off - window.row_off - margin) / fy)) - 1)
        c1 = int(math.ceil((t.col_off - window.col_off + t.width + margin) / fx)) + 1
        r1 = int(math.ceil((t.row_off - window.row_off + t.height + margin) / fy)) + 1
        if valid[r0:r1, c0:c1].any():
            keep.append(t)
    return keep


def spread(tile_list: list[Window], k: int) -> list[int]:
    """Indices (ascending) of at most ``k`` tiles spread evenly over ``tile_list``: the area they
    cover is cut into g x g cells (g = floor(sqrt(k))) and each cell gives the tile nearest its
    centre; the rest of the ``k`` are added farthest-first from those. All of them when ``k`` is 0
    or not smaller than their number."""
    n = len(tile_list)
    if k <= 0 or k >= n:
        return list(range(n))
    c = np.array([(t.col_off + t.width / 2, t.row_off + t.height / 2) for t in tile_list], np.float64)
    lo = np.array([min(t.col_off for t in tile_list), min(t.row_off for t in tile_list)], np.float64)
    hi = np.array([max(t.col_off + t.width for t in tile_list), max(t.row_off + t.height for t in tile_list)],
                  np.float64)
    g = int(math.isqrt(k))
    cell = np.minimum((g * (c - lo) / (hi - lo)).astype(int), g - 1)
    chosen = []
    for gy in range(g):
        for gx in range(g):
            members = np.flatnonzero((cell[:, 0] == gx) & (cell[:, 1] == gy))
            if len(members):
                middle = lo + (np.array([gx, gy]) + 0.5) * (hi - lo) / g
                chosen.append(int(members[np.argmin(np.linalg.norm(c[members] - middle, axis=1))]))
    dist = np.min(np.linalg.norm(c[:, None] - c[chosen][None], axis=2), axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(c - c[nxt], axis=1))
    return sorted(chosen)
