"""`georeg demo` runs on a fresh install: its data ship inside the package (no ../shared needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import georeg

DEMO = Path(georeg.__file__).resolve().parent / "demo"


def test_demo_data_are_small_and_attributed():
    files = sorted(p.name for p in DEMO.iterdir())
    assert files == ["README.md", "s1_vh.tif", "s2_rgb.tif"]
    assert sum((DEMO / f).stat().st_size for f in files) <= 1_000_000
    assert "Contains modified Copernicus Sentinel data 2020" in (DEMO / "README.md").read_text()


def test_demo_registers_the_bundled_pair_without_shared_data(tmp_path):
    env = {**os.environ, "GEOREG_SHARED_DATA": str(tmp_path / "no-shared-data-here")}
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-c", "from georeg._entry import main; main()", "demo", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "quality: reliable" in r.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["s1_vh_registered.tif", "s1_vh_registered_quicklook.png", "s1_vh_registered_report.json",
                     "s1_vh_registered_tiepoints.gpkg"]
    rep = json.loads((out / "s1_vh_registered_report.json").read_text())
    # the target was moved by (+3.5, -2.0) px; the pair's own alignment adds about a pixel, mostly in x
    dx, dy = rep["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx + 3.5) < 2.0 and abs(dy - 2.0) < 2.0, (dx, dy)
    # a second run refuses to replace the outputs unless told to
    r = subprocess.run([sys.executable, "-c", "from georeg._entry import main; main()", "demo", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2 and "--overwrite" in r.stderr
