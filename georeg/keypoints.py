"""Keypoint detection spread over a tile.

``detect(image, valid, n, border)`` takes an (H, W) float image and its validity mask and returns
(K, 2) ``xy_px`` integer pixel positions and (K,) scores, at most ``n``. The response is the
Shi-Tomasi minimum eigenvalue of the structure tensor; the tile is cut into a grid of cells and
each cell keeps its strongest locally-maximal points, so the points cover the whole tile rather
than bunching in its most textured part. The places of cells that have too few points (outside
the valid data, open water) go to the other cells' next-strongest points, so a tile half nodata
still gets its ``n`` points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .features import box_count, gaussian_blur, gradients, max_filter

# a cell keeps up to this many times its share of points in reserve, for the places that cells
# without enough points (outside the valid data, flat water) leave empty
RESERVE = 3


def shi_tomasi(img: torch.Tensor, grad_sigma: float = 1.5, window_sigma: float = 3.0) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, H, W) minimum eigenvalue of the smoothed structure tensor."""
    gx, gy = gradients(img, grad_sigma)
    t = gaussian_blur(torch.cat([gx * gx, gy * gy, gx * gy], 1), window_sigma)
    a, b, c = t[:, 0:1], t[:, 1:2], t[:, 2:3]
    return 0.5 * (a + b - torch.sqrt((a - b) ** 2 + 4 * c * c))


def detect(image: np.ndarray, valid: np.ndarray, n: int, border: int, patch_size: int,
           min_valid: float = 0.98, nms_radius: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` keypoints at least ``border`` px inside the image, whose ``patch_size`` patch
    is at least ``min_valid`` valid. Returns (K, 2) xy_px (int) and (K,) scores."""
    h, w = image.shape
    if h <= 2 * border or w <= 2 * border or n <= 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        resp = shi_tomasi(x)
        k = patch_size + 1
        # at least min_valid of the patch valid, counted exactly (as the float32 fraction compares)
        enough = box_count(valid, k) >= math.ceil(min_valid * k * k - 1e-9)
        resp = torch.where(torch.from_numpy(enough)[None, None], resp, torch.zeros_like(resp))
        peak = resp == max_filter(resp, 2 * nms_radius + 1)
        resp = torch.where(peak & (resp > 0), resp, torch.zeros_like(resp))[0, 0].numpy()
    resp[:border, :] = 0
    resp[h - border:, :] = 0
    resp[:, :border] = 0
    resp[:, w - border:] = 0
    inner_h, inner_w = h - 2 * border, w - 2 * border
    cells = max(1, int(math.ceil(math.sqrt(n / 3.0))))
    ch, cw = max(1, inner_h // cells + 1), max(1, inner_w // cells + 1)
    per_cell = max(1, int(math.ceil(n / (cells * cells))))
    # (x, y, score, rank within its cell): each cell's ``per_cell`` strongest, then its next ones
    pts = []
    for i in range(cells):
        for j in range(cells):
            r0, c0 = border + i * ch, border + j * cw
            block = resp[r0:min(r0 + ch, h - border), c0:min(c0 + cw, w - border)]
            if block.size == 0:
                continue
            flat = block.ravel()
            m = min(RESERVE * per_cell, int((flat > 0).sum()))
            if m == 0:
                continue
            idx = np.argpartition(-flat, m - 1)[:m]
            idx = idx[np.argsort(-flat[idx], kind="stable")]
            rr, cc = np.unravel_index(idx, block.shape)
            pts.append(np.stack([cc + c0, rr + r0, flat[idx], np.arange(m)], 1))
    if not pts:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    cand = np.concatenate(pts)
    # every cell's own share first (the strongest of them when that is more than n); the places
    # that cells short of points leave go to the other cells' reserves, round by round (every
    # cell's next point before any cell's one after), so the points stay spread
    own = cand[:, 3] < per_cell
    order = np.lexsort((-cand[:, 2], np.where(own, 0, cand[:, 3]), ~own))[:n]
    order = order[np.argsort(-cand[order, 2], kind="stable")]
    return cand[order, :2].astype(np.int64), cand[order, 2].astype(np.float32)
