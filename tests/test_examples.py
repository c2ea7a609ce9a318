import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.data
def test_pipeline_step_example(volkov, tmp_path):
    """The example on a 512 px window of S1/S2 pair 176 (the whole pair runs in test_realdata)."""
    import rasterio
    from rasterio.windows import Window

    crops = []
    for name in ("176_S2_RGB.tif", "176_S1_VH.tif"):
        with rasterio.open(volkov / name) as s:
            w = Window(256, 256, 512, 512)
            prof = s.profile | {"width": 512, "height": 512, "transform": s.window_transform(w)}
            with rasterio.open(tmp_path / name, "w", **prof) as d:
                d.write(s.read(window=w))
        crops.append(str(tmp_path / name))
    out = subprocess.run([sys.executable, str(REPO / "examples" / "pipeline_step.py"), *crops,
                          "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "RMSE" in out.stdout
    assert (tmp_path / "out" / "176_S1_VH_registered.tif").exists()
    rep = json.loads((tmp_path / "out" / "176_S1_VH_report.json").read_text())
    assert rep["counts"]["inliers"] >= 30 and rep["verdict"]["quality"] == "reliable"


@pytest.mark.data
@pytest.mark.slow  # three 1024 px pairs; test_batch and test_hardening cover batch in the default run
def test_batch_example(volkov, tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "examples" / "batch_api.py"), "--workers", "1"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "3/3 registered" in out.stdout
    summary = out.stdout.strip().splitlines()[-1].split("summary in ")[-1]
    assert Path(summary).exists() and not list(tmp_path.iterdir())  # nothing left in the working folder
