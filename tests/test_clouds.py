"""Cloud-like tie points of an optical/thermal pair (georeg.clouds) and the verdict they lead to."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from georeg.clouds import cloud_like
from georeg.config import InputConfig
from georeg.raster import RasterSource

T = Affine(30.0, 0, 500000.0, 0, -30.0, 3400000.0)


def _write(path, arr):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype="float32", crs="EPSG:32616", transform=T) as d:
        d.write(arr.astype("float32")[None])
    return str(path)


def _pair(tmp_path, seed=0, size=384):
    """Ground whose optical and thermal intensities rise together (bare soil bright and warm), and
    a field of clouds in one half: bright in the optical image, cold in the thermal one."""
    rng = np.random.default_rng(seed)
    ground = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    ground = (ground - ground.mean()) / ground.std()
    cells = ndimage.gaussian_filter(rng.normal(size=(size, size)), 4)
    cloud = np.zeros((size, size), bool)
    cloud[:, size // 2:] = cells[:, size // 2:] > 0.02
    cover = ndimage.gaussian_filter(cloud.astype(float), 1.5)
    optical = 0.1 + 0.03 * ground + 0.5 * cover
    thermal = 300 + 3 * ground - 25 * cover
    return _write(tmp_path / "opt.tif", optical), _write(tmp_path / "tir.tif", thermal), cloud


def test_tie_points_on_bright_cold_clouds_are_flagged_and_those_on_ground_are_not(tmp_path):
    o, t, cloud = _pair(tmp_path)
    core = ndimage.binary_erosion(cloud, iterations=6)
    rows, cols = np.nonzero(core)
    pick = np.random.default_rng(1).choice(len(rows), 40, replace=False)
    on_cloud = np.c_[cols[pick], rows[pick]] + 0.5
    rng = np.random.default_rng(2)
    on_ground = np.c_[rng.uniform(10, 180, (40, 1)), rng.uniform(10, 370, (40, 1))]  # the clear half
    with RasterSource(o, InputConfig(), "reference") as ref, RasterSource(t, InputConfig(), "target") as tgt:
        got = cloud_like(ref, tgt, ref.grid, Window(0, 0, 384, 384), None, np.r_[on_cloud, on_ground])
    # the roles swapped: the thermal raster as the reference, the optical one as the target
    with RasterSource(t, InputConfig(), "reference") as ref, RasterSource(o, InputConfig(), "target") as tgt:
        swapped = cloud_like(ref, tgt, ref.grid, Window(0, 0, 384, 384), None, np.r_[on_ground, on_cloud],
                             optical_is_reference=False)
    flags = got["flags"]
    assert flags[:40].mean() >= 0.8, flags[:40].mean()
    assert flags[40:].mean() == 0.0
    assert 0.1 < got["share_of_overlap"] < 0.5, got
    assert swapped["flags"][:40].mean() == 0.0  # the roles read right when the optical image is the target
    assert swapped["flags"][40:].mean() >= 0.8


def test_a_clear_pair_whose_intensities_rise_together_has_no_cloud_like_pixels(tmp_path):
    rng = np.random.default_rng(4)
    ground = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 3)
    o = _write(tmp_path / "o.tif", 0.1 + 0.03 * ground)
    t = _write(tmp_path / "t.tif", 300 + 3 * ground + rng.normal(0, 0.3, (256, 256)))
    with RasterSource(o, InputConfig(), "reference") as ref, RasterSource(t, InputConfig(), "target") as tgt:
        got = cloud_like(ref, tgt, ref.grid, Window(0, 0, 256, 256), None, np.array([[128.0, 128.0]]))
    assert got["share_of_overlap"] < 0.01 and not got["flags"].any()
