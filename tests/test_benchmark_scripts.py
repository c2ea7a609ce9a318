"""The benchmark scripts' own arithmetic (the scripts themselves run real scenes, outside the tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def test_growth_exponent_of_time_with_area(capsys):
    from scene_speed import print_growth

    rows = [{"size": s, "method": "linear", "seconds": 1e-6 * s * s, "peak_rss_mb": 500, "rc": 0}
            for s in (2000, 4096, 10980)]
    rows += [{"size": s, "method": "flat", "seconds": 60.0, "peak_rss_mb": m, "rc": 0}
             for s, m in ((2000, 900), (10980, 1400))]
    rows += [{"size": 256, "method": "small only", "seconds": 3.0, "rc": 0},
             {"size": 10980, "method": "failed", "rc": 1}]
    print_growth(rows)
    out = capsys.readouterr().out
    assert "linear" in out and "area^1.00" in out.split("linear")[1].splitlines()[0]
    assert "area^0.00" in out.split("flat")[1].splitlines()[0] and "900-1400 MB" in out
    assert "small only" not in out and "failed" not in out


def test_benchmark_sets_are_built_in_one_order_whatever_the_order_given():
    """The random picks of a set depend on the sets built before it: run.py builds --sets in one
    order (every set, once), so listing them otherwise draws the same cases."""
    from cases import BUILDERS
    from run import DEFAULT_SETS, OPT_IN, SET_ORDER, ordered_sets

    assert sorted(SET_ORDER) == sorted(BUILDERS) and len(set(SET_ORDER)) == len(SET_ORDER)
    assert ordered_sets(list(reversed(SET_ORDER))) == list(SET_ORDER)
    assert ordered_sets(["3mos_rot", "s1s2", "", "nir_vis_h", "s1s2"]) == ["s1s2", "3mos_rot", "nir_vis_h"]
    # the opt-in sets come last, so that adding them left every other set's picks as they were
    assert SET_ORDER[-len(OPT_IN):] == tuple(OPT_IN) and SET_ORDER[:-len(OPT_IN)] == DEFAULT_SETS


@pytest.mark.data
def test_scene_speed_grd_target_is_the_target_upside_down_placed_by_gcps(shared_data, tmp_path):
    """scene_speed.py --grd hands the target over as a GRD measurement file: the same ground through
    its GCPs, its lines upside down as uint16 amplitude of the dB preview, SAR by ESA's TIFF tags."""
    import numpy as np
    import rasterio
    from rasterio.warp import transform_bounds
    from scene_speed import build_pair, grd_target

    from georeg.config import InputConfig
    from georeg.grid import GCPGrid
    from georeg.raster import RasterSource

    _, tgt = build_pair(shared_data, tmp_path, 256)
    grd = grd_target(tgt, tmp_path, 256)
    with rasterio.open(tgt) as t, rasterio.open(grd) as g:
        xy = GCPGrid.from_gcps(*g.gcps, g.width, g.height).outline()
        assert g.crs is None and len(g.gcps[0]) == 210 and g.dtypes[0] == "uint16"
        assert np.allclose(transform_bounds(g.gcps[1], t.crs, *xy.min(0), *xy.max(0)), tuple(t.bounds), atol=10.0)
        a, b = t.read(1).astype(np.float64), g.read(1).astype(np.float64)
        amp = np.sqrt(10 ** ((a[::-1] / 255 * 25 - 25) / 10)) * 1000
        assert np.abs(b[:, 48:] - np.round(amp[:, 48:])).max() <= 1 and (b[:, :48] == 0).all()
    with RasterSource(grd, InputConfig(), "target") as src:
        assert (src.modality, src.modality_decision.by) == ("sar", "metadata")


