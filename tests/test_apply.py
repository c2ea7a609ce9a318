"""georeg apply: a saved report corrects another raster of the same scene exactly as register did."""

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from synthetic import synthetic_pair

import georeg
from georeg.cli import georeg as cli
from georeg.config import RegistrationConfig


@pytest.fixture()
def registered(tmp_path):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar_vv.tif"
    synthetic_pair(str(ref), str(tgt), size=320, seed=8, new_to_old=np.array([[1, 0, 7.0], [0, 1, -5.0], [0, 0, 1]]))
    band2 = tmp_path / "sar_vh.tif"
    with rasterio.open(tgt) as s:
        prof = s.profile
        with rasterio.open(band2, "w", **prof) as d:
            d.write(255 - s.read())
    return ref, tgt, band2


@pytest.mark.parametrize("model,align", [("auto", False), ("homography", False), ("local", True)])
def test_apply_reproduces_register(registered, tmp_path, model, align):
    ref, tgt, band2 = registered
    # the weight-free matcher: synthetic speckle is outside the learned matchers' training data
    cfg = RegistrationConfig().with_options(estimation={"model": model}, matching={"matcher": "baseline"}, output={
        "report": str(tmp_path / "r.json"), "align_grids": align})
    georeg.register(ref, tgt, tmp_path / "out.tif", cfg)
    r = CliRunner().invoke(cli, ["apply", str(tmp_path / "r.json"), str(band2), "-o", str(tmp_path / "vh.tif")])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "out.tif") as a, rasterio.open(tmp_path / "vh.tif") as b:
        assert a.transform.almost_equals(b.transform) and a.shape == b.shape and a.crs == b.crs
        va, vb = a.read(1).astype(int), b.read(1).astype(int)
        from scipy import ndimage

        both = ndimage.binary_erosion((va > 0) & (vb > 0), iterations=3)  # away from the data's edge
        assert np.abs((255 - va[both]) - vb[both]).max() <= 1  # the same warp applied to the other band


def test_apply_bad_report(tmp_path, registered):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    r = CliRunner().invoke(cli, ["apply", str(bad), str(registered[2]), "-o", str(tmp_path / "x.tif")])
    assert r.exit_code == 2 and "not a georeg registration report" in r.output
    assert not (tmp_path / "x.tif").exists()


def test_apply_does_not_read_the_sensor_from_the_pixels(registered, tmp_path, monkeypatch):
    """The raster is only warped: no sample of its pixels is read to decide its modality."""
    import georeg.modality

    ref, tgt, band2 = registered
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"},
                                            output={"report": str(tmp_path / "r.json")})
    georeg.register(ref, tgt, tmp_path / "out.tif", cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("apply decided the raster's modality")

    monkeypatch.setattr(georeg.modality, "detect_modality", refuse)
    r = CliRunner().invoke(cli, ["apply", str(tmp_path / "r.json"), str(band2), "-o", str(tmp_path / "vh.tif")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "vh.tif").exists()
