"""The README's register example and its Python API snippet run as written (with ../shared/data
where the README says it, and the API snippet's placeholder names pointed at a real pair)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _block(section: str, lang: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(section)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    return m.group(1)


def _run_bash_block(section: str, shared_data: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The README's bash block under ``section``, run as written (this interpreter's georeg, the
    given shared data); asserts that it succeeded."""
    cmd = _block(section, "bash")
    cmd = cmd.replace(".venv/bin/georeg", f"{sys.executable} -c 'from georeg._entry import main; main()'")
    cmd = cmd.replace("../shared/data", str(shared_data))
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_readme_register_example_runs_as_written(shared_data, tmp_path):
    r = _run_bash_block("## Register the example pair", shared_data, tmp_path)
    assert re.search(r"shift [-+]\d+\.\d+, [-+]\d+\.\d+ px .* inliers, RMSE", r.stdout), r.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "176_S1_VH_registered.tif", "176_S1_VH_registered_quicklook.png", "176_S1_VH_registered_report.json",
        "176_S1_VH_registered_tiepoints.gpkg"]


@pytest.mark.slow
def test_readme_pictures_example_runs_as_written(shared_data, tmp_path):
    r = _run_bash_block("## Pictures without georeferencing", shared_data, tmp_path)
    assert re.search(r"^rigid \(auto\): shift [-+]\d+\.\d+, [-+]\d+\.\d+ px; ", r.stdout, re.M), r.stdout
    rep = json.loads((tmp_path / "out" / "pair14_report.json").read_text())
    assert rep["target"]["frame"] == "pixels" and rep["target"]["modality"] == "thermal"


@pytest.mark.slow
def test_readme_api_snippet_runs(volkov, tmp_path):
    code = _block("## Python API", "python")
    code = code.replace('"optical.tif"', repr(str(volkov / "176_S2_RGB.tif")))
    code = code.replace('"sar.tif"', repr(str(volkov / "176_S1_VH.tif")))
    r = subprocess.run([sys.executable, "-c", code + "\nprint(result.model.kind, len(result.tie_points))"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {"sar_registered.tif", "tp.gpkg", "report.json"} <= {p.name for p in tmp_path.iterdir()}


def test_readme_commands_name_existing_options():
    """Every --option in the README's synopsis exists in the CLI (a cheap check, in the default run)."""
    from click.testing import CliRunner

    from georeg.cli import georeg

    synopsis = _block("## Command line", "")
    helps = {c: CliRunner().invoke(georeg, [c, "--help"]).output
             for c in ("register", "apply", "demo", "batch", "options", "serve")}
    for line in synopsis.splitlines():
        words = line.split()
        cmd = next((c for c in helps if f"georeg {c}" in line), None) or "register"
        for opt in re.findall(r"--[a-z][a-z-]+", line):
            assert opt in helps[cmd], (opt, cmd, words[:3])
