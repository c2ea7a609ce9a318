"""georeg.writers: the corrected raster (new geotransform or resampled), the tie points, the
report and the PNG, on small in-memory inputs."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from georeg.config import InputConfig, OutputConfig
from georeg.gpkg import TiePointTable, write_gpkg
from georeg.raster import RasterSource
from georeg.writers import write_png, write_report, write_resampled, write_with_transform

T = Affine(10, 0, 500000, 0, -10, 4000000)


def _source(tmp_path) -> str:
    arr = (np.arange(40 * 50) % 251).astype(np.uint8).reshape(1, 40, 50)
    p = tmp_path / "src.tif"
    with rasterio.open(p, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=T, nodata=255) as d:
        d.write(arr)
    return str(p)


def test_new_geotransform_keeps_the_pixels(tmp_path):
    src = _source(tmp_path)
    new = T @ Affine.translation(2, -1)
    with RasterSource(src, InputConfig(), "target") as s:
        write_with_transform(s, str(tmp_path / "out.tif"), new, OutputConfig(compress="zstd"), tags={"X": "1"})
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out.tif") as b:
        assert (a.read() == b.read()).all() and b.transform == new
        assert b.tags()["X"] == "1" and b.profile["compress"].lower() == "zstd"


def test_identity_resampling_reproduces_the_pixels(tmp_path):
    src = _source(tmp_path)
    with RasterSource(src, InputConfig(), "target") as s:
        write_resampled(s, str(tmp_path / "out.tif"), s.grid, lambda xy: xy, OutputConfig(resampling="nearest"))
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out.tif") as b:
        assert (a.read() == b.read()).all() and b.nodata == 255


def test_both_writers_keep_the_bands_metadata(tmp_path):
    """Descriptions, units and each band's own tags (a polarisation, a wavelength) go with the
    pixels; GDAL's cached statistics, which a resampled copy no longer has, do not."""
    src = _source(tmp_path)
    with rasterio.open(src, "r+") as d:
        d.set_band_description(1, "VV")
        d.set_band_unit(1, "dB")
        d.update_tags(1, POLARISATION="VV", WAVELENGTH="0.0555", STATISTICS_MEAN="125.0")
        d.update_tags(MISSION="S1A")
    with RasterSource(src, InputConfig(), "target") as s:
        write_with_transform(s, str(tmp_path / "moved.tif"), T @ Affine.translation(2, -1), OutputConfig())
        write_resampled(s, str(tmp_path / "resampled.tif"), s.grid, lambda xy: xy + 0.5, OutputConfig())
    for name in ("moved.tif", "resampled.tif"):
        with rasterio.open(tmp_path / name) as b:
            assert b.descriptions == ("VV",) and b.units == ("dB",) and b.tags()["MISSION"] == "S1A", name
            tags = b.tags(1)
            assert tags["POLARISATION"] == "VV" and tags["WAVELENGTH"] == "0.0555", (name, tags)
            assert not any(k.startswith("STATISTICS_") for k in tags), (name, tags)


@pytest.mark.parametrize("nodata, fill", [(-9999.0, -9999.0), (None, -3.4028235e38)])
@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_resampling_never_blends_nodata_into_the_data(tmp_path, nodata, fill, resampling):
    """A float raster whose left part is nodata (declared -9999, or an undeclared -3.4e38 collar)
    resampled at a fractional offset: the pixels along the data's edge interpolate the valid pixels
    only (their weights renormalised), so every valid output pixel lies within the data's range,
    and the nodata the output declares is the fill."""
    yy, xx = np.mgrid[0:60, 0:80]
    arr = (50 + 20 * np.sin(xx / 5.0) + 10 * np.cos(yy / 7.0)).astype(np.float32)
    arr[:, :25] = fill
    p = tmp_path / "f.tif"
    with rasterio.open(p, "w", driver="GTiff", width=80, height=60, count=1, dtype="float32", crs="EPSG:32633",
                       transform=T, nodata=nodata) as d:
        d.write(arr[None])
    with RasterSource(str(p), InputConfig(), "target") as s:
        assert s.output_nodata == pytest.approx(fill)
        write_resampled(s, str(tmp_path / "out.tif"), s.grid, lambda xy: xy + (0.4, 0.3),
                        OutputConfig(resampling=resampling))
    with rasterio.open(tmp_path / "out.tif") as o:
        out, valid = o.read(1), o.read_masks(1) > 0
        assert o.nodata == pytest.approx(fill)
    assert valid[:, 27:].all() and not valid[:, :24].any()
    assert out[valid].min() >= 20 and out[valid].max() <= 80, (out[valid].min(), out[valid].max())


def test_cog_with_creation_options(tmp_path):
    src = _source(tmp_path)
    with RasterSource(src, InputConfig(), "target") as s:
        opts = OutputConfig(cog=True, creation_options=("BLOCKSIZE=256",))
        write_with_transform(s, str(tmp_path / "cog.tif"), T, opts)
    with rasterio.open(tmp_path / "cog.tif") as b:
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def _table(crs, n=3):
    rng = np.random.default_rng(1)
    cols = {"id": np.arange(n, dtype=np.int32), "direction": np.array(["forward", "backward", "forward"][:n]),
            "residual_px": rng.random(n), "inlier": np.array([True, False, True][:n])}
    return TiePointTable(cols, 500000 + rng.random(n) * 1000, 3999000 + rng.random(n) * 1000, crs)


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326", "+proj=tmerc +lon_0=13.3 +k=0.9999 +ellps=GRS80",
                                 None])
