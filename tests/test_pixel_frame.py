"""Rasters as plain pictures: two images without any georeferencing (PNG, JPEG) are registered in
pixel coordinates; a grey image stored as three identical bands is read as one band; black fill
around a rotated picture saved without nodata does not count as data for the modality."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image
from synthetic import synthetic_pair

import georeg
from georeg.apply import apply_report
from georeg.cli import georeg as cli
from georeg.config import InputConfig, RegistrationConfig
from georeg.errors import ConfigError, InputError, MissingCRSError
from georeg.grid import PIXEL_FRAME
from georeg.modality import border_fill
from georeg.raster import RasterSource

SHIFT = (6.0, -4.0)  # the target picture's content, moved by whole pixels (x, y)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """reference.png (grey optical-like) and target.png (SAR-like, content moved by SHIFT, stored as
    three identical bands as image exports often are); neither has any georeferencing."""
    d = tmp_path_factory.mktemp("pictures")
    synthetic_pair(str(d / "a.tif"), str(d / "b.tif"), size=384, seed=5)
    with rasterio.open(d / "a.tif") as a, rasterio.open(d / "b.tif") as b:
        ref, tgt = a.read(1), b.read(1)
    dx, dy = int(SHIFT[0]), int(SHIFT[1])
    moved = np.roll(np.roll(tgt, dy, axis=0), dx, axis=1)  # content at p shows up at p + SHIFT
    Image.fromarray(ref).save(d / "reference.png")
    Image.fromarray(np.stack([moved] * 3, -1)).save(d / "target.png")
    return d


def _cfg(folder=None, **sections):
    out = {"overwrite": True}
    if folder is not None:
        out.update(report=str(folder / "out_report.json"), tie_points=str(folder / "out_tiepoints.gpkg"))
    return RegistrationConfig().with_options(output=out, **sections)


def test_two_pictures_without_georeferencing_register_in_pixel_coordinates(pictures, tmp_path):
    out = tmp_path / "out.tif"
    res = georeg.register(str(pictures / "reference.png"), str(pictures / "target.png"), str(out), _cfg(tmp_path))
    rep = res.report
    assert rep["reference"]["frame"] == rep["target"]["frame"] == "pixels"
    assert rep["reference"]["crs"] is None and rep["shift"]["map_unit"] == "px"
    # the correction moves the target's content back by SHIFT
    assert np.allclose(rep["shift"]["mean_px"], [-SHIFT[0], -SHIFT[1]], atol=0.3), rep["shift"]
    assert res.quality == "reliable", rep["verdict"]
    # grey stored as colour is one band, and the SAR-like texture decides the modality
    assert rep["target"]["bands"] == "band 1 (bands 1-3 identical)"
    assert "grey" in rep["target"]["modality_evidence"]["bands"]
    with rasterio.open(out) as d:  # on the reference picture's pixels
        assert d.crs is None and d.transform == PIXEL_FRAME and d.shape == (384, 384)
    tp = gpd.read_file(res.outputs["tie_points"])
    assert tp.crs is None and len(tp) == rep["counts"]["tie_points"]
    # tie points sit where the reference's pixels are on the frame: x = column, y = -row
    assert np.allclose(tp.geometry.x, tp["ref_col"]) and np.allclose(tp.geometry.y, -tp["ref_row"])


@pytest.mark.parametrize("size, seed, col, row, crop", [(512, 7, 186, 166, 256), (640, 11, 120, 300, 224)])
def test_a_small_picture_is_found_inside_a_larger_one(tmp_path, size, seed, col, row, crop):
    """A crop from inside a larger picture: where it lies is unknown (no georeferencing), so the
    whole reference is searched (the overlap of the two frames would be the top-left corner).
    Once found, coverage, stability and the model's departures are judged over where the crop
    lies, not over the whole reference: the 224 px crop of a 640 px picture came out `uncertain`
    ("the inliers cover 19% of the overlap")."""
    synthetic_pair(str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), size=size, seed=seed)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        Image.fromarray(a.read(1)).save(tmp_path / "reference.png")
        Image.fromarray(b.read(1)[row:row + crop, col:col + crop]).save(tmp_path / "crop.png")
    res = georeg.register(str(tmp_path / "reference.png"), str(tmp_path / "crop.png"), str(tmp_path / "out.tif"),
                          _cfg())
    assert np.allclose(res.report["shift"]["mean_px"], [col, row], atol=0.5), res.report["shift"]
    assert res.quality == "reliable", res.report["verdict"]
    assert res.report["verdict"]["coverage"] >= 0.5, res.report["verdict"]


def test_a_pixel_registration_applies_to_another_picture_of_the_target(pictures, tmp_path):
    res = georeg.register(str(pictures / "reference.png"), str(pictures / "target.png"), str(tmp_path / "out.tif"),
                          _cfg(tmp_path))
    again = tmp_path / "again.tif"
    apply_report(res.outputs["report"], str(pictures / "target.png"), str(again))
    with rasterio.open(res.outputs["raster"]) as a, rasterio.open(again) as b:
        assert np.array_equal(a.read(), b.read())
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(small)
    with pytest.raises(InputError, match="pixel grid"):
        apply_report(res.outputs["report"], str(small), str(tmp_path / "x.tif"))
    report = json.loads(Path(res.outputs["report"]).read_text())
    synthetic_pair(str(tmp_path / "g1.tif"), str(tmp_path / "g2.tif"), size=128, seed=1)
    with pytest.raises(InputError, match="georeferenced"):  # a georeferenced raster takes a georeferenced report
        apply_report(report, str(tmp_path / "g2.tif"), str(tmp_path / "y.tif"))


def test_a_picture_against_a_georeferenced_raster_is_refused(pictures, tmp_path):
    synthetic_pair(str(tmp_path / "ref.tif"), str(tmp_path / "tgt.tif"), size=128, seed=1)
    with pytest.raises(MissingCRSError, match="target raster has no georeferencing.*pixel coordinates"):
        georeg.register(str(tmp_path / "ref.tif"), str(pictures / "target.png"), str(tmp_path / "o.tif"), _cfg())
    r = CliRunner().invoke(cli, ["register", str(pictures / "reference.png"), str(tmp_path / "tgt.tif"),
                                 "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "reference raster has no georeferencing" in r.output, r.output
    assert not (tmp_path / "o.tif").exists()


def test_a_max_shift_in_metres_needs_georeferencing(pictures, tmp_path):
    with pytest.raises(ConfigError, match="give it in px"):
        georeg.register(str(pictures / "reference.png"), str(pictures / "target.png"), str(tmp_path / "o.tif"),
                        _cfg(matching={"max_shift": 100, "max_shift_unit": "m"}))


def test_grey_stored_as_colour_is_read_as_one_band(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "grey.png")
    colour = np.stack([grey, np.roll(grey, 3, axis=1), grey // 2], -1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with RasterSource(tmp_path / "grey.png", InputConfig(), "target", pixel_frame_ok=True) as g, \
            RasterSource(tmp_path / "colour.png", InputConfig(), "target", pixel_frame_ok=True) as c, \
            RasterSource(tmp_path / "grey.png", InputConfig(band=2), "target", pixel_frame_ok=True) as b2:
        assert g.bands == [1] and g.grey_as_colour
        assert c.bands == [1, 2, 3] and not c.grey_as_colour and c.modality == "optical"
        assert b2.bands == [2] and "bands" not in b2.modality_decision.evidence


def test_border_fill_is_the_dark_rim_only():
    rng = np.random.default_rng(1)
    img = rng.uniform(40, 200, (100, 100)).astype(np.float32)
    yy, xx = np.mgrid[:100, :100]
    corner = (xx + yy) < 30  # a black corner left by a rotation
    img[corner] = rng.integers(0, 3, corner.sum())
    img[45:55, 45:55] = 0  # a dark feature inside the picture is data
    fill = border_fill(img, (True, True, True, True))
    assert fill[corner].all() and not fill[45:55, 45:55].any()
    assert fill.sum() < corner.sum() + 2 * 30 * 2 + 10  # the corner, widened by 2 px
    # a sample whose rims are not the raster's edges (a window inside a larger raster) keeps all
    assert not border_fill(img, (False, False, False, False)).any()


def test_black_fill_of_a_turned_picture_is_its_mask(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.uniform(30, 220, (120, 160)).astype(np.uint8)
    yy, xx = np.mgrid[:120, :160]
    corners = ((xx + yy) < 25) | ((159 - xx) + (119 - yy) < 25)
    img[corners] = rng.integers(0, 3, corners.sum())  # JPEG leaves the fill at 0-2
    img[60:70, 80:90] = 0  # a dark patch inside is data
    Image.fromarray(img).save(tmp_path / "turned.png")
    with RasterSource(tmp_path / "turned.png", InputConfig(), "target", pixel_frame_ok=True) as s:
        data, valid = s.read_on_grid(s.grid)
        assert not valid[corners].any() and valid[60:70, 80:90].all()
        assert s.fill_share == pytest.approx(1 - valid.mean())
        assert 0 < s.fill_share < corners.mean() + 0.05
    # the same picture given a nodata value is left to it
    with RasterSource(tmp_path / "turned.png", InputConfig(nodata=255), "target", pixel_frame_ok=True) as s:
        assert s.fill_share == 0.0 and s.read_on_grid(s.grid)[1][corners].all()


def test_srif_infrared_jpeg_as_given_is_thermal(shared_data):
    """SRIF's infrared JPEGs are grey stored as colour with black rotation corners and no nodata."""
    d = shared_data / "srif_multimodal" / "Optical-Infrared"
    with RasterSource(d / "pair14_2.jpg", InputConfig(), "target", pixel_frame_ok=True) as s:
        assert s.pixel_frame and s.bands == [1]
        assert s.modality == "thermal", s.modality_decision.to_dict()


