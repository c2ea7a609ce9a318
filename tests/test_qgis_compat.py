"""georeg's outputs open in a real QGIS without warnings (skipped where QGIS is not installed)."""

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


@pytest.mark.skipif(not _has_qgis(), reason="QGIS is not installed (apt-get install python3-qgis qgis-providers)")
def test_outputs_open_in_qgis_without_warnings(tmp_path):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=320, seed=4, new_to_old=np.array([[1, 0, 5.0], [0, 1, 3.0], [0, 0, 1]]))
    cfg = RegistrationConfig().with_options(estimation={"model": "translation"},
                                            output={"tie_points": str(tmp_path / "tp.gpkg")})
    res = georeg.register(ref, tgt, tmp_path / "out.tif", cfg)
    script = textwrap.dedent(f"""
        import os
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication, QgsVectorLayer, QgsRasterLayer
        app = QgsApplication([], False)
        app.initQgis()
        vl = QgsVectorLayer("{tmp_path / 'tp.gpkg'}|layername=tie_points", "tp", "ogr")
        rl = QgsRasterLayer("{tmp_path / 'out.tif'}", "r")
        print("RESULT", vl.isValid(), vl.featureCount(), vl.crs().isValid(), rl.isValid(), flush=True)
        del vl, rl  # layers must go before exitQgis, or QGIS crashes on exit
        app.exitQgis()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA",
                                                           "GDAL_DATA")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    out = subprocess.run([QGIS_PYTHON, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][0]
    assert line == f"RESULT True {len(res.tie_points)} True True"
    assert "partially supported" not in out.stderr and "Warning" not in out.stderr, out.stderr