def test_geopackage_reads_back_through_gdal(tmp_path, crs):
    """georeg writes the GeoPackage itself (sqlite3): GDAL must read back the same layer, with the
    CRS (EPSG, WGS 84, one without a code, none for pictures), the column types and the values."""
    import pyogrio
    from rasterio.crs import CRS

    table = _table(CRS.from_user_input(crs) if crs else None)
    path = tmp_path / "tp.gpkg"
    write_gpkg(table, str(path), "2026-01-01T00:00:00.000Z")
    info = pyogrio.read_info(path, layer="tie_points")
    assert info["geometry_type"] == "Point" and info["features"] == 3
    back = gpd.read_file(path, layer="tie_points")
    assert list(back.columns) == ["id", "direction", "residual_px", "inlier", "geometry"]
    assert back["id"].dtype == np.int32 and back["inlier"].dtype == bool and back["residual_px"].dtype == np.float64
    assert list(back.direction) == ["forward", "backward", "forward"] and list(back.inlier) == [True, False, True]
    assert np.array_equal(back.residual_px.to_numpy(), table.columns["residual_px"])
    assert np.array_equal(back.geometry.x.to_numpy(), table.x) and np.array_equal(back.geometry.y.to_numpy(), table.y)
    if crs is None:
        assert back.crs is None
    else:
        assert CRS.from_wkt(back.crs.to_wkt()) == CRS.from_user_input(crs)
    # the API's GeoDataFrame is the same table
    attrs = table.to_geodataframe().drop(columns="geometry")
    assert attrs.equals(back.drop(columns="geometry").astype(attrs.dtypes))


def test_geopackage_is_reproducible_and_can_be_empty(tmp_path):
    import sqlite3

    from rasterio.crs import CRS

    for name in ("a.gpkg", "b.gpkg"):
        write_gpkg(_table(CRS.from_epsg(32633)), str(tmp_path / name), "2026-01-01T00:00:00.000Z")
    assert (tmp_path / "a.gpkg").read_bytes() == (tmp_path / "b.gpkg").read_bytes()
    con = sqlite3.connect(tmp_path / "a.gpkg")
    assert con.execute("SELECT last_change FROM gpkg_contents").fetchall() == [("2026-01-01T00:00:00.000Z",)]
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    con.close()
    write_gpkg(_table(CRS.from_epsg(32633), n=0), str(tmp_path / "empty.gpkg"))
    assert len(gpd.read_file(tmp_path / "empty.gpkg", layer="tie_points")) == 0


def test_report_and_png(tmp_path):
    write_report({"a": np.float32(1.5), "b": np.arange(3), "c": Path("x/y")}, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": "x/y"}
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, 10:] = (255, 0, 128)
    write_png(rgb, str(tmp_path / "q.png"))
    from PIL import Image

    assert Image.open(tmp_path / "q.png").convert("RGB").getpixel((20, 5)) == (255, 0, 128)


def test_geopackage_that_cannot_be_written_is_georegs_error(tmp_path):
    from rasterio.crs import CRS

    from georeg.errors import OutputWriteError

    with pytest.raises(OutputWriteError, match="could not write the tie-point GeoPackage"):
        write_gpkg(_table(CRS.from_epsg(32633)), str(tmp_path / "no_such_folder" / "tp.gpkg"))


@pytest.mark.parametrize("cog", [False, True])
def test_compression_on_two_threads_writes_the_same_pixels(tmp_path, monkeypatch, cog):
    import georeg.writers as writers

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 4000, (2, 1100, 1030), dtype=np.uint16)  # several 512 px tiles
    src = tmp_path / "big.tif"
    with rasterio.open(src, "w", driver="GTiff", width=1030, height=1100, count=2, dtype="uint16",
                       crs="EPSG:32633", transform=T) as d:
        d.write(arr)
    seen = []
    opened = writers._open_for_writing
    monkeypatch.setattr(writers, "_open_for_writing", lambda path, prof: seen.append(prof) or opened(path, prof))
    for threads in (1, 2):
        monkeypatch.setattr(writers, "compression_threads", lambda n=threads: n)
        with RasterSource(str(src), InputConfig(), "target") as s:
            write_with_transform(s, str(tmp_path / f"out{threads}.tif"), T, OutputConfig(cog=cog))
        with rasterio.open(tmp_path / f"out{threads}.tif") as b:
            assert (b.read() == arr).all()
    assert "num_threads" not in seen[0] and seen[1]["num_threads"] == "2"


def test_compression_threads_follow_the_process_and_the_users_option(monkeypatch):
    import georeg.runtime as runtime
    from georeg.writers import _profile

    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "_pairs_side_by_side", False)
    assert runtime.compression_threads() == 2
    monkeypatch.setattr(runtime, "_pairs_side_by_side", True)  # a batch worker: its pairs use the cores
    assert runtime.compression_threads() == 1
    monkeypatch.setattr(runtime, "_pairs_side_by_side", False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 1)
    assert runtime.compression_threads() == 1

    class Src:  # what _profile reads of a RasterSource
        class ds:
            count, dtypes = 1, ["uint8"]

    import georeg.writers as writers

    grid = type("G", (), {"crs": None, "transform": T, "width": 8, "height": 8})()
    monkeypatch.setattr(writers, "compression_threads", lambda: 2)
    assert _profile(Src, grid, "deflate", None)["num_threads"] == "2"
    prof = _profile(Src, grid, "deflate", None, ("NUM_THREADS=1",))  # the user's option wins
    assert prof["NUM_THREADS"] == "1" and "num_threads" not in prof
    assert "num_threads" not in _profile(Src, grid, "none", None)
