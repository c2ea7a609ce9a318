"""Scene-scale speed and memory: georeg's CLI (each matcher) against peers, on real S2/S1 content
handed over as a user would (neutral file names, the target's geotransform off by a known shift),
every run a fresh process timed with its peak RSS, all in one run so the ratios are like for like.

    python benchmarks/scene_speed.py                          # 256, 1024 and 4096 px
    python benchmarks/scene_speed.py --sizes 10980            # a Sentinel-2 tile (tens of minutes)
    python benchmarks/scene_speed.py --arosics-python ~/arosics-venv/bin/python

Scenes: 256 and 1024 px are the S1/S2 pair 176 (a centre crop for 256); larger sizes are mosaics
of the three S1/S2 GeoTIFF pairs' 1024 px blocks in their eight orientations, written block by
block. Peers: phase correlation of the whole overlap (scikit-image, always) and AROSICS
COREG_LOCAL when a Python with arosics is given (its GDAL bindings need their own environment),
on the optical version of the target (the reference's red band on the target's shifted grid):
AROSICS registers optical to optical only. ``--matchers ""`` runs the peers alone.
The report's ``timings_s`` gives georeg's stages. ``--server`` adds rows for the same commands
handed to a warm ``georeg serve`` (the row's memory is then the calling process's only); ``--turned``
rows for the target's content turned 12 degrees about its centre (expect a rigid model turned
about 12 degrees; the mean shift then depends on the turn); ``--grd`` rows for the target
handed over as a Sentinel-1 GRD measurement file (uint16 amplitude, upside down, placed by GCPs
in EPSG:4326, ESA's TIFF tags, a neutral name): the same shift is expected.

Two more measurements say where a small pair's time goes. The start-up floor: the imports a
fresh process pays before it reads a pixel (the interpreter alone; numpy, rasterio and scipy;
what ``georeg register`` imports, torch and kornia included), the fastest of three runs. In one
process (``--inprocess N``, up to 4096 px): each matcher N times, alternating, so that the first
run (first calls into torch, the network's weights loaded) stands apart from the later ones,
which are what a ``georeg batch`` worker pays per pair; the learned matcher's cost per tile and
pass against the baseline's is steadier there than across fresh processes.

The AROSICS environment on Debian 12 (GDAL 3.6; AROSICS 1.12.1 is the newest it supports). With
Debian's GDAL bindings (``apt-get install python3-gdal``; they bring numpy 1.24), no build is needed
(checked 2026-12-01):

    /usr/bin/python3 -m venv --system-site-packages ~/arosics-venv
    ~/arosics-venv/bin/pip install arosics==1.12.1 "numpy<2" "GDAL==3.6.2"

Without python3-gdal, build the bindings against libgdal-dev:

    apt-get install libgdal-dev
    python3 -m venv ~/arosics-venv && ~/arosics-venv/bin/pip install "numpy<2" "setuptools>=77" wheel
    ~/arosics-venv/bin/pip install --no-build-isolation "GDAL==$(gdal-config --version)"
    ~/arosics-venv/bin/pip install --no-build-isolation arosics==1.12.1 "GDAL==$(gdal-config --version)" "numpy<2"

(without the GDAL pin, pip builds a newer GDAL for AROSICS's dependencies and fails; geoarray needs a
setuptools that reads its licence field.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
SHIFT_PX = (13.4, -8.7)  # the target's geotransform error, pixels (x, y)
PAIRS = ("050", "176", "268")


def _oriented(a: np.ndarray, k: int) -> np.ndarray:
    """One of the eight orientations of a (bands, H, W) block."""
    a = np.rot90(a, k % 4, axes=(1, 2))
    return a[:, :, ::-1] if k >= 4 else a


def build_pair(data: Path, work: Path, size: int) -> tuple[str, str]:
    """reference.tif (3-band optical) and target.tif (SAR VH) of ``size`` px, target shifted."""
    volkov = data / "s1s2_volkov" / "geotiff"
    ref_path, tgt_path = work / f"scene{size}_a.tif", work / f"scene{size}_b.tif"
    if ref_path.exists() and tgt_path.exists():
        return str(ref_path), str(tgt_path)
    with rasterio.open(volkov / "176_S2_RGB.tif") as d:
        crs, t0 = d.crs, d.transform
    t = Affine(t0.a, 0, t0.c, 0, t0.e, t0.f)
    prof = dict(driver="GTiff", width=size, height=size, dtype="uint8", crs=crs, tiled=True,
                blockxsize=512, blockysize=512, compress="deflate")
    rng = np.random.default_rng(size)
    blocks = {}
    for pid in PAIRS:
        with rasterio.open(volkov / f"{pid}_S2_RGB.tif") as r, rasterio.open(volkov / f"{pid}_S1_VH.tif") as s:
            blocks[pid] = (r.read(), s.read())
    with rasterio.open(ref_path, "w", count=3, transform=t, **prof) as ro, \
            rasterio.open(tgt_path, "w", count=1, transform=t @ Affine.translation(*SHIFT_PX), **prof) as so:
        if size <= 1024:
            off = (1024 - size) // 2
            a, b = blocks["176"]
            w = Window(0, 0, size, size)
            ro.write(a[:, off:off + size, off:off + size], window=w)
            so.write(b[:, off:off + size, off:off + size], window=w)
        else:
            for y in range(0, size, 1024):
                for x in range(0, size, 1024):
                    a, b = blocks[PAIRS[rng.integers(len(PAIRS))]]
                    k = int(rng.integers(8))
                    h, wd = min(1024, size - y), min(1024, size - x)
                    w = Window(x, y, wd, h)
                    ro.write(np.ascontiguousarray(_oriented(a, k)[:, :h, :wd]), window=w)
                    so.write(np.ascontiguousarray(_oriented(b, k)[:, :h, :wd]), window=w)
    return str(ref_path), str(tgt_path)


def optical_target(ref: str, work: Path, size: int) -> str:
    """The optical version of the target, for peers that register optical to optical only (AROSICS):
    the reference's red band on the target's shifted geotransform, copied block by block."""
    path = work / f"scene{size}_c.tif"
    if path.exists():
        return str(path)
    with rasterio.open(ref) as r:
        prof = {**r.profile, "count": 1, "transform": r.transform @ Affine.translation(*SHIFT_PX)}
        with rasterio.open(path, "w", **prof) as o:
            for _, w in r.block_windows(1):
                o.write(r.read(1, window=w), 1, window=w)
    return str(path)


def grd_target(tgt: str, work: Path, size: int) -> str:
    """The target as a Sentinel-1 GRD measurement file holds it, full size, named neutrally
    (:func:`cases.write_grd_like` on the amplitude of its 8-bit dB preview), block by block."""
    from cases import preview_amplitude, write_grd_like

    path = work / f"scene{size}_grd.tif"
    if not path.exists():
        with rasterio.open(tgt) as s:
            write_grd_like(path, lambda y0, y1: preview_amplitude(s.read(1, window=Window(0, y0, s.width, y1 - y0))),
                           s.width, s.height, s.transform, s.crs)
    return str(path)


TURN_DEG = 12.0  # --turned: the target's content turned this much about its centre


def turned_target(tgt: str, work: Path, size: int) -> str:
    """The target with its content turned TURN_DEG about its centre on the same (shifted)
    geotransform, the corners cut off becoming nodata: a georeferencing wrong by a turn as well,
    which the global geometry search must find on a full scene."""
    from scipy import ndimage

    path = work / f"scene{size}_turned.tif"
    if not path.exists():
        with rasterio.open(tgt) as s:
            prof, a = s.profile, s.read()
        a = np.stack([ndimage.rotate(b, TURN_DEG, reshape=False, order=1, mode="constant", cval=0) for b in a])
        with rasterio.open(path, "w", **{**prof, "nodata": 0}) as o:
            o.write(a)
    return str(path)


# georeg's rows run in their own process unless a row asks for the server (--server)
OWN_PROCESS = {**os.environ, "GEOREG_SERVER": "off"}


def gnu_time() -> str | None:
    """The path of GNU time, or None where it is not installed."""
    return shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of a command in a fresh process
    (GNU time when present)."""
    gnu = gnu_time()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [gnu, "-f", "%e %M %U %S", "-o", tf.name, *cmd] if gnu else cmd
        proc = subprocess.run(full, capture_output=True, text=True, env=env or OWN_PROCESS)
        parts = Path(tf.name).read_text().split() if gnu else []
    out = {"rc": proc.returncode, "tail": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]}
    if len(parts) >= 4:
        wall, rss, user, system = (float(v) for v in parts[-4:])
        out.update(seconds=wall, peak_rss_mb=rss / 1024, cpu_s=user + system)
    return out


