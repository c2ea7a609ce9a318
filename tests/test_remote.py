"""Rasters read over HTTP from a real server on 127.0.0.1 that serves byte ranges, as object stores
and web servers do: registration reads only what it needs, and failures are one clear line."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from click.testing import CliRunner
from rasterio.windows import Window

from georeg.cli import georeg
from georeg.synthetic import synthetic_pair


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files of one folder with HTTP Range support; counts the bytes it sends per file."""

    sent: dict = {}

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = Path(self.translate_path(self.path))
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
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """COGs: a 3000 px reference and a 600 px target that covers a small part of it."""
    d = tmp_path_factory.mktemp("www")
    ref_full, tgt_full = d / "ref_full.tif", d / "tgt_full.tif"
    synthetic_pair(str(ref_full), str(tgt_full), size=3000, seed=11,
                   new_to_old=np.array([[1, 0, 4.0], [0, 1, -2.0], [0, 0, 1.0]]))
    with rasterio.open(tgt_full) as s:
        win = Window(1200, 1200, 600, 600)
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
    # the target covers 4% of the reference: only its neighbourhood (and an overview) is fetched
    assert 0 < _RangeHandler.sent["ref_full_cog.tif"] < 0.25 * ref_size, (_RangeHandler.sent, ref_size)


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
