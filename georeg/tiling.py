"""Tiles over the overlap window: near-equal windows of at most ``tile_size`` pixels a side.

Matching reads each tile plus a margin, so memory depends on the tile size, not the scene size.
"""

from __future__ import annotations

import math

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
