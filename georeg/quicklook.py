"""The quicklook picture, built as an RGB array (pure; writing is in :mod:`georeg.writers`).

Three panels side by side: the reference with the tie-point vectors (green inliers, red outliers,
drawn from where the target showed the feature to where the reference has it, exaggerated by
``vector_gain``), then a checkerboard of reference and target before, and after, registration.
"""

from __future__ import annotations

import numpy as np

GREEN = (40, 220, 60)
RED = (235, 50, 40)


def _grey(img: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def checkerboard(a: np.ndarray, b: np.ndarray, cells: int = 8) -> np.ndarray:
    """Alternate squares of two (H, W) images in [0, 1]; b's squares are tinted cyan."""
    h, w = a.shape
    size = max(8, max(h, w) // cells)
    yy, xx = np.mgrid[0:h, 0:w]
    sel = ((yy // size + xx // size) % 2).astype(bool)
    out = _grey(a).astype(np.float32)
    tint = np.stack([0.75 * b, b, b], -1) * 255
    out[sel] = tint[sel]
    return out.astype(np.uint8)


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color) -> None:
    from skimage.draw import line_aa

    h, w = img.shape[:2]
    rr, cc, val = line_aa(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    rr, cc, val = rr[ok], cc[ok], val[ok][:, None]
    img[rr, cc] = (img[rr, cc] * (1 - val) + np.array(color) * val).astype(np.uint8)


def _dot(img: np.ndarray, x: float, y: float, color, r: int = 1) -> None:
    h, w = img.shape[:2]
    xi, yi = int(round(x)), int(round(y))
    img[max(yi - r, 0):min(yi + r + 1, h), max(xi - r, 0):min(xi + r + 1, w)] = color


def vectors_panel(ref: np.ndarray, xy_r: np.ndarray, xy_t: np.ndarray, inlier: np.ndarray,
                  vector_gain: float = 1.0) -> np.ndarray:
    """(H, W) reference in [0, 1]; tie points (N, 2) already in panel pixels."""
    img = (_grey(ref) * 0.8).astype(np.uint8)
    order = np.argsort(inlier)  # outliers first, inliers drawn on top
    for i in order:
        color = GREEN if inlier[i] else RED
        end = xy_r[i]
        start = end + (xy_t[i] - xy_r[i]) * vector_gain
        _line(img, start[0], start[1], end[0], end[1], color)
        _dot(img, end[0], end[1], color)
    return img


def compose(panels: list[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    parts = []
    for i, p in enumerate(panels):
        pad = np.full((h, p.shape[1], 3), 255, np.uint8)
        pad[: p.shape[0]] = p
        parts.append(pad)
        if i < len(panels) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, 1)
