"""Targets georeferenced by ground control points (a Sentinel-1 GRD product, a scanned map, a drone
frame): read through GDAL's GCP transformer, and written back with corrected GCPs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.warp import transform as crs_transform
from rasterio.windows import Window

from georeg.config import RegistrationConfig
from georeg.estimation import FittedModel
from georeg.grid import GCPGrid, Grid
from georeg.warp import corrected_gcps

ERROR_PX = (13.4, -8.7)  # the target's georeferencing error, pixels (x, y)
SIZE = 512


def _gcps_of(transform: Affine, crs, width: int, height: int, gcp_crs: str = "EPSG:4326", n=(8, 11)):
    """GCPs on an n[0] x n[1] lattice of a raster placed by ``transform``, in ``gcp_crs`` (a GRD
    product's are in EPSG:4326)."""
    rows, cols = np.meshgrid(np.linspace(0, height, n[0]), np.linspace(0, width, n[1]), indexing="ij")
    xs, ys = transform @ (cols.ravel(), rows.ravel())
    xs, ys = crs_transform(crs, gcp_crs, xs, ys) if gcp_crs != crs else (xs, ys)
    return [GroundControlPoint(r, c, x, y, 0.0, id=str(i))
            for i, (r, c, x, y) in enumerate(zip(rows.ravel(), cols.ravel(), xs, ys))], CRS.from_string(gcp_crs)


def _ramps_read(gcps, crs, w: int, h: int, grid: Grid, tmp_path) -> tuple[list, np.ndarray, GCPGrid]:
    """Two w x h rasters placed by ``gcps``, holding each pixel's column and row, read onto ``grid``
    through RasterSource: ([columns, rows], where both are valid, the rasters' grid)."""
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    got, valid = [], None
    for k, ramp in enumerate(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)):
        path = tmp_path / f"ramp{k}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32") as d:
            d.write(ramp.astype(np.float32)[None])
            d.gcps = (gcps, crs)
        with RasterSource(path, InputConfig(modality="optical"), "target") as src:
            data, ok = src.read_on_grid(grid)
            placed = src.grid
        got.append(data)
        valid = ok if valid is None else valid & ok
    return got, valid, placed


def test_gcp_grid_follows_the_affine_it_was_made_from():
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    gcps, crs = _gcps_of(t, "EPSG:32633", 300, 200, gcp_crs="EPSG:32633", n=(4, 5))
    g = GCPGrid.from_gcps(gcps, crs, 300, 200)
    px = np.array([[0.0, 0.0], [12.25, 7.5], [299.5, 199.5], [150.0, 100.0]])
    assert np.allclose(g.to_map(px), Grid(t, 300, 200, crs).to_map(px), atol=1e-6)
    assert np.allclose(g.to_pixels(g.to_map(px)), px, atol=1e-6)
    assert np.allclose(list(g.transform)[:6], list(t)[:6], atol=1e-6)


def test_corrected_gcps_move_by_the_model():
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    crs = CRS.from_epsg(32633)
    gcps, _ = _gcps_of(t, "EPSG:32633", 300, 200, gcp_crs="EPSG:32633", n=(4, 5))
    tgt = GCPGrid.from_gcps(gcps, crs, 300, 200)
    ref = Grid(t, 400, 400, crs)
    m = np.array([[1.0, 0.0, -3.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]])  # features shown at p are at p + (-3, 2)
    model = FittedModel("translation", m, np.ones(0, bool), np.zeros(0))
    new, dev = corrected_gcps(model, ref, tgt)
    assert dev < 1e-6
    for old, g in zip(gcps, new):
        assert (g.row, g.col, g.z) == (old.row, old.col, old.z)
        assert g.x == pytest.approx(old.x - 30.0, abs=1e-6) and g.y == pytest.approx(old.y - 20.0, abs=1e-6)


