"""georeg batch --stac: targets paired with the reference item they overlap, assets by key or band name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping
from synthetic import synthetic_pair

from georeg.cli import georeg


def _footprint(path: Path, shift_deg: float = 0.0) -> dict:
    with rasterio.open(path) as d:
        g = transform_geom(d.crs, "EPSG:4326", mapping(box(*d.bounds)))
    g["coordinates"] = [[[x + shift_deg, y] for x, y in ring] for ring in g["coordinates"]]
    return g


def _item(item_id: str, when: str, geometry: dict, assets: dict) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": geometry,
            "properties": {"datetime": when}, "assets": assets, "links": []}


@pytest.fixture
def items(tmp_path):
    ref, tgt = tmp_path / "s2_red.tif", tmp_path / "s1_vh.tif"
    synthetic_pair(str(ref), str(tgt), size=320, seed=5,
                   new_to_old=np.array([[1, 0, 6.0], [0, 1, -4.0], [0, 0, 1.0]]))
    s2 = _item("S2A_T33", "2024-05-01T10:00:00Z", _footprint(ref),
               {"red": {"href": "s2_red.tif", "eo:bands": [{"name": "B04", "common_name": "red"}]}})
    s2_late = _item("S2B_T33", "2024-08-01T10:00:00Z", _footprint(ref),
                    {"B04": {"href": "s2_red.tif"}})
    s1 = _item("S1A_IW", "2024-05-03T05:00:00Z", _footprint(tgt), {"vh": {"href": "s1_vh.tif"}})
    s1_far = _item("S1A_far", "2024-05-03T05:00:00Z", _footprint(tgt, 40.0), {"vh": {"href": "s1_vh.tif"}})
    (tmp_path / "s2.json").write_text(json.dumps({"type": "FeatureCollection", "features": [s2, s2_late]}))
    (tmp_path / "s1.json").write_text(json.dumps([s1, s1_far]))
    return tmp_path


def test_batch_from_stac_items(items):
    out = items / "out"
    r = CliRunner().invoke(georeg, ["batch", "--stac", str(items / "s2.json"), "--stac", str(items / "s1.json"),
                                    "--reference-asset", "B04", "--target-asset", "vh", "-o", str(out),
                                    "--workers", "1", "--matcher", "baseline"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "summary.csv").read_text().splitlines()))
    # one pair: the far S1 item overlaps no S2 item; B04 is found by band name in the first S2 item
    assert [(Path(x["reference"]).name, Path(x["target"]).name, x["status"]) for x in rows] == \
        [("s2_red.tif", "s1_vh.tif", "ok")]
    # the summary carries the shift: the target shows features 6 px right and 4 px up of the truth
    assert abs(float(rows[0]["shift_x_px"]) - 6.0) < 0.3 and abs(float(rows[0]["shift_y_px"]) + 4.0) < 0.3
    assert abs(float(rows[0]["shift_x_map"]) - 60.0) < 3 and abs(float(rows[0]["shift_y_map"]) - 40.0) < 3


def test_stac_needs_both_assets(items):
    r = CliRunner().invoke(georeg, ["batch", "--stac", str(items / "s2.json"), "--reference-asset", "B04",
                                    "--target-asset", "vv", "-o", str(items / "out")])
    assert r.exit_code == 2 and "with a 'vv' asset" in r.output, r.output
    r = CliRunner().invoke(georeg, ["batch", "--stac", str(items / "s2.json"), "-o", str(items / "out")])
    assert r.exit_code == 2 and "--reference-asset" in r.output
