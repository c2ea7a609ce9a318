"""Cloud-like tie points of an optical/thermal pair (georeg.clouds) and the verdict they lead to."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from georeg.clouds import STRONG_INVERSION, cloud_like
from georeg.config import InputConfig
from georeg.raster import RasterSource
from georeg.verdict import _cloud_evidence, _cloud_reasons

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


def test_cloud_edges_a_threshold_mask_leaves_see_the_contrast_strongly_inverted(tmp_path):
    """The optical image's brightest 15% masked in both rasters (the clouds' cores, as a threshold
    takes them): tie points on the unmasked edges see the two images' intensities run against each
    other, those on the clear ground do not."""
    o, t, cloud = _pair(tmp_path)
    with rasterio.open(o) as d:
        optical = d.read(1)
    clear = optical < np.percentile(optical, 85)
    mask = _write(tmp_path / "clear.tif", clear.astype(np.float32))
    edge = cloud & clear & ndimage.binary_dilation(~clear, iterations=3)
    rows, cols = np.nonzero(edge)
    pick = np.random.default_rng(1).choice(len(rows), 40, replace=False)
    on_edge = np.c_[cols[pick], rows[pick]] + 0.5
    rng = np.random.default_rng(2)
    on_ground = np.c_[rng.uniform(10, 180, (40, 1)), rng.uniform(10, 370, (40, 1))]
    cfg = InputConfig(mask=mask)
    with RasterSource(o, cfg, "reference") as ref, RasterSource(t, cfg, "target") as tgt:
        got = cloud_like(ref, tgt, ref.grid, Window(0, 0, 384, 384), None, np.r_[on_edge, on_ground])
    local = got["local_correlation"]
    assert (local[:40] < STRONG_INVERSION).mean() >= 0.75, local[:40]
    assert (local[40:] < STRONG_INVERSION).mean() == 0.0, local[40:]


def test_inliers_that_see_the_contrast_inverted_make_a_result_uncertain_with_one_reason():
    """Either count of cloud evidence gives one reason; the strong inversion's names the threshold
    mask's edges."""
    inl = np.arange(100) < 90
    flags = np.arange(100) < 20  # 22% of the inliers cloud-like by their ranks: under the limit
    inverted = np.where(np.arange(100) < 80, -0.8, 0.4)  # 89% strongly inverted
    ev = _cloud_evidence({"flags": flags, "local_correlation": inverted, "share_of_overlap": 0.1,
                          "coarse_px": 4.0}, inl)
    assert np.isclose(ev["inverted_inlier_share"], 80 / 90) and np.isclose(ev["inlier_share"], 20 / 90)
    (reason,) = _cloud_reasons(ev)
    assert "strongly inverted" in reason and "threshold mask" in reason
    (reason,) = _cloud_reasons({**ev, "inlier_share": 0.7})  # both: the cloud-like count's reason alone
    assert reason.startswith("70% of the inliers lie where the optical image is bright")
    assert _cloud_reasons({**ev, "inverted_inlier_share": 0.36}) == []  # the most of 141 clear SRIF pairs
