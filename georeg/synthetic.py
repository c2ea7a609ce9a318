"""Test and benchmark helpers: perturbed copies of real rasters with known transforms, and
synthetic scene pairs. They write files, so they live apart from the pipeline modules.

A perturbation is described in target pixels; :func:`corrected_positions` turns a registration
result into where it puts a lattice of target pixels, which is what the accuracy checks compare.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage


def shift_geotransform(src: str, dst: str, dx_px: float, dy_px: float) -> None:
    """Copy ``src`` to ``dst`` with the geotransform moved by (dx, dy) pixels: a geocoding error.

    Content at pixel (c, r) is then georeferenced where (c + dx, r + dy) used to be."""
    with rasterio.open(src) as s:
        prof = s.profile
        prof["transform"] = s.transform * Affine.translation(dx_px, dy_px)
        with rasterio.open(dst, "w", **prof) as d:
            d.write(s.read())


def rotation_scale_matrix(width: int, height: int, angle_deg: float, scale: float,
                          shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """3x3 matrix taking new pixel positions to original ones for a rotation+scale about the centre."""
    cx, cy = width / 2, height / 2
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = np.array([cx, cy]) - rot @ np.array([cx, cy]) + np.array(shift)
    return m


def resample_content(src: str, dst: str, new_to_old: np.ndarray) -> None:
    """Write ``dst`` on ``src``'s grid with content resampled: new pixel q shows old pixel M q."""
    with rasterio.open(src) as s:
        prof = s.profile
        data = s.read()
        h, w = s.height, s.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    old = new_to_old @ pts
    ox, oy = old[0] / old[2] - 0.5, old[1] / old[2] - 0.5
    out = np.zeros_like(data)
    for b in range(data.shape[0]):
        v = ndimage.map_coordinates(data[b].astype(np.float32), [oy, ox], order=1, mode="constant", cval=0)
        out[b] = np.clip(np.rint(v), 0, np.iinfo(data.dtype).max if data.dtype.kind in "ui" else None
                         ).reshape(h, w).astype(data.dtype)
    inside = ((ox >= -0.5) & (oy >= -0.5) & (ox <= w - 0.5) & (oy <= h - 0.5)).reshape(h, w)
    prof["nodata"] = 0
    out[:, ~inside] = 0
    with rasterio.open(dst, "w", **prof) as d:
        d.write(out)


def corrected_positions(result, target_grid, lattice: np.ndarray) -> np.ndarray:
    """Map coordinates (target CRS) that a registration result gives to target pixels ``lattice`` (N, 2)."""
    from .raster import Grid
    from .warp import target_to_true_map

    ref = result.report["reference"]
    with rasterio.open(ref["path"]) as r:
        ref_grid = Grid(r.transform, r.width, r.height, r.crs)
    return target_to_true_map(result.model, ref_grid, target_grid)(lattice)


def lattice(x0: float, y0: float, x1: float, y1: float, n: int = 9) -> np.ndarray:
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.c_[gx.ravel(), gy.ravel()]


def synthetic_pair(ref_path: str, tgt_path: str, size: int = 512, seed: int = 0,
                   new_to_old: np.ndarray | None = None, crs: str = "EPSG:32633",
                   pixel_size: float = 10.0, sar_like: bool = True) -> None:
    """A textured optical-like reference and a SAR-like target (contrast change + speckle) on the
    same grid, the target's content warped by ``new_to_old`` (3x3, target px -> reference px)."""
    rng = np.random.default_rng(seed)
    base = _texture(size + 64, rng)
    transform = Affine(pixel_size, 0, 500000.0, 0, -pixel_size, 5000000.0)
    ref = base[32:32 + size, 32:32 + size]
    m = np.eye(3) if new_to_old is None else new_to_old
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    pts = m @ np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    ox, oy = pts[0] / pts[2] - 0.5 + 32, pts[1] / pts[2] - 0.5 + 32
    tgt = ndimage.map_coordinates(base, [oy, ox], order=1, mode="reflect").reshape(size, size)
    if sar_like:
        tgt = np.abs(np.gradient(ndimage.gaussian_filter(tgt, 1.0))[0]) * 4 + 0.6 * (1 - tgt)
        tgt = tgt * rng.gamma(4.0, 1 / 4.0, tgt.shape)
    for path, arr in ((ref_path, ref), (tgt_path, tgt)):
        a = np.clip(arr / np.percentile(arr, 99.5) * 230, 0, 255).astype(np.uint8)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                           crs=crs, transform=transform) as d:
            d.write(a[None])


def _texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Fields, roads and blobs: structure at several scales, like a rural/urban optical scene."""
    img = ndimage.gaussian_filter(rng.standard_normal((n, n)), 12) * 3
    img += ndimage.gaussian_filter(rng.standard_normal((n, n)), 3)
    # field parcels: piecewise constant Voronoi-like cells
    k = max(8, n // 24)
    seeds = rng.uniform(0, n, (k, 2))
    yy, xx = np.mgrid[0:n, 0:n]
    lab = np.argmin(((xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2), -1) \
        if n <= 1200 else (xx // 40 + yy // 40 * 997) % k
    img += rng.uniform(-1.5, 1.5, k)[lab]
    for _ in range(max(4, n // 100)):  # roads
        x0, y0 = rng.uniform(0, n, 2)
        ang = rng.uniform(0, np.pi)
        d = np.abs((xx - x0) * np.sin(ang) - (yy - y0) * np.cos(ang))
        img += 2.5 * (d < 2)
    img = (img - img.min()) / (img.max() - img.min() + 1e-9)
    return img.astype(np.float64)