@pytest.mark.data
def test_user_variants_carry_the_same_georeferencing_error(shared_data, tmp_path):
    """Every variant of user_variants.py covers the plain target's ground, which is off by the same
    shift, however it is stored."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.warp import transform_bounds
    from user_variants import build

    from georeg.grid import GCPGrid

    variants = build(shared_data, tmp_path)
    assert len(variants) == 45
    files = {name: (ref, tgt) for name, ref, tgt, *_ in variants}
    # the cloudy reference's SCL marks its painted clouds, and read as its product's rules it masks them
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    name, ref, _, scl = variants[-1]
    assert "SCL" in name
    with RasterSource(ref, InputConfig(mask=scl), "reference") as r:
        _, valid = r.read_on_grid(r.grid)
        assert r.mask_rule.kind == "s2-scl"
        painted = (r.ds.read() == 235).all(0)
    assert 0.08 < painted.mean() < 0.16 and not valid[painted].any() and valid.mean() > 0.7
    plain = files["plain (8-bit, as given)"][1]
    with rasterio.open(plain) as p:
        bounds, crs = p.bounds, p.crs
    # the roles swapped: the dataset's S1 scene as the reference, the S2 scene off the other way
    from user_variants import (
        COARSE,
        COARSE_FACTOR,
        FALSE_COLOUR,
        FAR,
        FAR_PX,
        FEET,
        JP2,
        LON360,
        REF_TURNED,
        SHIFT_PX,
        SWAPPED,
        TURNED,
        WIDE,
        WORLD,
    )

    with rasterio.open(files[FALSE_COLOUR][1]) as d, rasterio.open(plain) as p:  # VV, VH, ratio on the plain grid
        assert d.count == 3 and d.transform == p.transform and np.array_equal(d.read(2), p.read(1))

    with rasterio.open(files[COARSE][1]) as d, rasterio.open(plain) as p:  # the same grid, 6x coarser pixels
        assert d.transform == p.transform * Affine.scale(COARSE_FACTOR)
        assert np.isclose(d.read(1)[3:7, 3:7].mean(), p.read(1)[18:42, 18:42].mean(), atol=1.0)

    with rasterio.open(files.pop(FAR)[1]) as d, rasterio.open(plain) as p:  # the plain target moved 3 km
        assert np.array_equal(d.read(), p.read())
        assert np.allclose(d.transform * (0, 0), p.transform * FAR_PX)

    with rasterio.open(files.pop(WIDE)[1]) as d, rasterio.open(plain) as p:  # the plain target in the middle
        a = d.read(1)
        assert a.shape == (2 * p.height, 2 * p.width)
        assert np.array_equal(a[p.height // 2:p.height // 2 + p.height, p.width // 2:p.width // 2 + p.width], p.read(1))
        assert np.allclose(d.transform * (p.width // 2, p.height // 2), p.transform * (0, 0))
    with rasterio.open(files.pop(FEET)[1]) as d:  # US survey feet, 30 ft pixels, its north 0.93 degrees off
        assert d.crs.linear_units_factor[1] == pytest.approx(1200 / 3937) and d.res == (30.0, 30.0)
        b = transform_bounds(d.crs, crs, *d.bounds)  # Mercator: its box holds the plain target's, and a margin
        assert b[0] < bounds.left and b[1] < bounds.bottom and b[2] > bounds.right and b[3] > bounds.top
        assert np.allclose(b, tuple(bounds), atol=300.0)
    with rasterio.open(files[JP2][0]) as d, rasterio.open(files["reference 16-bit, 4 bands"][0]) as r:
        assert d.driver == "JP2OpenJPEG" and d.count == 1 and d.dtypes[0] == "uint16" and d.transform == r.transform
        assert d.read(1).min() >= 1000  # the L2A offset

    # the PNG export: no CRS, its world file the plain target's geotransform; the variant names the CRS
    (world,) = [v for v in variants if v[0] == WORLD]
    assert world[4] == {"target": {"crs": crs.to_string()}}
    with rasterio.open(files.pop(WORLD)[1]) as d, rasterio.open(plain) as p:
        assert d.driver == "PNG" and d.crs is None and d.transform.almost_equals(p.transform)
        assert np.array_equal(d.read(1), p.read(1))
    with rasterio.open(files.pop(LON360)[1]) as d, rasterio.open(files["EPSG:4326 at about 20 m"][1]) as g:
        assert d.transform == Affine.translation(360, 0) @ g.transform and d.bounds.left > 180
        assert np.array_equal(d.read(), g.read())

    s1, s2 = files.pop(SWAPPED)
    back = (-SHIFT_PX[0], -SHIFT_PX[1])
    with rasterio.open(s1) as a, rasterio.open(s2) as b, rasterio.open(plain) as p, \
            rasterio.open(files["reference 16-bit, 4 bands"][0]) as r:
        assert a.count == 1 and b.count == 3 and b.crs == r.crs
        assert np.allclose(a.transform * (0, 0), p.transform * back)  # the S1 scene where the dataset has it
        assert np.allclose(b.transform * (0, 0), r.transform * back)
    # the turned grids: rotated geotransforms whose valid pixels are the plain target's, and the
    # reference's, ground
    ref_turned = files.pop(REF_TURNED)[0]
    for turned, original in ((files.pop(TURNED)[1], plain), (ref_turned, files["reference 16-bit, 4 bands"][0])):
        with rasterio.open(turned) as d, rasterio.open(original) as p:
            assert abs(d.transform.b) > 1 and abs(d.transform.d) > 1
            rows, cols = np.nonzero(d.read(1) > 0)
            xs, ys = d.transform * (cols + 0.5, rows + 0.5)
            assert np.allclose([xs.min(), ys.min(), xs.max(), ys.max()], tuple(p.bounds), atol=20.0), turned
    for name, (_, tgt) in files.items():
        with rasterio.open(tgt) as d:
            if d.gcps[0]:  # the edges through the GCPs
                xy = GCPGrid.from_gcps(*d.gcps, d.width, d.height).outline()
                b = transform_bounds(d.gcps[1], crs, *xy.min(0), *xy.max(0))
            else:
                b = transform_bounds(d.crs, crs, *d.bounds)
                b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))  # south-up: y swapped
            if "crop" not in name:  # whole scenes cover the plain target's ground, to a 20 m pixel
                assert np.allclose(b, tuple(bounds), atol=2 * 20.0), (name, b, bounds)
            else:
                assert b[0] >= bounds.left - 1 and b[2] <= bounds.right + 1, name
    with rasterio.open(files["target over-stretched (75% at 255)"][1]) as d:
        assert 0.6 < (d.read(1) == 255).mean() < 0.9
    with rasterio.open(files["target 40% another place"][1]) as d, rasterio.open(plain) as p:
        a, b = d.read(1), p.read(1)
        assert (a[:, :600] == b[:, :600]).all() and (a[:, 700:] != b[:, 700:]).mean() > 0.9
    with rasterio.open(files["reference negative"][0]) as d, \
            rasterio.open(files["reference hazy (contrast 25%, +150)"][0]) as e:
        assert d.count == 3 and d.transform == e.transform and e.read().min() >= 150
    with rasterio.open(files["linear power, float32, nodata 0 strip"][1]) as d:
        assert d.dtypes[0] == "float32" and d.nodata == 0
    with rasterio.open(files["amplitude DN, uint16"][1]) as d:
        assert d.count == 1 and d.dtypes[0] == "uint16" and d.read(1).min() > 0
    with rasterio.open(files["two bands VV, VH"][1]) as d:
        assert d.count == 2 and d.descriptions == ("VV", "VH")
    with rasterio.open(files["EPSG:4326 at about 20 m"][1]) as d:
        assert d.crs.to_epsg() == 4326
    with rasterio.open(files["GCPs as a GRD: upside down, zero border"][1]) as d:
        assert d.crs is None and len(d.gcps[0]) == 210 and d.dtypes[0] == "uint16" and (d.read(1)[:, :48] == 0).all()
        assert d.tags()["TIFFTAG_IMAGEDESCRIPTION"] == "Sentinel-1A IW GRD HR L1"
    with rasterio.open(files["zero collar, no nodata (Landsat L1-like)"][1]) as d:
        a = d.read(1)
        assert d.nodata is None and 0.15 < (a == 0).mean() < 0.3 and a[500, 500] > 0
    with rasterio.open(files["dB float32, -3.4e38 collar, no nodata"][1]) as d:
        a = d.read(1)
        assert d.nodata is None and d.dtypes[0] == "float32" and 0.15 < (a < -1e38).mean() < 0.3
    with rasterio.open(files["south-up rows, positive pixel height"][1]) as d:
        assert d.transform.e > 0
    with rasterio.open(files["dB x 100, int16, nodata -32768 strip"][1]) as d:
        assert d.dtypes[0] == "int16" and d.nodata == -32768 and d.read(1).max() <= 0
    with rasterio.open(files["reference 16-bit, 4 bands"][0]) as d:
        assert d.count == 4 and d.dtypes[0] == "uint16"
    with rasterio.open(files["dB as uint16 with scale and offset"][1]) as d:
        db = d.read(1) * d.scales[0] + d.offsets[0]
        assert d.dtypes[0] == "uint16" and db.min() >= -25.01 and db.max() <= 0.01
    with rasterio.open(files["dB, float32, 1% NaN pixels scattered"][1]) as d:
        assert 0.005 < np.isnan(d.read(1)).mean() < 0.015
    with rasterio.open(files["reference RGBA, transparent strip"][0]) as d:
        assert d.colorinterp[3].name == "alpha" and (d.read(4)[:, :150] == 0).all()
    with rasterio.open(files["reference 4x finer pixels (2.5 m)"][0]) as d, \
            rasterio.open(files["plain (8-bit, as given)"][0]) as r:
        assert np.isclose(d.transform.a * 4, r.transform.a) and np.allclose(tuple(d.bounds), tuple(r.bounds))


if __name__ == "__main__":
    pytest.main([__file__])


@pytest.mark.parametrize("angle, scale, cropped", [(30.0, 0.6, True), (-120.0, 1.7, False)])
def test_footprint_judge_shows_the_ground_of_the_turned_target(tmp_path, angle, scale, cropped):
    """The large-scale set judges a turned target against the unturned pair registered on the ground
    the turned target shows: the crop holds that ground and nothing else, and the case's matrix
    takes the turned target's pixels to the crop's."""
    import numpy as np
    import rasterio
    from affine import Affine
    from cases import _footprint_base, _write
    from synthetic import resample_content, rotation_scale_matrix

    rng = np.random.default_rng(5)
    base = _write(tmp_path / "base.tif", rng.integers(1, 255, (200, 200)).astype(np.uint8),
                  Affine(10, 0, 500000, 0, -10, 4000000), "EPSG:32633")
    m = rotation_scale_matrix(200, 200, angle, scale)
    resample_content(base, str(tmp_path / "turned.tif"), m)
    crop, applied = _footprint_base(base, m, tmp_path / "footprint.tif")
    with rasterio.open(base) as b, rasterio.open(crop) as c:
        full, part = b.read(1), c.read(1)
        off = np.array(~b.transform @ (c.transform.c, c.transform.f))
        assert c.nodata == 0 and (part.size < 0.75 * full.size) == cropped
    # the case's matrix = the turned target's pixels -> base pixels, less the crop's offset
    q = np.array([[100.0, 100.0, 1.0], [37.0, 151.0, 1.0], [160.0, 45.0, 1.0]])
    assert np.allclose((q @ applied.T)[:, :2], (q @ m.T)[:, :2] - off, atol=1e-9)
    # inside the footprint the crop is the base, outside it is nodata
    yy, xx = np.mgrid[0:part.shape[0], 0:part.shape[1]]
    on_turned = np.linalg.inv(applied) @ np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    inside = ((on_turned[:2] > 3) & (on_turned[:2] < 196)).all(0).reshape(part.shape)
    outside = ((on_turned[:2] < -3.5) | (on_turned[:2] > 202.5)).any(0).reshape(part.shape)
    r0, c0 = int(round(off[1])), int(round(off[0]))
    assert np.array_equal(part[inside], full[r0:r0 + part.shape[0], c0:c0 + part.shape[1]][inside])
    assert inside.any() and not part[outside].any()


def test_a_turned_picture_shows_each_point_where_the_motion_puts_it(tmp_path):
    """unseen_pairs.write_turned moves the picture by the motion that turned() gives, in georeg's
    pixel convention (centres at half-integers), else every consistency it reports is off."""
    import numpy as np
    import rasterio
    from unseen_pairs import turned, write_turned

    from georeg.estimation import apply_h as apply

    img = np.zeros((1, 120, 160), np.uint8)
    img[0, 45, 60] = img[0, 80, 100] = 255  # pixel centres (60.5, 45.5) and (100.5, 80.5)
    with rasterio.open(tmp_path / "a.tif", "w", driver="GTiff", width=160, height=120, count=1, dtype="uint8") as o:
        o.write(img)
    for theta, scale in ((-120.0, 1.0), (37.0, 1.0), (15.0, 1.6)):
        motion = turned(theta, scale, 160, 120)
        write_turned(tmp_path / "a.tif", tmp_path / "b.tif", motion)
        with rasterio.open(tmp_path / "b.tif") as d:
            out = d.read(1).astype(float)
        for p in ((60.5, 45.5), (100.5, 80.5)):
            q = apply(motion, np.array([p]))[0]  # where the dot must be
            i, j = int(q[1]), int(q[0])
            win = out[i - 3:i + 4, j - 3:j + 4]
            yy, xx = np.mgrid[i - 3:i + 4, j - 3:j + 4]
            centroid = np.array([(xx * win).sum(), (yy * win).sum()]) / win.sum() + 0.5
            assert np.abs(centroid - q).max() < 0.25, (theta, scale, p, centroid, q)


@pytest.mark.slow
@pytest.mark.data
def test_a_sar_picture_turned_half_round_registers_as_its_plain_pair(shared_data, tmp_path):
    """A pair no benchmark, training or tuning used (RIFT's SAR/optical demo, no georeferencing):
    the SAR picture turned 200 degrees gives the plain pair's result composed with the turn,
    within a pixel, and both are called reliable. Slow (two registrations, 14 s); the default run
    keeps a real pair through the global search in tests/test_geometry.py (SRIF pair 41 turned 19
    degrees by its GT, the shape polish's test)."""
    import warnings

    import numpy as np
    from unseen_pairs import off_motion, shape, turned, write_turned

    import georeg
    from georeg.config import RegistrationConfig

    d = shared_data / "rift_samples" / "sar-optical"
    if not d.is_dir():
        pytest.skip(f"the RIFT demo pairs are not in {shared_data}")
    ref, tgt = d / "pair2.jpg", d / "pair1.jpg"
    cfg = RegistrationConfig().with_options(output={"quicklook": None, "tie_points": None, "report": None})
    motion = turned(200.0, 1.0, *shape(tgt))
    write_turned(tgt, tmp_path / "turned.tif", motion)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = georeg.register(str(ref), str(tgt), str(tmp_path / "plain.tif"), cfg)
        got = georeg.register(str(ref), str(tmp_path / "turned.tif"), str(tmp_path / "out.tif"), cfg)
    assert plain.quality == "reliable" and got.quality == "reliable"
    assert plain.report["target"]["modality"] == "sar"
    off = off_motion(np.array(got.report["model"]["matrix_px"]), np.array(plain.report["model"]["matrix_px"]),
                     motion, shape(ref), shape(tgt), 1.0)
    assert off < 1.0, off


@pytest.mark.data
def test_wrong_pairs_leave_out_crops_of_one_scene(shared_data):
    """SRIF cuts several crops from one scene: pairs 1 and 8 overlap by a shift of about (66, 53)
    px (georeg registers pair 8's optical onto pair 1's, reliable), so pair 1's reference with pair 8's
    infrared is a true pair, not a wrong one; pairs 8 and 19 share no ground."""
    import warnings

    from wrong_pairs import _same_place

    d = shared_data / "srif_multimodal" / "Optical-Infrared"
    if not (d / "pair19_1.jpg").exists():
        pytest.skip(f"SRIF Optical-Infrared is not in {shared_data}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JPEGs without georeferencing
        assert _same_place(str(d / "pair1_1.jpg"), str(d / "pair8_1.jpg"))
        assert _same_place(str(d / "pair8_1.jpg"), str(d / "pair1_1.jpg"))
        assert not _same_place(str(d / "pair8_1.jpg"), str(d / "pair19_1.jpg"))
        assert not _same_place(str(d / "pair1_1.jpg"), str(d / "pair19_1.jpg"))


@pytest.mark.data
@pytest.mark.slow
def test_a_pair_of_two_places_is_not_called_reliable(shared_data, tmp_path):
    """The optical picture of one SRIF pair against the infrared of another place (a wrong file
    handed over): whatever georeg finds, it must not call it reliable."""
    import warnings

    import georeg
    from georeg.config import RegistrationConfig
    from georeg.errors import GeoregError

    d = shared_data / "srif_multimodal" / "Optical-Infrared"
    if not (d / "pair19_2.jpg").exists():
        pytest.skip(f"SRIF Optical-Infrared is not in {shared_data}")
    cfg = RegistrationConfig().with_options(output={"quicklook": None, "tie_points": None, "report": None})
    for ref, tgt in (("pair8_1.jpg", "pair19_2.jpg"), ("pair19_1.jpg", "pair21_2.jpg")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = georeg.register(str(d / ref), str(d / tgt), str(tmp_path / "out.tif"), cfg)
            except GeoregError:
                continue
        assert res.quality != "reliable", (ref, tgt, res.report["verdict"])


@pytest.mark.slow  # three fresh georeg processes (9 s)
def test_the_threads_benchmark_runs_georeg_on_the_threads_it_compares(small_pair, tmp_path):
    from scene_speed import gnu_time
    from threads_under_load import run_once

    if gnu_time() is None:
        pytest.skip("GNU time is not installed (Debian: apt-get install time)")

    ref, tgt = small_pair()
    r = run_once(str(ref), str(tgt), tmp_path / "out.tif", "2")
    assert r["threads"] == 2 and r["wall"] > 0 and r["cpu"] > 0 and len(r["shift"]) == 2
    import os

    if hasattr(os, "sched_getaffinity"):  # one thread on one core: the same result to the bit as on
        before = os.sched_getaffinity(0)  # all of them, and this process's cores given back
        one = run_once(str(ref), str(tgt), tmp_path / "one.tif", "1", {min(before)})
        every = run_once(str(ref), str(tgt), tmp_path / "every.tif", "1")
        assert one["threads"] == every["threads"] == 1 and one["shift"] == every["shift"]
        assert os.sched_getaffinity(0) == before


@pytest.mark.data
@pytest.mark.parametrize("key, category", [("srif_night", "Nighttime"), ("srif_depth", "Optical-Depth")])
def test_srif_night_and_depth_pairs_are_handed_over_as_the_dataset_stores_them(shared_data, tmp_path, key, category):
    """The day/night and optical/depth sets (modalities no matcher trained on): each target is the
    dataset's image 2 unchanged, turned by its GT, under a neutral name and without nodata, and the
    truth is the GT's inverse, a turn about the image centre in the GT's corner-based convention."""
    import numpy as np
    import rasterio
    from cases import BUILDERS
    from PIL import Image

    d = shared_data / "srif_multimodal" / category
    if not d.is_dir():
        pytest.skip(f"SRIF {category} is not in {shared_data}")
    cases = BUILDERS[key](shared_data, tmp_path, np.random.default_rng(0), n_pairs=2)
    assert len(cases) == 2
    for case in cases:
        i = case.name.split()[1]
        assert Path(case.target).name == "target.tif" and Path(case.reference).name == "reference.tif"
        stored = np.asarray(Image.open(d / f"pair{i}_2.jpg"))
        with rasterio.open(case.target) as t:
            assert t.nodata is None
            got = t.read()
        assert np.array_equal(got, stored.transpose(2, 0, 1) if stored.ndim == 3 else stored[None])
        gt = np.vstack([np.loadtxt(d / f"gt_{i}.txt").reshape(2, 3), [0, 0, 1]])
        assert np.allclose(case.truth_px @ gt, np.eye(3))
        h, w = got.shape[1:]
        centre = case.truth_px @ [w / 2, h / 2, 1]
        assert np.allclose(centre[:2], [w / 2, h / 2], atol=0.05)  # a turn about the centre


@pytest.mark.data
def test_grey_png_rotated_set_turns_the_held_out_grey_pairs(shared_data, tmp_path):
    """s1s2gray_rot takes the grey PNG pairs of the validation and test tiles only (the learned
    matchers trained on the third), each target the grey SAR picture turned under a neutral name."""
    import numpy as np
    import rasterio
    from cases import BUILDERS
    from PIL import Image

    root = shared_data / "s1s2_volkov" / "extra_gray"
    if not root.is_dir():
        pytest.skip(f"the grey S1/S2 pairs are not in {shared_data}")
    cases = BUILDERS["s1s2gray_rot"](shared_data, tmp_path, np.random.default_rng(0), held_out=True)
    assert len(cases) == 23 and len({c.base_target for c in cases}) == 23
    case = cases[0]
    fragment = case.name.split()[0]
    assert Path(case.target).name == "target.tif" and case.judge == "consistency"
    with rasterio.open(case.base_target) as d:
        assert np.array_equal(d.read(1), np.asarray(Image.open(root / "sar" / f"{fragment}.png").convert("L")))


def test_cloud_masks_benchmark_stores_the_target_as_temperature(shared_data, tmp_path):
    """cloud_masks.py --target-as: B10 as brightness temperature in kelvin (float32), Celsius,
    int16 tenths and hundredths of a degree Celsius, stretched to 8 bits and rendered through the
    jet and hot colour ramps (three 8-bit bands), on the same moved grid."""
    import numpy as np
    import rasterio
    from cloud_masks import TARGET_AS, build

    if not (shared_data / "landsat8_oli_tirs" / "l8_B10.tif").exists():
        pytest.skip(f"the Landsat 8 scene is not in {shared_data}")
    got = {}
    for how in TARGET_AS:
        work = tmp_path / how
        work.mkdir()
        _, tgt, _ = build(shared_data, work, (20.0, -20.0), target_as=how)
        with rasterio.open(tgt) as t:
            got[how] = (t.dtypes[0], t.read(1).astype(np.float64), t.transform, t.count)
    assert {h: g[0] for h, g in got.items()} == {"dn": "uint16", "kelvin": "float32", "celsius": "float32",
                                                 "celsius10": "int16", "celsius100": "int16", "byte": "uint8",
                                                 "jet": "uint8", "hot": "uint8"}
    assert got["jet"][3] == got["hot"][3] == 3 and all(g[3] == 1 for h, g in got.items() if h not in ("jet", "hot"))
    assert len({g[2] for g in got.values()}) == 1  # one grid
    kelvin = got["kelvin"][1]
    assert kelvin.min() > 240 and kelvin.max() < 320  # clouds to warm ground
    assert np.allclose(got["celsius"][1], kelvin - 273.15, atol=1e-3)
    assert np.abs(got["celsius100"][1] / 100 - got["celsius"][1]).max() <= 0.0051
    assert np.abs(got["celsius10"][1] / 10 - got["celsius"][1]).max() <= 0.051
    assert got["celsius100"][1].min() < 0  # the clouds below 0 degrees
    byte = got["byte"][1]
    assert byte.min() == 1 and byte.max() == 255 and np.corrcoef(byte.ravel(), kelvin.ravel())[0, 1] > 0.999
    assert got["jet"][1][kelvin > np.percentile(kelvin, 90)].mean() > 200  # red: the warmest tenth


def test_cloud_masks_benchmark_hands_over_the_products_masks_on_each_grid(shared_data, tmp_path):
    """cloud_masks.py: the target is B10 on a grid moved by the shift; each mask is given on the
    reference's grid and on the target's moved grid (those for the reference alone on the
    reference's only), the BQA's of growing completeness, the thresholds of the share they name."""
    import numpy as np
    import rasterio
    from cloud_masks import MASKS, REF_ONLY, build

    d = shared_data / "landsat8_oli_tirs"
    if not (d / "l8_BQA.tif").exists():
        pytest.skip(f"the Landsat 8 scene is not in {shared_data}")
    ref, tgt, masks = build(shared_data, tmp_path, (20.0, -20.0))
    assert list(masks) == list(MASKS) and masks["none"] is None
    with rasterio.open(ref) as r, rasterio.open(tgt) as t, rasterio.open(d / "l8_B10.tif") as b10:
        assert (t.transform.c - b10.transform.c, t.transform.f - b10.transform.f) == (600.0, 600.0)
        assert np.array_equal(t.read(1), b10.read(1))
        ref_t, tgt_t = r.transform, t.transform
    masked = {}
    for name, pair in masks.items():
        if pair is None:
            continue
        with rasterio.open(pair[0]) as m0:
            assert m0.transform == ref_t, name
            a = m0.read(1)
        if name.endswith(REF_ONLY):
            assert pair[1] is None, name
        else:
            with rasterio.open(pair[1]) as m1:
                assert m1.transform == tgt_t, name
                assert np.array_equal(a, m1.read(1)), name  # the same product pixels
        if name != "the BQA file itself":
            assert set(np.unique(a)) <= {0, 1}
            masked[name] = 1 - a.mean()
    qa = [masked[n] for n in ("QA high, not widened", "QA medium+high, not widened",
                              "QA medium+high, widened 5 px (README)")]
    assert 0.04 < qa[0] < qa[1] < qa[2] < 0.6  # high only < medium+high < widened
    for n in ("B4 brightest 10%", "B10 coldest 20%", "B4 brightest 10%" + REF_ONLY):
        share = float(n.split("%")[0].split()[-1]) / 100
        assert abs(masked[n] - share) < 0.01, n


def test_the_interrupts_benchmark_signals_real_runs_and_judges_them(shared_data, tmp_path):
    """interrupts.py: SIGTERM at random moments of real `georeg register` runs; exit 0 when every
    run ended with exit code 130 (or was done first) and left nothing."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "interrupts.py"
    r = subprocess.run([sys.executable, str(script), "--data", str(shared_data), "--runs", "3", "--seed", "0",
                        "--from", "0.2", "--to", "1.5"], capture_output=True, text=True, timeout=600,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("3 runs, ") and r.stdout.strip().endswith(" 0 bad")


@pytest.mark.data
def test_wrong_pairs_write_their_outputs_in_the_work_folder(shared_data, tmp_path):
    """A wrong pair of the dataset's own JPEG files registers the dataset's file as its target:
    its output goes to the pair's folder under the work folder, never beside the data (an
    `out.tif` was once written into srif_multimodal/Optical-Infrared)."""
    import warnings

    from wrong_pairs import build

    if not (shared_data / "srif_multimodal" / "Optical-Infrared").is_dir():
        pytest.skip(f"SRIF Optical-Infrared is not in {shared_data}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JPEGs without georeferencing
        pairs = build(shared_data, tmp_path, 2, ["srif_files"])
    assert len(pairs) == 2
    for _, _, _, target, output in pairs:
        assert Path(target).is_relative_to(shared_data)  # the dataset's own file, as a user hands it over
        assert Path(output).is_relative_to(tmp_path) and Path(output).parent.is_dir()


@pytest.mark.data
def test_coarse_targets_cover_the_ground_of_the_moved_target_at_every_pixel_size(shared_data, tmp_path):
    """coarse_targets.py: every target lies on its source's ground moved by the benchmark's shift,
    at the pixel size its name says; B10 as Kelvin (nodata NaN); the truths undo the shifts."""
    import numpy as np
    import rasterio
    from coarse_targets import L8_SHIFT, S1_SHIFT, build

    cases = build(shared_data, tmp_path)
    names = [c[0] for c in cases]
    assert len(names) == len(set(names)) == 21 + 9 + 6 + 10 + 6
    with rasterio.open(shared_data / "landsat8_oli_tirs" / "l8_B10.tif") as b10:
        l8_t = b10.transform
    for name, ref, tgt, mask, truth, pixel in cases:
        with rasterio.open(tgt) as t:
            size = np.sqrt(abs(t.transform.determinant))
            if "EPSG:4326" in name:
                assert t.crs.to_epsg() == 4326 and abs(size * 111_000 - pixel) < 1
            else:
                assert abs(size - pixel) < 0.01 * pixel, name
            if name.startswith("L8"):
                a = t.read(1)
                assert np.nanmin(a) > 240 and np.nanmax(a) < 320 and np.isnan(t.nodata), name
                assert truth == (-L8_SHIFT[0] * 30.0, L8_SHIFT[1] * 30.0)
                if t.crs.to_epsg() != 4326:  # the moved grid's corner, on the average grid's corner
                    moved = l8_t @ L8_SHIFT
                    assert abs(t.transform.c - moved[0]) < pixel and abs(t.transform.f - moved[1]) < pixel, name
                assert (mask is not None) == name.endswith("BQA")
            elif "over S1" in name:
                assert abs(size - 10.0) < 0.01, name
            elif name.startswith("optical copy"):
                assert np.allclose(truth, (-S1_SHIFT[0] * 10.0, S1_SHIFT[1] * 10.0), atol=0.01)
            else:
                assert truth == f"S1 {name.split()[1]}"
        with rasterio.open(ref) as r:
            if "over S1" in name:  # a coarse reference over the 10 m target
                assert abs(r.transform.a - int(name.split()[3]) * 1.00001) < 0.01 and truth == f"S1 {name.split()[1]}"
            if "on 2.5 m" in name:
                assert abs(r.transform.a - 2.5) < 0.001 and r.width == int(name.split(", ")[1].split()[0])


def test_geographic_grids_export_the_utm_pairs_in_square_degrees_on_the_same_ground(shared_data, tmp_path):
    """geographic_grids.py: every EPSG:4326 case covers its UTM twin's ground, its pixels
    1/cos(latitude) times taller than wide on the ground; the S1 scenes are judged against their
    UTM twin's result, the Landsat ones against the shift undone, with the BQA mask where named."""
    import numpy as np
    import rasterio
    from geographic_grids import L8_SHIFT, build
    from rasterio.warp import transform_bounds

    from georeg.grid import Grid

    cases = build(shared_data, tmp_path)
    names = [c[0] for c in cases]
    assert len(names) == len(set(names)) == 3 * 3 * 2 + 4
    by_name = {c[0]: c for c in cases}
    for name, ref, tgt, mask, truth, pixel in cases:
        lat = float(name.split()[2][:-1])
        with rasterio.open(ref) as r, rasterio.open(tgt) as t:
            grid = Grid(r.transform, r.width, r.height, r.crs)
            if "EPSG:4326" in name:
                assert r.crs.to_epsg() == t.crs.to_epsg() == 4326
                assert abs(grid.ground_aspect - 1 / np.cos(np.radians(lat))) < 0.05, (name, grid.ground_aspect)
                twin = by_name[name.replace("EPSG:4326", "UTM")][1]
                with rasterio.open(twin) as u:
                    b = transform_bounds(u.crs, "EPSG:4326", *u.bounds)
                assert np.allclose(r.bounds, b, atol=2 * abs(r.transform.a)), name
            else:
                assert r.crs.to_epsg() == 32633 and r.transform.a == pixel and grid.ground_aspect == 1.0
        if name.startswith("S1/S2"):
            assert truth == name.replace("EPSG:4326", "UTM") and pixel == 10.0
        else:
            assert truth == (-L8_SHIFT[0] * 30.0, L8_SHIFT[1] * 30.0) and (mask is not None) == name.endswith("BQA")


def test_scan_gaps_benchmark_hands_over_gapped_bands_on_the_moved_grid(shared_data, tmp_path):
    """scan_gaps.py: each Landsat row's gapped band has 20-25% of its pixels missing in strips
    (nodata 0, its own zeros made 1), the target on B10's grid moved by the row's shift, the
    reference on B4's; the BQA as both masks in every other row of the first six, the last two
    with the gaps' 0 undeclared (no nodata) and no mask, the last of all a clipped part of a
    scene's gaps (13-16%, no corner in one); the S1/S2 rows' S1 targets off by the shift that
    user_variants.py uses, at 10 m and averaged to 30 m, the gaps in the S2 reference or in the
    30 m target."""
    import numpy as np
    import rasterio
    from affine import Affine
    from scan_gaps import S1S2_SHIFT, landsat_cases, s1s2_cases

    d = shared_data / "landsat8_oli_tirs"
    if not (d / "l8_BQA.tif").exists():
        pytest.skip(f"the Landsat 8 scene is not in {shared_data}")
    rows = list(landsat_cases(shared_data, tmp_path, [(8.3, -8.2)]))
    assert len(rows) == 8 and [bool(r[3]) for r in rows] == [True, False] * 3 + [False, False]
    with rasterio.open(d / "l8_B4.tif") as b4, rasterio.open(d / "l8_B10.tif") as b10:
        t4, t10, a10 = b4.transform, b10.transform, b10.read(1)
    for name, ref, tgt, opts, shift in rows:
        with rasterio.open(ref) as r, rasterio.open(tgt) as t:
            assert r.transform == t4 and t.transform == t10 @ Affine.translation(*shift)
            for ds, gapped in ((r, "reference" in name or "both" in name), (t, "target" in name or "both" in name)):
                a = ds.read(1)
                missing = (ds.nodata == 0 or "undeclared" in name and ds is t) and (a == 0).mean()
                share = (0.13, 0.16) if "clipped" in name else (0.2, 0.25)  # (a part off the scene's edges)
                assert (share[0] < missing < share[1]) if gapped else not missing, name
                if "clipped" in name:  # no corner in a gap
                    assert a[0, 0] and a[0, -1] and a[-1, 0] and a[-1, -1]
                assert ds.nodata == (None if "undeclared" in name or not gapped else 0), name
            if "target" in name:
                kept = t.read(1) > 0
                assert np.array_equal(t.read(1)[kept], np.maximum(a10, 1)[kept])
        if opts:
            assert opts["reference"]["mask"] == opts["target"]["mask"] == str(d / "l8_BQA.tif")
    pairs = list(s1s2_cases(shared_data, tmp_path))
    assert [p[0].split()[1].rstrip(",") for p in pairs] == ["050", "176", "268"] * 2
    s1 = shared_data / "s1s2_volkov" / "geotiff"
    for name, ref, tgt, plain_ref, plain_tgt in pairs:
        gapped = ref if "reference" in name else tgt
        with rasterio.open(gapped) as g, rasterio.open(plain_tgt) as p, rasterio.open(tgt) as t, \
                rasterio.open(s1 / f"{name.split()[1].rstrip(',')}_S1_VH.tif") as s:
            factor = 3 if "30 m" in name else 1
            assert p.transform.almost_equals(s.transform @ Affine.scale(factor) @ Affine.translation(
                S1S2_SHIFT[0] / factor, S1S2_SHIFT[1] / factor)) and t.transform == p.transform
            assert (p.width, p.height) == (s.width // factor, s.height // factor)
            assert 0.2 < (g.read_masks(1) == 0).mean() < 0.25
        assert (ref == plain_ref) == ("reference" not in name) and (tgt == plain_tgt) == ("target" not in name)


def test_antimeridian_benchmark_places_the_pairs_across_180_both_ways(shared_data, tmp_path):
    """antimeridian.py: per pair, the UTM 60N case first (180 degrees through the scene's middle,
    the S1 target off by the shift user_variants.py uses), then the target as a GRD placed by GCPs,
    and the target and the reference exported to EPSG:4326 with longitudes past 180 and, the same
    pixels, past -180."""
    import numpy as np
    import rasterio
    from antimeridian import S1_SHIFT, build

    if not (shared_data / "s1s2_volkov" / "geotiff" / "176_S1_VH.tif").exists():
        pytest.skip(f"the S1/S2 GeoTIFF pairs are not in {shared_data}")
    cases = build(shared_data, tmp_path, ["176"])
    assert [c[0] for c in cases] == ["S1/S2 176 UTM 60N", "S1/S2 176 target GCPs across 180",
                                     "S1/S2 176 target east of 180", "S1/S2 176 reference east of 180",
                                     "S1/S2 176 target west of -180", "S1/S2 176 reference west of -180"]
    assert {c[3] for c in cases} == {"S1/S2 176 UTM 60N"}
    (_, ref, tgt, _), rest = cases[0], cases[1:]
    with rasterio.open(ref) as r, rasterio.open(tgt) as t:
        assert r.crs.to_epsg() == t.crs.to_epsg() == 32660
        assert np.allclose((~r.transform) * (t.transform.c, t.transform.f), S1_SHIFT)
        lon, _ = rasterio.warp.transform(r.crs, "EPSG:4326", [(r.bounds.left + r.bounds.right) / 2], [r.bounds.top])
        assert abs(abs(lon[0]) - 180.0) < 0.01
    with rasterio.open(rest[0][2]) as g:  # the GRD: GCPs in EPSG:4326 on both sides of 180, no geotransform
        lons = [p.x for p in g.gcps[0]]
        assert g.transform.is_identity and g.gcps[1].to_epsg() == 4326 and min(lons) < -179.9 and max(lons) > 179.9
    for name, r, t, _ in rest[1:]:
        with rasterio.open(r if "reference" in name else t) as g:
            assert g.crs.to_epsg() == 4326
            west, east = g.bounds.left, g.bounds.right
            assert (west < 180.0 < east) if "east" in name else (west < -180.0 < east), name
            assert (g.read(1) > 0).mean() > 0.7


def test_grd_lattices_benchmark_hands_over_each_scene_twice(shared_data, tmp_path):
    """grd_lattices.py: each case as a twin with a geotransform and as a GRD file whose GCP lattice
    places the same pixels; GDAL's polynomial fits the small scene's lattice and misses the one
    beside the pole, which georeg then takes by a spline."""
    import numpy as np
    import rasterio
    from grd_lattices import build, polynomial_misses

    from georeg.grid import GCPGrid, placing_points

    if not (shared_data / "s1s2_volkov" / "geotiff" / "176_S1_VH.tif").exists():
        pytest.skip(f"the S1/S2 GeoTIFF pairs are not in {shared_data}")
    cases = build(shared_data, tmp_path, [70.0], 1024)
    assert [c[0] for c in cases] == ["1024 px mosaic at 70 N", "S1/S2 176, 12 km from the south pole"]
    for (name, ref, twin, grd), crs in zip(cases, (32633, 3031)):
        with rasterio.open(ref) as r, rasterio.open(twin) as t, rasterio.open(grd) as g:
            assert r.crs.to_epsg() == t.crs.to_epsg() == crs and np.allclose(
                (~r.transform) * (t.transform.c, t.transform.f), (13.4, -8.7))
            assert len(g.gcps[0]) == 210 and g.gcps[1].to_epsg() == 4326 and g.transform.is_identity
            placed = GCPGrid.from_gcps(*g.gcps, g.width, g.height)
            mx, my = np.meshgrid(np.linspace(0, t.width, 9), np.linspace(0, t.height, 9))
            xs, ys = rasterio.warp.transform(placed.crs, t.crs, *placed.to_map(np.c_[mx.ravel(), my.ravel()]).T)
            truth = np.c_[t.transform @ (mx.ravel(), t.height - my.ravel())]  # the GRD's rows: south to north
            assert np.abs(np.c_[xs, ys] - truth).max() < 0.5, name  # (10 m pixels)
        misses = polynomial_misses(grd)
        assert (misses < 0.1) if "mosaic" in name else (misses > 10), (name, misses)
        with rasterio.open(grd) as g:
            assert placing_points(*g.gcps)[2] == ("pole" in name)
    assert placed.taken_by == "a thin-plate spline in a stereographic plane centred on them"  # (the pole's)
