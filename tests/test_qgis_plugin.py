"""The QGIS processing plugin in a real, headless QGIS (Debian's 3.22: /usr/bin/python3 and
qgis_process.bin). Skipped with a reason where QGIS is not installed; .ci/run installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins" / "qgis"
QGIS_PY = "/usr/bin/python3"
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


def _qgis_ok() -> bool:
    if not os.path.exists(QGIS_PY):
        return False
    return subprocess.run([QGIS_PY, "-c", "import qgis.core"], capture_output=True).returncode == 0


pytestmark = [pytest.mark.data,
              pytest.mark.skipif(not _qgis_ok(), reason="QGIS is not installed (apt-get install python3-qgis "
                                                        "qgis-providers qgis); .ci/run installs it")]

PRELUDE = """
import os, sys, json
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, {examples!r})
from qgis_processing import start_qgis  # the example's start-up: QGIS, Processing, the georeg provider
from qgis.core import QgsApplication, QgsProcessingFeedback, QgsVectorLayer, QgsRasterLayer
app, provider = start_qgis()
import processing
"""


def _env(tmp_path, python: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.pop("GEOREG_PYTHON", None)
    if python is not None:
        env["GEOREG_PYTHON"] = python
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "xdg")
    (tmp_path / "xdg").mkdir(mode=0o700, exist_ok=True)
    env["QGIS_CUSTOM_CONFIG_PATH"] = str(tmp_path / "qgis_profile")
    env["QT_QPA_PLATFORM"] = "offscreen"
    # QGIS computes a raster layer's statistics and GDAL keeps them in a .aux.xml beside the file:
    # the tests' inputs are ../shared/data, which they must leave as they found it
    env["GDAL_PAM_ENABLED"] = "NO"
    # QGIS embeds the system Python: keep virtual environments and pyenv off its path
    env["PATH"] = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    for k in list(env):
        if k.startswith("PYENV"):
            env.pop(k)
    return env


def _qgis(tmp_path, body: str, python: str | None = sys.executable, timeout=600):
    script = (PRELUDE.format(examples=str(REPO / "examples")) + textwrap.dedent(body)
              + "\nprovider = None\napp.exitQgis()\n")
    out = subprocess.run([QGIS_PY, "-c", script], capture_output=True, text=True, timeout=timeout,
                         env=_env(tmp_path, python))
    results = [json.loads(ln[7:]) for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    return out, results


def test_provider_registers_and_lists_algorithms(tmp_path):
    out, res = _qgis(tmp_path, """
        algs = sorted(a.id() for a in provider.algorithms())
        print("RESULT " + json.dumps({"algs": algs, "help": [bool(a.shortHelpString()) for a in provider.algorithms()],
                                      "id": provider.id()}))
    """)
    assert res, out.stderr
    assert res[0]["algs"] == ["georeg:apply", "georeg:batch", "georeg:register"]
    assert all(res[0]["help"]) and res[0]["id"] == "georeg"


def test_every_georeg_option_is_a_parameter_with_georeg_s_default(tmp_path):
    """The register algorithm's advanced parameters come from 'georeg options --json': an option
    added to georeg appears here without a change to the plugin."""
    from georeg.options import OPTIONS

    out, res = _qgis(tmp_path, """
        alg = QgsApplication.processingRegistry().algorithmById("georeg:register")
        params = {}
        for p in alg.parameterDefinitions():
            d = p.defaultValue()
            opts = p.options() if hasattr(p, "options") else None
            params[p.name()] = {"default": d if isinstance(d, (int, float, str, bool, type(None))) else str(d),
                                "options": list(opts) if opts else None}
        print("RESULT " + json.dumps(params))
    """)
    assert res, out.stderr[-3000:]
    params = res[0]
    dedicated = {"model": "MODEL", "search": "SEARCH", "matcher": "MATCHER", "max_shift": "MAX_SHIFT",
                 "modality": "MODALITY", "threshold": "THRESHOLD", "align_grids": "ALIGN_GRIDS",
                 "ref_band": "REFERENCE_BAND", "target_band": "TARGET_BAND"}
    for o in OPTIONS:
        if o.name == "overwrite":
            continue
        key = dedicated.get(o.name, "OPT_" + o.name.upper())
        assert key in params, f"georeg option {o.name} has no QGIS parameter"
        p = params[key]
        if o.choices:
            assert sorted(p["options"]) == sorted(o.choices) and p["options"][p["default"]] == o.default, o.name
        elif o.kind in ("int", "float") and o.default is not None:
            assert p["default"] == o.default, o.name
        elif o.kind in ("flag", "switch"):
            assert bool(p["default"]) == o.default, o.name


def test_register_through_processing_run_and_apply(volkov, tmp_path):
    second = tmp_path / "176_S1_other.tif"
    with rasterio.open(volkov / "176_S1_VH.tif") as s:
        prof = s.profile
        with rasterio.open(second, "w", **prof) as d:
            d.write(255 - s.read())
    out, res = _qgis(tmp_path, f"""
        class Feedback(QgsProcessingFeedback):
            infos = []

            def pushInfo(self, info):
                self.infos.append(info)
                super().pushInfo(info)
        fb = Feedback()
        r = processing.run("georeg:register", {{"REFERENCE": {str(volkov / '176_S2_RGB.tif')!r},
            "TARGET": {str(volkov / '176_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'out.tif')!r},
            "TIE_POINTS": {str(tmp_path / 'tp.gpkg')!r}, "REPORT": {str(tmp_path / 'r.json')!r},
            "MATCHER": 1, "OPT_KEYPOINTS": 96, "OPT_REFINE": False}}, feedback=fb)
        tp = QgsVectorLayer(r["TIE_POINTS"], "tp", "ogr")
        a = processing.run("georeg:apply", {{"REPORT": r["REPORT"], "RASTER": {str(second)!r},
            "OUTPUT": {str(tmp_path / 'other.tif')!r}}})
        try:  # a bad value is named as the dialog names it (the flag), not by the config's field
            processing.run("georeg:register", {{"REFERENCE": {str(volkov / '176_S2_RGB.tif')!r},
                "TARGET": {str(volkov / '176_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'bad.tif')!r},
                "OPT_TILE_SIZE": 100}})
            bad = None
        except Exception as exc:
            bad = str(exc)
        print("RESULT " + json.dumps({{"valid": tp.isValid(), "n": tp.featureCount(),
            "fields": [f.name() for f in tp.fields()], "out": r["OUTPUT"], "apply": a["OUTPUT"],
            "infos": fb.infos, "bad": bad}}))
        del tp
    """)
    assert res, out.stderr[-3000:]
    r = res[0]
    # the log tells how the target was read
    assert any(i.startswith("target read as sar (from its pixels: texture") and i.endswith("matched with baseline")
               for i in r["infos"]), r["infos"]
    assert any(re.match(r"(reliable|uncertain); the model moves up to \d+\.\d px at the corners", i)
               for i in r["infos"]), r["infos"]
    assert r["valid"] and r["n"] > 50 and "residual_px" in r["fields"] and "inlier" in r["fields"]
    assert r["bad"] and "--tile-size must be at least 4x --patch-size (256); got 100" in r["bad"], r["bad"]
    assert not (tmp_path / "bad.tif").exists()
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["matcher"]["name"] == "baseline"  # the enum parameter reached the registration
    # options the plugin knows only from georeg's option table reach it too
    assert rep["config"]["matching"]["keypoints_per_tile"] == 96 and rep["config"]["matching"]["refine"] is False
    with rasterio.open(volkov / "176_S1_VH.tif") as t, rasterio.open(r["out"]) as o, rasterio.open(r["apply"]) as a:
        assert o.transform != t.transform  # the georeferencing was corrected
        assert np.allclose(list(o.transform)[:6], rep["model"]["corrected_transform"], atol=1e-6)
        assert a.transform.almost_equals(o.transform)  # the second file got the same correction


def test_a_crs_set_in_qgis_reaches_georeg_for_a_file_without_one(volkov, tmp_path):
    """A PNG with a world file and no .prj, whose CRS the user set in QGIS: the plugin passes the
    layer's CRS (--target-crs, and apply's --crs); a file with a CRS of its own keeps it."""
    from PIL import Image

    with rasterio.open(volkov / "176_S1_VH.tif") as s:
        arr, t, crs = s.read(1), s.transform, s.crs
    for name, pixels in (("vh", arr), ("other", 255 - arr)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.pgw").write_text(f"{t.a}\n{t.d}\n{t.b}\n{t.e}\n{t.c + t.a / 2}\n{t.f + t.e / 2}\n")
    out, res = _qgis(tmp_path, f"""
        from qgis.core import QgsCoordinateReferenceSystem, QgsProject
        layers = {{}}
        for name in ("vh", "other"):
            layer = QgsRasterLayer({str(tmp_path)!r} + f"/{{name}}.png", name)
            layer.setCrs(QgsCoordinateReferenceSystem({crs.to_string()!r}))
            QgsProject.instance().addMapLayer(layer)
            layers[name] = layer
        r = processing.run("georeg:register", {{"REFERENCE": {str(volkov / '176_S2_RGB.tif')!r},
            "TARGET": layers["vh"], "OUTPUT": {str(tmp_path / 'out.tif')!r}, "REPORT": {str(tmp_path / 'r.json')!r},
            "MATCHER": 1, "OPT_KEYPOINTS": 96, "OPT_REFINE": False}})
        a = processing.run("georeg:apply", {{"REPORT": r["REPORT"], "RASTER": layers["other"],
            "OUTPUT": {str(tmp_path / 'other.tif')!r}}})
        print("RESULT " + json.dumps({{"out": r["OUTPUT"], "apply": a["OUTPUT"]}}))
    """)
    assert res, out.stderr[-3000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["target"]["crs_assigned"] and not rep["reference"]["crs_assigned"]
    assert rep["config"]["target"]["crs"] == crs.to_string() and rep["config"]["reference"]["crs"] is None
    with rasterio.open(res[0]["out"]) as o, rasterio.open(res[0]["apply"]) as a:
        assert o.crs == crs and a.crs == crs and a.transform.almost_equals(o.transform)
        assert np.allclose(list(o.transform)[:6], rep["model"]["corrected_transform"], atol=1e-6)


@pytest.mark.slow  # the processing.run test covers the same algorithm in the default run
def test_register_through_qgis_process(volkov, tmp_path):
    if not os.path.exists(QGIS_PROCESS):
        pytest.skip("qgis_process.bin is not installed (apt-get install qgis)")
    plugdir = tmp_path / "qgis_profile" / "profiles" / "default" / "python" / "plugins"
    plugdir.mkdir(parents=True)
    shutil.copytree(PLUGINS / "georeg_qgis", plugdir / "georeg_qgis")
    env = _env(tmp_path, sys.executable)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "georeg_qgis"], env=env, capture_output=True, timeout=300)
    out = subprocess.run([QGIS_PROCESS, "--json", "run", "georeg:register", "--",
                          f"REFERENCE={volkov / '268_S2_RGB.tif'}", f"TARGET={volkov / '268_S1_VH.tif'}",
                          f"OUTPUT={tmp_path / 'out.tif'}", f"TIE_POINTS={tmp_path / 'tp.gpkg'}"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout[out.stdout.index("{"):])["results"]
    assert Path(res["OUTPUT"]).exists()
    import geopandas as gpd

    assert len(gpd.read_file(res["TIE_POINTS"])) > 50


def test_cancel_stops_and_leaves_no_output(volkov, tmp_path):
    (tmp_path / "out").mkdir()
    out, res = _qgis(tmp_path, f"""
        import threading
        from qgis.core import QgsProcessingException
        fb = QgsProcessingFeedback()
        threading.Timer(4.0, fb.cancel).start()
        try:
            processing.run("georeg:register", {{"REFERENCE": {str(volkov / '050_S2_RGB.tif')!r},
                "TARGET": {str(volkov / '050_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'out' / 'c.tif')!r},
                "REPORT": {str(tmp_path / 'out' / 'c.json')!r}}}, feedback=fb)
            print("RESULT " + json.dumps({{"cancelled": False}}))
        except QgsProcessingException as exc:
            print("RESULT " + json.dumps({{"cancelled": True, "msg": str(exc)}}))
    """)
    assert res and res[0]["cancelled"], out.stderr[-2000:]
    assert "cancelled" in res[0]["msg"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


@pytest.mark.slow  # tests/test_server.py covers the server's forwarding and Ctrl-C in the default run
def test_register_and_cancel_through_a_running_georeg_serve(volkov, tmp_path):
    """With 'georeg serve' running, the plugin's runs go to it (no 2 s of imports each): a result
    as usual, and a cancel that stops the server's child and leaves nothing."""
    from helpers import georeg_server

    env = _env(tmp_path, sys.executable)
    env["GEOREG_SERVER"] = "on"
    (tmp_path / "out").mkdir()
    with georeg_server(env, tmp_path / "serve.log"):
        proc = subprocess.run([QGIS_PY, "-c", PRELUDE.format(examples=str(REPO / "examples")) + textwrap.dedent(f"""
            import threading, time
            from qgis.core import QgsProcessingException
            t = time.time()
            r = processing.run("georeg:register", {{"REFERENCE": {str(volkov / '176_S2_RGB.tif')!r},
                "TARGET": {str(volkov / '176_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'a.tif')!r}}})
            print("RESULT " + json.dumps({{"out": r["OUTPUT"], "s": time.time() - t}}))
            fb = QgsProcessingFeedback()
            threading.Timer(1.5, fb.cancel).start()
            try:
                processing.run("georeg:register", {{"REFERENCE": {str(volkov / '050_S2_RGB.tif')!r},
                    "TARGET": {str(volkov / '050_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'out' / 'c.tif')!r}}},
                    feedback=fb)
                print("RESULT " + json.dumps({{"cancelled": False}}))
            except QgsProcessingException as exc:
                print("RESULT " + json.dumps({{"cancelled": True, "msg": str(exc)}}))
            provider = None
            app.exitQgis()
        """)], capture_output=True, text=True, timeout=600, env=env)
    res = [json.loads(ln[7:]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(res) == 2, proc.stderr[-3000:]
    assert Path(res[0]["out"]).exists()
    assert res[1]["cancelled"] and "cancelled" in res[1]["msg"], res
    assert [p.name for p in (tmp_path / "out").iterdir()] == []
    assert (tmp_path / "serve.log").read_text().count("request ") == 2  # both ran in the server


@pytest.mark.parametrize("python,expected", [(None, "no georeg environment is configured"),
                                             ("/nonexistent/bin/python", "does not exist or is not executable"),
                                             ("/usr/bin/python3", "cannot import georeg")])
def test_missing_or_broken_environment(volkov, tmp_path, python, expected):
    out, res = _qgis(tmp_path, f"""
        from qgis.core import QgsProcessingException
        try:
            processing.run("georeg:register", {{"REFERENCE": {str(volkov / '176_S2_RGB.tif')!r},
                "TARGET": {str(volkov / '176_S1_VH.tif')!r}, "OUTPUT": {str(tmp_path / 'x.tif')!r}}})
            print("RESULT " + json.dumps({{"msg": ""}}))
        except QgsProcessingException as exc:
            print("RESULT " + json.dumps({{"msg": str(exc)}}))
    """, python=python)
    assert res and expected in res[0]["msg"], (res, out.stderr[-2000:])
    assert not (tmp_path / "x.tif").exists()


def test_zip_installs_into_a_fresh_profile(tmp_path):
    if not os.path.exists(QGIS_PROCESS):
        pytest.skip("qgis_process.bin is not installed (apt-get install qgis)")
    built = subprocess.run([sys.executable, str(PLUGINS / "build_zip.py"), "--out", str(tmp_path / "dist")],
                           capture_output=True, text=True, check=True).stdout.strip()
    plugdir = tmp_path / "qgis_profile" / "profiles" / "default" / "python" / "plugins"
    plugdir.mkdir(parents=True)
    with zipfile.ZipFile(built) as z:
        assert "georeg_qgis/metadata.txt" in z.namelist()
        z.extractall(plugdir)
    env = _env(tmp_path, sys.executable)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "georeg_qgis"], env=env, capture_output=True, timeout=300)
    out = subprocess.run([QGIS_PROCESS, "list"], env=env, capture_output=True, text=True, timeout=300)
    for alg in ("georeg:register", "georeg:apply", "georeg:batch"):
        assert alg in out.stdout, out.stdout[-2000:]


@pytest.mark.slow
def test_qgis_example_script(volkov, tmp_path):
    env = _env(tmp_path, sys.executable)
    out = subprocess.run([QGIS_PY, str(REPO / "examples" / "qgis_processing.py"), str(volkov / "176_S2_RGB.tif"),
                          str(volkov / "176_S1_VH.tif"), str(tmp_path / "reg.tif")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "outputs:" in out.stdout and (tmp_path / "reg.tif").exists()
    assert (tmp_path / "reg_tiepoints.gpkg").exists()