def match_s_per_tile(report: dict) -> float:
    """Matching seconds (first pass, global search, refinement) per tile matched, from a report."""
    matched = sum(report["counts"].get("tiles_matched") or [report["counts"]["tiles"] * report["counts"]["passes"]])
    return sum(report["timings_s"].get(k, 0.0) for k in ("pass1", "global", "pass2")) / max(matched, 1)


def run_georeg(ref: str, tgt: str, work: Path, matcher: str, env: dict | None = None, tag: str = "",
               extra: tuple[str, ...] = ()) -> dict:
    """One ``georeg register`` process (``extra``: more of its options), timed, and its report's
    numbers."""
    out = work / f"out_{matcher}{tag}.tif"
    r = timed([sys.executable, "-m", "georeg.cli", "register", ref, tgt, "-o", str(out), "--matcher", matcher,
               "--quicklook", "none", "--overwrite", "--accept-uncertain", "-q", *extra], env)
    rep_path = work / f"out_{matcher}{tag}_report.json"
    if r["rc"] == 0 and rep_path.exists():
        rep = json.loads(rep_path.read_text())
        r.update(shift_px=rep["shift"]["mean_px"], timings=rep["timings_s"], matcher_used=rep["matcher"]["name"],
                 model=rep["model"]["type"], rotation_deg=rep["model"]["parameters"]["rotation_deg"],
                 tiles=rep["counts"].get("tiles"), verdict=rep.get("verdict", {}).get("quality"),
                 cpu_threads=rep.get("cpu_threads"))
        r["match_s_per_tile"] = match_s_per_tile(rep)
    return r


