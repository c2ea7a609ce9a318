"""Pairs exported in square degrees (EPSG:4326, as Earth Engine and many portals write them) far
from the equator, where a pixel is 1/cos(latitude) times taller than wide on the ground.

- The S1/S2 GeoTIFF pairs 050, 176 and 268, placed on a UTM 33N grid of 10 m at 45, 60 and 70
  degrees north, the S1 scene's geotransform off by (13.4, -8.7) px, both rasters then exported to
  EPSG:4326 (bilinear). Truth: the same pair's result on the UTM grid (the dataset's own alignment
  is good to a few pixels only), compared on the ground in metres.
- Landsat 8 B4 and B10 (its DN, a neutral file name) placed the same way at 65 degrees north on
  30 m, B10 off by (2.6, -1.7) px, without and with the product's BQA mask (nearest). Truth: the
  shift undone (the product's bands are co-registered).

    python benchmarks/geographic_grids.py [--data ../shared/data] [--matcher auto] [--rules before after]
                                          [--latitudes 45,60,70] [--only TEXT]

``--rules before after`` runs every case under the rules before 2026-12-06 (matching on the
reference's own pixels, texture read on them, no cloud check for a band read as optical by its
texture) and under georeg's own (the default), in one run. Prints one row per case and rule
(the target's modality, the verdict, the distance from the truth on the ground in metres, tie
points, the working grid's reference pixels per pixel, seconds) and exits 1 when a result is
``reliable`` but off by one reference pixel (10 or 30 m) or more.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import api  # noqa: E402

S1_SHIFT = (13.4, -8.7)  # px of 10 m
L8_SHIFT = (2.6, -1.7)  # px of 30 m
LATITUDES = (45, 60, 70)


def placed(a: np.ndarray, latitude: float, pixel: float, shift=(0.0, 0.0), geographic: bool = True,
           resampling=Resampling.bilinear) -> tuple[np.ndarray, Affine, str]:
    """(bands, H, W) pixels on a UTM 33N grid of ``pixel`` m at ``latitude`` (its geotransform off by
    ``shift`` px), exported to EPSG:4326 by ``calculate_default_transform`` (square degrees), or not."""
    n, h, w = a.shape
    t = Affine(pixel, 0, 480000, 0, -pixel, latitude * 110900 + h * pixel) @ Affine.translation(*shift)
    if not geographic:
        return a, t, "EPSG:32633"
    gt, gw, gh = calculate_default_transform("EPSG:32633", "EPSG:4326", w, h, *rasterio.transform.array_bounds(h, w, t))
    out = np.zeros((n, gh, gw), a.dtype)
    for i in range(n):
        reproject(a[i], out[i], src_transform=t, src_crs="EPSG:32633", dst_transform=gt, dst_crs="EPSG:4326",
                  resampling=resampling, src_nodata=0, dst_nodata=0)
    return out, gt, "EPSG:4326"


def write(path: Path, p: tuple[np.ndarray, Affine, str]) -> str:
    a, t, crs = p
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype=a.dtype, crs=crs, transform=t, nodata=0) as o:
        o.write(a)
    return str(path)


def build(data: Path, work: Path, latitudes=LATITUDES) -> list[tuple]:
    """[(name, reference, target, reference mask or None, truth: (x, y) ground metres or the name
    of the case whose result it is, reference pixel in metres)]; each UTM case before its export."""
    cases = []
    volkov = data / "s1s2_volkov" / "geotiff"
    for pid in ("050", "176", "268"):
        with rasterio.open(volkov / f"{pid}_S2_RGB.tif") as d:
            rgb = d.read()
        with rasterio.open(volkov / f"{pid}_S1_VH.tif") as d:
            vh = d.read()
        for lat in latitudes:
            for geo in (False, True):
                tag = f"{pid}_{lat}_{'geo' if geo else 'utm'}"
                ref = write(work / f"ref_{tag}.tif", placed(rgb, lat, 10.0, geographic=geo))
                tgt = write(work / f"scene_{tag}.tif", placed(vh, lat, 10.0, S1_SHIFT, geographic=geo))
                name = f"S1/S2 {pid} {lat}N {'EPSG:4326' if geo else 'UTM'}"
                cases.append((name, ref, tgt, None, f"S1/S2 {pid} {lat}N UTM", 10.0))
    l8 = data / "landsat8_oli_tirs"
    bands = {}
    for b in ("B4", "B10", "BQA"):
        with rasterio.open(l8 / f"l8_{b}.tif") as d:
            bands[b] = d.read()
    for geo in (False, True):
        tag = "geo" if geo else "utm"
        ref = write(work / f"l8ref_{tag}.tif", placed(bands["B4"], 65, 30.0, geographic=geo))
        tgt = write(work / f"l8scene_{tag}.tif", placed(bands["B10"], 65, 30.0, L8_SHIFT, geographic=geo))
        qa = write(work / f"l8_BQA_{tag}.tif", placed(bands["BQA"], 65, 30.0, geographic=geo,
                                                     resampling=Resampling.nearest))
        truth = (-L8_SHIFT[0] * 30.0, L8_SHIFT[1] * 30.0)  # east, north: the shift undone
        for mask in (None, qa):
            name = f"L8 B4/B10 65N {'EPSG:4326' if geo else 'UTM'}{' BQA' if mask else ''}"
            cases.append((name, ref, tgt, mask, truth, 30.0))
    return cases


@contextlib.contextmanager
def rules(which: str):
    """georeg's rules as they are ("after") or as before 2026-12-06 ("before"): the reference's own
    pixels, texture read on the band's own pixels, no cloud check for a band read as optical by its
    texture."""
    from georeg import cloud_rounds, modality, working_grid

    saved = working_grid.SQUARE_FROM, modality.SQUARE_SAMPLE_FROM, cloud_rounds.maybe_thermal
    if which == "before":
        working_grid.SQUARE_FROM = modality.SQUARE_SAMPLE_FROM = float("inf")
        cloud_rounds.maybe_thermal = lambda tgt: False
    try:
        yield
    finally:
        working_grid.SQUARE_FROM, modality.SQUARE_SAMPLE_FROM, cloud_rounds.maybe_thermal = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--rules", nargs="+", choices=("before", "after"), default=["after"])
    ap.add_argument("--only", default="", help="run only the cases whose name holds this text")
    ap.add_argument("--latitudes", default=",".join(map(str, LATITUDES)),
                    help="where the S1/S2 pairs are placed, degrees north (comma-separated)")
    ap.add_argument("--work", default=None, help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    print(f"{'case':32s} {'rules':>6s} {'modality':>8s} {'verdict':>10s} {'off m':>7s} {'inliers':>7s} "
          f"{'working px':>11s} {'s':>5s}")
    wrong = 0
    with tempfile.TemporaryDirectory(prefix="georeg-geographic-") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        results = {}
        lats = [int(v) for v in args.latitudes.split(",") if v]
        for name, ref, tgt, mask, truth, pixel in build(Path(args.data), work, lats):
            if args.only not in name and not (isinstance(truth, str) and name == truth):
                continue  # (a UTM pair runs whenever its export is judged against it)
            for rule in args.rules:
                c = cfg.with_options(reference={"mask": mask}) if mask else cfg
                t0 = time.perf_counter()
                try:
                    with rules(rule), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = georeg.register(ref, tgt, str(work / "out.tif"), c)
                except GeoregError as exc:
                    print(f"{name:32s} {rule:>6s} {'failed':>19s}  {str(exc).splitlines()[0][:70]}")
                    continue
                ground = np.array(res.report["shift"]["mean_m"])
                if isinstance(truth, str):  # the UTM pair's own result (under the first rules) is the truth
                    results.setdefault((name, rule), ground)
                    truth_xy = results.get((truth, args.rules[0]), ground)
                else:
                    truth_xy = np.array(truth)
                off = float(np.hypot(*(ground - truth_xy)))
                wrong += res.quality == "reliable" and off >= pixel
                wk = res.report.get("working_grid")
                grid = "x".join(f"{v:.2f}" for v in wk["reference_px_per_px"]) if wk else "-"
                print(f"{name:32s} {rule:>6s} {res.report['target']['modality']:>8s} {res.quality:>10s} {off:7.1f} "
                      f"{res.report['counts']['inliers']:7d} {grid:>11s} {time.perf_counter() - t0:5.1f}", flush=True)
    print(f"reliable but off by a reference pixel or more: {wrong}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
