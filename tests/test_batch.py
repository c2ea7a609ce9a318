"""georeg batch on real pairs: failures recorded, resume after an interruption, Dask with a
worker killed mid-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import sigint_as_in_a_terminal
from synthetic import shift_geotransform

pytestmark = pytest.mark.data
GEOREG = [sys.executable, "-m", "georeg.cli"]


def _manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reference", "target"])
        w.writerows(rows)
    return path


def _summary(outdir: Path) -> list[dict]:
    with open(outdir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def landsat_pairs(landsat, tmp_path_factory):
    """Landsat B4 against B10 copies with different geocoding errors (real pixels, fast)."""
    d = tmp_path_factory.mktemp("l8pairs")
    rows = []
    for i, s in enumerate([(6.0, -4.0), (-9.0, 3.0), (4.0, 8.0), (-5.0, -7.0)]):
        p = d / f"l8_B10_shift{i}.tif"
        shift_geotransform(str(landsat / "l8_B10.tif"), str(p), *s)
        rows.append((str(landsat / "l8_B4.tif"), str(p)))
    return rows


def test_failures_are_recorded_and_others_succeed(volkov, tmp_path):
    corrupt = tmp_path / "corrupt_S1_VH.tif"
    data = (volkov / "176_S1_VH.tif").read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])
    flat = tmp_path / "flat_S1_VH.tif"
    with rasterio.open(volkov / "268_S1_VH.tif") as s:
        prof = s.profile
    with rasterio.open(flat, "w", **prof) as d:
        d.write(np.full((1, prof["height"], prof["width"]), 77, np.uint8))
    rows = [(volkov / "176_S2_RGB.tif", volkov / "176_S1_VH.tif"), (volkov / "176_S2_RGB.tif", corrupt),
            (volkov / "268_S2_RGB.tif", flat), (volkov / "268_S2_RGB.tif", volkov / "268_S1_VH.tif")]
    man = _manifest(tmp_path / "m.csv", [(str(a), str(b)) for a, b in rows])
    out = tmp_path / "out"
    # failure isolation does not depend on the matcher: the weight-free one is 3x faster here
    r = subprocess.run([*GEOREG, "batch", str(man), "-o", str(out), "--workers", "2", "-q", "--matcher", "baseline"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    s = _summary(out)
    assert [x["status"] for x in s] == ["ok", "failed", "failed", "ok"]
    assert "corrupt_S1_VH.tif" in s[1]["error"] and "could not read the target raster" in s[1]["error"]
    assert "the target has no contrast over the overlap" in s[2]["error"]
    assert float(s[0]["rmse_px"]) < 3 and int(s[3]["inliers"]) > 50
    # the verdict's measured precision, as `georeg register` prints it
    assert 0 < float(s[0]["corner_movement_px"]) < 3 and s[1]["corner_movement_px"] == ""
    # how each target was read, so a batch's misread sensors can be found in its summary
    assert [(x["target_modality"], x["matcher"]) for x in (s[0], s[3])] == [("sar", "baseline")] * 2
    assert {s[0]["modality_by"], s[3]["modality_by"]} <= {"pixels", "file name"}  # *_S1_VH.tif
    assert s[1]["target_modality"] == s[1]["matcher"] == ""
    names = sorted(p.name for p in out.iterdir())
    assert "176_S1_VH_registered.tif" in names and "268_S1_VH_registered.tif" in names
    assert not any(n.startswith(("corrupt", "flat", ".")) for n in names), names
    assert json.loads((out / "summary.json").read_text())[2]["status"] == "failed"
    assert "failed: corrupt_S1_VH.tif" in r.stderr


def _clear(mask) -> list[str]:
    """Landsat B4/B10 without a cloud mask locks onto clouds and is (rightly) 'uncertain'."""
    return ["--ref-mask", str(mask), "--target-mask", str(mask)]


@pytest.mark.slow  # test_hardening interrupts and resumes batches on a small pair in the default run
def test_resume_after_sigint_recomputes_only_unfinished(landsat_pairs, landsat_clear_mask, tmp_path):
    man = _manifest(tmp_path / "m.csv", landsat_pairs)
    clear = _clear(landsat_clear_mask)
    ref_out, out = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run([*GEOREG, "batch", str(man), "-o", str(ref_out), "--workers", "1", "-q", *clear], check=True,
                   timeout=600)
    proc = subprocess.Popen([*GEOREG, "batch", str(man), "-o", str(out), "--workers", "1", "-q", *clear],
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*_report.json"))) < 1:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    first = _summary(out)
    n_done = sum(1 for x in first if x["status"] == "ok")
    assert 1 <= n_done < 4, first
    assert not list(out.glob(".*partial*")), "no half-written outputs"
    r = subprocess.run([*GEOREG, "batch", str(man), "-o", str(out), "--workers", "1", "-q", *clear], timeout=600)
    assert r.returncode == 0
    second = _summary(out)
    assert sum(1 for x in second if x["status"] == "skipped (complete)") == n_done
    assert sum(1 for x in second if x["status"] == "ok") == 4 - n_done
    for p in ref_out.glob("*"):
        if p.suffix in (".tif", ".gpkg"):
            assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dask_cluster_with_a_worker_killed(landsat_pairs, landsat_clear_mask, tmp_path):
    pytest.importorskip("distributed")
    bin_dir = Path(sys.executable).parent
    dask = str(bin_dir / "dask") if (bin_dir / "dask").exists() else "dask"
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)]
    try:
        time.sleep(3)
        workers = [subprocess.Popen([dask, "worker", addr, "--nthreads", "1", "--nworkers", "1",
                                     "--host", "127.0.0.1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
        procs += workers
        time.sleep(4)
        rows = landsat_pairs  # 4 tasks on 2 workers, outputs named apart
        man = tmp_path / "m.csv"
        with open(man, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["reference", "target", "output"])
            for i, (a, b) in enumerate(rows):
                w.writerow([a, b, f"pair{i}.tif"])
        out = tmp_path / "out"
        run = subprocess.Popen([*GEOREG, "batch", str(man), "-o", str(out), "--scheduler", addr, "-q",
                                *_clear(landsat_clear_mask)],
                               stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and len(list(out.glob("*_report.json"))) < 1:
            time.sleep(0.2)
        workers[0].kill()  # a worker dies mid-run: its pairs must be retried on the other one
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        s = _summary(out)
        assert len(s) == 4 and all(x["status"] == "ok" for x in s), s
        assert len(list(out.glob("pair*_registered.tif"))) == 0 and len(list(out.glob("pair*.tif"))) == 4
    finally:
        for p in procs:
            p.kill()