@pytest.fixture(scope="module")
def gcp_pair(volkov, tmp_path_factory):
    """A 512 px S1 VH crop of pair 176 georeferenced by 88 GCPs in EPSG:4326, and its twin with the
    same error as a geotransform; the S2 reference whole."""
    d = tmp_path_factory.mktemp("gcp")
    with rasterio.open(volkov / "176_S1_VH.tif") as s:
        win = Window(256, 256, SIZE, SIZE)
        arr, prof, crs = s.read(window=win), s.profile, s.crs
        t = s.window_transform(win) @ Affine.translation(*ERROR_PX)
    prof.update(width=SIZE, height=SIZE, transform=t)
    twin = d / "twin.tif"
    with rasterio.open(twin, "w", **prof) as w:
        w.write(arr)
    gcps = _gcps_of(t, crs, SIZE, SIZE)
    scene = d / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
        w.write(arr)
        w.gcps = gcps
    # as an ascending-pass GRD file holds it: lines from south to north (upside down), GCPs with heights
    flipped = d / "flipped.tif"
    with rasterio.open(flipped, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
        w.write(arr[:, ::-1])
        w.gcps = ([GroundControlPoint(SIZE - g.row, g.col, g.x, g.y, 120.0, id=g.id) for g in gcps[0]], gcps[1])
    return volkov / "176_S2_RGB.tif", scene, twin, d


@pytest.mark.parametrize("name", ["scene", "flipped"])
def test_a_gcp_target_reads_as_its_geotransform_twin(gcp_pair, name):
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    ref, _, twin, d = gcp_pair
    scene = d / f"{name}.tif"
    with RasterSource(ref, InputConfig(), "reference") as r, RasterSource(scene, InputConfig(), "target") as a, \
            RasterSource(twin, InputConfig(), "target") as b:
        assert isinstance(a.grid, GCPGrid) and a.gcps is not None and len(a.gcps[0]) == 88
        win = Window(200, 200, 600, 600)
        da, va = a.read_on_grid(r.grid, win)
        db, vb = b.read_on_grid(r.grid, win)
        inner = va & vb
        assert inner.sum() > 0.6 * va.size and abs(int(va.sum()) - int(vb.sum())) < 0.01 * va.size
        assert np.median(np.abs(da[inner] - db[inner])) < 1.0  # uint8 DN, bilinear both ways
        assert (a.valid_on(r.grid.scaled(8)) == b.valid_on(r.grid.scaled(8))).mean() > 0.98
        fa, fb = a.footprint(r.grid.crs), b.footprint(r.grid.crs)
        assert fa.symmetric_difference(fb).area < 0.01 * fb.area


@pytest.fixture(scope="module")
def registered(gcp_pair):
    import georeg

    ref, scene, twin, d = gcp_pair
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"},
                                            output={"overwrite": True})
    return {name: georeg.register(ref, src, d / f"out_{name}.tif", cfg) for name, src in
            (("scene", scene), ("twin", twin))}


def test_a_gcp_target_is_corrected_like_its_geotransform_twin(gcp_pair, registered):
    _, _, _, d = gcp_pair
    a, b = registered["scene"], registered["twin"]
    assert a.report["target"]["frame"] == "ground control points" and a.report["target"]["gcps"] == 88
    assert a.report["target"]["gcps_taken_by"] == "GDAL's polynomial"  # (a lattice it fits)
    assert a.report["model"]["output_mode"] == "ground control points"
    assert a.quality == b.quality == "reliable"
    assert np.allclose(a.report["shift"]["mean_px"], b.report["shift"]["mean_px"], atol=0.05)
    with rasterio.open(d / "out_scene.tif") as o, rasterio.open(d / "out_twin.tif") as w, \
            rasterio.open(gcp_pair[1]) as src:
        assert o.transform.is_identity and o.crs is None and len(o.gcps[0]) == 88
        assert (o.read() == src.read()).all()  # the pixels as they were
        assert json.loads(json.dumps(o.tags()))["GEOREG_MODEL"] == a.model.kind
        lattice = np.linspace(0, SIZE, 9)
        rows, cols = (v.ravel() for v in np.meshgrid(lattice, lattice, indexing="ij"))
        from rasterio.transform import GCPTransformer

        lon, lat = GCPTransformer(o.gcps[0]).xy(rows, cols, offset="ul")
        x, y = crs_transform(o.gcps[1], w.crs, lon, lat)
        c, r = ~w.transform @ (np.asarray(x), np.asarray(y))
    assert np.abs(c - cols).max() < 0.05 and np.abs(r - rows).max() < 0.05


