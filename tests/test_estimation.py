import numpy as np
import pytest

from georeg.config import EstimationConfig
from georeg.errors import TooFewTiePointsError
from georeg.estimation import apply_h, estimate


def _points(h, n=200, outliers=0.3, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    xy_t = rng.uniform(0, 2000, (n, 2))
    xy_r = apply_h(h, xy_t) + rng.normal(0, noise, (n, 2))
    k = int(n * outliers)
    xy_r[:k] += rng.uniform(-60, 60, (k, 2))
    return xy_t, xy_r, k


def _max_err(model, h, lo=0, hi=2000):
    g = np.stack(np.meshgrid(np.linspace(lo, hi, 9), np.linspace(lo, hi, 9)), -1).reshape(-1, 2)
    return np.abs(model.forward(g) - apply_h(h, g)).max()


def test_translation_with_outliers():
    h = np.array([[1, 0, 12.3], [0, 1, -7.8], [0, 0, 1.0]])
    xy_t, xy_r, k = _points(h)
    m = estimate(xy_t, xy_r, EstimationConfig(model="translation"))
    assert _max_err(m, h) < 0.15
    assert m.inliers[k:].mean() > 0.95 and m.inliers[:k].mean() < 0.2


def test_affine_with_outliers():
    a = np.deg2rad(3.0)
    h = np.array([[1.02 * np.cos(a), -1.02 * np.sin(a), 20], [1.02 * np.sin(a), 1.02 * np.cos(a), -35], [0, 0, 1]])
    xy_t, xy_r, _ = _points(h)
    m = estimate(xy_t, xy_r, EstimationConfig(model="affine"))
    assert _max_err(m, h) < 0.3
    assert m.is_affine


def test_homography_with_outliers():
    h = np.array([[1.01, 0.02, 15], [-0.015, 0.99, -9], [2e-6, -1.5e-6, 1.0]])
    xy_t, xy_r, _ = _points(h, n=300)
    m = estimate(xy_t, xy_r, EstimationConfig(model="homography"))
    assert _max_err(m, h) < 0.5
    assert not m.is_affine


def test_local_tps_follows_a_smooth_warp():
    rng = np.random.default_rng(1)
    xy_t = rng.uniform(0, 1000, (400, 2))

    def warp(p):
        return p + np.c_[3 * np.sin(p[:, 1] / 300), 2 * np.cos(p[:, 0] / 250)] + [5, -4]

    xy_r = warp(xy_t) + rng.normal(0, 0.2, xy_t.shape)
    m = estimate(xy_t, xy_r, EstimationConfig(model="local", threshold_px=3.0))
    g = rng.uniform(100, 900, (100, 2))
    assert np.abs(m.forward(g) - warp(g)).max() < 0.5
    assert np.abs(m.inverse(warp(g)) - g).max() < 0.5


def test_too_few_points_says_found_and_needed():
    with pytest.raises(TooFewTiePointsError, match=r"found 3, need at least 6"):
        estimate(np.zeros((3, 2)), np.zeros((3, 2)), EstimationConfig(model="affine"))


def test_auto_picks_translation_for_a_shift_and_affine_for_a_rotation():
    shift = np.array([[1, 0, 12.0], [0, 1, -7.0], [0, 0, 1.0]])
    xy_t, xy_r, _ = _points(shift, noise=1.0)
    assert estimate(xy_t, xy_r, EstimationConfig(model="auto")).kind == "translation"
    a = np.deg2rad(2.0)
    rot = np.array([[np.cos(a), -np.sin(a), 20], [np.sin(a), np.cos(a), -35], [0, 0, 1]])
    xy_t, xy_r, _ = _points(rot, noise=1.0)
    m = estimate(xy_t, xy_r, EstimationConfig(model="auto"))
    assert m.kind == "affine" and _max_err(m, rot) < 0.6
    assert m.params["auto"]["cv_error_px"]["affine"] < m.params["auto"]["cv_error_px"]["translation"]
