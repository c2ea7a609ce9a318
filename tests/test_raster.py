"""georeg.raster on small files written here: grids, band choice, nodata, masks, overlap."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from georeg.config import InputConfig
from georeg.errors import MissingCRSError, NoOverlapError
from georeg.grid import Grid
from georeg.raster import RasterSource, overlap_window

T = Affine(10, 0, 500000, 0, -10, 4000000)


def _write(path, arr, transform=T, crs="EPSG:32633", nodata=None):
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as d:
        d.write(arr)
    return str(path)


def test_grid_scaled_and_window():
    g = Grid(T, 1000, 600, CRS.from_epsg(32633))
    c = g.scaled(4)
    assert (c.width, c.height) == (250, 150) and c.bounds == g.bounds
    w = g.window_grid(Window(100, 50, 10, 10))
    assert (w.transform.c, w.transform.f) == (501000.0, 3999500.0)
    assert g.ground_pixel_size_m == pytest.approx(10.0 / 0.9996, rel=1e-4)  # UTM's scale near its central meridian
    geo = Grid(Affine(1e-4, 0, 15, 0, -1e-4, 60), 10, 10, CRS.from_epsg(4326))
    assert geo.ground_pixel_size_m == pytest.approx(np.sqrt(5.5800 * 11.1412), rel=1e-3)  # WGS 84 at 60 N
    # World Mercator at 60 degrees north: 10 map metres are about 5 m on the ground
    merc = Grid(Affine(10, 0, 0, 0, -10, 8362698.5 + 50), 10, 10, CRS.from_epsg(3395))
    assert merc.ground_pixel_size_m == pytest.approx(10 / (2 * np.sqrt(1 - 0.00669438 * 0.75)), rel=1e-3)


def test_band_choice_nodata_and_mask(tmp_path):
    rgb = np.stack([np.full((20, 30), v, np.uint8) for v in (100, 50, 200)])
    rgb[:, :, :5] = 0
    ref = _write(tmp_path / "rgb.tif", rgb, nodata=0)
    with RasterSource(ref, InputConfig(), "reference") as r:
        data, valid = r.read_on_grid(r.grid)
        assert data[0, 10] == pytest.approx(0.299 * 100 + 0.587 * 50 + 0.114 * 200, abs=1e-3)
        assert not valid[:, :5].any() and valid[:, 5:].all()
    with RasterSource(ref, InputConfig(band=3), "reference") as r:
        assert r.read_on_grid(r.grid)[0][0, 10] == 200
    mask = np.ones((20, 30), np.uint8)
    mask[:10] = 0
    m = _write(tmp_path / "mask.tif", mask)
    with RasterSource(ref, InputConfig(band=1, mask=m), "reference") as r:
        _, valid = r.read_on_grid(r.grid)
        assert not valid[:10].any() and valid[10:, 5:].all()


def _stack(path, names=None, interp=None):
    """Twelve bands, band i holding the value 10 * i everywhere; ``names``: their descriptions."""
    arr = np.stack([np.full((20, 30), 10 * (i + 1), np.uint16) for i in range(12)])
    _write(path, arr)
    with rasterio.open(path, "r+") as d:
        for i, name in enumerate(names or []):
            d.set_band_description(i + 1, name)
        if interp:
            d.colorinterp = [ColorInterp[c] for c in interp]
    return str(path)


@pytest.mark.parametrize("names, interp, bands, by", [
    # a Sentinel-2 stack as Earth Engine and SNAP name it: bands 1-3 are B1 (60 m aerosol), blue, green
    (["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"], None, [4, 3, 2], "band names"),
    # Landsat 8-9 Collection 2 surface reflectance and temperature
    (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL", "x", "y", "z"], None,
     [4, 3, 2], "band names"),
    # colour words, the red edge and near infrared not taken for red
    (["Coastal", "Blue", "Green", "Red", "Red Edge 1", "Red Edge 2", "Red Edge 3", "Near infra red", "n", "w",
      "SWIR 1", "SWIR 2"], None, [4, 3, 2], "band descriptions"),
    # Landsat 4-7 number their bands otherwise (red B3): without a band name only Sentinel-2 and
    # Landsat 8-9 have, the numbers are not trusted and bands 1-3 are read as before
    (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7", "a", "b", "c", "d", "e"], None, [1, 2, 3], None),
    ([], None, [1, 2, 3], None),
    # blue, green, red, near infrared (PlanetScope's order), told by their colour interpretation
    ([], ("blue", "green", "red") + ("undefined",) * 9, [3, 2, 1], "colour interpretation"),
])
def test_a_multiband_stack_is_read_by_its_red_green_and_blue_bands(tmp_path, names, interp, bands, by):
    path = _stack(tmp_path / "stack.tif", names, interp)
    with RasterSource(path, InputConfig(), "reference") as r:
        assert r.bands == bands
        assert (by is None) == (r.colour_source is None) and (by is None or by in r.colour_source)
        data, _ = r.read_on_grid(r.grid)
        assert data[5, 5] == pytest.approx(10 * (0.299 * bands[0] + 0.587 * bands[1] + 0.114 * bands[2]), abs=1e-3)
        assert r.band_label.startswith(f"luminance({','.join(map(str, bands))}")
    with RasterSource(path, InputConfig(band=7), "reference") as r:  # --ref-band still decides
        assert r.bands == [7]


def test_overlap_window_and_its_errors(tmp_path):
    a = _write(tmp_path / "a.tif", np.ones((100, 100), np.uint8))
    b = _write(tmp_path / "b.tif", np.ones((100, 100), np.uint8), transform=T @ Affine.translation(60, 30))
    far = _write(tmp_path / "far.tif", np.ones((100, 100), np.uint8), transform=T @ Affine.translation(500, 0))
    with RasterSource(a, InputConfig(), "reference") as r, RasterSource(b, InputConfig(), "target") as t:
        win, _ = overlap_window(r, t)
        assert (win.col_off, win.row_off, win.width, win.height) == (60, 30, 40, 70)
    with RasterSource(a, InputConfig(), "reference") as r, RasterSource(far, InputConfig(), "target") as t, \
            pytest.raises(NoOverlapError):
        overlap_window(r, t)


def test_a_raster_without_crs_is_refused(tmp_path):
    p = tmp_path / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(MissingCRSError):
        RasterSource(str(p), InputConfig(), "target")


@pytest.mark.parametrize("search_px", [4096, 300])
def test_a_zero_collar_without_nodata_is_masked_but_dark_ground_is_not(tmp_path, monkeypatch, search_px):
    """A georeferenced raster that declares no nodata but leaves its footprint's outside at exactly 0
    (Landsat level-1, Sentinel-2): the collar is masked. The same zero rim in an image with zeros
    elsewhere too (dark water in 8-bit SAR) is ground and stays valid. ``search_px`` 300: the
    collar is looked for on a decimated read."""
    import georeg.fill as R

    monkeypatch.setattr(R, "FILL_SEARCH_PX", search_px)
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (600, 800)).astype(np.uint16)
    yy, xx = np.mgrid[0:600, 0:800]
    collar = (xx < 200 - yy / 3) | (yy > 500 + xx / 8)  # a tilted footprint's outside, two sides
    img[collar] = 0
    path = _write(tmp_path / "l1.tif", img)
    with RasterSource(path, InputConfig(), "target") as s:
        assert s.fill_share == pytest.approx(collar.mean(), abs=0.01 if search_px > 800 else 0.03)
        _, valid = s.read_on_grid(s.grid)
        # a decimated search can miss a collar one pixel thin at the raster's very edge
        assert valid[collar].mean() < (1e-9 if search_px > 800 else 1e-3)
        assert valid[~collar].mean() > (0.999 if search_px > 800 else 0.97)
    img[100:110, 300:400] = 0  # dark ground inside too
    with RasterSource(_write(tmp_path / "sar.tif", img), InputConfig(), "target") as s:
        assert s.fill_share == 0.0 and s.read_on_grid(s.grid)[1][collar].all()


@pytest.mark.parametrize("collared, search_px, even", [(False, 4096, False), (True, 4096, False), (True, 300, False),
                                                      (True, 300, True)])
def test_undeclared_zeros_in_scan_line_gaps_are_missing_but_a_river_at_zero_stays_ground(tmp_path, monkeypatch,
                                                                                         collared, search_px, even):
    """A Landsat 7 level-1 band declares no nodata and holds 0 in its scan-line gaps (22% of the
    pixels) and outside its footprint: the gaps and the collar are missing, the collar in the
    fill mask and the gaps by their value (exact at full resolution, filled across when read);
    before, the gaps' zeros were too many for a collar and everything was read as data. Zeros in
    one meandering strip and crossing straight ones (a river and canals at 0 in 8-bit SAR) stay
    ground, as zeros in blobs do. ``search_px`` 300: looked for on a decimated read (a full scene);
    ``even``: gaps 10 px wide across the whole raster, every one joined to the collar (the mask,
    dilated on a decimated search, must not take them: it would widen them)."""
    import sys
    from pathlib import Path

    import georeg.fill as R
    from georeg.missing import scan_line_strips

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from cases import scan_line_gaps

    monkeypatch.setattr(R, "FILL_SEARCH_PX", search_px)

    rng = np.random.default_rng(3)
    img = rng.integers(1, 256, (600, 800)).astype(np.uint16)
    yy, xx = np.mgrid[0:600, 0:800]
    gaps = scan_line_gaps(img.shape) if not even else ((yy + np.tan(np.radians(8.0)) * xx) % 32) < 10
    collar = ((xx < 200 - yy / 3) | (yy > 500 + xx / 8)) if collared else np.zeros(img.shape, bool)
    img[gaps | collar] = 0
    with RasterSource(_write(tmp_path / "le07.tif", img), InputConfig(), "target") as s:
        assert s.fill_value == 0
        assert s.fill_inside_share == pytest.approx((gaps & ~collar).mean(), abs=0.01 if search_px > 800 else 0.05)
        assert s.fill_share == pytest.approx(collar.mean(), abs=0.01 if search_px > 800 else 0.03)
        _, mask = s.read_native_window(Window(0, 0, 800, 600))
        assert (mask[gaps | collar] == 0).all()
        assert (mask[~(gaps | collar)] > 0).mean() > (0.999 if search_px > 800 else 0.97)  # (a dilated collar)
        data, valid = s.read_on_grid(s.grid)  # the gaps filled across
        assert valid[gaps & ~collar].mean() > 0.9 and not valid[collar].any()
        assert data[valid].min() >= 1
    # with a user's mask (clouds: a block), which stays the mask, the fill is found all the same
    clouds = (yy > 200) & (yy < 260) & (xx > 500) & (xx < 600)
    mask = _write(tmp_path / "clouds.tif", np.where(clouds, 0, 255).astype(np.uint8))
    with RasterSource(_write(tmp_path / "le07_m.tif", img), InputConfig(mask=mask), "target") as s:
        assert s.fill_value == 0 and s.mask_rule is not None
        _, valid = s.read_on_grid(s.grid, fill_gaps=False)
        assert not valid[clouds].any() and valid[gaps & ~collar & ~clouds].mean() < 0.05
        assert valid[~(gaps | collar | clouds)].mean() > 0.99
    inland = (xx > 250) & (xx < 750) & (yy > 50) & (yy < 450)  # (zeros reaching the edge make a collar)
    river = (np.abs(yy - 250 - 60 * np.sin(xx / 40.0)) < 6) & inland
    canals = ((np.abs(yy % 100 - 50) < 5) | (np.abs(xx % 100 - 50) < 5)) & inland
    for name, zeros in (("river", river), ("canals", canals)):
        assert scan_line_strips(zeros) is None, name
        sar = rng.integers(1, 256, (600, 800)).astype(np.uint8)
        sar[zeros | ((xx < 200 - yy / 3) | (yy > 500 + xx / 8))] = 0
        with RasterSource(_write(tmp_path / f"{name}.tif", sar), InputConfig(), "target") as s:
            assert s.fill_value is None and s.read_on_grid(s.grid)[1][zeros].all(), name
    assert scan_line_strips(gaps) is not None


@pytest.mark.parametrize("row, col, size", [(2582, 2047, 1097), (2455, 5286, 609), (3133, 3025, 1080),
                                             (4712, 3207, 723)])
def test_undeclared_scan_line_gaps_are_found_in_a_crop_whose_corners_miss_them(tmp_path, row, col, size):
    """A crop of a Landsat 7 band (an area of interest clipped out of a 7000 px scene, 0 undeclared):
    none of its four corners lies in a gap, which the fill search looked at first; before, the gaps
    (2-40% of such a crop) were read as data for 24 of 60 random crops. The gaps cross the first
    and last rows, and near the scene's middle column, where they are 1-3 px wide and taper to
    nothing, most of them are strips and the rest thin runs. Speckle at 0 in an 8-bit SAR image
    (dark water reaching the edges) stays ground."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from cases import scan_line_gaps

    gaps = scan_line_gaps((6000, 7000), window=(row, col, size, size))
    assert not any(gaps[r, c] for r in (0, -1) for c in (0, -1))
    rng = np.random.default_rng(5)
    img = np.where(gaps, 0, rng.integers(1, 4000, gaps.shape)).astype(np.uint16)
    path = _write(tmp_path / "aoi.tif", img)
    for overviews in (False, True):  # with overviews (as a JPEG 2000's resolution levels), on a 256 px read
        if overviews:
            with rasterio.open(path, "r+") as d:
                d.build_overviews([2, 4], Resampling.nearest)
        with RasterSource(path, InputConfig(), "target") as s:
            assert s.fill_value == 0 and s.fill_share < 0.01  # (no collar: the gaps by their value)
            assert s.fill_inside_share == pytest.approx(gaps.mean(), abs=0.01)
            _, mask = s.read_native_window(Window(0, 0, size, size))
            assert not mask[gaps].any() and mask[~gaps].all()
    sar = rng.integers(1, 256, (600, 800)).astype(np.uint8)
    water = np.zeros(sar.shape, bool)
    water[:, 300:500] = True
    sar[water & (rng.random(sar.shape) < 0.3)] = 0
    with RasterSource(_write(tmp_path / "sar.tif", sar), InputConfig(), "target") as s:
        assert s.fill_value is None and s.read_on_grid(s.grid)[1][water].all()


