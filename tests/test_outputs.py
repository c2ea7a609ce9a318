"""Outputs and input handling: tie points, report, quicklook, COG, grids, CRSs, dtypes, nodata,
local warps, cancellation and all-or-nothing writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from synthetic import lattice, synthetic_pair

import georeg
from georeg.config import RegistrationConfig
from georeg.errors import CancelledError
from georeg.estimation import apply_h

SIZE = 384
SHIFT = np.array([[1, 0, 9.0], [0, 1, -6.0], [0, 0, 1.0]])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    ref, tgt = d / "ref.tif", d / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=SIZE, seed=11, new_to_old=SHIFT)
    return ref, tgt


# synthetic speckle is not what the learned matchers were trained on; these tests are about the
# pipeline's mechanics, so they pin the weight-free matcher (auto would pick kgl-opt-sar for 'sar' names)
def _cfg(**sections):
    return RegistrationConfig().with_options(matching={"matcher": "baseline"}).with_options(**sections)


def test_tie_points_report_quicklook(pair, tmp_path):
    import geopandas as gpd
    import pyogrio

    out = tmp_path / "out.tif"
    cfg = _cfg(output={"tie_points": str(tmp_path / "tp.gpkg"), "report": str(tmp_path / "r.json"),
                       "quicklook": str(tmp_path / "q.png")})
    res = georeg.register(*pair, out, cfg)
    layers = pyogrio.list_layers(tmp_path / "tp.gpkg")
    assert [name for name, _ in layers] == ["tie_points"]
    gdf = gpd.read_file(tmp_path / "tp.gpkg", layer="tie_points")
    with rasterio.open(pair[0]) as d:
        assert gdf.crs.equals(d.crs)
    expected = {"tile", "direction", "score", "peak_ratio", "ref_col", "ref_row", "tgt_col", "tgt_row", "ref_x",
                "ref_y", "tgt_x", "tgt_y", "dx_px", "dy_px", "residual_px", "inlier", "geometry"}
    assert expected <= set(gdf.columns)
    assert gdf["inlier"].dtype == bool and gdf["inlier"].sum() == res.report["counts"]["inliers"]
    assert len(gdf) == res.report["counts"]["tie_points"] == len(res.tie_points)
    assert np.allclose(gdf.geometry.x, gdf.ref_x) and np.allclose(gdf.geometry.y, gdf.ref_y)
    rep = json.loads((tmp_path / "r.json").read_text())
    for key in ("model", "shift", "residuals", "counts", "timings_s", "versions", "config"):
        assert key in rep
    assert rep["residuals"]["rmse_px"] < 2.0 and rep["residuals"]["ce90_px"] >= rep["residuals"]["median_residual_px"]
    assert rep["residuals"]["map_unit"] == "m"
    assert np.allclose(rep["shift"]["mean_map"], [90.0, 60.0], atol=5.0)  # +9 px east, -6 px = north
    from PIL import Image

    from georeg.quicklook import nice_length

    with Image.open(tmp_path / "q.png") as im:
        assert im.mode == "P" and im.width > im.height  # a 256-colour figure: vectors, then before/after
        rgb = np.asarray(im.convert("RGB"))
    # the title line is dark text on white; green inlier vectors are drawn
    assert (rgb[:26].min(-1) < 100).any() and ((rgb[..., 1] > 180) & (rgb[..., 0] < 120)).any()
    assert (tmp_path / "q.png").stat().st_size < out.stat().st_size
    assert nice_length(870.0) == 500.0 and nice_length(0.26) == 0.2
    # the layout, as a person sees it: three picture panels under a title line and panel titles
    vectors, before, after = quicklook_panels(rgb)
    assert vectors[2:] == (SIZE, SIZE)  # the overlap at full resolution (under 480 px, not reduced)
    side = (SIZE - 2 * 28) // 2
    assert before[2:] == after[2:] == (side, side)  # two square zoomed crops stacked beside it
    assert before[1] == after[1] > vectors[1] + SIZE and before[0] < after[0]
    assert vectors[0] >= 26 + 20  # under the heading and the panel's title
    assert rgb.shape[0] == vectors[0] + SIZE + 8  # nothing below the panels but the margin
    assert before[1] + side + 8 <= rgb.shape[1] <= before[1] + 300  # the right column: crops or their titles
    # the vectors panel has its scale bar: a black bar on a white box in its lower left corner
    y, x, h, w = vectors
    corner = rgb[y + h - 20:y + h, x:x + 120].min(-1)
    assert (corner < 30).sum() > 100 and (corner > 240).sum() > 100


def quicklook_panels(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the picture panels of a quicklook, left to right then top to
    bottom: solid non-white blocks that survive an opening which removes text and thin lines."""
    from scipy import ndimage

    solid = ndimage.binary_opening((rgb < 245).any(-1), np.ones((9, 9)))
    boxes = [(s[0].start, s[1].start, s[0].stop - s[0].start, s[1].stop - s[1].start)
             for s in ndimage.find_objects(ndimage.label(solid)[0])]
    boxes = [b for b in boxes if b[2] > 40 and b[3] > 40]
    assert len(boxes) == 3, boxes
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def test_cog_output(pair, tmp_path):
    out = tmp_path / "out.tif"
    georeg.register(*pair, out, _cfg(output={"cog": True}))
    with rasterio.open(out) as d:
        assert d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert d.profile["tiled"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_align_grids_resamples_onto_reference(pair, tmp_path):
    out = tmp_path / "out.tif"
    res = georeg.register(*pair, out, _cfg(output={"align_grids": True}))
    assert res.transform is None and res.report["model"]["output_mode"] == "resampled to reference grid"
    with rasterio.open(out) as o, rasterio.open(pair[0]) as r, rasterio.open(pair[1]) as t:
        assert o.transform == r.transform and o.shape == r.shape and o.crs == r.crs
        # the aligned target shows at reference pixel q what the target showed at q - shift
        a = o.read(1).astype(float)
        b = t.read(1).astype(float)
        assert np.corrcoef(a[40:300, 40:300].ravel(), b[46:306, 31:291].ravel())[0, 1] > 0.9


def test_target_in_other_crs_and_resolution(pair, tmp_path):
    """A target in Web Mercator at 15 m: matched on the reference grid, result in map coordinates."""
    src = pair[1]
    other = tmp_path / "sar_3857.tif"
    with rasterio.open(src) as s:
        t, w, h = calculate_default_transform(s.crs, "EPSG:3857", s.width, s.height, *s.bounds, resolution=15.0)
        prof = s.profile | {"crs": "EPSG:3857", "transform": t, "width": w, "height": h, "nodata": 0}
        with rasterio.open(other, "w", **prof) as d:
            reproject(rasterio.band(s, 1), rasterio.band(d, 1), resampling=Resampling.bilinear)
    res = georeg.register(pair[0], other, tmp_path / "out.tif", _cfg())
    pts = lattice(60, 60, SIZE - 60, SIZE - 60)
    assert np.abs(res.model.forward(pts) - apply_h(SHIFT, pts)).max() < 1.0
    with rasterio.open(tmp_path / "out.tif") as d:
        assert d.crs.to_epsg() == 3857  # the target keeps its own CRS and grid


@pytest.mark.parametrize("kind", ["uint16", "float32"])
def test_dtypes_and_nodata(pair, tmp_path, kind):
    """uint16 reference; float32 linear-power SAR target with a nodata stripe."""
    ref16 = tmp_path / "ref16.tif"
    with rasterio.open(pair[0]) as s:
        prof = s.profile | {"dtype": "uint16"}
        with rasterio.open(ref16, "w", **prof) as d:
            d.write(s.read().astype(np.uint16) * 200)
    tgt = tmp_path / f"sar_{kind}.tif"
    with rasterio.open(pair[1]) as s:
        arr = s.read(1).astype(np.float64)
        if kind == "float32":
            arr = ((arr / 255.0) ** 2).astype(np.float32)  # linear power
            nodata = -9999.0
        else:
            arr = (arr * 100).astype(np.uint16)
            nodata = 65535
        arr[:, :60] = nodata
        prof = s.profile | {"dtype": kind, "nodata": nodata}
        with rasterio.open(tgt, "w", **prof) as d:
            d.write(arr[None])
    res = georeg.register(ref16, tgt, tmp_path / "out.tif", _cfg(estimation={"model": "translation"}))
    assert np.allclose(res.model.matrix[:2, 2], SHIFT[:2, 2], atol=0.5)
    assert (res.tie_points["ref_col"] > 55).all()


def test_band_choice(pair, tmp_path):
    rgb = tmp_path / "ref_rgb.tif"
    with rasterio.open(pair[0]) as s:
        prof = s.profile | {"count": 3}
        a = s.read(1)
        with rasterio.open(rgb, "w", **prof) as d:
            # green with a texture of its own: three functions of one band would be a colour ramp
            green = a // 2 + np.random.default_rng(0).integers(0, 40, a.shape).astype(a.dtype)
            d.write(np.stack([a, green, 255 - a]))
    res = georeg.register(rgb, pair[1], tmp_path / "o1.tif", _cfg())
    assert res.report["reference"]["bands"] == "luminance(1,2,3)"
    res = georeg.register(rgb, pair[1], tmp_path / "o2.tif", _cfg(reference={"band": 1}))
    assert res.report["reference"]["bands"] == "band 1"
    pts = lattice(60, 60, SIZE - 60, SIZE - 60)
    assert np.abs(res.model.forward(pts) - apply_h(SHIFT, pts)).max() < 1.0


def test_local_model_warps_through_tie_points(tmp_path):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=SIZE, seed=2, new_to_old=SHIFT)
    res = georeg.register(ref, tgt, tmp_path / "out.tif",
                          _cfg(estimation={"model": "local"}, output={"align_grids": True}))
    assert res.model.local is not None and res.report["model"]["local_method"] == "tps"
    pts = lattice(80, 80, SIZE - 80, SIZE - 80)
    assert np.abs(res.model.forward(pts) - apply_h(SHIFT, pts)).max() < 1.0