def run_phasecorr(ref: str, tgt: str) -> dict:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from run import run_phasecorr; from cases import Case; "
            f"c = Case('speed', 'x', {ref!r}, {tgt!r}, 'exact'); m, s, _ = run_phasecorr(c, {tgt!r}, None); "
            "print(m.matrix[0, 2], m.matrix[1, 2])")
    r = timed([sys.executable, "-c", code])
    return r


def run_arosics(python: str, ref: str, tgt: str, work: Path) -> dict:
    """AROSICS COREG_LOCAL with a grid of tie points and the corrected raster written, as georeg does."""
    code = ("from arosics import COREG_LOCAL; "
            "c = COREG_LOCAL({!r}, {!r}, grid_res=200, window_size=(256, 256), path_out={!r}, fmt_out='GTIFF', "
            "q=True, CPUs=1); c.correct_shifts(); print(len(c.CoRegPoints_table))").format(
        ref, tgt, str(work / "arosics_out.tif"))
    return timed([python, "-c", code])


class WarmServer:
    """``georeg serve`` on a socket of its own for the --server rows: each ``georeg register`` is
    still a fresh process (timed with its own peak RSS, which no longer holds the registration: that
    runs in a child of the server), but torch, kornia and the networks are already loaded."""

    def __init__(self, work: Path):
        self.folder = Path(tempfile.mkdtemp(prefix="georeg-srv-"))  # private, and a short socket path
        self.env = {**os.environ, "GEOREG_SERVER": "on", "GEOREG_SERVER_SOCKET": str(self.folder / "s.sock")}
        self.log = work / "serve.log"

    def __enter__(self):
        import time

        from georeg import server

        t0 = time.time()
        self.proc = server.start(self.log, self.env, idle_minutes=0)
        self.ready_s = time.time() - t0
        print(f"georeg serve ready after {self.ready_s:.1f} s (imports and a warm-up registration)", flush=True)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


