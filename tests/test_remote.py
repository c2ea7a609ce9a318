"""Rasters read over HTTP from a real server on 127.0.0.1 that serves byte ranges, as object stores
and web servers do: registration reads only what it needs, and failures are one clear line."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from click.testing import CliRunner
from rasterio.windows import Window
from synthetic import synthetic_pair

from georeg.cli import georeg


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files of one folder with HTTP Range support; counts the bytes it sends per file."""

    sent: dict = {}

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = Path(self.translate_path(self.path))
        if self.path.startswith("/private/"):  # what a bucket without read access answers
            self.send_error(403)
            return
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = (int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1) if m else (0, size - 1)
        end = min(end, size - 1)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206 if m else 200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.write(body)
        _RangeHandler.sent[path.name] = _RangeHandler.sent.get(path.name, 0) + len(body)

    def do_HEAD(self):  # noqa: N802
        path = Path(self.translate_path(self.path))
        if self.path.startswith("/private/"):
            self.send_error(403)
            return
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """COGs: a 2000 px reference and a 600 px target that covers a small part of it."""
    d = tmp_path_factory.mktemp("www")
    ref_full, tgt_full = d / "ref_full.tif", d / "tgt_full.tif"
    synthetic_pair(str(ref_full), str(tgt_full), size=2000, seed=11,
                   new_to_old=np.array([[1, 0, 4.0], [0, 1, -2.0], [0, 0, 1.0]]))
    with rasterio.open(tgt_full) as s:
        win = Window(700, 700, 600, 600)
        arr, prof, t = s.read(window=win), s.profile, s.window_transform(win)
    prof.update(width=600, height=600, transform=t)
    with rasterio.open(d / "tgt_part.tif", "w", **prof) as o:
        o.write(arr)
    for name in ("ref_full", "tgt_part"):
        rasterio.shutil.copy(str(d / f"{name}.tif"), str(d / f"{name}_cog.tif"), driver="COG", COMPRESS="DEFLATE")
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(d), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", d
    httpd.shutdown()


