"""Synthetic large scenes for the time/memory benchmark, written block by block so that making
them needs little memory: an optical-like reference, and a SAR-like target on the same grid whose
geotransform is off by a known shift (a geocoding error)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data helpers live with the tests
from synthetic import _scene_layers  # noqa: E402

SHIFT_PX = (13.0, -9.0)


def make_scene(folder: str, size: int, block: int = 1000, seed: int = 0) -> tuple[str, str]:
    ref = Path(folder) / f"scale_{size}_ref.tif"
    tgt = Path(folder) / f"scale_{size}_sar.tif"
    if ref.exists() and tgt.exists():
        return str(ref), str(tgt)
    t = Affine(10, 0, 400000, 0, -10, 5000000)
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32633",
                tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    rng = np.random.default_rng(seed)
    with rasterio.open(ref, "w", transform=t, **prof) as r, \
            rasterio.open(tgt, "w", transform=t @ Affine.translation(*SHIFT_PX), **prof) as s:
        for y in range(0, size, block):
            for x in range(0, size, block):
                w = Window(x, y, min(block, size - x), min(block, size - y))
                parcels, labels, roads, buildings, texture = _scene_layers(block, rng)
                opt = parcels + 0.15 * texture + 0.8 * roads + buildings
                k = int(labels.max()) + 1
                sar = rng.uniform(0.1, 1.0, k)[labels] * (1 - 0.85 * roads) + 3 * buildings
                sar = sar * rng.gamma(4.0, 0.25, sar.shape)
                h, wd = int(w.height), int(w.width)
                r.write(np.clip(opt[:h, :wd] / 2.0 * 230, 0, 255).astype("uint8")[None], window=w)
                s.write(np.clip(sar[:h, :wd] / 4.0 * 230, 0, 255).astype("uint8")[None], window=w)
    return str(ref), str(tgt)