# What a fresh process imports before any pixel is read: no change to the pipeline removes it.
STARTUP = (
    ("interpreter alone", "pass"),
    ("numpy, rasterio, scipy, click, PIL (no torch)", "import numpy, rasterio, scipy.ndimage, click, PIL.Image"),
    ("what `georeg register` imports (torch, kornia)",
     "import georeg.cli, georeg.pipeline, georeg.outputs, georeg.verdict, georeg.globalgeom, georeg.matchers.kgl, "
     "scipy.ndimage, kornia.geometry.ransac"),
)


def startup_floor(repeat: int = 3) -> list[tuple[str, dict]]:
    """Each STARTUP import set in a fresh process, the fastest of ``repeat`` runs (wall s, peak MB)."""
    out = []
    for name, code in STARTUP:
        runs = [timed([sys.executable, "-c", code]) for _ in range(repeat)]
        out.append((name, min((r for r in runs if "seconds" in r), key=lambda r: r["seconds"], default=runs[0])))
    return out


INPROCESS = """
import json, sys, time
t0 = time.perf_counter()
import torch, georeg
sys.path.insert(0, sys.argv[6])
from scene_speed import match_s_per_tile
from georeg.config import RegistrationConfig
from georeg.runtime import configure_worker
configure_worker(1)
ref, tgt, out, matchers, repeat = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","), int(sys.argv[5])
print(json.dumps({"imports_s": time.perf_counter() - t0}), flush=True)
for rep in range(repeat):
    for m in (matchers if rep % 2 == 0 else matchers[::-1]):
        cfg = RegistrationConfig().with_options(output={"overwrite": True, "quicklook": None},
                                                 matching={"matcher": m})
        t = time.perf_counter()
        r = georeg.register(ref, tgt, out, cfg).report
        secs = time.perf_counter() - t
        print(json.dumps({"matcher": m, "run": rep, "seconds": secs, "match_s_per_tile": match_s_per_tile(r)}),
              flush=True)
"""