def test_cancel_leaves_nothing(pair, tmp_path):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        georeg.register(*pair, tmp_path / "out.tif", _cfg(output={"report": str(tmp_path / "r.json")}),
                        cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_nothing(pair, tmp_path, monkeypatch):
    import georeg.outputs

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(georeg.outputs, "write_png", boom)
    cfg = _cfg(output={"report": str(tmp_path / "r.json"), "quicklook": str(tmp_path / "q.png"),
                       "tie_points": str(tmp_path / "t.gpkg")})
    with pytest.raises(OSError, match="disk full"):
        georeg.register(*pair, tmp_path / "out.tif", cfg)
    assert list(tmp_path.iterdir()) == []


def test_geopackage_is_version_1_2(pair, tmp_path):
    """QGIS 3.22 (GDAL 3.6) warns on GeoPackage 1.4 files; georeg writes 1.2."""
    import sqlite3

    georeg.register(*pair, tmp_path / "out.tif", _cfg(output={"tie_points": str(tmp_path / "tp.gpkg")}))
    con = sqlite3.connect(tmp_path / "tp.gpkg")
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
    finally:
        con.close()


def test_outputs_say_what_made_them(pair, tmp_path):
    out = tmp_path / "out.tif"
    georeg.register(*pair, out, _cfg(output={"report": str(tmp_path / "out_report.json")}))
    with rasterio.open(out) as d:
        tags = d.tags()
    assert tags["TIFFTAG_SOFTWARE"].startswith("georeg ") and tags["GEOREG_MODEL"] in ("translation", "affine")
    assert tags["GEOREG_REFERENCE"] == str(pair[0]) and tags["GEOREG_REPORT"] == "out_report.json"


def test_modality_text_says_where_the_modality_came_from_and_when_to_override():
    from georeg.outputs import modality_text

    def rep(**ev):
        return {"target": {"modality": ev.pop("decided"), "modality_evidence": ev}, "matcher": {"name": "kgl-opt-sar"}}

    sure = rep(decided="sar", by="pixels", texture_probability={"optical": 0.02, "sar": 0.96, "thermal": 0.02})
    assert modality_text(sure) == "target read as sar (from its pixels: texture 96% sar), matched with kgl-opt-sar"
    unsure = rep(decided="thermal", by="pixels", texture_probability={"optical": 0.3, "sar": 0.05, "thermal": 0.65})
    assert modality_text(unsure).endswith("texture 65% thermal), matched with kgl-opt-sar; "
                                          "pass --modality if that is not the sensor")
    speckle = rep(decided="sar", by="pixels", reading="few-look speckle", texture_probability={"thermal": 0.9})
    assert "few-look speckle" in modality_text(speckle) and "--modality" not in modality_text(speckle)
    assert "from its file name" in modality_text(rep(decided="sar", by="file name"))
    assert "--modality" in modality_text(rep(decided="optical", by="default"))
    assert modality_text(rep(decided="thermal", by="metadata")).startswith("target read as thermal (from its metadata)")


def test_quality_text_gives_the_verdict_and_the_measured_precision():
    from georeg.outputs import quality_text

    assert quality_text({"quality": "reliable", "verdict": {"instability_px": 0.34}}) == (
        "reliable; the model moves up to 0.3 px at the corners when its tie points are resampled")
    assert quality_text({"quality": "uncertain", "verdict": {"instability_px": None}}) == "uncertain"
    assert quality_text({"quality": "reliable", "verdict": {"instability_px": 0.4},
                         "clouds_left_out": {"share_of_overlap": 0.5283}}).endswith(
        "; matched again with the clouds left out (53% of the overlap): the first result followed them")



def test_shift_text_gives_degrees_with_their_ground_metres_and_summary_rows_keep_them():
    """A geographic CRS's shift in degrees, to 1e-7 (about a centimetre) and in ground metres: at one
    decimal it read "(-0.0, -0.0 unknown)"; batch summary rows keep degrees to 1e-9."""
    from georeg.batch import _shift_columns
    from georeg.outputs import shift_text

    geo = {"mean_px": [-9.53, 7.3], "mean_map": [-0.0047482, -0.0036391], "map_unit": "degree",
           "mean_m": [-222.2, -402.4]}
    assert shift_text(geo) == "shift -9.53, +7.30 px (-0.0047482, -0.0036391 degree, about -222.2, -402.4 m)"
    feet = {"mean_px": [-17.53, 7.66], "mean_map": [-525.88, -229.78], "map_unit": "US survey foot",
            "mean_m": [-160.3, -70.0]}
    assert shift_text(feet) == ("shift -17.53, +7.66 px (-525.9, -229.8 US survey foot, about -160.3, -70.0 m "
                                "on the ground)")
    # World Mercator at 34 degrees north: its metres are 1.21 of the ground's; UTM's are within 2%
    merc = {"mean_px": [-19.08, 8.65], "mean_map": [-190.8, -86.5], "map_unit": "m", "mean_m": [-158.2, -71.7]}
    assert shift_text(merc) == "shift -19.08, +8.65 px (-190.8, -86.5 m, about -158.2, -71.7 m on the ground)"
    utm = {"mean_px": [-2.6, 1.7], "mean_map": [-78.0, -51.0], "map_unit": "m", "mean_m": [-78.03, -51.02]}
    assert shift_text(utm) == "shift -2.60, +1.70 px (-78.0, -51.0 m)"
    assert shift_text({"mean_px": [1.0, 2.0], "mean_map": [1.0, -2.0], "map_unit": "px"}) == "shift +1.00, +2.00 px"
    row = _shift_columns({"shift": {**geo, "mean_map": [-0.00474823456, 1e-9]}})
    assert row["shift_x_map"] == -0.004748235 and row["shift_y_map"] == 1e-9 and row["map_unit"] == "degree"
    assert row["shift_x_m"] == -222.2


def test_mask_text_names_the_quality_bands_read_by_their_rules():
    from georeg.outputs import mask_text

    bqa = {"path": "/data/l8_BQA.tif", "kind": "landsat-bqa-pre", "band": 1,
           "reason": "a Landsat 8 pre-collection quality band (BQA; cloud confidence in bits 14-15), by its file name "
                     "'l8_BQA.tif'"}
    scl = {"path": "export.tif", "kind": "s2-scl", "band": 2,
           "reason": "a Sentinel-2 scene classification (SCL), by band 2 is described as 'SCL'"}
    plain = {"path": "clear.tif", "kind": "nonzero", "band": 1, "reason": "a plain mask: non-zero pixels are usable"}
    assert mask_text({"reference": {"mask": bqa}, "target": {"mask": None}}) == (
        "masks: reference l8_BQA.tif as a Landsat 8 pre-collection quality band (BQA; cloud confidence in bits 14-15)")
    assert mask_text({"reference": {"mask": plain}, "target": {"mask": scl}}) == (
        "masks: target export.tif band 2 as a Sentinel-2 scene classification (SCL)")
    assert mask_text({"reference": {"mask": plain}, "target": {}}) == ""
    assert mask_text({"reference": {"mask": bqa}, "target": {"mask": bqa}}).startswith(
        "masks: reference and target l8_BQA.tif as a Landsat 8")


def test_the_quicklook_shows_the_target_s_gaps_as_they_are(small_pair, tmp_path, monkeypatch):
    """Scan-line gaps are filled for matching, not in the quicklook's pictures: its reads ask for
    the data as they are."""
    import sys
    from pathlib import Path

    import rasterio

    import georeg
    from georeg.config import RegistrationConfig
    from georeg.raster import RasterSource

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from cases import scan_line_gaps

    ref, tgt = small_pair("tgt.tif")
    with rasterio.open(tgt) as d:
        a, prof = d.read(1), d.profile
    a = np.where(scan_line_gaps(a.shape), 0, np.maximum(a, 1)).astype(a.dtype)
    gapped = tmp_path / "gapped.tif"
    with rasterio.open(gapped, "w", **dict(prof, nodata=0)) as o:
        o.write(a, 1)
    seen = []
    read = RasterSource.read_on_grid

    def spy(self, grid, window=None, resampling=None, fill_gaps=True, **kw):
        seen.append((sys._getframe(1).f_code.co_filename, fill_gaps))
        kw = {} if resampling is None else {"resampling": resampling}
        return read(self, grid, window, fill_gaps=fill_gaps, **kw)

    monkeypatch.setattr(RasterSource, "read_on_grid", spy)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"},
                                            output={"quicklook": str(tmp_path / "q.png")})
    res = georeg.register(str(ref), str(gapped), str(tmp_path / "out.tif"), cfg)
    assert res.quality == "reliable" and (tmp_path / "q.png").exists()
    by_outputs = [f for name, f in seen if name.endswith("outputs.py")]
    assert len(by_outputs) >= 2 and not any(by_outputs)
    assert any(f for name, f in seen if name.endswith("matching.py"))
