"""Recovery of known transforms on synthetic optical/SAR-like rasters, through georeg.register."""

import numpy as np
import pytest
from synthetic import lattice, rotation_scale_matrix, synthetic_pair

import georeg
from georeg.config import RegistrationConfig
from georeg.estimation import apply_h

SIZE = 512


# synthetic speckle is not what the learned matchers were trained on; these tests are about the
# pipeline's mechanics, so they pin the weight-free matcher (auto would pick kgl-opt-sar for 'sar' names)
def _run(tmp_path, new_to_old, model, **matching):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=SIZE, seed=3, new_to_old=new_to_old)
    cfg = RegistrationConfig().with_options(estimation={"model": model}, matching={"matcher": "baseline", **matching})
    return georeg.register(ref, tgt, tmp_path / "out.tif", cfg)


def _err(result, new_to_old):
    pts = lattice(64, 64, SIZE - 64, SIZE - 64)
    return np.abs(result.model.forward(pts) - apply_h(new_to_old, pts)).max()


def test_translation(tmp_path):
    m = np.array([[1, 0, 17.4], [0, 1, -23.6], [0, 0, 1.0]])
    r = _run(tmp_path, m, "translation")
    assert _err(r, m) < 0.5
    assert r.report["model"]["output_mode"] == "geotransform"
    assert r.report["counts"]["inliers"] >= 20


def test_affine_rotation_scale(tmp_path):
    m = rotation_scale_matrix(SIZE, SIZE, 3.0, 1.02, shift=(8.0, -5.0))
    r = _run(tmp_path, m, "affine")
    assert _err(r, m) < 0.6
    assert abs(r.report["model"]["parameters"]["rotation_deg"] - 3.0) < 0.1


def test_homography(tmp_path):
    m = np.array([[1.01, 0.01, 6.0], [-0.012, 0.995, -4.0], [2.5e-5, -2e-5, 1.0]])
    r = _run(tmp_path, m, "homography")
    assert _err(r, m) < 0.8
    assert r.report["model"]["output_mode"].startswith("resampled")


@pytest.mark.parametrize("shift", [(70.0, -55.0)])
def test_coarse_pass_handles_shift_beyond_max_shift(tmp_path, shift):
    m = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
    r = _run(tmp_path, m, "translation", max_shift=20)
    assert r.report["coarse"]["used"]
    assert _err(r, m) < 0.5