@pytest.mark.parametrize("dtype, fill", [("float32", -3.4028235e38), ("float32", -9999.0), ("int16", -32768),
                                         ("uint16", 65535), ("float64", 9.969209968386869e36)])
def test_an_undeclared_fill_collar_of_any_type_is_masked_and_kept_out_of_resampling(tmp_path, dtype, fill):
    """Float exports leave their footprint's outside at -3.4e38 (float32's lowest) or -9999, integer
    ones at their type's extremes, NetCDF at 9.97e36, without declaring it. The collar is masked
    like a zero collar; its value never reaches the data: a coarse read averaged -3.4e38 into its
    rim pixels (-1e37, valid), and the registration found no tie point."""
    rng = np.random.default_rng(1)
    img = rng.uniform(5, 250, (600, 800)).astype(dtype)
    yy, xx = np.mgrid[0:600, 0:800]
    collar = (xx < 200 - yy / 3) | (yy > 500 + xx / 8)
    img[collar] = fill
    with RasterSource(_write(tmp_path / "f.tif", img), InputConfig(), "target") as s:
        assert s.fill_value == pytest.approx(fill) and s.fill_share == pytest.approx(collar.mean(), abs=0.01)
        data, valid = s.read_on_grid(s.grid)
        assert valid[collar].mean() < 1e-9 and valid[~collar].mean() > 0.999
        assert data.min() >= 0 and data[valid].min() >= 5 and data.max() <= 250
        coarse = s.grid.scaled(7.3)  # not an integer factor: GDAL's warper resamples, averaging
        c_data, c_valid = s.read_on_grid(coarse, resampling=Resampling.average)
        assert c_valid.mean() > 0.5 and c_data[c_valid].min() >= 5 and c_data.max() <= 250
        data, mask = s.read_native_window(Window(0, 0, 800, 600))
        assert (mask[collar] == 0).all() and (mask[~collar] > 0).all()
        assert s.output_nodata == pytest.approx(fill)


