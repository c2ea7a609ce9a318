"""georeg's outputs open in a real QGIS without warnings, a GCP-placed one where it belongs (skipped where
QGIS is not installed)."""

import os
import subprocess
import textwrap

import numpy as np
import pytest
from synthetic import synthetic_pair

import georeg
from georeg.config import RegistrationConfig

QGIS_PYTHON = "/usr/bin/python3"


def _has_qgis() -> bool:
    if not os.path.exists(QGIS_PYTHON):
        return False
    out = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True)
    return out.returncode == 0


def _as_gcps(src, dst):
    """``src`` with its geotransform replaced by a 5 x 5 lattice of GCPs in its CRS."""
    import rasterio
    from rasterio.control import GroundControlPoint

    with rasterio.open(src) as d:
        arr, prof, t, crs = d.read(), d.profile, d.transform, d.crs
    lattice = np.meshgrid(np.linspace(0, d.height, 5), np.linspace(0, d.width, 5), indexing="ij")
    rows, cols = (v.ravel() for v in lattice)
    gcps = [GroundControlPoint(r, c, *(t @ (c, r))) for r, c in zip(rows, cols)]
    prof = {k: v for k, v in prof.items() if k not in ("transform", "crs")}
    with rasterio.open(dst, "w", **prof) as out:
        out.write(arr)
        out.gcps = (gcps, crs)
    return dst


@pytest.mark.skipif(not _has_qgis(), reason="QGIS is not installed (apt-get install python3-qgis qgis-providers)")
def test_outputs_open_in_qgis_without_warnings(tmp_path):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=320, seed=4, new_to_old=np.array([[1, 0, 5.0], [0, 1, 3.0], [0, 0, 1]]))
    cfg = RegistrationConfig().with_options(estimation={"model": "translation"},
                                            output={"tie_points": str(tmp_path / "tp.gpkg")})
    res = georeg.register(ref, tgt, tmp_path / "out.tif", cfg)
    # the same target placed by GCPs: its output keeps its pixels under moved GCPs, which QGIS warps
    gcp_tgt = _as_gcps(tgt, tmp_path / "sar_gcps.tif")
    res_gcp = georeg.register(ref, gcp_tgt, tmp_path / "out_gcps.tif", cfg.with_options(output={"tie_points": None}))
    assert res_gcp.report["model"]["output_mode"] == "ground control points"
    script = textwrap.dedent(f"""
        import os
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication, QgsVectorLayer, QgsRasterLayer
        app = QgsApplication([], False)
        app.initQgis()
        vl = QgsVectorLayer("{tmp_path / 'tp.gpkg'}|layername=tie_points", "tp", "ogr")
        rl = QgsRasterLayer("{tmp_path / 'out.tif'}", "r")
        print("RESULT", vl.isValid(), vl.featureCount(), vl.crs().isValid(), rl.isValid(), flush=True)
        gl = QgsRasterLayer("{tmp_path / 'out_gcps.tif'}", "g")
        e, f = gl.extent(), rl.extent()
        print("GCPS", gl.isValid(), gl.crs() == rl.crs(), e.xMinimum() - f.xMinimum(), e.yMaximum() - f.yMaximum(),
              e.xMaximum() - f.xMaximum(), e.yMinimum() - f.yMinimum(), flush=True)
        del vl, rl, gl  # layers must go before exitQgis, or QGIS crashes on exit
        app.exitQgis()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA",
                                                           "GDAL_DATA")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    out = subprocess.run([QGIS_PYTHON, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][0]
    assert line == f"RESULT True {len(res.tie_points)} True True"
    # the GCP output is placed, in the GCPs' CRS, where the geotransform output is (here 1e-8 m apart)
    gcps = [ln for ln in out.stdout.splitlines() if ln.startswith("GCPS")][0].split()
    assert gcps[1:3] == ["True", "True"], gcps
    assert max(abs(float(v)) for v in gcps[3:]) < 0.1 * res.report["target"]["pixel_size"], gcps
    assert "partially supported" not in out.stderr and "Warning" not in out.stderr, out.stderr
