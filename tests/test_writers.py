"""georeg.writers: the corrected raster (new geotransform or resampled), the tie points, the
report and the PNG, on small in-memory inputs."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import Point

from georeg.config import InputConfig, OutputConfig
from georeg.raster import RasterSource
from georeg.writers import write_png, write_report, write_resampled, write_tie_points, write_with_transform

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


def test_cog_with_creation_options(tmp_path):
    src = _source(tmp_path)
    with RasterSource(src, InputConfig(), "target") as s:
        opts = OutputConfig(cog=True, creation_options=("BLOCKSIZE=256",))
        write_with_transform(s, str(tmp_path / "cog.tif"), T, opts)
    with rasterio.open(tmp_path / "cog.tif") as b:
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_tie_points_report_and_png(tmp_path):
    gdf = gpd.GeoDataFrame({"residual_px": [0.5, 1.5], "inlier": [True, False]},
                           geometry=[Point(500010, 3999990), Point(500100, 3999900)], crs="EPSG:32633")
    write_tie_points(gdf, str(tmp_path / "tp.gpkg"), "2026-01-01T00:00:00.000Z")
    import sqlite3

    con = sqlite3.connect(tmp_path / "tp.gpkg")
    assert con.execute("SELECT last_change FROM gpkg_contents").fetchall() == [("2026-01-01T00:00:00.000Z",)]
    con.close()
    back = gpd.read_file(tmp_path / "tp.gpkg", layer="tie_points")
    assert len(back) == 2 and back.crs.to_epsg() == 32633 and list(back.inlier) == [True, False]
    write_report({"a": np.float32(1.5), "b": np.arange(3), "c": Path("x/y")}, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": "x/y"}
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, 10:] = (255, 0, 128)
    write_png(rgb, str(tmp_path / "q.png"))
    from PIL import Image

    assert Image.open(tmp_path / "q.png").convert("RGB").getpixel((20, 5)) == (255, 0, 128)