def test_a_constant_rim_that_is_no_fill_value_stays_ground(tmp_path):
    """Only values that tools write as fill make a collar: a flat rim at 17.5 (a saturated or
    clipped region, a lake at a constant level) is ground."""
    rng = np.random.default_rng(2)
    img = rng.uniform(5, 250, (300, 400)).astype(np.float32)
    img[:, :60] = 17.5
    with RasterSource(_write(tmp_path / "flat.tif", img), InputConfig(), "target") as s:
        assert s.fill_value is None and s.fill_share == 0.0 and s.read_on_grid(s.grid)[1].all()


def test_gdal_subdataset_names_are_split_around_their_file(tmp_path):
    """The file inside a GDAL subdataset name, wherever the driver puts it; a plain path, a drive
    letter or a URL is not a subdataset name."""
    from georeg.paths import split_subdataset

    (tmp_path / "S1.SAFE").mkdir()
    for name in ("S1.SAFE/manifest.safe", "scene.nc", "MTD_MSIL2A.xml"):
        (tmp_path / name).write_text("")
    cases = {
        'NETCDF:"scene.nc":VH': ('NETCDF:"', "scene.nc", '":VH'),
        "NETCDF:scene.nc:VH": ("NETCDF:", "scene.nc", ":VH"),
        'HDF5:"scene.nc"://grp/var': ('HDF5:"', "scene.nc", '"://grp/var'),
        "SENTINEL2_L2A:MTD_MSIL2A.xml:10m:EPSG_32611": ("SENTINEL2_L2A:", "MTD_MSIL2A.xml", ":10m:EPSG_32611"),
        "SENTINEL1_CALIB:SIGMA0:S1.SAFE/manifest.safe:IW_VH": ("SENTINEL1_CALIB:SIGMA0:", "S1.SAFE/manifest.safe",
                                                               ":IW_VH"),
        'NETCDF:"/vsicurl/https://example.com/a.nc":VH': ('NETCDF:"', "/vsicurl/https://example.com/a.nc", '":VH'),
    }
    for path, want in cases.items():
        assert split_subdataset(path, tmp_path) == want, path
    for plain in ("scene.nc", "C:/data/scene.tif", "https://example.com/a.tif", "s3://bucket/a.tif"):
        assert split_subdataset(plain, tmp_path) is None, plain