def test_register_cogs_over_http_reads_only_what_it_needs(server, tmp_path):
    base, folder = server

    _RangeHandler.sent.clear()
    out = tmp_path / "out.tif"
    r = CliRunner().invoke(georeg, ["register", f"{base}/ref_full_cog.tif", f"{base}/tgt_part_cog.tif", "-o",
                                    str(out), "--matcher", "baseline", "--quicklook", "none"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["target"]["path"].startswith("http://")
    dx, dy = rep["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx - 4.0) < 0.3 and abs(dy + 2.0) < 0.3
    ref_size = (folder / "ref_full_cog.tif").stat().st_size
    # the target covers 9% of the reference: only its neighbourhood and overviews are fetched (917 KB
    # of 4.5 MB; 1.13 MB since a 256 px read, an overview, looks for a zero collar)
    assert 0 < _RangeHandler.sent["ref_full_cog.tif"] < 0.3 * ref_size, (_RangeHandler.sent, ref_size)


def test_missing_url_is_one_line_with_the_status(server, tmp_path):
    base, _ = server
    r = CliRunner().invoke(georeg, ["register", f"{base}/ref_full_cog.tif", f"{base}/nope.tif", "-o",
                                    str(tmp_path / "out.tif"), "--matcher", "baseline"])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and f"{base}/nope.tif" in errors[0] and "HTTP 404" in errors[0], r.output
    assert os.listdir(tmp_path) == []


def test_unreachable_server_and_url_output(tmp_path):
    r = CliRunner().invoke(georeg, ["register", "http://127.0.0.1:9/a.tif", "http://127.0.0.1:9/b.tif", "-o",
                                    str(tmp_path / "out.tif")])
    assert r.exit_code == 2 and "could not read http://127.0.0.1:9/a.tif" in r.output, r.output
    r = CliRunner().invoke(georeg, ["register", "a.tif", "b.tif", "-o", "https://example.com/out.tif"])
    assert r.exit_code == 2 and "georeg writes local files" in r.output, r.output


def test_forbidden_url_says_access_denied(server, tmp_path):
    base, folder = server
    r = CliRunner().invoke(georeg, ["register", f"{base}/ref_full_cog.tif", f"{base}/private/tgt_part_cog.tif",
                                    "-o", str(tmp_path / "out.tif"), "--matcher", "baseline"])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "HTTP 403 (access denied)" in errors[0] and "credentials" in errors[0], r.output
    assert os.listdir(tmp_path) == []


# --- an S3-compatible object store (moto in server mode) on 127.0.0.1 ----------------------------------------

@pytest.fixture(scope="module")
def s3(server):
    """A bucket 'scenes' holding the COGs of the HTTP fixture; yields the environment GDAL needs."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency: pip install -e '.[dev]'")
    boto3 = pytest.importorskip("boto3")
    _, folder = server
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="scenes")
    for name in ("ref_full_cog.tif", "tgt_part_cog.tif"):
        client.upload_file(str(folder / name), "scenes", f"s2/{name}")
    yield env
    srv.stop()


def test_register_and_batch_from_s3(s3, tmp_path, monkeypatch):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out.tif"
    r = CliRunner().invoke(georeg, ["register", "s3://scenes/s2/ref_full_cog.tif", "s3://scenes/s2/tgt_part_cog.tif",
                                    "-o", str(out), "--matcher", "baseline", "--quicklook", "none"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    assert rep["reference"]["path"] == "s3://scenes/s2/ref_full_cog.tif"
    dx, dy = rep["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx - 4.0) < 0.3 and abs(dy + 2.0) < 0.3
    with rasterio.open(out) as d:
        assert d.width == 600 and d.read(1).any()

    # a batch manifest may name object-store rasters too; they are not resolved against its folder
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("reference,target,matcher\ns3://scenes/s2/ref_full_cog.tif,s3://scenes/s2/tgt_part_cog.tif,"
                        "baseline\n")
    r = CliRunner().invoke(georeg, ["batch", str(manifest), "-o", str(tmp_path / "batch"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "batch" / "tgt_part_cog_registered.tif").exists(), os.listdir(tmp_path / "batch")


def test_a_fresh_command_reads_s3_with_boto3_imported_at_first_use(s3, tmp_path):
    """The CLI leaves boto3 unimported until an S3 session needs it (georeg.runtime.defer_boto3):
    a fresh process registers from the bucket as before."""
    import subprocess
    import sys

    env = {**os.environ, **s3, "GEOREG_SERVER": "off"}
    out = tmp_path / "out.tif"
    r = subprocess.run([sys.executable, "-m", "georeg.cli", "register", "s3://scenes/s2/ref_full_cog.tif",
                        "s3://scenes/s2/tgt_part_cog.tif", "-o", str(out), "--matcher", "baseline", "--quicklook",
                        "none", "-q"], capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    dx, dy = json.loads((tmp_path / "out_report.json").read_text())["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx - 4.0) < 0.3 and abs(dy + 2.0) < 0.3


def test_missing_s3_key_is_one_line(s3, tmp_path, monkeypatch):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    r = CliRunner().invoke(georeg, ["register", "s3://scenes/s2/ref_full_cog.tif", "s3://scenes/s2/absent.tif",
                                    "-o", str(tmp_path / "out.tif"), "--matcher", "baseline"])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "s3://scenes/s2/absent.tif" in errors[0] and "no such object" in errors[0], r.output
    assert os.listdir(tmp_path) == []
    r = CliRunner().invoke(georeg, ["register", "s3://elsewhere/ref.tif", "s3://scenes/s2/tgt_part_cog.tif",
                                    "-o", str(tmp_path / "out.tif"), "--matcher", "baseline"])
    assert r.exit_code == 2 and r.output.count("Error") == 1, r.output
    assert "could not read s3://elsewhere/ref.tif: no such" in r.output, r.output
    assert os.listdir(tmp_path) == []


def test_object_store_errors_are_explained():
    from georeg.remote import explain
    url = "s3://b/k.tif"
    assert "access denied (HTTP 403)" in explain(url, RuntimeError("AccessDenied: Access Denied"))
    assert "access denied (HTTP 403)" in explain(url, RuntimeError("The AWS Access Key Id you provided does not "
                                                                  "exist in our records. InvalidAccessKeyId"))
    assert "HTTP 503 (service unavailable)" in explain(url, RuntimeError("HTTP response code: 503"))
    assert "did not answer in time" in explain(url, RuntimeError("Operation timed out after 30000 ms"))


@pytest.mark.slow
def test_sentinel2_tile_sized_cogs_are_read_by_windows(tmp_path):
    """A 10980 px reference COG (a Sentinel-2 tile) and a 10980 px target COG whose footprints share a
    1500 px corner: registration fetches that corner of the reference (and overview bytes), a few percent
    of the file, and the target once, for its corrected copy."""
    size, part, seed = 10980, 1500, 5
    synthetic_pair(str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), size=part, seed=seed,
                   new_to_old=np.array([[1, 0, 4.0], [0, 1, -2.0], [0, 0, 1.0]]))
    rng = np.random.default_rng(seed)
    www = tmp_path / "www"
    www.mkdir()
    for small, name, corner in (("a.tif", "tile_ref", (size - part, size - part)), ("b.tif", "tile_tgt", (0, 0))):
        with rasterio.open(tmp_path / small) as s:
            arr, t = s.read(1), s.transform
        col, row = corner
        # the big raster's origin so that the small one sits at (col, row) in it
        prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs=s.crs, tiled=True,
                    blockxsize=512, blockysize=512, transform=t @ rasterio.Affine.translation(-col, -row))
        with rasterio.open(tmp_path / f"{name}.tif", "w", **prof) as o:
            for y in range(0, size, 1098):  # speckle-like filler, written by strips
                h = min(1098, size - y)
                o.write(rng.gamma(2.0, 50.0, (h, size)).clip(1, 255).astype(np.uint8)[None],
                        window=Window(0, y, size, h))
            o.write(arr[None], window=Window(col, row, part, part))
        rasterio.shutil.copy(str(tmp_path / f"{name}.tif"), str(www / f"{name}.tif"), driver="COG",
                             COMPRESS="DEFLATE", NUM_THREADS="2")
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(www), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        _RangeHandler.sent.clear()
        r = CliRunner().invoke(georeg, ["register", f"{base}/tile_ref.tif", f"{base}/tile_tgt.tif", "-o",
                                        str(tmp_path / "out.tif"), "--matcher", "baseline", "--quicklook", "none"])
    finally:
        httpd.shutdown()
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out_report.json").read_text())
    dx, dy = rep["model"]["parameters"]["shift_px_at_centre"]
    assert abs(dx - 4.0) < 0.3 and abs(dy + 2.0) < 0.3, (dx, dy)
    sent, ref_total, tgt_total = _RangeHandler.sent, (www / "tile_ref.tif").stat().st_size, \
        (www / "tile_tgt.tif").stat().st_size
    # the reference: its corner under the target, a few percent of the file
    assert 0 < sent["tile_ref.tif"] < 0.05 * ref_total, (sent, ref_total)
    # the target: the corrected output covers all of it, so its full-resolution level is read once, and
    # only once (matching reads come from GDAL's block cache or the overviews)
    assert sent["tile_tgt.tif"] <= tgt_total, (sent, tgt_total)
    print("bytes served:", {k: f"{v / 1e6:.1f} MB of {(www / k).stat().st_size / 1e6:.1f} MB"
                            for k, v in _RangeHandler.sent.items()})
