"""The quicklook figure, built as an RGB array (pure; writing is in :mod:`georeg.writers`).

A title line (what was registered onto what, the model, the shift and the verdict), then three
titled panels:

1. the reference with the tie-point vectors, from where the target showed each feature to where
   the reference has it, magnified by the factor the panel title states; inliers green, outliers
   red; a scale bar in metres;
2. and 3. the same zoomed crop of full-resolution pixels before and after the correction, as a
   colour overlay: reference in magenta, target in green. Where they agree the picture is grey;
   a misregistration shows as magenta and green fringes on either side of every edge, so a
   correction of a pixel or two is visible.
"""

from __future__ import annotations

import math

import numpy as np

GREEN = (40, 220, 60)
RED = (255, 40, 0)
TEXT = (20, 20, 20)


def _grey(img: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def overlay(ref: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """(H, W) reference and target in [0, 1] as one RGB picture: reference in red and blue
    (magenta), target in green. Aligned structure is grey; offsets show as coloured fringes."""
    def stretch(a):
        lo, hi = np.percentile(a, [2, 98])
        return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)

    r, t = stretch(ref), stretch(tgt)
    return (np.stack([r, t, r], -1) * 255).astype(np.uint8)


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


def nice_length(max_m: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``max_m``."""
    if max_m <= 0:
        return 0.0
    k = 10 ** math.floor(math.log10(max_m))
    return max(m * k for m in (1, 2, 5) if m * k <= max_m)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fmt_length(m: float) -> str:
    return f"{m / 1000:g} km" if m >= 1000 else f"{m:g} m"


def scale_bar(img: np.ndarray, metres_per_px: float) -> np.ndarray:
    """Draw a scale bar of a round length (about a quarter of the width) in the lower left."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    if not math.isfinite(metres_per_px):  # no ground size (the pixel frame): no bar
        return img
    length = nice_length(0.25 * w * metres_per_px)
    if not length:
        return img
    px = int(round(length / metres_per_px))
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    x0, y0 = 10, h - 18
    d.rectangle([x0 - 4, y0 - 18, x0 + px + 4, h - 4], fill=(255, 255, 255))
    d.rectangle([x0, y0, x0 + px, y0 + 6], fill=(0, 0, 0))
    d.text((x0, y0 - 16), _fmt_length(length), fill=TEXT, font=_font(12))
    return np.asarray(pil)


def compose(columns: list[list[tuple[str, np.ndarray]]], heading: str = "", gap: int = 8) -> np.ndarray:
    """Columns side by side on white; each column is a list of (title, picture) stacked top to
    bottom; the whole under ``heading``."""
    from PIL import Image, ImageDraw

    title_h = 20
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [int(max(max(p.shape[1], measure.textlength(t, font=_font(13))) for t, p in col)) for col in columns]
    heights = [sum(title_h + p.shape[0] + gap for _, p in col) for col in columns]
    width = sum(widths) + gap * (len(columns) + 1)
    lines = _wrapped(heading, lambda t: measure.textlength(t, font=_font(15)), width - 2 * gap) if heading else []
    head_h = 26 + 19 * (len(lines) - 1) if lines else 0
    canvas = Image.new("RGB", (width, head_h + max(heights)), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        d.text((gap, 5 + 19 * i), line, fill=TEXT, font=_font(15))
    x = gap
    for col, w in zip(columns, widths, strict=True):
        y = head_h
        for title, p in col:
            d.text((x, y + 2), title, fill=TEXT, font=_font(13))
            canvas.paste(Image.fromarray(p), (x, y + title_h))
            y += title_h + p.shape[0] + gap
        x += w + gap
    return np.asarray(canvas)


def _wrapped(text: str, length, width: float) -> list[str]:
    """``text`` broken at spaces into lines no longer than ``width`` by ``length`` (a word longer
    than that stays whole on its own line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and length(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def zoom(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement to ``size`` px on the long side (pixels stay visible)."""
    from PIL import Image

    h, w = img.shape[:2]
    f = size / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * f)), max(1, round(h * f))), Image.NEAREST))