def test_huge_float_specks_are_missing_even_under_another_declared_nodata(tmp_path):
    """Float fill of magnitude 1e30 or more is never data: scattered -3.4e38 pixels in a raster that
    declares nodata 0 come back invalid (and filled), in native and resampled reads alike."""
    rng = np.random.default_rng(4)
    img = rng.uniform(5, 250, (300, 400)).astype(np.float32)
    specks = rng.random(img.shape) < 0.002
    img[specks] = -3.4028235e38
    with RasterSource(_write(tmp_path / "specks.tif", img, nodata=0), InputConfig(), "target") as s:
        data, valid = s.read_on_grid(s.grid)
        # filled from their neighbours, but for those on the raster's edge
        assert valid.mean() > 0.999 and data[valid].min() >= 5 and np.abs(data).max() <= 250
        c_data, c_valid = s.read_on_grid(s.grid.scaled(3.7), resampling=Resampling.average)
        assert c_valid.mean() > 0.9 and np.abs(c_data).max() <= 250


def test_a_colour_with_one_channel_at_the_fill_value_stays_data(tmp_path):
    """An RGB raster with an undeclared zero collar (a Sentinel-2 true-colour image): pixels inside
    whose red alone is 0 (deep blue water) are data; only where every band holds the fill is it
    missing."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(1, 256, (3, 300, 400)).astype(np.uint8)
    rgb[:, :, :50] = 0  # the collar
    rgb[0, 100:102, 200:204] = 0  # red at 0 inside: 8 px, with the black one under 1e-4 of the raster
    rgb[:, 150, 300] = 0  # one black pixel inside: fill, filled as a hole
    with RasterSource(_write(tmp_path / "tci.tif", rgb), InputConfig(), "reference") as s:
        assert s.fill_value == 0 and s.fill_share == pytest.approx(50 / 400, abs=0.01)
        data, valid = s.read_on_grid(s.grid)
        assert not valid[:, :50].any() and valid[100:102, 200:204].all() and valid[:, 52:].mean() > 0.999
        # their own colour's luminance, not a hole filled from the neighbours
        lum = 0.587 * rgb[1, 100:102, 200:204] + 0.114 * rgb[2, 100:102, 200:204]
        assert np.allclose(data[100:102, 200:204], lum, atol=0.01)


def test_a_coarse_read_of_a_large_raster_reads_its_overview(tmp_path, monkeypatch):
    """Averaging onto a coarse grid reads the finest overview no coarser than the grid (a COG's, a
    JPEG 2000's levels) once the full-resolution read would be large: GDAL's warper averages every
    source pixel it is given. The values and the nodata mask stay those of the full-resolution read."""
    import georeg.reads as reading

    yy, xx = np.mgrid[0:512, 0:512]
    img = (100 + 60 * np.sin(xx / 23.0) * np.cos(yy / 31.0)).astype(np.uint8)
    img[:, :64] = 0
    path = tmp_path / "ovr.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=T, nodata=0, tiled=True) as d:
        d.write(img[None])
        d.build_overviews([2, 4, 8], Resampling.average)
    reads = {}
    for limit in (10**12, 64 * 64):
        monkeypatch.setattr(reading, "OVERVIEW_MIN_PX", limit)
        with RasterSource(str(path), InputConfig(), "reference") as s:
            g = s.grid.scaled(5.0)  # 103 px: overview 4 (128 px) is the finest no coarser than it
            used = s._overview_for(g)
            reads[limit] = s.read_on_grid(g, resampling=Resampling.average)
            assert used is s.ds if limit == 10**12 else used.width == 128
            assert s._overview_for(s.grid.scaled(1.5)) is s.ds  # under 2x coarser: the raster itself
    (full, fv), (ovr, ov) = reads.values()
    assert (fv == ov).mean() > 0.98 and not ov[:, :12].any()
    both = fv & ov
    assert np.abs(full[both] - ovr[both]).mean() < 1.0


def test_pixels_left_out_on_a_coarser_grid_are_left_out_of_every_read(tmp_path):
    """The pipeline's clouds (`RasterSource.excluded`): bool arrays on grids of their own, each
    looked up at the read grid's pixel centres; several add up, and an empty list reads all."""
    src = _write(tmp_path / "a.tif", np.full((40, 60), 7, np.uint8))
    with RasterSource(src, InputConfig(), "reference") as r:
        coarse = r.grid.scaled(4)  # 15 x 10 cells of 4 x 4 px
        left_out = np.zeros((10, 15), bool)
        left_out[2, 3] = True  # rows 8-11, cols 12-15 of the raster
        moved = Grid(coarse.transform @ Affine.translation(5, 5), 15, 10, coarse.crs)  # 20 px right and down
        r.excluded = [(coarse, left_out), (moved, left_out)]
        data, valid = r.read_on_grid(r.grid)
        assert (data == 7).all()
        want = np.ones((40, 60), bool)
        want[8:12, 12:16] = want[28:32, 32:36] = False
        assert (valid == want).all()
        # a window of the grid: the same pixels, placed by the map coordinates
        _, part = r.read_on_grid(r.grid, Window(10, 6, 10, 10))
        assert (part == want[6:16, 10:20]).all()
        r.excluded = []
        assert r.read_on_grid(r.grid)[1].all()