def run_inprocess(ref: str, tgt: str, work: Path, matchers: list[str], repeat: int = 3) -> dict:
    """Every matcher ``repeat`` times in one process, alternating the order (what a `georeg batch`
    worker pays per pair once its imports are done): {matcher: [runs]} and the imports' seconds."""
    proc = subprocess.run([sys.executable, "-c", INPROCESS, ref, tgt, str(work / "inprocess.tif"), ",".join(matchers),
                           str(repeat), str(HERE)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    out: dict = {"imports_s": rows[0]["imports_s"], "runs": {}}
    for r in rows[1:]:
        out["runs"].setdefault(r["matcher"], []).append(r)
    return out


def print_inprocess(size: int, res: dict) -> None:
    """The first run in a process (first calls into torch, weights loading) and the later ones."""
    if "error" in res:
        print(f"{size:6d} px  in one process: failed: {res['error']}", flush=True)
        return
    warm = {m: [r for r in runs if r["run"] > 0] for m, runs in res["runs"].items()}
    for m, runs in res["runs"].items():
        later = [r["seconds"] for r in warm[m]]
        rest = f", later runs {min(later):.2f}-{max(later):.2f} s" if later else ""
        print(f"{size:6d} px  georeg {m:15s} in one process: first run {runs[0]['seconds']:.2f} s{rest} "
              f"(imports before them {res['imports_s']:.2f} s)", flush=True)
    per_tile = {m: float(np.median([r["match_s_per_tile"] for r in runs])) for m, runs in warm.items() if runs}
    if "baseline" in per_tile and len(per_tile) > 1:
        b0 = per_tile["baseline"]
        print(f"{size:6d} px  matching seconds per tile and pass, later runs (median): "
              + ", ".join(f"georeg {m} {v:.3f} ({v / b0:.2f}x baseline)" for m, v in per_tile.items()), flush=True)


def print_runs(size: int, runs: dict) -> list[dict]:
    """One line per method (ratios to the baseline's whole process), then the matching seconds per
    tile and pass; returns the rows for the growth fit and the JSON."""
    rows = []
    base = runs.get("georeg baseline", {}).get("seconds")
    for name, r in runs.items():
        rows.append({"size": size, "method": name, **r})
        ratio = f"{r['seconds'] / base:5.2f}x" if base and "seconds" in r else "    -"
        extra = ""
        if "timings" in r:
            t = r["timings"]
            turn = f"turned {r['rotation_deg']:+.2f} deg, " if abs(r["rotation_deg"]) > 0.5 else ""
            extra = (f"{r['matcher_used']}, {r['model']}, {turn}"
                     f"shift {r['shift_px'][0]:+.2f} {r['shift_px'][1]:+.2f} px, "
                     f"{r['verdict']}; stages " + " ".join(f"{k} {v:.1f}" for k, v in t.items() if k != "total"))
        elif r["rc"] != 0:
            extra = f"failed: {r['tail'][0][:100]}"
        print(f"{size:6d} px  {name:26s} {r.get('seconds', float('nan')):8.1f} s  "
              f"{r.get('peak_rss_mb', float('nan')):7.0f} MB  {ratio} of baseline  {extra}", flush=True)
    per_tile = {m: r["match_s_per_tile"] for m, r in runs.items() if "match_s_per_tile" in r}
    if "georeg baseline" in per_tile and len(per_tile) > 1:
        b0 = per_tile["georeg baseline"]
        print(f"{size:6d} px  matching seconds per tile and pass: "
              + ", ".join(f"{m} {v:.2f} ({v / b0:.2f}x baseline)" for m, v in per_tile.items()), flush=True)
    return rows


def print_growth(rows: list[dict], smallest: int = 2000) -> None:
    """How time and peak memory grow with the overlap's area from ``smallest`` px up: the exponent
    b of a least-squares fit of seconds = a * area^b (1 is linear; under 1 means the work is
    sampled), per method, when at least two sizes were run."""
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["size"], r["seconds"], r.get("peak_rss_mb")) for r in rows
               if r["method"] == method and r["size"] >= smallest and r.get("rc", 0) == 0 and "seconds" in r]
        if len(pts) < 2:
            continue
        area = np.log([s * s for s, _, _ in pts])
        b = round(float(np.polyfit(area, np.log([t for _, t, _ in pts]), 1)[0]), 2) + 0.0  # no "-0.00"
        mem = [m for _, _, m in pts if m]
        print(f"growth {method:26s} time ~ area^{b:.2f} over {', '.join(str(s) for s, _, _ in pts)} px; "
              f"peak memory {min(mem):.0f}-{max(mem):.0f} MB", flush=True)


