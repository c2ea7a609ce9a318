"""The CLI: every bad input gets a one-line message, the right exit code and no output file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from georeg.cli import georeg

SIZE = 320


@pytest.fixture(scope="module")
def pair(small_pair):
    return small_pair("sar_vh.tif")


def _write(path, arr, crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000), nodata=None):
    prof = dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype.name,
                transform=transform, nodata=nodata)
    if crs:
        prof["crs"] = crs
    with rasterio.open(path, "w", **prof) as d:
        d.write(arr[None])
    return path


def _run(args):
    return CliRunner().invoke(georeg, [str(a) for a in args])


def _outputs_left(folder, names=("out",)):
    return sorted(p.name for p in folder.iterdir() if any(p.name.startswith(n) or p.name.startswith("." + n)
                                                         for n in names))


def test_register_writes_all_outputs(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out.tif"
    r = _run(["register", ref, tgt, "-o", out, "--model", "translation", "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.tif", "out_quicklook.png", "out_report.json", "out_tiepoints.gpkg"]
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["model"]["type"] == "translation"
    assert np.allclose(rep["model"]["matrix_px"][0][2], 6.0, atol=0.5)
    assert np.allclose(rep["model"]["matrix_px"][1][2], -4.0, atol=0.5)
    with rasterio.open(out) as d, rasterio.open(tgt) as t:
        assert d.shape == t.shape and (d.read() == t.read()).all()  # geotransform-only
        assert abs(d.transform.c - t.transform.c - 60.0) < 5 and abs(d.transform.f - t.transform.f - 40.0) < 5


def test_register_says_how_the_target_was_read(pair, tmp_path):
    r = _run(["register", *pair, "-o", tmp_path / "out.tif", "--matcher", "baseline", "--modality", "sar",
              "--quicklook", "none", "--tie-points", "none", "--report", "none"])
    assert r.exit_code == 0, r.output
    assert "  target read as sar (as given), matched with baseline\n" in r.output
    # the verdict, with the precision it measured (the report's bootstrap corner movement)
    assert re.search(r"\n  reliable; the model moves up to \d+\.\d px at the corners when its tie points are "
                     r"resampled\n", r.output), r.output
    # front ends (the QGIS plugin's subprocess path) get the same line in the RESULT record
    r = _run(["--machine", "register", *pair, "-o", tmp_path / "out.tif", "--matcher", "baseline", "--modality", "sar",
              "--quicklook", "none", "--tie-points", "none", "--report", "none", "--overwrite"])
    result = json.loads([ln for ln in r.output.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert result["target"] == "target read as sar (as given), matched with baseline"


def test_register_output_exists_without_overwrite(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    r = _run(["register", ref, tgt, "-o", out, "--report", "none", "--quicklook", "none", "--tie-points", "none"])
    assert r.exit_code == 2
    assert f"Error: output exists: {out}; use --overwrite" in r.output
    assert out.read_bytes() == b"keep me"
    assert _outputs_left(tmp_path) == ["out.tif"]


def _bad(tmp_path, ref, tgt, expected_code, expected_msg, extra=()):
    out = tmp_path / "out.tif"
    r = _run(["register", ref, tgt, "-o", out, *extra])
    assert r.exit_code == expected_code, r.output
    assert expected_msg in r.output, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in r.output
    assert _outputs_left(tmp_path) == [], "no output may be left behind"


def test_missing_file(pair, tmp_path):
    _bad(tmp_path, pair[0], tmp_path / "nope.tif", 2, "target raster not found")


def test_not_a_raster(pair, tmp_path):
    txt = tmp_path / "notes.tif"
    txt.write_text("this is not a raster")
    _bad(tmp_path, txt, pair[1], 2, "reference file is not a raster GDAL can read")


def test_no_crs(pair, tmp_path):
    with rasterio.open(pair[1]) as d:
        arr = d.read(1)
    nocrs = _write(tmp_path / "nocrs.tif", arr, crs=None)
    _bad(tmp_path, pair[0], nocrs, 2, "target raster has a geotransform but no CRS")
    assert "--target-crs" in _run(["register", pair[0], nocrs, "-o", tmp_path / "out.tif"]).output
    for bad in ("EPSG:99999", "not a crs", "EPSG:5773"):  # unknown, not one at all, a vertical CRS
        _bad(tmp_path, pair[0], nocrs, 2, "--ref-crs or --target-crs (InputConfig.crs) must", ("--target-crs", bad))


def test_a_crs_given_for_a_world_file_places_the_target_and_its_other_bands(pair, tmp_path):
    """A PNG with a world file and no .prj, as exports often are: --target-crs says its CRS; the
    corrected copy carries it, the report says it was assigned, and `apply` reads another band of
    the same export in it (a raster with a CRS of its own keeps that one; --crs overrides)."""
    from PIL import Image

    with rasterio.open(pair[1]) as d:
        arr, t = d.read(1), d.transform
    for name in ("vh", "vv"):
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
        # a world file gives the first pixel's centre
        (tmp_path / f"{name}.pgw").write_text(f"{t.a}\n{t.d}\n{t.b}\n{t.e}\n{t.c + t.a / 2}\n{t.f + t.e / 2}\n")
    out = tmp_path / "out.tif"
    r = _run(["register", pair[0], tmp_path / "vh.png", "-o", out, "--model", "translation", "-q",
              "--target-crs", "32633"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["target"]["crs"] == "EPSG:32633" and rep["target"]["crs_assigned"]
    assert rep["target"]["crs_in_file"] is None
    assert not rep["reference"]["crs_assigned"]
    assert np.allclose(np.array(rep["model"]["matrix_px"])[:2, 2], (6.0, -4.0), atol=0.5)
    with rasterio.open(out) as d:
        assert d.crs == "EPSG:32633" and abs(d.transform.c - t.c - 60.0) < 5 and abs(d.transform.f - t.f - 40.0) < 5
        moved = d.transform
    r = _run(["apply", tmp_path / "out_report.json", tmp_path / "vv.png", "-o", tmp_path / "vv.tif"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "vv.tif") as d:
        assert d.crs == "EPSG:32633" and d.transform.almost_equals(moved)
    r = _run(["apply", tmp_path / "out_report.json", tmp_path / "vv.png", "-o", tmp_path / "vv4326.tif",
              "--crs", "EPSG:4326"])  # the file's ground is then elsewhere: refused, nothing written
    assert r.exit_code == 2 and "does not overlap" in r.output and not (tmp_path / "vv4326.tif").exists()


def test_no_overlap(pair, tmp_path):
    with rasterio.open(pair[1]) as d:
        arr = d.read(1)
    far = _write(tmp_path / "far.tif", arr, transform=Affine(10, 0, 700000, 0, -10, 5000000))
    _bad(tmp_path, pair[0], far, 2, "reference and target do not overlap")


def test_overlap_all_nodata(pair, tmp_path):
    empty = _write(tmp_path / "empty.tif", np.zeros((SIZE, SIZE), np.uint8), nodata=0)
    _bad(tmp_path, pair[0], empty, 2, "no pixel there is valid in both rasters")


def test_a_blank_target_is_refused_before_any_search(pair, tmp_path):
    """A constant band (a wrong band, a blank export) cannot be matched by any search: it is refused
    at the coarse pass, not after every search found 0 tie points (12 s, advising a larger
    --max-shift)."""
    flat = _write(tmp_path / "flat.tif", np.full((SIZE, SIZE), 90, np.uint8))
    _bad(tmp_path, pair[0], flat, 2, "the target has no contrast over the overlap: every valid pixel there is 90")


def test_too_few_tie_points(pair, tmp_path):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    ramp = _write(tmp_path / "ramp.tif", (60 + (xx + yy) // 8).astype(np.uint8))  # no corner to match
    out = tmp_path / "out.tif"
    # the shift search and the weight-free matcher: the message is the estimator's whatever ran
    # before it, and every search on a cornerless target takes 13 s
    r = _run(["register", pair[0], ramp, "-o", out, "--search", "shift", "--matcher", "baseline"])
    assert r.exit_code == 1, r.output
    assert "too few tie points for the 'auto' model: found 0, need at least 4" in r.output
    assert "Try a larger --max-shift" in r.output
    assert _outputs_left(tmp_path) == []


def test_unknown_matcher(pair, tmp_path):
    _bad(tmp_path, pair[0], pair[1], 2, "unknown matcher 'superglue'", ["--matcher", "superglue"])


def test_bad_option_value(pair, tmp_path):
    _bad(tmp_path, pair[0], pair[1], 2, "max shift must be", ["--max-shift", "12km"])


def test_missing_mask(pair, tmp_path):
    _bad(tmp_path, pair[0], pair[1], 2, "target mask not found", ["--target-mask", tmp_path / "m.tif"])


def test_bad_model_is_usage_error(pair, tmp_path):
    r = _run(["register", pair[0], pair[1], "-o", tmp_path / "out.tif", "--model", "spline"])
    assert r.exit_code == 2 and "Invalid value for '--model'" in r.output


def test_help_does_not_import_torch():
    code = "import sys; from georeg.cli import georeg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("case", ["output exists", "reference missing", "mask missing", "bad creation option",
                                  "manifest missing", "report missing"])
def test_path_mistakes_are_answered_before_torch_is_imported(pair, tmp_path, case):
    """A mistyped path, an existing output or a creation option GDAL refuses is answered before
    the heavy imports (torch: 1.3 s)."""
    ref, tgt = pair
    out = tmp_path / "out.tif"
    args = ["register", str(ref), str(tgt), "-o", str(out)]
    if case == "output exists":
        out.write_bytes(b"keep me")
    elif case == "reference missing":
        args[1] = str(tmp_path / "nope.tif")
    elif case == "mask missing":
        args += ["--ref-mask", str(tmp_path / "m.tif")]
    elif case == "bad creation option":
        args += ["--co", "BOGUS=1"]
    elif case == "manifest missing":
        args = ["batch", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "outdir")]
    else:
        args = ["apply", str(tmp_path / "nope.json"), str(tgt), "-o", str(out)]
    code = ("import sys; from click.testing import CliRunner; from georeg.cli import georeg; "
            f"r = CliRunner().invoke(georeg, {args!r}); print(r.exit_code, 'torch' in sys.modules); print(r.output)")
    out_lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    assert out_lines[0] == "2 False", out_lines
    expected = {"output exists": "Error: output exists", "reference missing": "Error: reference raster not found",
                "mask missing": "Error: reference mask not found",
                "bad creation option": "Error: GDAL's GTiff driver refused the creation options BOGUS=1",
                "manifest missing": "Error: manifest not found", "report missing": "Error: report not found"}[case]
    assert any(line.startswith(expected) for line in out_lines[1:]), out_lines
    assert not (tmp_path / "outdir").exists(), "a refused batch leaves no output folder"


@pytest.mark.parametrize("thread", [False, True])
def test_leave_runs_exit_functions_flushes_and_keeps_the_code(thread):
    """The CLI ends without the interpreter's teardown (0.25-0.4 s with torch loaded), but what
    asked to run at exit still runs, a piped stdout keeps every byte, the exit code is the
    command's, and a thread that Python would wait for is waited for."""
    code = ("import atexit, sys, threading, time\n"
            "from georeg.cli import leave\n"
            "atexit.register(lambda: print('exit function ran'))\n"
            + ("threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished'))).start()\n"
               if thread else "")
            + "sys.stdout.write('#' * 100000)\n"
            "print('last line')\n"
            "leave(3)\n"
            "print('not reached')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe's stdout buffered
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 3, r.stderr
    assert r.stdout.count("#") == 100000
    lines = r.stdout.replace("#", "").splitlines()
    assert "last line" in lines and "exit function ran" in lines and "not reached" not in lines
    assert ("thread finished" in lines) == thread


def test_info_lists_baseline():
    r = _run(["info"])
    assert r.exit_code == 0
    assert "baseline" in r.output and "torch" in r.output


def test_console_script_and_rio_plugin():
    import shutil
    from pathlib import Path

    def find(name):
        beside = Path(sys.executable).parent / name  # the virtual environment's bin/
        return str(beside) if beside.exists() else shutil.which(name)

    exe = find("georeg")
    if exe is None:
        pytest.skip("the georeg console script is not installed (pip install -e .)")
    assert subprocess.run([exe, "--help"], capture_output=True, text=True).returncode == 0
    # usage errors keep click's exit code 2; a reader that leaves early ('| head -1') is no error
    r = subprocess.run([exe, "register", "a.tif"], capture_output=True, text=True)
    assert r.returncode == 2 and "Missing argument 'TARGET'" in r.stderr, r.stderr
    p = subprocess.Popen([exe, "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait() == 141 and err == "", err
    rio = find("rio")
    if rio is None:
        pytest.skip("rasterio's rio command is not on PATH")
    out = subprocess.run([rio, "georeg", "register", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--max-shift" in out.stdout


def test_truncated_raster(pair, tmp_path):
    """A file cut short by a failed download: GDAL opens the header, reading fails."""
    data = pair[1].read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.tif"
    r = _run(["register", pair[0], cut, "-o", out])
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "Traceback" not in r.output
    assert "could not read the target raster" in r.output or "not a raster GDAL can read" in r.output
    assert _outputs_left(tmp_path) == []


def test_creation_options_reach_the_output_and_apply(pair, tmp_path):
    ref, tgt = pair
    out = tmp_path / "out.tif"
    r = _run(["register", ref, tgt, "-o", out, "--matcher", "baseline", "--quicklook", "none", "-q",
              "--co", "compress=zstd", "--co", "BLOCKXSIZE=128", "--co", "BLOCKYSIZE=128"])
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as d:
        assert d.compression.name.lower() == "zstd" and d.block_shapes[0] == (128, 128)
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["config"]["output"]["creation_options"] == ["COMPRESS=zstd", "BLOCKXSIZE=128", "BLOCKYSIZE=128"]
    # apply keeps the registration's options unless told otherwise
    r = _run(["apply", tmp_path / "out_report.json", tgt, "-o", tmp_path / "again.tif"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "again.tif") as d:
        assert d.compression.name.lower() == "zstd" and d.block_shapes[0] == (128, 128)
    r = _run(["apply", tmp_path / "out_report.json", tgt, "-o", tmp_path / "lzw.tif", "--co", "COMPRESS=LZW"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "lzw.tif") as d:
        assert d.compression.name.lower() == "lzw" and d.block_shapes[0] != (128, 128)
    # a COG with the COG driver's own options
    r = _run(["register", ref, tgt, "-o", tmp_path / "cog.tif", "--matcher", "baseline", "--quicklook", "none",
              "-q", "--cog", "--co", "BLOCKSIZE=128", "--co", "OVERVIEWS=AUTO"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "cog.tif") as d:
        assert d.block_shapes[0] == (128, 128) and d.overviews(1) and d.compression.name.lower() == "deflate"


@pytest.mark.parametrize("options, message", [
    (["--co", "FOO=BAR"], "refused the creation options FOO=BAR: driver GTiff does not support creation option FOO"),
    (["--co", "COMPRESS=NOPE"], "'NOPE' is an unexpected value for COMPRESS"),
    (["--co", "COMPRESS"], "creation option 'COMPRESS' is not NAME=VALUE"),
    (["--cog", "--co", "BLOCKXSIZE=128"], "COG driver refused the creation options BLOCKXSIZE=128"),
])
def test_bad_creation_options(pair, tmp_path, options, message):
    _bad(tmp_path, *pair, 2, message, ["--matcher", "baseline", *options])


def test_batch_refuses_bad_creation_options_before_any_work(pair, tmp_path):
    ref, tgt = pair
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"reference,target\n{ref},{tgt}\n")
    r = _run(["batch", manifest, "-o", tmp_path / "out", "--co", "FOO=BAR"])
    assert r.exit_code == 2 and "does not support creation option FOO" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_georeg_warnings_are_filterable_and_printed_by_the_cli(monkeypatch, capsys):
    import warnings

    from georeg import cli_support
    from georeg.errors import FallbackWarning, GeoregWarning, UncertainResultWarning
    from georeg.matchers import resolve_name

    assert issubclass(UncertainResultWarning, GeoregWarning) and issubclass(GeoregWarning, UserWarning)
    with pytest.warns(FallbackWarning, match="target modality is optical"):
        assert resolve_name("kgl", "optical") == "kgl-opt-ir"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # a caller can make them errors
        with pytest.raises(FallbackWarning):
            resolve_name("rrl", "optical")
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    with warnings.catch_warnings():
        cli_support._route_warnings(quiet=False)
        resolve_name("kgl", "optical")
        resolve_name("kgl", "optical")  # every time, not once per place
        warnings.warn("not ours", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("warning: target modality is optical; using the kgl-opt-ir weights") == 2
    assert "FallbackWarning" not in err


def test_a_target_on_0_360_longitudes_registers_like_its_twin_on_minus_180_180(pair, tmp_path):
    """Climate and ocean products often store longitudes 0-360. GDAL's warper placed such a target
    off the reference's map while the footprints (wrapped by PROJ) overlapped: 'no pixel is
    valid in both'. Read 360 degrees back, it gets its twin's correction, written in its own
    longitudes."""
    from rasterio.warp import calculate_default_transform, reproject

    with rasterio.open(pair[1]) as s:
        t, w, h = calculate_default_transform(s.crs, "EPSG:4326", s.width, s.height, *s.bounds)
        arr = np.zeros((h, w), np.uint8)
        reproject(s.read(1), arr, src_transform=s.transform, src_crs=s.crs, dst_transform=t, dst_crs="EPSG:4326")
    # the synthetic scene lies at 15 degrees east: put it at -165 (195 on 0-360 longitudes)
    t = Affine.translation(-180, 0) @ t
    results = {}
    for name, shift in (("east", 360.0), ("west", 0.0)):
        path = _write(tmp_path / f"{name}.tif", arr, crs="EPSG:4326", transform=Affine.translation(shift, 0) @ t,
                      nodata=0)
        ref = tmp_path / f"ref_{name}.tif"
        with rasterio.open(pair[0]) as r:  # the reference moved with it, in its UTM zone's CRS (now zone 3)
            prof = dict(r.profile, crs="EPSG:32603")
            with rasterio.open(ref, "w", **prof) as d:
                d.write(r.read())
        out = tmp_path / f"out_{name}.tif"
        r = _run(["register", ref, path, "-o", out, "--model", "translation", "-q"])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / f"out_{name}_report.json").read_text())
        with rasterio.open(out) as d:
            results[name] = (np.array(rep["model"]["matrix_px"]), rep["target"]["longitude_shift_deg"], d.transform)
    (m_w, s_w, t_w), (m_e, s_e, t_e) = results["west"], results["east"]
    assert (s_w, s_e) == (0.0, -360.0) and np.allclose(m_w, m_e, atol=1e-6)
    assert abs(m_w[0, 2] - 6.0) < 0.5 and abs(m_w[1, 2] + 4.0) < 0.5
    assert t_e.c == pytest.approx(t_w.c + 360.0, abs=1e-9) and t_e.f == pytest.approx(t_w.f, abs=1e-9)


def test_a_raster_across_the_antimeridian_is_read_whole_either_side_of_it(pair, tmp_path):
    """A scene that crosses 180 degrees (Fiji, Chukotka, the Aleutians) exported to EPSG:4326 runs
    past 180 (or, written the other way round, past -180). GDAL's warper maps positions of the other
    raster's CRS to -180..180, and read only the part on one side: half the target, half the
    overlap (an S1/S2 pair's result 3-6 px from the same pair's on UTM, or `uncertain`, and
    different for the two ways of writing the same file). Read with its longitudes wrapped around
    its centre, the target gets the same correction both ways, (6, -4) px as on UTM, written in the
    file's own longitudes and EPSG:4326; and so does a reference across it."""
    import geopandas as gpd
    from rasterio.crs import CRS
    from rasterio.warp import reproject
    from rasterio.warp import transform as crs_transform

    import georeg
    from georeg.config import RegistrationConfig

    with rasterio.open(pair[0]) as r, rasterio.open(pair[1]) as t:
        ref_arr, tgt_arr, w, h = r.read(1), t.read(1), r.width, r.height
    xs, ys = crs_transform("EPSG:4326", "EPSG:32660", [180.0], [60.0])  # zone 60's east, at 60 degrees north
    utm = Affine(10, 0, xs[0] - w * 5, 0, -10, ys[0] + h * 5)
    deg = Affine(10 / 55800, 0, 180.0 - w * 5 / 55800, 0, -10 / 111400, 60.0 + h * 5 / 111400)  # about 10 m

    def geographic(arr, path, west_of=False):
        out = np.zeros((h, w), arr.dtype)
        reproject(arr, out, src_transform=utm, src_crs="EPSG:32660", dst_transform=deg,
                  dst_crs="+proj=longlat +datum=WGS84 +lon_wrap=180")
        return _write(path, out, crs="EPSG:4326", transform=Affine.translation(-360 if west_of else 0, 0) @ deg,
                      nodata=0)

    cfg = RegistrationConfig().with_options(output={"tie_points": "auto"})
    ref_utm = _write(tmp_path / "ref.tif", ref_arr, crs="EPSG:32660", transform=utm)
    results = {}
    for name in ("east", "west"):
        tgt = geographic(tgt_arr, tmp_path / f"scene_{name}.tif", west_of=name == "west")
        res = georeg.register(str(ref_utm), str(tgt), str(tmp_path / f"out_{name}.tif"), cfg)
        assert res.quality == "reliable", res.report["verdict"]["reason"]
        with rasterio.open(tmp_path / f"out_{name}.tif") as d:
            assert d.crs == CRS.from_epsg(4326)
            results[name] = (np.array(res.report["model"]["matrix_px"]), d.transform, res.report["counts"]["inliers"])
        assert gpd.read_file(tmp_path / f"out_{name}_tiepoints.gpkg").crs.to_epsg() == 32660
    (m_e, t_e, n_e), (m_w, t_w, n_w) = results["east"], results["west"]
    assert np.allclose(m_e, m_w, atol=1e-6) and n_e == n_w
    assert np.abs(m_e[:2, 2] - (6.0, -4.0)).max() < 0.5, m_e
    assert 179.0 < t_e.c < 180.0 and t_w.c == pytest.approx(t_e.c - 360.0, abs=1e-9)
    # a mask on the target's pixels (a block east of 180 left out) is placed as the target is
    block = np.full((h, w), 255, np.uint8)
    block[100:160, 200:260] = 0
    mask = _write(tmp_path / "mask_east.tif", block, crs="EPSG:4326", transform=deg)
    res = georeg.register(str(ref_utm), str(tmp_path / "scene_east.tif"), str(tmp_path / "out_mask.tif"),
                          cfg.with_options(target={"mask": str(mask)}))
    assert res.quality == "reliable" and res.report["counts"]["inliers"] >= 0.8 * n_e, res.report["counts"]
    # the reference across it, the target on UTM: the working grid is the reference's
    ref_deg = geographic(ref_arr, tmp_path / "ref_east.tif")
    tgt_utm = _write(tmp_path / "scene_utm.tif", tgt_arr, crs="EPSG:32660", transform=utm)
    res = georeg.register(str(ref_deg), str(tgt_utm), str(tmp_path / "out_ref.tif"), cfg)
    assert res.quality == "reliable" and res.report["counts"]["inliers"] >= 0.8 * n_e, res.report["counts"]
    assert gpd.read_file(tmp_path / "out_ref_tiepoints.gpkg").crs.to_epsg() == 4326
    assert res.report["reference"]["crs"] == "EPSG:4326" and "lon_wrap" not in res.report["reference"]["crs_wkt"]


def test_a_local_crs_against_a_map_crs_is_one_clear_error(pair, tmp_path):
    """A raster in a local (engineering) CRS, as drone surveys and CAD exports carry, against one
    in a map CRS: no coordinate operation relates them (an internal error from PROJ before).
    Both in the same local CRS register; --target-crs names the map CRS of a mislabelled one."""
    from rasterio.crs import CRS

    local = CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    paths = {}
    for name, src in (("ref", pair[0]), ("tgt", pair[1])):
        with rasterio.open(src) as s:
            prof = dict(s.profile, crs=local)
            paths[name] = tmp_path / f"local_{name}.tif"
            with rasterio.open(paths[name], "w", **prof) as d:
                d.write(s.read())
    _bad(tmp_path, pair[0], paths["tgt"], 2, "target raster")
    r = _run(["register", pair[0], paths["tgt"], "-o", tmp_path / "out.tif"])
    assert "local (engineering) CRS ('site grid')" in r.output and "--target-crs" in r.output
    r = _run(["register", paths["ref"], pair[1], "-o", tmp_path / "out.tif"])
    assert r.exit_code == 2 and "--ref-crs" in r.output and "Traceback" not in r.output
    for ref, tgt, extra in ((paths["ref"], paths["tgt"], []), (pair[0], paths["tgt"], ["--target-crs", "EPSG:32633"])):
        r = _run(["register", ref, tgt, "-o", tmp_path / "out.tif", "--model", "translation", "-q", "--overwrite",
                  *extra])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / "out_report.json").read_text())
        assert np.allclose(np.array(rep["model"]["matrix_px"])[:2, 2], (6.0, -4.0), atol=0.5)