def test_a_report_applies_to_a_gcp_raster(gcp_pair, registered, tmp_path):
    from georeg.apply import apply_report

    _, scene, twin, _ = gcp_pair
    rep = registered["twin"].report
    done = apply_report(rep, scene, tmp_path / "applied.tif")
    assert done["mode"] == "ground control points" and done["transform"] is None
    aligned = apply_report(rep, scene, tmp_path / "aligned.tif", align_grids=True)
    twin_aligned = apply_report(rep, twin, tmp_path / "twin_aligned.tif", align_grids=True)
    assert aligned["mode"] == twin_aligned["mode"] == "resampled to reference grid"
    with rasterio.open(tmp_path / "aligned.tif") as a, rasterio.open(tmp_path / "twin_aligned.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        da, db = a.read(1).astype(float), b.read(1).astype(float)
    both = (da > 0) & (db > 0)
    assert both.mean() > 0.2 and np.median(np.abs(da[both] - db[both])) <= 1.0


@pytest.mark.parametrize("search_px", [4096, 128])  # 128: the decimated search a full GRD gets
def test_the_zero_border_of_a_gcp_target_is_masked(gcp_pair, tmp_path, monkeypatch, search_px):
    """A Sentinel-1 GRD file declares no nodata; its swath border is zeros. Here a 64 px zero band
    along the file's left edge, in a uint16 file stored upside down."""
    import georeg.fill as R
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    monkeypatch.setattr(R, "FILL_SEARCH_PX", search_px)
    ref, _, twin, d = gcp_pair
    with rasterio.open(d / "flipped.tif") as s:
        arr, gcps = s.read().astype(np.uint16) * 37 + 1, s.gcps
    arr[:, :, :64] = 0
    grd = tmp_path / "grd.tif"
    with rasterio.open(grd, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint16") as w:
        w.write(arr)
        w.gcps = gcps
    with RasterSource(ref, InputConfig(), "reference") as r, RasterSource(grd, InputConfig(), "target") as a, \
            RasterSource(twin, InputConfig(), "target") as b:
        assert a.fill_share == pytest.approx(64 / SIZE, abs=0.01 if search_px > SIZE else 0.03)
        win = Window(0, 0, 1024, 1024)
        _, va = a.read_on_grid(r.grid, win)
        _, vb = b.read_on_grid(r.grid, win)
        lost = int(vb.sum()) - int(va.sum())
        f = max(1, SIZE // search_px)  # the decimated search widens the mask by one of its pixels
        assert 0.98 * 64 * SIZE <= lost <= (64 + 2 * f) * SIZE
        assert not (va & ~vb).any()


def test_reads_and_point_mapping_use_the_same_gcp_transformer(tmp_path):
    """With GCPs that no affine fits (a quadratic warp, as a slant geometry gives), a pixel read onto
    a grid must come from where :meth:`GCPGrid.to_pixels` says: each file holds a ramp of its own
    column or row, which bilinear reading reproduces exactly."""

    w, h = 400, 300
    rows, cols = (v.ravel() for v in np.meshgrid(np.linspace(0, h, 10), np.linspace(0, w, 10), indexing="ij"))
    xs = 500000 + 10 * cols + 0.004 * cols ** 2 + 0.5 * rows
    ys = 5000000 - 10 * rows - 0.003 * rows ** 2 + 0.002 * cols * rows
    gcps = [GroundControlPoint(r, c, x, y) for r, c, x, y in zip(rows, cols, xs, ys)]
    crs = CRS.from_epsg(32633)
    grid = Grid(Affine(12.0, 0, 500300, 0, -12.0, 4999700), 200, 150, crs)
    got, valid, tg = _ramps_read(gcps, crs, w, h, grid, tmp_path)
    gx, gy = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    want = tg.to_pixels(grid.to_map(np.c_[gx.ravel(), gy.ravel()])).reshape(grid.height, grid.width, 2)
    inner = valid & (want[..., 0] > 2) & (want[..., 0] < w - 2) & (want[..., 1] > 2) & (want[..., 1] < h - 2)
    assert inner.mean() > 0.5
    # GDAL's warper interpolates its transformer along each row within 0.125 px (as any reprojected
    # read does); the same polynomial order in both (1 would be 4-6 px off here, 3 0.2-0.5 px)
    err = np.abs(np.stack(got, -1) - want)[inner]
    assert err.max() < 0.15 and np.median(err) < 0.06


def test_corrected_gcps_carry_a_model_where_no_polynomial_fits_exactly():
    """A quadratic warp (which GDAL's order-2 polynomial fits one way but not back): moved GCPs
    represent a translation and a small rotation within 0.05 px, so the pixels are kept."""
    rows, cols = (v.ravel() for v in np.meshgrid(np.linspace(0, 300, 10), np.linspace(0, 400, 10), indexing="ij"))
    xs = 500000 + 10 * cols + 0.004 * cols ** 2 + 0.5 * rows
    ys = 5000000 - 10 * rows - 0.003 * rows ** 2 + 0.002 * cols * rows
    crs = CRS.from_epsg(32633)
    tgt = GCPGrid.from_gcps([GroundControlPoint(r, c, x, y) for r, c, x, y in zip(rows, cols, xs, ys)], crs, 400, 300)
    ref = Grid(Affine(10, 0, 499000, 0, -10, 5001000), 800, 600, crs)
    a = np.radians(0.3)
    m = np.array([[np.cos(a), -np.sin(a), 4.2], [np.sin(a), np.cos(a), -2.7], [0, 0, 1]])
    new, dev = corrected_gcps(FittedModel("rigid", m, np.ones(0, bool), np.zeros(0)), ref, tgt)
    assert dev < 0.05
    moved = np.array([[g.x, g.y] for g in new])
    xy = np.array([[g.x, g.y] for g in tgt.gcps])
    want = ref.to_map(np.c_[ref.to_pixels(xy), np.ones(len(xy))] @ m[:2].T)
    assert np.abs(moved - want).max() < 1e-6


def _rpc_of(t: Affine, crs, width: int, height: int):
    """RPCs (linear in longitude and latitude, heights ignored) of a raster placed by ``t``."""
    from rasterio.rpc import RPC

    (lon0, lon1), (lat0, lat1) = crs_transform(crs, "EPSG:4326", [(t @ (0, 0))[0], (t @ (width, height))[0]],
                                               [(t @ (0, 0))[1], (t @ (width, height))[1]])
    zero, one = [0.0] * 20, [1.0] + [0.0] * 19
    samp, line = list(zero), list(zero)
    samp[1], line[2] = 1.0, -1.0
    # GDAL's RPC pixels have their centres at integers: the centre line is (height - 1) / 2
    return RPC(height_off=120.0, height_scale=500.0, lat_off=(lat0 + lat1) / 2, lat_scale=abs(lat1 - lat0) / 2,
               line_den_coeff=one, line_num_coeff=line, line_off=(height - 1) / 2, line_scale=height / 2,
               long_off=(lon0 + lon1) / 2, long_scale=abs(lon1 - lon0) / 2, samp_den_coeff=one,
               samp_num_coeff=samp, samp_off=(width - 1) / 2, samp_scale=width / 2)


def test_an_rpc_target_reads_as_the_gcp_lattice_taken_from_it(gcp_pair, tmp_path):
    """The fast half of the next test: reads, validity and footprint through the RPCs and through
    the 16 x 16 GCP lattice a corrected raster is written with."""
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    ref, scene, _, _ = gcp_pair
    with rasterio.open(scene) as s:
        arr = s.read()
        t = GCPGrid.from_gcps(*s.gcps, SIZE, SIZE).transform
    rpcs = _rpc_of(t, "EPSG:4326", SIZE, SIZE)
    lattice = GCPGrid.from_rpcs(rpcs, SIZE, SIZE)
    paths = {}
    for name, kw in (("rpc", {"rpcs": rpcs}), ("lattice", {"gcps": (list(lattice.gcps), lattice.crs)})):
        paths[name] = tmp_path / f"{name}.tif"
        with rasterio.open(paths[name], "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
            w.write(arr)
            for k, v in kw.items():
                setattr(w, k, v)
    with RasterSource(ref, InputConfig(), "reference") as r, RasterSource(paths["rpc"], InputConfig(), "target") as a, \
            RasterSource(paths["lattice"], InputConfig(), "target") as b:
        assert a.rpcs is not None and a.gcps is None and a.grid.rpc_height == 120.0
        win = Window(200, 200, 600, 600)
        da, va = a.read_on_grid(r.grid, win)
        db, vb = b.read_on_grid(r.grid, win)
        both = va & vb
        assert both.sum() > 0.6 * va.size and (va != vb).mean() < 0.01
        assert np.median(np.abs(da[both] - db[both])) < 1.0
        fa, fb = a.footprint(r.grid.crs), b.footprint(r.grid.crs)
        assert fa.symmetric_difference(fb).area < 0.01 * fb.area


@pytest.mark.slow
def test_an_rpc_target_is_registered_like_the_same_georeferencing_as_gcps(gcp_pair, tmp_path):
    """An ICEYE GRD or an optical level-1 product carries RPCs. The same scene placed by RPCs and by
    a GCP lattice taken from those RPCs must get the same correction, written as GCPs."""
    import georeg

    ref, scene, _, _ = gcp_pair
    with rasterio.open(scene) as s:
        arr = s.read()
        t = GCPGrid.from_gcps(*s.gcps, SIZE, SIZE).transform  # in the GCPs' EPSG:4326
    rpcs = _rpc_of(t, "EPSG:4326", SIZE, SIZE)
    placed = {}
    grid = GCPGrid.from_rpcs(rpcs, SIZE, SIZE)
    assert grid.rpc_height == 120.0 and len(grid.gcps) == 256 and grid.crs == CRS.from_epsg(4326)
    for name, kw in (("rpc", {"rpcs": rpcs}), ("lattice", {"gcps": (list(grid.gcps), grid.crs)})):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
            w.write(arr)
            for k, v in kw.items():
                setattr(w, k, v)
        cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, output={"overwrite": True})
        placed[name] = georeg.register(ref, path, tmp_path / f"out_{name}.tif", cfg)
    a, b = placed["rpc"], placed["lattice"]
    assert a.report["target"]["frame"] == "rational polynomial coefficients"
    assert a.report["target"]["rpc_height_m"] == 120.0
    assert a.report["model"]["output_mode"] == b.report["model"]["output_mode"] == "ground control points"
    assert a.quality == b.quality == "reliable"
    assert np.allclose(a.report["shift"]["mean_px"], b.report["shift"]["mean_px"], atol=0.05)
    with rasterio.open(tmp_path / "out_rpc.tif") as o:
        assert len(o.gcps[0]) == 256 and o.rpcs is None and o.crs is None


@pytest.mark.slow
def test_gcps_turned_20_degrees_are_corrected(gcp_pair, registered, tmp_path):
    """A drone frame or a scanned map georeferenced badly: the GCPs' map positions turned 20
    degrees about their centre. The global search finds the turn, and the moved GCPs place the
    pixels where the geotransform twin's correction does."""
    from rasterio.transform import GCPTransformer

    import georeg

    ref, scene, _, d = gcp_pair
    with rasterio.open(scene) as s:
        arr, (gcps, crs) = s.read(), s.gcps
    with rasterio.open(registered["twin"].outputs["raster"]) as w:
        twin_crs, twin_t = w.crs, w.transform
    xs, ys = (np.asarray(v) for v in crs_transform(crs, twin_crs, [g.x for g in gcps], [g.y for g in gcps]))
    cx, cy, a = xs.mean(), ys.mean(), np.radians(20.0)
    tx = cx + np.cos(a) * (xs - cx) - np.sin(a) * (ys - cy)
    ty = cy + np.sin(a) * (xs - cx) + np.cos(a) * (ys - cy)
    lon, lat = crs_transform(twin_crs, crs, tx.tolist(), ty.tolist())
    turned = tmp_path / "turned.tif"
    with rasterio.open(turned, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
        w.write(arr)
        w.gcps = ([GroundControlPoint(g.row, g.col, x, y, 0.0) for g, x, y in zip(gcps, lon, lat)], crs)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, output={"overwrite": True})
    res = georeg.register(ref, turned, tmp_path / "out.tif", cfg)
    assert res.quality == "reliable" and res.report["model"]["output_mode"] == "ground control points"
    assert abs(res.report["model"]["parameters"]["rotation_deg"] - 20.0) < 0.3
    with rasterio.open(tmp_path / "out.tif") as o:
        lattice = np.linspace(0, SIZE, 9)
        rows, cols = (v.ravel() for v in np.meshgrid(lattice, lattice, indexing="ij"))
        lon, lat = GCPTransformer(o.gcps[0]).xy(rows, cols, offset="ul")
        x, y = crs_transform(o.gcps[1], twin_crs, lon, lat)
        c, r = ~twin_t @ (np.asarray(x), np.asarray(y))
    # two estimates, each with its own error: 0.72 px apart at worst on this 512 px crop (0.20 on the
    # whole 1024 px scene); the benchmarks' success threshold
    assert np.hypot(c - cols, r - rows).max() < 1.0



def test_a_crs_option_is_refused_for_a_raster_placed_by_gcps(gcp_pair, tmp_path):
    """``--target-crs`` names the CRS of a geotransform: GDAL reads GCPs in the file's own CRS, so
    a different one (or one for GCPs stored without any) is refused, saying how to fix the file;
    the file's own CRS given again is accepted."""
    from georeg.config import InputConfig
    from georeg.errors import ConfigError
    from georeg.raster import RasterSource

    _, scene, _, _ = gcp_pair
    bare = tmp_path / "bare.tif"
    with rasterio.open(scene) as s:
        arr, (gcps, crs) = s.read(), s.gcps
    with rasterio.open(bare, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=arr.dtype) as w:
        w.write(arr)
        w.gcps = (gcps, CRS())  # an empty CRS: the file holds none
    with pytest.raises(ConfigError, match="--target-crs applies to a geotransform only.*gdal_translate -a_srs"):
        RasterSource(bare, InputConfig(crs="EPSG:4326"), "target")
    with pytest.raises(ConfigError, match="--target-crs applies to a geotransform only: leave it out$"):
        RasterSource(scene, InputConfig(crs="EPSG:32611"), "target")
    with RasterSource(scene, InputConfig(crs=crs.to_wkt()), "target") as a:
        assert a.gcps[1] == crs


def test_a_gcp_target_across_the_antimeridian_is_read_and_corrected_whole(small_pair, tmp_path):
    """A Sentinel-1 GRD over Fiji: its GCPs in EPSG:4326 jump from 179.9 to -179.9 degrees. The
    overlap of its outline (a polynomial through the jump) crashed with a GEOS TopologyException;
    with the longitudes made continuous, GDAL's warper still took the file's own GCPs (half the
    scene read, a `reliable` translation 2.8 px from its twin's on a S1/S2 pair). Now it reads as
    its geotransform twin, its zero border masked, and its corrected GCPs run on past 180."""
    import georeg

    ref_path, tgt_path = small_pair()
    with rasterio.open(ref_path) as r, rasterio.open(tgt_path) as t:
        ref_arr, arr, w, h = r.read(1), t.read(1), r.width, r.height
    arr = np.where(np.arange(w)[None, :] < 24, 0, np.maximum(arr, 1)).astype(arr.dtype)  # a zero border, undeclared
    xs, ys = crs_transform("EPSG:4326", "EPSG:32660", [180.0], [60.0])
    utm = Affine(10, 0, xs[0] - w * 5, 0, -10, ys[0] + h * 5)
    ref = tmp_path / "ref.tif"
    with rasterio.open(ref, "w", driver="GTiff", width=w, height=h, count=1, dtype=ref_arr.dtype, crs="EPSG:32660",
                       transform=utm) as o:
        o.write(ref_arr, 1)
    twin, scene = tmp_path / "twin.tif", tmp_path / "scene.tif"
    with rasterio.open(twin, "w", driver="GTiff", width=w, height=h, count=1, dtype=arr.dtype, crs="EPSG:32660",
                       transform=utm) as o:
        o.write(arr, 1)
    gcps = _gcps_of(utm, "EPSG:32660", w, h)
    assert min(g.x for g in gcps[0]) < -179.9 and max(g.x for g in gcps[0]) > 179.9
    with rasterio.open(scene, "w", driver="GTiff", width=w, height=h, count=1, dtype=arr.dtype) as o:
        o.write(arr, 1)
        o.gcps = gcps
    cfg = RegistrationConfig().with_options(output={"overwrite": True})
    a, b = (georeg.register(str(ref), str(p), str(tmp_path / f"out_{p.stem}.tif"), cfg) for p in (scene, twin))
    assert a.quality == b.quality == "reliable", a.report["verdict"]["reason"]
    assert a.report["target"]["edge_fill_masked"] > 0.05
    assert np.allclose(a.report["shift"]["mean_px"], b.report["shift"]["mean_px"], atol=0.05)
    assert np.abs(np.array(a.report["shift"]["mean_px"]) - (6.0, -4.0)).max() < 0.5
    assert a.report["counts"]["inliers"] >= 0.9 * b.report["counts"]["inliers"]
    with rasterio.open(tmp_path / "out_scene.tif") as o:
        lons = [g.x for g in o.gcps[0]]
        assert o.gcps[1] == CRS.from_epsg(4326) and 179.0 < min(lons) < 180.0 < max(lons) < 181.0


def test_only_gcps_across_the_antimeridian_are_unwrapped():
    """GCPs west of 0 (a S1/S2 scene at -118 degrees) stay as they are: on 0..360 their spread
    can come out a rounding narrower (before the mend they became 242 degrees, and the fill mask of
    a GRD there was read nowhere: 'no pixel there is valid in both rasters')."""
    from georeg.grid import across_antimeridian

    crs = CRS.from_epsg(4326)
    rng = np.random.default_rng(0)
    for lon0 in (-118.0, -75.3, -1.0, 12.0, 179.0):
        lons = lon0 + rng.uniform(0, 0.9, 50)
        gcps = [GroundControlPoint(i, i, float(x), 45.0) for i, x in enumerate(lons)]
        out, c = across_antimeridian(gcps, crs)
        assert [g.x for g in out] == list(lons) and c == crs, lon0
    out, c = across_antimeridian([GroundControlPoint(0, i, x, 60.0) for i, x in enumerate((179.9, -179.9, 180.0))], crs)
    assert [g.x for g in out] == [179.9, 180.1, 180.0] and "+lon_wrap" in c.to_proj4()
    out, c = across_antimeridian([GroundControlPoint(0, i, x, 85.0) for i, x in enumerate((-100.0, 0.0, 100.0))], crs)
    assert [g.x for g in out] == [-100.0, 0.0, 100.0] and c == crs  # a polar scene wider than 180 degrees


@pytest.mark.parametrize("crs, at, size", [
    ("EPSG:32631", (3.0, 45.0), (25000, 17000)),  # a Sentinel-1 IW GRD's 250 x 170 km
    ("EPSG:32631", (3.0, 70.0), (25000, 17000)),
    ("EPSG:32601", (179.5, 65.0), (25000, 17000)),  # across 180 degrees
    ("EPSG:3031", (0.0, -89.9), (1024, 1024)),  # 11 km from the south pole
])
def test_a_gcp_lattice_in_degrees_places_a_large_scene_to_a_fraction_of_a_pixel(crs, at, size):
    """A product's lattice of GCPs in longitude and latitude (a GRD's 10 x 21) is taken by a
    thin-plate spline in a stereographic plane centred on it. GDAL's polynomial through it in
    degrees (order 2) misplaced a GRD-sized scene by up to 2.4 px at 45 degrees and 11.6 px at 70;
    points placed by hand keep the polynomial."""
    w, h = size
    x0, y0 = crs_transform("EPSG:4326", crs, [at[0]], [at[1]])
    t = Affine(10, 0, x0[0] - w * 5, 0, -10, y0[0] + h * 5)
    gcps, gcp_crs = _gcps_of(t, crs, w, h, n=(10, 21))
    g = GCPGrid.from_gcps(gcps, gcp_crs, w, h)
    assert g.warp_options()["SRC_METHOD"] == "GCP_TPS"
    mx, my = np.meshgrid(np.linspace(0, w, 41), np.linspace(0, h, 29))
    px = np.c_[mx.ravel(), my.ravel()]
    truth = np.c_[t @ (px[:, 0], px[:, 1])]
    xs, ys = crs_transform(g.crs, crs, *g.to_map(px).T)
    assert np.hypot(np.array(xs) - truth[:, 0], np.array(ys) - truth[:, 1]).max() / 10 < 0.05
    lon, lat = crs_transform(crs, g.crs, truth[:, 0], truth[:, 1])
    assert np.abs(g.to_pixels(np.c_[lon, lat]) - px).max() < 0.05
    # twelve points placed by hand: GDAL's polynomial, as gdalwarp takes them
    hand = [gcps[i] for i in np.random.default_rng(0).choice(len(gcps), 12, replace=False)]
    assert "SRC_METHOD" not in GCPGrid.from_gcps(hand, gcp_crs, w, h).warp_options()


def test_a_gcp_lattice_beside_the_pole_is_read_where_its_points_place_it(tmp_path):
    """A GRD-like raster 11 km from the south pole (its lattice's longitudes span 90 degrees), read
    onto a polar stereographic grid: each pixel's column and row come back where they are; through
    GDAL's polynomial in degrees they came back up to 1.5 px (of 30 m) away."""

    w = h = 300
    t = Affine(30, 0, -w * 15, 0, -30, 11000 + h * 15)
    gcps, gcp_crs = _gcps_of(t, "EPSG:3031", w, h, n=(10, 21))
    grid = Grid(Affine(25, 0, -w * 10, 0, -25, 11000 + h * 10), 240, 240, CRS.from_epsg(3031))
    gx, gy = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    want = np.stack((~t) * grid.transform * (gx, gy), -1)  # the truth's pixel at each grid pixel
    got, valid, _ = _ramps_read(gcps, gcp_crs, w, h, grid, tmp_path)
    assert valid.all()
    assert np.abs(np.stack(got, -1) - want).max() < 0.2
