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

from georeg.coordinates import through_matrix


def shift_geotransform(src: str, dst: str, dx_px: float, dy_px: float) -> None:
    """Copy ``src`` to ``dst`` with the geotransform moved by (dx, dy) pixels: a geocoding error.

    Content at pixel (c, r) is then georeferenced where (c + dx, r + dy) used to be."""
    with rasterio.open(src) as s:
        prof = s.profile
        prof["transform"] = s.transform @ Affine.translation(dx_px, dy_px)
        with rasterio.open(dst, "w", **prof) as d:
            d.write(s.read())
            d.update_tags(**s.tags())  # tags and band descriptions carry modality clues
            for i, desc in enumerate(s.descriptions, 1):
                if desc:
                    d.set_band_description(i, desc)


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
    ox, oy = through_matrix(new_to_old, w, h, centre=0.5)
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
    from georeg.grid import Grid
    from georeg.warp import target_to_true_map

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
    """An optical-like reference and a SAR-like target on the same grid, the target's content
    warped by ``new_to_old`` (3x3, target pixels -> reference pixels).

    The scene has field parcels, roads and buildings. The SAR-like image maps each parcel to an
    unrelated brightness (land cover looks different to radar), makes roads dark and buildings
    very bright, and multiplies by 4-look speckle, so intensities do not correspond, only structure."""
    rng = np.random.default_rng(seed)
    n = size + 64
    layers = _scene_layers(n, rng)
    m = np.eye(3) if new_to_old is None else new_to_old
    ox, oy = through_matrix(m, size, size, centre=0.5)
    ox, oy = ox + 32, oy + 32

    def warp(a: np.ndarray, order: int = 1) -> np.ndarray:
        return ndimage.map_coordinates(a, [oy, ox], order=order, mode="reflect").reshape(size, size)

    parcels, labels, roads, buildings, texture = layers
    opt = parcels + 0.15 * texture + 0.8 * roads + 1.0 * buildings
    ref = opt[32:32 + size, 32:32 + size]
    if sar_like:
        k = int(labels.max()) + 1
        radar = rng.uniform(0.1, 1.0, k)[labels]
        sar = radar * (1 - 0.85 * roads) + 3.0 * buildings + 0.1 * np.abs(texture)
        tgt = warp(ndimage.gaussian_filter(sar, 0.7)) * rng.gamma(4.0, 1 / 4.0, (size, size))
    else:
        tgt = warp(opt)
    transform = Affine(pixel_size, 0, 500000.0, 0, -pixel_size, 5000000.0)
    for path, arr in ((ref_path, ref), (tgt_path, tgt)):
        a = np.clip(arr / np.percentile(arr, 99.5) * 230, 0, 255).astype(np.uint8)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                           crs=crs, transform=transform) as d:
            d.write(a[None])


def _scene_layers(n: int, rng: np.random.Generator):
    """Parcels (values and labels), roads, buildings and fine texture of an n x n scene."""
    k = max(16, (n // 40) ** 2 // 2)
    seeds = rng.uniform(0, n, (k, 2))
    from scipy.spatial import cKDTree

    yy, xx = np.mgrid[0:n, 0:n]
    _, labels = cKDTree(seeds).query(np.c_[xx.ravel(), yy.ravel()])
    labels = labels.reshape(n, n)
    parcels = rng.uniform(0.1, 0.9, k)[labels]
    roads = np.zeros((n, n))
    for _ in range(max(3, n // 150)):
        x0, y0 = rng.uniform(0, n, 2)
        ang = rng.uniform(0, np.pi)
        d = np.abs((xx - x0) * np.sin(ang) - (yy - y0) * np.cos(ang))
        roads = np.maximum(roads, (d < 1.5).astype(float))
    buildings = np.zeros((n, n))
    for _ in range(n * n // 2500):
        cx, cy = rng.integers(0, n, 2)
        w, h = rng.integers(3, 9, 2)
        buildings[cy:cy + h, cx:cx + w] = 1.0
    texture = ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.0)
    texture /= texture.std() + 1e-9
    return parcels, labels, roads, buildings, texture
