"""Hostile inputs, interrupted runs and concurrent runs (issue 13): each case asserts the exit code,
the message and the exact set of files left in the folder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from helpers import sigint_as_in_a_terminal
from synthetic import synthetic_pair

from georeg.cli import georeg

GEOREG = [sys.executable, "-c", "from georeg._entry import main; main()"]
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")


@pytest.fixture(scope="module")
def pair(small_pair):
    return small_pair("tgt.tif")


FAST = ["--matcher", "baseline"]  # the weight-free matcher: these tests are about files and errors


def _run(args):
    args = [str(a) for a in args]
    if args[0] in ("register", "batch") and "--matcher" not in args:
        args += FAST
    return CliRunner().invoke(georeg, args)


def _one_error_line(r, code, *fragments):
    assert r.exit_code == code, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    for f in fragments:
        assert f in errors[0], errors[0]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _summary(outdir: Path) -> list[dict]:
    with open(outdir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- 1, 14, 17: batch outputs and rows
def test_batch_outputs_stay_in_outdir_and_never_replace_inputs(pair, tmp_path):
    ref, tgt = pair
    precious = tmp_path / "precious.tif"
    precious.write_bytes(b"precious")
    other = tmp_path / "inputs" / "other.tif"
    other.parent.mkdir()
    other.write_bytes(tgt.read_bytes())
    out = tmp_path / "out"
    m = _manifest(tmp_path / "m.csv", ["reference", "target", "output", "model"], [
        [str(ref), str(tgt), "../precious.tif", ""],       # outside OUTDIR
        [str(ref), str(other), str(precious), ""],         # absolute
        [str(ref), str(other), "", "banana"],              # bad value: this row only
        [str(ref), str(tgt), "", ""],                      # fine
    ])
    r = _run(["batch", m, "-o", out, "--workers", "1"])
    assert r.exit_code == 1, r.output
    rows = _summary(out)
    assert [x["status"] for x in rows] == ["failed", "failed", "failed", "ok"]
    assert "outside the output folder" in rows[0]["error"] and "outside the output folder" in rows[1]["error"]
    assert "row 3" in rows[2]["error"] and "model" in rows[2]["error"] and "banana" in rows[2]["error"]
    assert precious.read_bytes() == b"precious"
    assert _files(out) == ["summary.csv", "summary.json", "tgt_registered.tif", "tgt_registered_report.json",
                           "tgt_registered_tiepoints.gpkg"]


def test_batch_output_equal_to_an_input_or_shared_is_refused_per_row(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out"
    out.mkdir()
    victim = out / "victim.tif"
    victim.write_bytes(tgt.read_bytes())
    m = _manifest(tmp_path / "m.csv", ["reference", "target", "output", "max_shift"], [
        [str(ref), str(victim), "a.tif", ""],
        [str(ref), str(tgt), "victim.tif", ""],            # another row's target
        [str(ref), str(tgt), "a.tif", ""],                 # row 1's output
        [str(ref), str(tgt), "c.tif", "lots"],             # bad max_shift names its row
    ])
    r = _run(["batch", m, "-o", out, "--workers", "1"])
    assert r.exit_code == 1
    rows = _summary(out)
    assert [x["status"] for x in rows] == ["ok", "failed", "failed", "failed"]
    assert "would replace an input" in rows[1]["error"]
    assert "already the output of row 1" in rows[2]["error"]
    assert "row 4" in rows[3]["error"] and "max_shift" in rows[3]["error"]
    assert victim.read_bytes() == tgt.read_bytes()


def test_same_target_names_in_scene_folders_get_distinct_outputs(pair, tmp_path):
    ref, tgt = pair
    rows = []
    for scene in ("scene_a", "scene_b"):
        (tmp_path / scene).mkdir()
        (tmp_path / scene / "target.tif").write_bytes(tgt.read_bytes())
        rows.append([str(ref), str(tmp_path / scene / "target.tif")])
    out = tmp_path / "out"
    r = _run(["batch", _manifest(tmp_path / "m.csv", ["reference", "target"], rows), "-o", out, "--workers", "1"])
    assert r.exit_code == 0, r.output
    got = [Path(x["output"]).name for x in _summary(out)]
    assert got == ["scene_a_target_registered.tif", "scene_b_target_registered.tif"]
    assert all((out / g).exists() for g in got)


# ---------------------------------------------------------------- 2, 9: resume trusts only verified outputs
def test_resume_redoes_a_truncated_output_and_a_damaged_report(pair, tmp_path):
    ref, tgt = pair
    m = _manifest(tmp_path / "m.csv", ["reference", "target", "output"],
                  [[str(ref), str(tgt), "a.tif"], [str(ref), str(tgt), "b.tif"], [str(ref), str(tgt), "c.tif"]])
    out = tmp_path / "out"
    assert _run(["batch", m, "-o", out, "--workers", "1"]).exit_code == 0
    good = (out / "a.tif").read_bytes()
    with open(out / "a.tif", "r+b") as f:
        f.truncate(1000)
    (out / "b_report.json").write_bytes(b"\xff\xfe not json")
    rep = json.loads((out / "c_report.json").read_text())
    del rep["model"]
    (out / "c_report.json").write_text(json.dumps(rep))
    r = _run(["batch", m, "-o", out, "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert [x["status"] for x in _summary(out)] == ["ok", "ok", "ok"]
    assert (out / "a.tif").read_bytes() == good
    r = _run(["batch", m, "-o", out, "--workers", "1"])
    assert [x["status"] for x in _summary(out)] == ["skipped (complete)"] * 3


def test_interrupt_after_a_pair_is_published_keeps_its_row(pair, tmp_path, monkeypatch):
    """Ctrl-C between a pair's last output and its summary row: the verified outputs decide."""
    from georeg import batch

    ref, tgt = pair
    m = _manifest(tmp_path / "m.csv", ["reference", "target", "output"],
                  [[str(ref), str(tgt), "a.tif"], [str(ref), str(tgt), "b.tif"]])
    real = batch.run_task

    def run_then_interrupt(task):
        real(task)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_task", run_then_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        batch.run(str(m), out, workers=1)
    rows = _summary(out)
    assert [x["status"] for x in rows] == ["ok"] and rows[0]["output"].endswith("a.tif")
    assert int(rows[0]["inliers"]) > 0


