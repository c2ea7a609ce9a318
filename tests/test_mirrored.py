"""A georeferenced target whose pixels are stored flipped against its geotransform (an array
written upside down under a north-up geotransform) matches no rotation as it is: georeg tries its
mirror image, keeps it when `reliable`, says so, and writes a raster that lies where the unflipped
target's correction puts it."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import georeg
from georeg.apply import apply_report
from georeg.config import InputConfig, RegistrationConfig
from georeg.errors import MirroredTargetWarning
from georeg.grid import Grid, mirror
from georeg.raster import RasterSource

DEMO = Path(georeg.__file__).parent / "demo"


def _write(path, data: np.ndarray, transform: Affine, crs="EPSG:32611", nodata=None) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as d:
        d.write(data, 1)
    return str(path)


def test_a_mirrored_georeferenced_raster_is_read_as_its_mirror_image(tmp_path):
    """Placed on its mirror image, a georeferenced raster's read on its own grid comes back flipped
    left to right, its undeclared zero collar (on the left in the file) with it, on the right."""
    rng = np.random.default_rng(3)
    data = rng.integers(1, 255, (60, 80)).astype(np.uint8)
    data[:, :12] = 0  # a collar of fill on the file's left, declared nowhere
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    path = _write(tmp_path / "t.tif", data, t)
    grid = Grid(t, 80, 60, rasterio.crs.CRS.from_epsg(32611))
    with RasterSource(path, InputConfig(), "target") as a, \
            RasterSource(path, InputConfig(), "target", mirrored=True) as b:
        assert not a.mirrored and b.mirrored and b.grid.transform == t @ mirror(80)
        assert b.grid.bounds == a.grid.bounds  # the same footprint
        (da, va), (db, vb) = a.read_on_grid(grid), b.read_on_grid(grid)
    assert a.fill_share > 0.1 and not va[:, :12].any() and va[:, 12:].all()
    assert np.array_equal(da[:, ::-1], db) and np.array_equal(va[:, ::-1], vb)


@pytest.mark.slow
def test_a_georeferenced_target_stored_upside_down_registers_as_its_mirror_image(tmp_path):
    """The demo pair's S1 VH rows written upside down under its own geotransform: `reliable`, the
    report and a MirroredTargetWarning say it is the mirror image, the corrected raster lies on the
    plain target's corrected raster, and `georeg apply` places the flipped file the same way."""
    with rasterio.open(DEMO / "s1_vh.tif") as d:
        img, profile = d.read(), d.profile
    flipped = tmp_path / "target.tif"
    with rasterio.open(flipped, "w", **{**profile, "driver": "GTiff"}) as d:
        d.write(img[:, ::-1, :])
    cfg = RegistrationConfig().with_options(output={"quicklook": None, "overwrite": True})
    plain = georeg.register(str(DEMO / "s2_rgb.tif"), str(DEMO / "s1_vh.tif"), str(tmp_path / "plain.tif"), cfg)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        res = georeg.register(str(DEMO / "s2_rgb.tif"), str(flipped), str(tmp_path / "out.tif"),
                              cfg.with_options(output={"report": str(tmp_path / "out_report.json")}))
    assert res.quality == "reliable" and res.report["target"]["mirrored"] is True, res.report["verdict"]
    assert plain.report["target"]["mirrored"] is False
    assert any(issubclass(w.category, MirroredTargetWarning) for w in said)
    with rasterio.open(DEMO / "s2_rgb.tif") as r:
        ref_t, ref_crs, w, h = r.transform, r.crs, r.width, r.height

    def on_reference(path) -> np.ndarray:
        out = np.full((h, w), np.nan, np.float32)
        with rasterio.open(path) as s:
            rasterio.warp.reproject(rasterio.band(s, 1), out, dst_transform=ref_t, dst_crs=ref_crs,
                                    resampling=rasterio.enums.Resampling.bilinear, dst_nodata=np.nan)
        return out

    a, b = on_reference(plain.outputs["raster"]), on_reference(res.outputs["raster"])
    both = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    assert both.mean() > 0.9 and np.corrcoef(a[both], b[both])[0, 1] > 0.98  # the same ground, within resampling
    again = tmp_path / "again.tif"
    apply_report(res.outputs["report"], str(flipped), str(again))
    with rasterio.open(res.outputs["raster"]) as x, rasterio.open(again) as y:
        assert x.transform.almost_equals(y.transform) and np.array_equal(x.read(), y.read())


@pytest.mark.parametrize("frame,turn,says", [
    ("georeferenced", 179.9, "(upside down): it matched no rotation as it is, its pixels are stored flipped"),
    ("georeferenced", -0.4, "(flipped left to right): it matched no rotation as it is, its pixels are stored"),
    ("pixels", -178.0, "(upside down): it matched no rotation as it is, as a picture in radar geometry does")])
def test_the_summary_says_which_way_the_target_was_flipped(frame, turn, says):
    """The mirror image is flipped left to right; a model that turns it half round says the target
    was stored upside down."""
    from georeg.outputs import modality_text

    report = {"target": {"modality": "sar", "mirrored": True, "frame": frame,
                         "modality_evidence": {"decided": "sar", "by": "metadata"}},
              "model": {"type": "rigid", "parameters": {"rotation_deg": turn}}, "matcher": {"name": "baseline"}}
    assert says in modality_text(report)
    assert "mirror" not in modality_text({**report, "target": {**report["target"], "mirrored": False}})


def test_a_georeferenced_target_is_tried_mirrored_only_when_its_result_hardly_agrees_with_the_images():
    """Failed, or `uncertain` with the images' structure agreeing under the result at under
    MIRROR_MAX_AGREEMENT: tried mirrored. A weak but real agreement (a 3MOS pair georeg gets right
    at 0.063-0.071) or a `reliable` result is not. A picture is tried whenever it is not `reliable`."""
    from types import SimpleNamespace

    from georeg.pipeline import MIRROR_MAX_AGREEMENT, _mirror_worth_trying
    from georeg.verdict import Verdict

    def scene(quality, after):
        return SimpleNamespace(verdict=Verdict(quality, [] if quality == "reliable" else ["a reason"],
                                               {"structure_after": after}))

    georeferenced, picture = SimpleNamespace(pixel_frame=False), SimpleNamespace(pixel_frame=True)
    assert _mirror_worth_trying(None, georeferenced) and _mirror_worth_trying(None, picture)
    assert _mirror_worth_trying(scene("uncertain", 0.02), georeferenced)
    assert not _mirror_worth_trying(scene("uncertain", 0.07), georeferenced)
    assert not _mirror_worth_trying(scene("uncertain", MIRROR_MAX_AGREEMENT), georeferenced)
    assert _mirror_worth_trying(scene("uncertain", 0.07), picture)
    assert not _mirror_worth_trying(scene("reliable", 0.01), georeferenced)
    assert not _mirror_worth_trying(scene("reliable", 0.01), picture)