@pytest.mark.slow
def test_srif_pair_at_75_degrees_from_the_dataset_files(shared_data, tmp_path):
    """SRIF optical/infrared pair 14 exactly as the dataset gives it: two JPEGs without
    georeferencing, the infrared turned by -73 degrees with black corners."""
    from georeg.estimation import apply_h

    d = shared_data / "srif_multimodal" / "Optical-Infrared"
    res = georeg.register(str(d / "pair14_1.jpg"), str(d / "pair14_2.jpg"), str(tmp_path / "out.tif"), _cfg())
    assert res.report["target"]["modality"] == "thermal"
    assert res.quality == "reliable", res.report["verdict"]
    truth = np.linalg.inv(np.vstack([np.loadtxt(d / "gt_14.txt").reshape(2, 3), [0, 0, 1]]))
    g = np.stack(np.meshgrid(np.linspace(32, 224, 9), np.linspace(32, 224, 9)), -1).reshape(-1, 2)
    assert float(np.abs(res.model.forward(g) - apply_h(truth, g)).max()) < 1.0


def test_batch_registers_pictures(pictures, tmp_path):
    """A batch of pictures: the worker's matcher choice reads the target's modality like the
    registration does (it used to refuse a picture there)."""
    import csv

    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["batch", "--pairs", str(pictures / "reference.png"), str(pictures / "target.png"),
                                 "-o", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["ok"] and rows[0]["quality"] == "reliable", rows
    assert abs(float(rows[0]["shift_x_px"]) + SHIFT[0]) < 0.3 and abs(float(rows[0]["shift_y_px"]) + SHIFT[1]) < 0.3


def test_a_mirrored_picture_is_read_as_its_mirror_image(pictures):
    """The mirror image of a picture's frame shows column c at x = width - c: a read on the picture's
    own pixels comes back flipped left to right, its mask with it."""
    from georeg.grid import PIXEL_FRAME, mirror

    with RasterSource(pictures / "target.png", InputConfig(), "target", pixel_frame_ok=True) as a, \
            RasterSource(pictures / "target.png", InputConfig(), "target", pixel_frame_ok=True, mirrored=True) as b:
        assert not a.mirrored and b.mirrored and b.grid.transform == PIXEL_FRAME @ mirror(384)
        (da, va), (db, vb) = a.read_on_grid(a.grid), b.read_on_grid(a.grid)
        assert np.array_equal(da[..., ::-1], db) and np.array_equal(va[..., ::-1], vb)


@pytest.mark.slow
@pytest.mark.parametrize("flip", ["left-right"])  # upside down: the SRIF test below
def test_a_picture_that_is_the_mirror_image_registers_as_one(pictures, tmp_path, flip):
    """A target picture flipped (a SAR picture in radar geometry is the map's mirror image) matches no
    rotation as it is; georeg tries its mirror image, keeps it when reliable, says so, and writes
    the same corrected picture as for the unflipped target; `georeg apply` places the flipped picture
    the same way (40 s: the picture as it is pays every search before it fails)."""
    plain = georeg.register(str(pictures / "reference.png"), str(pictures / "target.png"),
                            str(tmp_path / "plain.tif"), _cfg())
    with rasterio.open(pictures / "target.png") as d:
        img = d.read()
    flipped = img[:, :, ::-1] if flip == "left-right" else img[:, ::-1, :]
    Image.fromarray(np.ascontiguousarray(flipped.transpose(1, 2, 0))).save(tmp_path / "flipped.png")
    res = georeg.register(str(pictures / "reference.png"), str(tmp_path / "flipped.png"), str(tmp_path / "out.tif"),
                          _cfg(tmp_path))
    assert res.quality == "reliable" and res.report["target"]["mirrored"] is True, res.report["verdict"]
    assert plain.report["target"]["mirrored"] is False
    with rasterio.open(plain.outputs["raster"]) as a, rasterio.open(res.outputs["raster"]) as b:
        pa, pb = a.read(1).astype(float), b.read(1).astype(float)
        both = (pa > 0) & (pb > 0)
        assert both.mean() > 0.9 and np.abs(pa - pb)[both].mean() < 2.0  # the same picture, within resampling
    again = tmp_path / "again.tif"
    apply_report(res.outputs["report"], str(tmp_path / "flipped.png"), str(again))
    with rasterio.open(res.outputs["raster"]) as a, rasterio.open(again) as b:
        assert np.array_equal(a.read(), b.read())


@pytest.mark.data
@pytest.mark.slow
def test_srif_infrared_picture_upside_down_registers_as_its_mirror_image(shared_data, tmp_path):
    """SRIF pair 14's infrared JPEG stored upside down (as an ascending pass's picture in radar
    geometry is): `georeg register` exits 0 with a reliable result, says it registered the mirror
    image, and writes the corrected picture that the unflipped pair gives."""
    d = shared_data / "srif_multimodal" / "Optical-Infrared"
    Image.open(d / "pair14_2.jpg").transpose(Image.FLIP_TOP_BOTTOM).save(tmp_path / "upside_down.png")
    plain = georeg.register(str(d / "pair14_1.jpg"), str(d / "pair14_2.jpg"), str(tmp_path / "plain.tif"), _cfg())
    r = CliRunner().invoke(cli, ["register", str(d / "pair14_1.jpg"), str(tmp_path / "upside_down.png"),
                                 "-o", str(tmp_path / "out.tif")])
    assert r.exit_code == 0, r.output
    assert "mirror image" in r.output
    report = json.loads((tmp_path / "out_report.json").read_text())
    assert report["quality"] == "reliable" and report["target"]["mirrored"] is True
    with rasterio.open(plain.outputs["raster"]) as a, rasterio.open(tmp_path / "out.tif") as b:
        pa, pb = a.read().astype(float), b.read().astype(float)
    both = (pa > 0) & (pb > 0)
    assert both.mean() > 0.5 and np.abs(pa - pb)[both].mean() < 1.0