# ---------------------------------------------------------------- 3: staging rolls back
@pytest.mark.skipif(os.geteuid() != 0 and sys.platform != "linux", reason="needs chattr on Linux")
def test_overwrite_that_cannot_replace_the_old_report_restores_the_old_set(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out.tif"
    args = ["register", ref, tgt, "-o", out, "--quicklook", "none", "--overwrite"]
    assert _run(args).exit_code == 0
    before = {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)}
    report = tmp_path / "out_report.json"
    if subprocess.run(["chattr", "+i", str(report)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        r = _run(args + ["--max-shift", "30"])
    finally:
        subprocess.run(["chattr", "-i", str(report)])
    _one_error_line(r, 2, "could not write the outputs", "nothing was written")
    assert {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)} == before


# ---------------------------------------------------------------- 4: concurrent runs
def test_second_run_on_the_same_output_refuses_while_the_first_runs(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out.tif"
    slow = subprocess.Popen([*GEOREG, "register", str(ref), str(tgt), "-o", str(out), "-q", "--quicklook", "none",
                             "--matcher", "baseline", "--max-shift", "60", "--keypoints", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".out.tif.lock"
    t0 = time.time()
    while not lock.exists() and slow.poll() is None and time.time() - t0 < 60:
        time.sleep(0.05)
    assert lock.exists(), slow.communicate()
    r = _run(["register", ref, tgt, "-o", out, "--quicklook", "none"])
    _one_error_line(r, 2, "another georeg run", "is writing")
    assert slow.wait(120) == 0, slow.communicate()
    assert _files(tmp_path) == ["out.tif", "out_report.json", "out_tiepoints.gpkg"]


def test_a_lock_of_a_dead_run_is_taken_over(pair, tmp_path):
    ref, tgt = pair
    (tmp_path / ".out.tif.lock").write_text("999999999 " + os.uname().nodename)
    (tmp_path / ".out.partial-999999999.tif").write_bytes(b"left by a killed run")
    (tmp_path / ".georeg-999999999-abc").mkdir()
    r = _run(["register", ref, tgt, "-o", tmp_path / "out.tif", "--quicklook", "none"])
    assert r.exit_code == 0, r.output
    assert _files(tmp_path) == ["out.tif", "out_report.json", "out_tiepoints.gpkg"]


# ---------------------------------------------------------------- 5: API types
@pytest.mark.parametrize("section,field,value", [
    ("output", "overwrite", "no"), ("matching", "coarse", "no"), ("reference", "band", 1.5),
    ("estimation", "threshold_px", float("inf")), ("matching", "max_shift", "40"), ("output", "report", 3),
    ("matching", "tile_size_px", True),
])
def test_config_types_are_checked(section, field, value):
    from georeg.config import RegistrationConfig
    from georeg.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        RegistrationConfig().with_options(**{section: {field: value}})


def test_api_refuses_a_missing_output_and_a_wrong_config(pair, tmp_path, monkeypatch):
    import georeg
    from georeg.config import RegistrationConfig
    from georeg.errors import ConfigError, InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="output must be a file path"):
        georeg.register(pair[0], pair[1], None)
    with pytest.raises(InputError, match="RegistrationConfig"):
        georeg.register(pair[0], pair[1], "out.tif", {"matching": {}})
    with pytest.raises(ConfigError, match="unknown option"):
        RegistrationConfig().with_options(matching={"maxshift": 3})
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- 10: search radius
def _geographic_pair(tmp_path, pair):
    """The synthetic pair re-labelled in EPSG:4326 with 10 m-like pixels (about 9e-5 degrees)."""
    out = []
    for p in pair:
        with rasterio.open(p) as d:
            prof = d.profile
            arr = d.read()
            t = d.transform
        deg = 9e-5
        prof.update(crs="EPSG:4326", transform=Affine(deg, 0, 12.0 + (t.c - 500000) / 10 * deg, 0, -deg,
                                                        45.0 + (t.f - 5000000) / 10 * deg))
        q = tmp_path / f"geo_{p.name}"
        with rasterio.open(q, "w", **prof) as d:
            d.write(arr)
        out.append(q)
    return out


def test_max_shift_in_metres_on_a_geographic_crs(pair, tmp_path):
    ref, tgt = _geographic_pair(tmp_path, pair)
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    with RasterSource(str(ref), InputConfig(), "reference") as r:
        assert 7.0 < r.grid.ground_pixel_size_m < 10.5  # 9e-5 deg at 45 N
    out = tmp_path / "o" / "out.tif"
    out.parent.mkdir()
    r = _run(["register", ref, tgt, "-o", out, "--max-shift", "400m", "--quicklook", "none"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("extra,fragments", [
    (["--max-shift", "100000"], ["search radius of 100000", "largest", "2048 px"]),
    (["--max-shift", "99999999999"], ["largest", "2048 px"]),
    (["--max-shift", "400000m"], ["largest", "2048 px (2048", "m here)"]),  # 10 m pixels, UTM scale 0.9996
    (["--threshold", "inf"], ["threshold_px must be a finite number"]),
])
def test_unreasonable_radius_or_threshold_is_refused_up_front(pair, tmp_path, extra, fragments):
    r = _run(["register", *pair, "-o", tmp_path / "out.tif", *extra])
    _one_error_line(r, 2, *fragments)
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- 11: output folder checked first
def test_unwritable_output_folder_is_found_before_matching(pair, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        t = time.perf_counter()
        r = _run(["register", *pair, "-o", folder / "out.tif"])
        took = time.perf_counter() - t
    finally:
        subprocess.run(["chattr", "-i", str(folder)])
    _one_error_line(r, 2, "cannot write to the output folder")
    assert took < 5 and _files(folder) == []


def test_full_disk_is_found_before_matching(pair, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    r = _run(["register", *pair, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "MB free", "Free some space")
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- 12: user mistakes, not internal errors
@pytest.mark.parametrize("content", [
    "reference,target\nr\xe9f.tif,t.tif\n".encode("latin-1"),
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
])
def test_manifest_not_utf8_text(tmp_path, content):
    m = tmp_path / "m.csv"
    m.write_bytes(content)
    r = _run(["batch", m, "-o", tmp_path / "out"])
    _one_error_line(r, 2, "manifest", "CSV")


@pytest.mark.parametrize("text", [
    # a spreadsheet's CSV where the comma is the decimal separator: semicolons, and 60,0 for 60.0
    "\ufeffreference;target;output;max_shift;threshold\r\n\"a, b.tif\";t.tif;o.tif;60,0;2,5\r\n",
    "reference\ttarget\toutput\tmax_shift\tthreshold\na, b.tif\tt.tif\to.tif\t60\t2.5\n",
    "reference,target,output,max_shift,threshold\n\"a, b.tif\",t.tif,o.tif,60,2.5\n",
])
def test_manifest_separated_by_semicolons_or_tabs_is_read_as_by_commas(tmp_path, text):
    from georeg.config import RegistrationConfig
    from georeg.manifest import read_manifest

    m = tmp_path / "m.csv"
    m.write_text(text, encoding="utf-8")
    (task,) = read_manifest(m, tmp_path / "out", RegistrationConfig())
    m.write_text(text.lstrip("\ufeff"), encoding="utf-16")  # a spreadsheet's "Unicode text": UTF-16 with a BOM
    (again,) = read_manifest(m, tmp_path / "out", RegistrationConfig())
    assert (again.reference, again.target, again.output) == (task.reference, task.target, task.output)
    assert not task.error, task.error
    assert Path(task.reference).name == "a, b.tif" and Path(task.target).name == "t.tif"
    assert Path(task.output).name == "o.tif" and task.config.matching.max_shift == 60
    assert task.config.estimation.threshold_px == 2.5


def test_manifest_row_with_more_values_than_columns_fails_alone_and_a_column_named_twice_refuses_it(pair, tmp_path):
    # an unquoted comma in a path splits it and shifts the row's values: that row fails with the
    # reason, a trailing empty value (spreadsheets write them) does not count, the other rows run
    from georeg.config import RegistrationConfig
    from georeg.manifest import read_manifest

    m = tmp_path / "m.csv"
    m.write_text(f"reference,target\n{pair[0]},{pair[1]}\n{pair[0]},C:\\data\\scene,1.tif\n{pair[0]},{pair[1]},\n")
    tasks = read_manifest(m, tmp_path / "out", RegistrationConfig())
    assert [bool(t.error) for t in tasks] == [False, True, False]
    assert "row 2 has 1 more value than the manifest has columns" in tasks[1].error
    assert "double quotes" in tasks[1].error
    m.write_text(f"reference,target,reference\n{pair[0]},{pair[1]},{pair[1]}\n")
    _one_error_line(_run(["batch", m, "-o", tmp_path / "out2"]), 2, "names the column 'reference' more than once")
    assert not (tmp_path / "out2").exists()


def test_manifest_is_a_folder(tmp_path):
    (tmp_path / "m.csv").mkdir()
    _one_error_line(_run(["batch", tmp_path / "m.csv", "-o", tmp_path / "out"]), 2, "is a folder")


def test_bad_scheduler(pair, tmp_path):
    m = _manifest(tmp_path / "m.csv", ["reference", "target"], [[str(pair[0]), str(pair[1])]])
    _one_error_line(_run(["batch", m, "-o", tmp_path / "out", "--scheduler", "banana"]), 2,
                    "--scheduler must be 'local' or a Dask scheduler address", "banana")


def test_output_under_a_file_and_empty_output(pair, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    _one_error_line(_run(["register", *pair, "-o", f / "out.tif"]), 2, "under a file")
    _one_error_line(_run(["register", *pair, "-o", ""]), 2, "output must be a file path")
    assert _files(tmp_path) == ["file.txt"]


def test_non_utf8_file_name(pair, tmp_path):
    # GDAL takes UTF-8 names: a Latin-1 name gets a clear message with the way out, not a traceback
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/t\xe9.tif"))
    odd.write_bytes(pair[1].read_bytes())
    out = tmp_path / "out.tif"
    r = subprocess.run([*GEOREG, "register", str(pair[0]), os.fsencode(odd), "-o", str(out), "-q"],
                       capture_output=True)
    assert r.returncode == 2, r.stderr
    assert b"Traceback" not in r.stderr and b"is not valid UTF-8" in r.stderr and b"rename" in r.stderr
    assert sorted(os.listdir(tmp_path)) == [os.fsdecode(b"t\xe9.tif")]


def test_apply_given_a_raster_as_the_report(pair, tmp_path):
    r = _run(["apply", pair[1], pair[1], "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "is not a georeg report")
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- 15: apply to another scene
def test_apply_refuses_a_raster_of_another_scene_unless_forced(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "reg.tif"
    assert _run(["register", ref, tgt, "-o", out, "--quicklook", "none"]).exit_code == 0
    far = tmp_path / "far.tif"
    with rasterio.open(tgt) as d:
        prof, arr = d.profile, d.read()
    prof.update(crs="EPSG:32755")  # the same numbers in another UTM zone, southern hemisphere
    with rasterio.open(far, "w", **prof) as d:
        d.write(arr)
    r = _run(["apply", tmp_path / "reg_report.json", far, "-o", tmp_path / "far_reg.tif"])
    _one_error_line(r, 2, "does not overlap the target this report registered", "--force")
    assert not (tmp_path / "far_reg.tif").exists()
    r = _run(["apply", tmp_path / "reg_report.json", far, "-o", tmp_path / "far_reg.tif", "--force"])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- 16: early Ctrl-C and SIGTERM
@pytest.mark.parametrize("module", ["georeg.options", "torch"])
def test_ctrl_c_while_starting_prints_no_traceback(pair, tmp_path, module):
    """Ctrl-C while the CLI's modules are imported: the child sends itself SIGINT at the moment
    it starts importing ``module`` (georeg.options: inside 'import georeg.cli'; torch: inside the
    command, before any work), which does not depend on how fast the machine is, as a timer did."""
    code = ("import os, signal, sys\n"
            "class Hook:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name == {module!r}:\n"
            "            os.kill(os.getpid(), signal.SIGINT)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Hook())\n"
            "from georeg._entry import main; main()")
    p = subprocess.Popen([sys.executable, "-c", code, "register", str(pair[0]), str(pair[1]), "-o",
                          str(tmp_path / "out.tif")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_as_in_a_terminal)
    _, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert p.returncode == 130 and "Interrupted" in err, (p.returncode, err)
    assert [n for n in _files(tmp_path)] == []


def test_sigterm_while_writing_leaves_nothing(pair, tmp_path):
    import signal

    out = tmp_path / "out.tif"
    # the tie points are written after the raster: wait for the raster's partial file, then stop
    p = subprocess.Popen([*GEOREG, "register", str(pair[0]), str(pair[1]), "-o", str(out), "-q", "--model", "local",
                          "--align-grids", "--cog"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 120:
        if any(n.startswith(".out") or n.startswith(".georeg-") for n in _files(tmp_path)
               if not n.endswith(".lock")):
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before it could be stopped while writing")
    assert p.returncode == 130
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- 7, 8: killed batch drivers
@pytest.fixture(scope="module")
def batch_job(pair, tmp_path_factory):
    """A manifest of four pairs, the outputs of an uninterrupted run of it and that run's seconds
    (the default run's moments to interrupt are shares of it: the machines differ)."""
    d = tmp_path_factory.mktemp("killjob")
    rows = [[str(pair[0]), str(pair[1]), f"p{i}.tif", str(30 + 5 * i)] for i in range(4)]
    m = _manifest(d / "m.csv", ["reference", "target", "output", "max_shift"], rows)
    clean = d / "clean"
    t = time.perf_counter()
    r = subprocess.run([*GEOREG, "batch", str(m), "-o", str(clean), "--workers", "2", "-q", *FAST],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    return m, clean, time.perf_counter() - t


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(d.name))
    return found


def _group_gone(pgid: int, timeout: float) -> bool:
    import signal

    t0 = time.time()
    while time.time() - t0 < timeout:
        if not _group_members(pgid):
            return True
        time.sleep(0.2)
    for pid in _group_members(pgid):
        os.kill(pid, signal.SIGKILL)
    return False


def _comparable(folder: Path) -> dict:
    """Outputs byte for byte; the reports without what differs between two runs by nature."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("summary"):
            continue
        if p.suffix == ".json":
            rep = json.loads(p.read_text().replace(str(folder), "OUTDIR"))
            for k in ("created_utc", "timings_s", "runtime", "batch"):
                rep.pop(k, None)
            out[p.name] = rep
        else:
            out[p.name] = p.read_bytes()
    return out


def _kill_and_rerun(batch_job, tmp_path, delay: float) -> None:
    import signal

    m, clean, _ = batch_job
    out = tmp_path / f"out{delay:.2f}"
    args = [*GEOREG, "batch", str(m), "-o", str(out), "--workers", "2", "-q", *FAST]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _group_gone(p.pid, 30), f"worker processes outlived the killed driver (killed after {delay:.2f} s)"
    r = subprocess.run(args, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert [n for n in _files(out) if n.startswith(".")] == [], _files(out)
    assert _comparable(out) == _comparable(clean)


def _moments(smoke_share: float, seed: int, lo: float, hi: float, n: int) -> list:
    """The default run's moment, ``smoke_share`` of the uninterrupted run's time (a fixed number
    of seconds fell after the end on a faster machine: the batch took 4.0-4.3 s on this project's
    machine until 2026-12-04 and 2.4 s on 2026-12-05); ``n`` random ones between ``lo`` and ``hi``
    s behind ``slow``. :func:`_seconds` turns either into seconds."""
    return [pytest.param(("share", [smoke_share]), id="smoke"),
            pytest.param(("seconds", [float(d) for d in np.random.default_rng(seed).uniform(lo, hi, n)]),
                         id="random", marks=pytest.mark.slow)]


def _seconds(moments: tuple, batch_job) -> list[float]:
    kind, values = moments
    return [v * batch_job[2] for v in values] if kind == "share" else values


@needs_proc
@pytest.mark.parametrize("delays", _moments(0.9, 13, 0.2, 9.0, 10))
def test_sigkill_of_the_batch_driver(batch_job, tmp_path, delays):
    for delay in _seconds(delays, batch_job):
        _kill_and_rerun(batch_job, tmp_path, delay)


# ---------------------------------------------------------------- 13: damaged and GCP rasters
@pytest.mark.parametrize("keep", [300, 600, 5000])
def test_truncated_target_is_called_damaged_not_missing_a_crs(pair, tmp_path, keep):
    cut = tmp_path / "cut.tif"
    cut.write_bytes(pair[1].read_bytes()[:keep])
    r = _run(["register", pair[0], cut, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "cut.tif")
    assert "no CRS" not in r.output and ("truncated or damaged" in r.output or "not a raster" in r.output)
    assert "WARNING" not in r.output and "CPLE" not in r.output
    assert _files(tmp_path) == ["cut.tif"]


def test_gcp_georeferenced_reference_is_named_as_such(pair, tmp_path):
    """A target may be georeferenced by GCPs (tests/test_gcps.py); the reference, whose grid georeg
    works on, may not."""
    from rasterio.control import GroundControlPoint

    with rasterio.open(pair[0]) as d:
        arr, prof = d.read(), d.profile
    t = prof.pop("transform")
    crs = prof.pop("crs")
    gcps = [GroundControlPoint(r, c, *(t @ (c, r))) for r, c in ((0, 0), (0, 320), (320, 0))]
    g = tmp_path / "gcp.tif"
    with rasterio.open(g, "w", **prof) as d:
        d.write(arr)
        d.gcps = (gcps, crs)
    r = _run(["register", g, pair[1], "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "3 ground control points", "reference", "geotransform", "rio warp")
    assert "NotGeoreferencedWarning" not in r.output


def test_collinear_gcps_are_refused_in_one_line(pair, tmp_path):
    from rasterio.control import GroundControlPoint

    with rasterio.open(pair[1]) as d:
        arr, prof = d.read(), d.profile
    t = prof.pop("transform")
    crs = prof.pop("crs")
    g = tmp_path / "collinear.tif"
    with rasterio.open(g, "w", **prof) as d:
        d.write(arr)
        d.gcps = ([GroundControlPoint(r, r, *(t @ (r, r))) for r in (0, 100, 200)], crs)
    r = _run(["register", pair[0], g, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "ground control points", "cannot turn into a transformation", "collinear")
    assert "ERROR 1" not in r.output
    assert _files(tmp_path) == ["collinear.tif"]


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_samples_are_refused_with_the_amplitude_command(pair, tmp_path, dtype):
    """A SAR single-look complex or interferometric raster (CInt16 is Sentinel-1 SLC's type): its
    real part alone is not an image to match; the error says how to make the amplitude."""
    with rasterio.open(pair[1]) as d:
        arr, prof = d.read(1).astype(np.float32), d.profile
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, arr.shape)
    c = tmp_path / "scene.tif"
    with rasterio.open(c, "w", **dict(prof, dtype=dtype, count=1, nodata=None)) as d:
        d.write((arr * np.exp(1j * phase)).astype(np.complex64), 1)
    for args in ([pair[0], c], [c, pair[0]]):
        r = _run(["register", *args, "-o", tmp_path / "out.tif"])
        _one_error_line(r, 2, "complex samples", dtype, "gdal_calc.py -A scene.tif", "abs(A)")
        assert _files(tmp_path) == ["scene.tif"]


def _container(pair, folder: Path) -> Path:
    """A GeoPackage holding the target twice, as the raster tables 'VV' and 'VH' (a file of
    subdatasets, as a NetCDF or HDF file or a SAFE product's metadata file is)."""
    import rasterio.shutil

    c = folder / "scene.gpkg"
    rasterio.shutil.copy(pair[1], c, driver="GPKG", RASTER_TABLE="VV")
    rasterio.shutil.copy(pair[1], c, driver="GPKG", RASTER_TABLE="VH", APPEND_SUBDATASET="YES")
    return c


def test_a_file_of_subdatasets_is_refused_with_their_names(pair, tmp_path):
    c = _container(pair, tmp_path)
    r = _run(["register", pair[0], c, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "container of 2 subdatasets", f"GPKG:{c}:VV", f"GPKG:{c}:VH")
    assert _files(tmp_path) == ["scene.gpkg"]


def test_a_subdataset_registers_applies_and_batches_by_its_gdal_name(pair, tmp_path):
    """``GPKG:"scene.gpkg":VH`` (quoted or not) is a target like any file: the same correction
    as the plain target, ``apply`` takes the other subdataset, and a batch row names its output
    after the file and the subdataset."""
    c = _container(pair, tmp_path)
    r = _run(["register", pair[0], pair[1], "-o", tmp_path / "plain.tif"])
    assert r.exit_code == 0, r.output
    r = _run(["register", pair[0], f'GPKG:"{c}":VH', "-o", tmp_path / "out.tif"])
    assert r.exit_code == 0, r.output
    plain = json.loads((tmp_path / "plain_report.json").read_text())
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert np.allclose(rep["shift"]["mean_px"], plain["shift"]["mean_px"], atol=1e-6)
    r = _run(["apply", tmp_path / "out_report.json", f"GPKG:{c}:VV", "-o", tmp_path / "vv.tif"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "vv.tif") as a, rasterio.open(tmp_path / "out.tif") as b:
        assert a.transform.almost_equals(b.transform)
    r = _run(["register", pair[0], pair[1], "--target-mask", f"GPKG:{c}:VV", "-o", tmp_path / "masked.tif"])
    assert r.exit_code == 0, r.output  # a mask may be a subdataset too
    m = _manifest(tmp_path / "m.csv", ["reference", "target"], [[str(pair[0]), "GPKG:scene.gpkg:VH"]])
    r = _run(["batch", m, "-o", tmp_path / "b", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "scene_VH_registered.tif").exists()


def test_a_paletted_target_is_matched_by_its_colours_and_keeps_its_colour_table(pair, tmp_path):
    """A raster of colour-table indices (a scanned map, a paletted PNG) whose index order says
    nothing about brightness: matched on its colours (resampled without blending indices),
    written back with its colour table. Its colours, greys tinted blue, lie on a colour ramp: read
    as positions along it (in the greys' order), its modality decided from them as the grey band's
    (a table of unrelated colours, a class map, is `optical`: tests/test_ramps.py)."""
    with rasterio.open(pair[1]) as d:
        grey, prof = d.read(1), d.profile
    levels = (grey.astype(np.int32) // 4).astype(np.uint8)  # 64 grey levels
    order = np.random.default_rng(1).permutation(64)  # index k shows level order[k], tinted blue
    idx = np.argsort(order)[levels].astype(np.uint8)
    cmap = {k: (int(order[k]) * 4, int(order[k]) * 4, min(255, int(order[k]) * 4 + 40), 255) for k in range(64)}
    pal = tmp_path / "map.tif"
    with rasterio.open(pal, "w", **dict(prof, photometric="palette", nodata=None)) as d:
        d.write(idx, 1)
        d.write_colormap(1, cmap)
    for extra in ([], ["--model", "homography"]):
        r = _run(["register", pair[0], pal, "-o", tmp_path / "out.tif", "--overwrite", *extra])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / "out_report.json").read_text())
        assert np.allclose(rep["shift"]["mean_px"], (6.0, -4.0), atol=0.3), rep["shift"]
        assert rep["target"]["modality"] == "sar" and "ramp" in rep["target"]["bands"], rep["target"]
        with rasterio.open(tmp_path / "out.tif") as d:
            assert d.colormap(1)[5] == cmap[5]
            assert set(np.unique(d.read(1))) <= set(range(64)) | {d.nodata or 0}


def test_a_grey_image_stored_with_a_table_of_greys_is_read_by_its_grey_levels(pair, tmp_path):
    """A SAR or thermal quicklook written as a paletted PNG or GIF holds a table of greys: its
    modality comes from the grey levels, as the same image's plain band does (a table in colours
    is a picture: a scanned map, optical), and the registration is the plain band's."""
    with rasterio.open(pair[1]) as d:
        grey, prof = d.read(1), d.profile
    pal = tmp_path / "greys.tif"
    with rasterio.open(pal, "w", **dict(prof, photometric="palette", nodata=None)) as d:
        d.write(grey, 1)
        d.write_colormap(1, {k: (k, k, k, 255) for k in range(256)})
    reports = {}
    for name, target in (("plain", pair[1]), ("greys", pal)):
        r = _run(["register", pair[0], target, "-o", tmp_path / f"out_{name}.tif"])
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((tmp_path / f"out_{name}_report.json").read_text())
    plain, greys = reports["plain"]["target"], reports["greys"]["target"]
    assert greys["modality"] == plain["modality"]
    assert greys["modality_evidence"]["by"] != "metadata", greys["modality_evidence"]
    assert "greys" in greys["modality_evidence"]["metadata"]["colour_table"]
    assert np.allclose(reports["greys"]["shift"]["mean_px"], reports["plain"]["shift"]["mean_px"], atol=0.05)


def _rgba(src, dst, hidden_cols: int) -> None:
    """``src``'s first band as an RGBA raster whose left ``hidden_cols`` columns are transparent
    and hold white, as orthophotos and QGIS exports carry their footprint."""
    from rasterio.enums import ColorInterp

    with rasterio.open(src) as d:
        grey, prof = d.read(1), d.profile
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)])
    rgba[:3, :, :hidden_cols], rgba[3, :, :hidden_cols] = 255, 0
    with rasterio.open(dst, "w", **dict(prof, count=4, dtype="uint8", nodata=None, photometric="RGB",
                                        alpha="YES")) as o:
        o.write(rgba)
    with rasterio.open(dst) as d:
        assert d.colorinterp[3] == ColorInterp.alpha


@pytest.mark.parametrize("side", ["reference", "target"])
def test_a_raster_with_an_alpha_band_registers_and_keeps_its_transparency(pair, tmp_path, side):
    """An RGBA raster (a drone orthophoto, a QGIS export): its alpha band is its mask (GDAL's
    warper, reading it at the coarse pass's resolution, refused to add a second alpha: "The VRT
    already has an alpha band"), and a corrected RGBA target keeps the alpha band, transparent
    outside, with no nodata that would also hide its black pixels."""
    import georeg
    from georeg.config import RegistrationConfig

    ref, tgt = pair
    if side == "reference":
        ref = tmp_path / "ref_rgba.tif"
        _rgba(pair[0], ref, 60)
    else:
        tgt = tmp_path / "tgt_rgba.tif"
        _rgba(pair[1], tgt, 60)
    for align in (False, True):
        cfg = RegistrationConfig().with_options(matching={"matcher": "baseline", "coarse_size_px": 128},
                                                output={"overwrite": True, "align_grids": align})
        res = georeg.register(str(ref), str(tgt), str(tmp_path / "out.tif"), cfg)
        assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3), res.report["shift"]
        if side == "target":
            with rasterio.open(tmp_path / "out.tif") as d:
                assert d.count == 4 and d.nodata is None and d.colorinterp[3].name == "alpha"
                alpha = d.read(4)
            assert (alpha[:, :50] == 0).all() and (alpha[10:-10, 80:-20] == 255).all()


def test_scaled_integers_are_read_as_the_physical_values_they_store(pair, tmp_path):
    """dB stored as uint16 with GDAL's scale and offset (as rioxarray writes a scale_factor and
    add_offset): the modality is read from the dB values (before: from the raw integers' texture,
    which said optical for the S1 scene of pair 176), and the corrected raster keeps the scale,
    and offset, without which its samples lose their meaning."""
    with rasterio.open(pair[1]) as d:
        grey, prof = d.read(1).astype(np.float64), d.profile
    db = grey / 255 * 25 - 25
    stored = np.round((db + 40) * 1000).astype(np.uint16)
    tgt = tmp_path / "scaled.tif"
    with rasterio.open(tgt, "w", **dict(prof, dtype="uint16", nodata=None)) as o:
        o.write(stored, 1)
        o.scales, o.offsets = (0.001,), (-40.0,)
    r = _run(["register", pair[0], tgt, "-o", tmp_path / "out.tif"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["target"]["modality"] == "sar" and rep["target"]["modality_evidence"]["by"] == "values"
    assert rep["target"]["modality_evidence"]["values"]["reading"] == "dB-like backscatter"
    assert np.allclose(rep["shift"]["mean_px"], (6.0, -4.0), atol=0.3), rep["shift"]
    with rasterio.open(tmp_path / "out.tif") as d:
        assert d.scales == (0.001,) and d.offsets == (-40.0,)
        assert (d.read(1) == stored).all()  # the samples as stored


def test_linear_power_in_scaled_integers_goes_to_db(pair, tmp_path):
    """Linear power stored as scaled integers is linear power: the raster reads it as real numbers,
    which the SAR preprocessing turns into dB like any float power image."""
    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    with rasterio.open(pair[1]) as d:
        grey, prof = d.read(1).astype(np.float64), d.profile
    power = 10 ** ((grey / 255 * 25 - 25) / 10)
    tgt = tmp_path / "power.tif"
    with rasterio.open(tgt, "w", **dict(prof, dtype="uint16", nodata=None)) as o:
        o.write(np.round(power * 20000).astype(np.uint16), 1)
        o.scales = (1 / 20000,)
    with RasterSource(str(tgt), InputConfig(), "target") as src:
        data, valid = src.read_on_grid(src.grid)
        assert src.float_values and src.modality == "sar"
    assert np.allclose(data[valid], power[valid], rtol=0.02, atol=1e-4)


def test_a_reference_much_finer_than_the_target_is_matched_on_the_targets_pixels(small_pair, tmp_path):
    """A reference with 3x finer pixels (an orthophoto under a SAR scene): matched on the reference
    grid coarsened to the target's pixels (the overlap, 1728 px of the reference, keeps more than
    working_grid.MIN_WORKING_PX of them), the same correction on the ground as the pair at equal
    pixels, reported in reference pixels; an aligned output lies on the fine reference grid."""
    from affine import Affine
    from rasterio.enums import Resampling

    pair = small_pair("tgt.tif", size=576)

    with rasterio.open(pair[0]) as d:
        prof = d.profile
        fine = d.read(out_shape=(d.count, 3 * d.height, 3 * d.width), resampling=Resampling.cubic)
    ref = tmp_path / "fine.tif"
    with rasterio.open(ref, "w", **dict(prof, width=3 * prof["width"], height=3 * prof["height"],
                                        transform=prof["transform"] @ Affine.scale(1 / 3))) as o:
        o.write(fine)
    r = _run(["register", pair[0], pair[1], "-o", tmp_path / "plain.tif"])
    assert r.exit_code == 0, r.output
    plain = json.loads((tmp_path / "plain_report.json").read_text())
    r = _run(["register", ref, pair[1], "-o", tmp_path / "out.tif", "--align-grids"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["working_grid"]["reference_px_per_px"] == [3.0, 3.0] and plain["working_grid"] is None
    pixel = prof["transform"].a
    assert np.allclose(rep["shift"]["mean_map"], plain["shift"]["mean_map"], atol=0.3 * pixel)
    assert np.allclose(rep["shift"]["mean_px"], np.array(plain["shift"]["mean_px"]) * 3, atol=0.9)
    assert rep["quality"] == "reliable"
    with rasterio.open(tmp_path / "out.tif") as d:
        assert (d.width, d.height) == (3 * prof["width"], 3 * prof["height"])
    # the polish's move, reported in reference pixels: what separates the result from the unpolished one
    r = _run(["register", ref, pair[1], "-o", tmp_path / "rough.tif", "--no-polish"])
    assert r.exit_code == 0, r.output
    rough = json.loads((tmp_path / "rough_report.json").read_text())
    polish = rep["model"]["polish"]
    assert polish["applied"] and rough["model"]["polish"] is None
    moved = np.array(rep["shift"]["mean_px"]) - np.array(rough["shift"]["mean_px"])
    assert np.hypot(*moved) > 0.05 and np.allclose(moved, polish["shift_px"], atol=0.01), (moved, polish)
    # and its whole move as a matrix, in reference pixels too
    assert np.allclose(np.asarray(polish["correction"]) @ np.asarray(rough["model"]["matrix_px"]),
                       rep["model"]["matrix_px"], atol=1e-3), polish["correction"]


@pytest.mark.parametrize("factor", [5, 7])
def test_a_target_with_5_to_7x_coarser_pixels_is_found_to_a_fraction_of_its_pixel(volkov, tmp_path, factor):
    """An optical target at 50-70 m on a 10 m reference (the reference's green band, block-averaged,
    its geotransform off by (13.4, -8.7) reference px): matched on a coarsened grid, whose overlap
    is in that grid's pixels; the 1024 px overlap is coarsened about 2x, to MIN_WORKING_PX working
    pixels, not to the target's 146-204. With the overlap left in reference pixels the tie points
    all fell in one cell of the verdict's 4x4 coverage grid (`uncertain`, "the inliers cover 6% of
    the overlap") and, with `auto`, the 7x shift 11 m off."""
    import georeg
    from georeg.config import RegistrationConfig
    from georeg.working_grid import MIN_WORKING_PX

    ref = volkov / "176_S2_RGB.tif"
    with rasterio.open(ref) as d:
        green, prof = d.read(2).astype(np.float32), d.profile
    h = green.shape[0] // factor
    coarse = green[:h * factor, :h * factor].reshape(h, factor, h, factor).mean((1, 3))
    tgt = tmp_path / "target.tif"
    with rasterio.open(tgt, "w", driver="GTiff", width=h, height=h, count=1, dtype="uint16", crs=prof["crs"],
                       transform=prof["transform"] @ Affine.translation(13.4, -8.7) @ Affine.scale(factor)) as o:
        o.write((coarse * 37 + 500).astype("uint16")[None])
    cfg = RegistrationConfig().with_options(output={"quicklook": None}, matching={"matcher": "baseline"})
    res = georeg.register(str(ref), str(tgt), str(tmp_path / "out.tif"), cfg)
    assert res.quality == "reliable", res.report["verdict"]
    side = h * factor  # the overlap's side in reference pixels
    assert np.allclose(res.report["working_grid"]["reference_px_per_px"], side / MIN_WORKING_PX, rtol=0.02)
    assert res.report["verdict"]["coverage"] >= 0.5
    pixel = prof["transform"].a
    err = np.array(res.report["shift"]["mean_map"]) - (-13.4 * pixel, 8.7 * prof["transform"].e)
    assert np.all(np.abs(err) < 0.05 * factor * pixel), err


# the learned matcher's run in the slow run (6 s); the baseline's stays in the default run
@pytest.mark.parametrize("matcher", [pytest.param("auto", marks=pytest.mark.slow), "baseline"])
def test_a_coarse_reference_on_a_small_overlap_is_matched_on_a_finer_grid(volkov, tmp_path, matcher):
    """The S2 reference of pair 176 averaged to 60 m (171 px) under its 10 m S1 scene, off by
    (13.4, -8.7) px of 10 m: matched on the reference grid refined about 3x, to MIN_WORKING_PX
    across the overlap; the correction on the ground within 10 m (one target pixel) of the pair's
    at 10 m. On the reference's own 171 px, `auto` came out 16.9 m off on 42 tie points."""
    import georeg
    from georeg.config import RegistrationConfig
    from georeg.working_grid import MIN_WORKING_PX

    with rasterio.open(volkov / "176_S2_RGB.tif") as d:
        rgb, prof = d.read().astype(np.float32), d.profile
    with rasterio.open(volkov / "176_S1_VH.tif") as d:
        vh, t, tprof = d.read(), d.transform, d.profile
    tgt = tmp_path / "target.tif"
    with rasterio.open(tgt, "w", **dict(tprof, transform=t @ Affine.translation(13.4, -8.7))) as o:
        o.write(vh)
    h = rgb.shape[1] // 6
    ref = tmp_path / "reference.tif"
    with rasterio.open(ref, "w", **dict(prof, width=h, height=h, transform=prof["transform"] @ Affine.scale(6))) as o:
        o.write(rgb[:, :h * 6, :h * 6].reshape(3, h, 6, h, 6).mean((2, 4)).round().astype(np.uint8))
    cfg = RegistrationConfig().with_options(output={"quicklook": None}, matching={"matcher": matcher})
    plain = georeg.register(str(volkov / "176_S2_RGB.tif"), str(tgt), str(tmp_path / "plain.tif"), cfg)
    res = georeg.register(str(ref), str(tgt), str(tmp_path / "out.tif"), cfg)
    assert res.quality == "reliable", res.report["verdict"]
    off = np.subtract(res.report["shift"]["mean_map"], plain.report["shift"]["mean_map"])
    assert np.hypot(*off) < 10.0, off
    assert np.allclose(res.report["working_grid"]["reference_px_per_px"], h / MIN_WORKING_PX, rtol=0.02)
    assert "refined towards the target's pixels" in res.report["working_grid"]["note"]
    with rasterio.open(tmp_path / "out.tif") as d:  # the corrected target keeps its own 10 m pixels
        assert (d.width, d.height) == (vh.shape[2], vh.shape[1])


@pytest.mark.parametrize("metres", [60, 100])
def test_a_coarse_thermal_target_on_a_small_overlap_keeps_the_references_pixels(landsat, tmp_path, metres):
    """Landsat 8 B10 as brightness temperature (Kelvin floats, NaN outside), averaged to 60 or 100 m
    (TIRS's own pixels, an ECOSTRESS scene's are 70 m), its geotransform off by (2.6, -1.7) px of
    30 m, on B4 with the BQA mask: the 603 x 627 px overlap is too small to coarsen (it would keep
    fewer than MIN_WORKING_PX pixels across), so the matching stays on the 30 m grid. Coarsened to
    the target's pixels, both came out `uncertain` on 7-26 tie points, 10 and 41 m off."""
    import georeg
    from georeg.config import RegistrationConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from coarse_targets import averaged, brightness_temperature  # the benchmark's own conversions

    with rasterio.open(landsat / "l8_B10.tif") as d:
        kelvin, t, crs = brightness_temperature(d.read(1)), d.transform, d.crs
    coarse, ct = averaged(kelvin, t @ Affine.translation(2.6, -1.7), crs, metres)
    h, w = coarse.shape
    tgt = tmp_path / "scene.tif"
    with rasterio.open(tgt, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=crs,
                       transform=ct, nodata=float("nan")) as o:
        o.write(coarse, 1)
    cfg = RegistrationConfig().with_options(output={"quicklook": None}, reference={"mask": str(landsat / "l8_BQA.tif")})
    res = georeg.register(str(landsat / "l8_B4.tif"), str(tgt), str(tmp_path / "out.tif"), cfg)
    assert res.report["working_grid"] is None and res.report["target"]["modality"] == "thermal"
    assert res.quality == "reliable", res.report["verdict"]
    err = np.array(res.report["shift"]["mean_map"]) - (-2.6 * t.a, 1.7 * t.e)
    assert np.hypot(*err) < 0.35 * t.a, err  # the pair's own residual: B4 on B10 unmoved is 0.1-0.2 px


def _geographic_grids():
    """benchmarks/geographic_grids.py's ``placed`` and ``write``: pixels on a UTM 33N grid at a
    latitude, exported to EPSG:4326 (square degrees) or not, and written as a GeoTIFF."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from geographic_grids import placed, write

    return placed, write


# a real pair end to end (7 s): slow; square ground pixels are tested in test_warp.py and below
@pytest.mark.slow
def test_a_geographic_pair_far_north_is_matched_on_square_ground_pixels(volkov, tmp_path):
    """S1/S2 pair 176 placed at 65 degrees north and both exported to EPSG:4326, the S1 scene's
    georeferencing off by (13.4, -8.7) px of 10 m: the reference's pixels are 2.4 times taller than
    wide on the ground, so the matching works on square pixels of the same area; the correction on
    the ground within 3 m of the same pair's in UTM, the S1 scene read as SAR from its pixels and
    the shift reported in degrees and in ground metres. On the reference's own pixels the pairs
    050, 176 and 268 came out 1.5-12 m from their UTM results at 60-70 degrees, one `reliable`
    12 m off, and at 70 degrees every S1 scene was read as optical."""
    import georeg
    from georeg.config import RegistrationConfig

    with rasterio.open(volkov / "176_S2_RGB.tif") as d:
        rgb = d.read()
    with rasterio.open(volkov / "176_S1_VH.tif") as d:
        vh = d.read()
    placed, write = _geographic_grids()
    cfg = RegistrationConfig().with_options(output={"quicklook": None})
    res = {}
    for geo in (False, True):
        ref = write(tmp_path / f"ref{geo}.tif", placed(rgb, 65, 10.0, geographic=geo))
        tgt = write(tmp_path / f"scene{geo}.tif", placed(vh, 65, 10.0, (13.4, -8.7), geographic=geo))
        res[geo] = georeg.register(ref, tgt, str(tmp_path / f"out{geo}.tif"), cfg)
        assert res[geo].quality == "reliable", res[geo].report["verdict"]
        assert res[geo].report["target"]["modality"] == "sar", res[geo].report["target"]["modality_evidence"]
    utm, geo = res[False].report, res[True].report
    assert utm["working_grid"] is None and utm["shift"]["map_unit"] == "m"
    sx, sy = geo["working_grid"]["reference_px_per_px"]
    assert 2.2 < sx / sy < 2.6 and abs(sx * sy - 1) < 0.02, (sx, sy)  # square, the same area
    assert "taller than wide on the ground" in geo["working_grid"]["note"]
    assert geo["shift"]["map_unit"] == "degree" and abs(geo["shift"]["mean_map"][0]) < 0.01
    off = np.subtract(geo["shift"]["mean_m"], utm["shift"]["mean_m"])
    assert np.hypot(*off) < 3.0, (geo["shift"], utm["shift"])


@pytest.mark.parametrize("pair, latitude", [("050", 70), ("268", 70)])
def test_the_texture_of_a_band_exported_in_square_degrees_is_read_on_square_ground_pixels(volkov, pair, latitude):
    """S1 VH scenes exported to EPSG:4326 at 70 degrees north (pixels 2.9 times taller than wide on
    the ground) are read as SAR (81-89% sure); on their own pixels both were taken for optical (50
    and 74%). Thermal bands gain less (Landsat 8 B10 is `thermal` up to 45 degrees north either
    way; see README, Inputs)."""
    from rasterio.io import MemoryFile

    from georeg.modality import detect_modality

    with rasterio.open(volkov / f"{pair}_S1_VH.tif") as d:
        a = d.read(1)[None]
    placed = _geographic_grids()[0](a, latitude, 10.0)
    with MemoryFile() as mf:
        with mf.open(driver="GTiff", width=placed[0].shape[2], height=placed[0].shape[1], count=1,
                     dtype=placed[0].dtype, crs=placed[2], transform=placed[1], nodata=0) as o:
            o.write(placed[0])
        with mf.open() as ds:
            got = detect_modality(ds, [1], "scene.tif")
    assert got.modality == "sar" and got.by == "pixels", got.evidence


@pytest.mark.parametrize("option, name, fragment", [("-o", "out.png", "raster output"),
                                                    ("--tie-points", "tp.shp", "tie_points output"),
                                                    ("--quicklook", "ql.jpg", "quicklook output")])
def test_an_output_named_for_another_format_is_refused(pair, tmp_path, option, name, fragment):
    """The corrected raster is a GeoTIFF, the tie points a GeoPackage, the quicklook a PNG: a name
    with another extension would mislead every program that opens it."""
    args = ["register", pair[0], pair[1], "-o", tmp_path / "out.tif"]
    args += [option, tmp_path / name] if option != "-o" else []
    if option == "-o":
        args[-1] = tmp_path / name
    r = _run(args)
    _one_error_line(r, 2, fragment, name, "give it a")
    assert _files(tmp_path) == []


def test_a_product_folder_given_as_the_target_names_its_image_files(pair, tmp_path):
    """An unzipped Sentinel-1 SAFE folder handed over whole: the error names its measurement files."""
    safe = tmp_path / "S1A_IW_GRDH.SAFE"
    (safe / "measurement").mkdir(parents=True)
    (safe / "manifest.safe").write_text("<xfdu/>")
    for pol in ("vh", "vv"):
        (safe / "measurement" / f"s1a-iw-grd-{pol}.tiff").write_bytes(b"")
    r = _run(["register", pair[0], safe, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "is a folder", "measurement/s1a-iw-grd-vh.tiff", "measurement/s1a-iw-grd-vv.tiff")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _run(["register", pair[0], empty, "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "is a folder, expected a raster file")
    assert "such as" not in r.output


def test_rpc_georeferenced_reference_is_named_as_such(pair, tmp_path):
    """An RPC-georeferenced target is registered (tests/test_gcps.py); the reference may not be one."""
    from rasterio.rpc import RPC

    with rasterio.open(pair[0]) as d:
        arr, prof = d.read(), d.profile
    prof.pop("transform")
    prof.pop("crs")
    unit, one = [0.0] * 20, [1.0] + [0.0] * 19
    samp, line = list(unit), list(unit)
    samp[1], line[2] = 1.0, -1.0
    g = tmp_path / "rpc.tif"
    with rasterio.open(g, "w", **prof) as d:
        d.write(arr)
        d.rpcs = RPC(height_off=0, height_scale=100, lat_off=45.0, lat_scale=0.02, line_den_coeff=one,
                     line_num_coeff=line, line_off=160, line_scale=160, long_off=15.0, long_scale=0.03,
                     samp_den_coeff=one, samp_num_coeff=samp, samp_off=160, samp_scale=160)
    r = _run(["register", g, pair[1], "-o", tmp_path / "out.tif"])
    _one_error_line(r, 2, "reference", "rational polynomial coefficients", "gdalwarp -rpc")
    assert _files(tmp_path) == ["rpc.tif"]


# ---------------------------------------------------------------- 12, 13, 15: damaged weights
@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    import shutil

    import georeg.matchers.weights as W

    d = tmp_path / "weights"
    shutil.copytree(W.WEIGHTS_DIR, d)
    monkeypatch.setattr(W, "WEIGHTS_DIR", d)
    return d


def test_broken_weights_manifest(weights_copy):
    from georeg.errors import WeightsError, WeightsWarning
    from georeg.matchers import load, resolve_name

    (weights_copy / "kgl-opt-sar.json").write_text("{ not json")
    with pytest.raises(WeightsError, match="manifest .* is damaged"):
        load("kgl-opt-sar", "cpu")
    with pytest.warns(WeightsWarning, match="kgl-opt-sar.* is damaged"):
        assert resolve_name("auto", "sar") == "baseline"  # falls back, but says so


def test_rejected_weights_file_gets_one_line(weights_copy):
    import pickle

    import georeg.matchers.weights as W
    from georeg.errors import WeightsError

    pt = weights_copy / "kgl-opt-sar.pt"
    pt.write_bytes(pickle.dumps({"a": object()}))  # not a tensor file: torch's safe loader refuses it
    man = json.loads((weights_copy / "kgl-opt-sar.json").read_text())
    man["sha256"] = W.sha256(pt)
    (weights_copy / "kgl-opt-sar.json").write_text(json.dumps(man))
    with pytest.raises(WeightsError) as e:
        W.load_state("kgl-opt-sar")
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value) and "reinstall" in str(e.value)


def _ctrl_c_batch(batch_job, tmp_path, delay: float, must_interrupt: bool = False) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group (driver and workers)."""
    import signal

    m, _, _ = batch_job
    out = tmp_path / f"int{delay:.2f}"
    p = subprocess.Popen([*GEOREG, "batch", str(m), "-o", str(out), "--workers", "2", *FAST], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=sigint_as_in_a_terminal)
    time.sleep(delay)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert _group_gone(p.pid, 20)
    if p.returncode == 0 and not must_interrupt:
        return  # finished before the signal
    assert p.returncode == 130 and "Interrupted" in err and "Traceback" not in err, err
    # on a slow machine the signal can come before the output folder exists: nothing was written
    left = _files(out) if out.exists() else []
    assert [n for n in left if n.startswith(".")] == [], left


def test_ctrl_c_while_the_pool_forks_a_worker_is_not_lost(batch_job, tmp_path):
    """A Ctrl-C that lands while the batch's pool forks a worker raises its KeyboardInterrupt
    inside fork's at-fork callbacks, which print 'Exception ignored' and drop it: the batch then
    ran to its end with exit code 0 (seen once in the timed Ctrl-C test). Made deterministic
    here: the driver sends itself SIGINT from an at-fork callback of its first fork."""
    m, _, _ = batch_job
    out = tmp_path / "out"
    code = ("import os, signal, sys\n"
            "from georeg import batch\n"
            "from georeg.config import RegistrationConfig\n"
            "fired = []\n"
            "def hook():\n"
            "    if not fired:\n"
            "        fired.append(1)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        sum(range(1000))  # bytecode for the pending handler to run in, as logging's lock release\n"
            "os.register_at_fork(after_in_parent=hook)\n"
            "cfg = RegistrationConfig().with_options(matching={'matcher': 'baseline'})\n"
            "try:\n"
            f"    batch.run({str(m)!r}, {str(out)!r}, cfg, workers=2)\n"
            "    print('FINISHED')\n"
            "except KeyboardInterrupt:\n"
            "    print('INTERRUPTED')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       preexec_fn=sigint_as_in_a_terminal)
    assert "Exception ignored" in r.stderr  # the callback did swallow it
    assert r.stdout.strip() == "INTERRUPTED", (r.stdout, r.stderr[-2000:])
    assert [n for n in (_files(out) if out.exists() else []) if n.endswith(".tif")] == []


def test_a_stopped_pool_leaves_no_manager_thread_for_the_exit_handler():
    # CI once printed a traceback after 'Interrupted': the pool's manager thread, still running
    # at interpreter exit, closed its wake-up pipe while concurrent.futures' exit handler wrote
    # to it (EBADF). Before the fix the thread outlived _stop_pool in 8 of 10 tries.
    from concurrent.futures import ProcessPoolExecutor

    from georeg.batch import _stop_pool

    for _ in range(3):
        pool = ProcessPoolExecutor(2)
        futures = [pool.submit(time.sleep, 5) for _ in range(4)]
        time.sleep(0.3)
        manager = pool._executor_manager_thread
        t = time.perf_counter()
        _stop_pool(pool)
        assert not manager.is_alive() and time.perf_counter() - t < 5
        assert all(f.done() for f in futures[2:])


@needs_proc
@pytest.mark.parametrize("delays", _moments(0.6, 8, 1.0, 9.0, 4))
def test_ctrl_c_of_a_batch_leaves_no_partial_file(batch_job, tmp_path, delays):
    # the smoke moment falls inside the run: it must be interrupted, not finish. 0.6 of the
    # uninterrupted run is past start-up or, on a slow machine, in it, and either way must end in
    # 'Interrupted' (2026-12-05, a 2.4 s run: start-up until about 1.2 s, Ctrl-C at 1.0-2.0 s
    # interrupted, from 2.2 s the batch had finished)
    seconds = _seconds(delays, batch_job)
    for delay in seconds:
        _ctrl_c_batch(batch_job, tmp_path, delay, must_interrupt=delays[0] == "share")


# ---------------------------------------------------------------- 6: a huge, mostly empty pair
def test_sparse_mosaic_matches_only_the_tiles_with_data(tmp_path):
    """A 12000 px tiled, compressed, sparse pair whose data is one 600 px block: the empty tiles
    (144 of them) are never matched, and the result is the block's (benchmarks/sparse_memory.py
    measures time and memory at 60000 px)."""
    from rasterio.windows import Window

    blk = (tmp_path / "b_ref.tif", tmp_path / "b_tgt.tif")
    synthetic_pair(str(blk[0]), str(blk[1]), size=600, seed=3,
                   new_to_old=np.array([[1, 0, 5.0], [0, 1, -3.0], [0, 0, 1.0]]))
    size, off = 12000, 5700
    big = []
    for p in blk:
        with rasterio.open(p) as s:
            arr, prof, t = s.read(), s.profile, s.transform
        prof.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                    nodata=0, transform=t @ Affine.translation(-off, -off), sparse_ok=True)
        q = tmp_path / f"sparse_{p.name}"
        with rasterio.open(q, "w", **prof) as d:
            d.write(np.where(arr == 0, 1, arr).astype(prof["dtype"]), window=Window(off, off, 600, 600))
        big.append(q)
    out = tmp_path / "out" / "o.tif"
    out.parent.mkdir()
    r = _run(["register", *big, "-o", out, "--quicklook", "none"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "o_report.json").read_text())
    assert rep["counts"]["tiles"] == 1
    dx, dy = rep["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx - 5.0) < 0.3 and abs(dy + 3.0) < 0.3, (dx, dy)
    assert _files(out.parent) == ["o.tif", "o_report.json", "o_tiepoints.gpkg"]