def georeg_runs(ref: str, tgt: str, work: Path, size: int, matchers: str, server, grd: bool,
                turned: bool = False) -> dict:
    """georeg's rows of one size: each matcher in its own process, then through the warm server
    (``server``, up to 4096 px), on the target as a GRD file (``grd``) and on the target turned
    (``turned``)."""
    names = [m for m in matchers.split(",") if m]
    runs = {f"georeg {m}": run_georeg(ref, tgt, work, m) for m in names}
    if server and size <= 4096:
        runs.update({f"georeg {m} (serve)": run_georeg(ref, tgt, work, m, server.env, "_serve") for m in names})
    if grd:
        grd_path = grd_target(tgt, work, size)
        runs.update({f"georeg {m} (GRD file)": run_georeg(ref, grd_path, work, m, tag="_grd") for m in names})
    if turned:
        turned_path = turned_target(tgt, work, size)
        runs.update({f"georeg {m} (turned {TURN_DEG:g} deg)": run_georeg(ref, turned_path, work, m, tag="_turned")
                     for m in names})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--sizes", default="256,1024,4096")
    ap.add_argument("--matchers", default="auto,baseline")
    ap.add_argument("--arosics-python", default=None, help="a Python interpreter that can import arosics")
    ap.add_argument("--work", default=None, help="keep the scenes here (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-startup", dest="startup", action="store_false",
                    help="leave out the start-up floor (the imports a fresh process pays before any work)")
    ap.add_argument("--server", action="store_true",
                    help="also run each matcher through a warm `georeg serve` (sizes up to 4096 px): a fresh "
                         "`georeg register` process that hands the work to the server")
    ap.add_argument("--grd", action="store_true",
                    help="also run each matcher on the target handed over as a Sentinel-1 GRD measurement "
                         "file (uint16 amplitude, upside down, placed by GCPs, ESA's TIFF tags)")
    ap.add_argument("--turned", action="store_true",
                    help=f"also run each matcher on the target's content turned {TURN_DEG:g} degrees about its "
                         "centre (the georeferencing wrong by a turn too: the global geometry search runs)")
    ap.add_argument("--inprocess", type=int, default=3, metavar="N",
                    help="also run each matcher N times in one process (sizes up to 4096 px; 0: no): the "
                         "first run against the later ones, as a `georeg batch` worker pays them")
    args = ap.parse_args()
    data = Path(args.data).resolve()
    if args.json:
        args.json = str(Path(args.json).resolve())
    if not (data / "s1s2_volkov").is_dir():
        sys.exit(f"real data not found at {data}; pass --data")
    rows = []
    with tempfile.TemporaryDirectory(prefix="georeg-speed-") as td, contextlib.ExitStack() as stack:
        work = Path(args.work or td).resolve()
        work.mkdir(parents=True, exist_ok=True)
        # every child process starts in the work folder: `python -m georeg.cli` and `python -c` put
        # their folder first on the path, so from the repository's root they would import its georeg
        # whatever PYTHONPATH says; from here they import this process's (a worktree on PYTHONPATH
        # measures that revision)
        os.chdir(work)
        if args.startup:
            for name, r in startup_floor():
                print(f"start-up  {name:48s} {r.get('seconds', float('nan')):5.2f} s  "
                      f"{r.get('peak_rss_mb', float('nan')):5.0f} MB", flush=True)
        server = stack.enter_context(WarmServer(work)) if args.server else None
        for size in [int(s) for s in args.sizes.split(",") if s]:
            ref, tgt = build_pair(data, work, size)
            runs = georeg_runs(ref, tgt, work, size, args.matchers, server, args.grd, args.turned)
            runs["phase correlation"] = run_phasecorr(ref, tgt)
            if args.arosics_python:
                # as in issue 14's peer measurement: AROSICS registers optical to optical only (given the
                # SAR target it returns shifts of unknown quality, and fails outright at 10980 px)
                runs["AROSICS (optical target)"] = run_arosics(args.arosics_python, ref,
                                                               optical_target(ref, work, size), work)
            rows += print_runs(size, runs)
            matchers = [m for m in args.matchers.split(",") if m]
            if args.inprocess and size <= 4096 and matchers:
                print_inprocess(size, run_inprocess(ref, tgt, work, matchers, args.inprocess))
    print_growth(rows)
    print(f"(target geotransform shifted by {SHIFT_PX[0]:+.1f}, {SHIFT_PX[1]:+.1f} px; "
          "georeg's shift is the correction, so expect about the opposite plus the pairs' own residual)")
    if not args.arosics_python:
        print("AROSICS: not run (pass --arosics-python; AROSICS 1.12.1 with numpy<2 in its own environment)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
