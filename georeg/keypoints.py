"""Keypoint detection spread over a tile.

``detect(image, valid, n, border)`` takes an (H, W) float image and its validity mask and returns
(K, 2) ``xy_px`` integer pixel positions and (K,) scores, at most ``n``. The response is the
Shi-Tomasi minimum eigenvalue of the structure tensor; the tile is cut into a grid of cells and
each cell keeps its strongest locally-maximal points, so the points cover the whole tile rather
than bunching in its most textured part.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .features import box_count, gaussian_blur, gradients, max_filter


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
    pts, scores = [], []
    for i in range(cells):
        for j in range(cells):
            r0, c0 = border + i * ch, border + j * cw
            block = resp[r0:min(r0 + ch, h - border), c0:min(c0 + cw, w - border)]
            if block.size == 0:
                continue
            flat = block.ravel()
            m = min(per_cell, int((flat > 0).sum()))
            if m == 0:
                continue
            idx = np.argpartition(-flat, m - 1)[:m]
            rr, cc = np.unravel_index(idx, block.shape)
            pts.append(np.stack([cc + c0, rr + r0], 1))
            scores.append(flat[idx])
    if not pts:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    xy = np.concatenate(pts).astype(np.int64)
    sc = np.concatenate(scores).astype(np.float32)
    order = np.argsort(-sc)[:n]
    return xy[order], sc[order]
