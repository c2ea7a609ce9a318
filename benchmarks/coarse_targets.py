"""Targets with pixels much coarser than the reference's, and references much coarser than the
target's, on overlaps of a few hundred to a few thousand reference pixels: where georeg's
working grid (``working_grid.working_grid``) decides what the matching sees.

- Landsat 8 B10 as brightness temperature (Kelvin floats, NaN outside) averaged to 45-100 m (TIRS's
  own 100 m, ECOSTRESS's 70 m, also in EPSG:4326), its geotransform off by (2.6, -1.7) px of 30 m,
  on B4 (30 m, 603 x 627 px) without and with the product's BQA mask. Truth: the shift undone
  (the product's bands are co-registered; B4 on the unmoved B10 is 0.1-0.2 px off).
- The S1 VH scenes of the S1/S2 GeoTIFF pairs averaged 2-10x (20-100 m), off by (13.4, -8.7) px of
  10 m, on their 1024 px S2 references. Truth: the same pair's result at 10 m (the dataset's own
  alignment is good to a few pixels only).
- The other way round: those S2 references averaged 3-10x (30-100 m) over the 10 m S1 scenes.
  Truth: the pair's result at 10 m.
- An optical copy: pair 176's green band averaged 3-10x, off by the same shift. Truth: the shift.
- The S1 scenes at 10 m on their S2 references upsampled 4x to 2.5 m and cut to 4096, 2048 and
  1024 px (an orthophoto under a SAR scene). Truth: the pair's result at 10 m.

    python benchmarks/coarse_targets.py [--data ../shared/data] [--matcher auto] [--min-working-px N ...] [--only TEXT]

Each ``--min-working-px`` value runs every case with ``working_grid.MIN_WORKING_PX`` set to it
(``0``: coarsened all the way to the target's pixels, never refined: the rule before
2026-12-06), so that the rules compare in one run. Prints one row per case and rule (verdict, distance from the truth on
the ground in metres, tie points, the working grid's reference pixels per pixel, seconds) and
exits 1 when a result is ``reliable`` but off by one target pixel or more.
"""

from __future__ import annotations

import argparse
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
from cases import _write, api  # noqa: E402
from cases import brightness_temperature as kelvin_of  # noqa: E402

L8_SHIFT = (2.6, -1.7)  # px of 30 m
S1_SHIFT = (13.4, -8.7)  # px of 10 m
PAIRS = ("050", "176", "268")


def brightness_temperature(dn: np.ndarray) -> np.ndarray:
    """Landsat 8 B10 level-1 DN -> Kelvin (the product's MTL constants), NaN where DN is 0."""
    kelvin = kelvin_of(dn).astype(np.float32)
    kelvin[dn == 0] = np.nan
    return kelvin


def averaged(a: np.ndarray, t: Affine, crs, metres: float, crs_out=None) -> tuple[np.ndarray, Affine]:
    """``a`` (NaN outside) averaged onto a grid of ``metres`` pixels (in EPSG:4326: degrees of
    about that size) covering the same ground."""
    crs_out = crs_out or crs
    h, w = a.shape
    res = metres / 111_000 if str(crs_out) == "EPSG:4326" else metres
    ct, cw, ch = calculate_default_transform(crs, crs_out, w, h, *rasterio.transform.array_bounds(h, w, t),
                                             resolution=res)
    out = np.full((ch, cw), np.nan, np.float32)
    reproject(a, out, src_transform=t, src_crs=crs, dst_transform=ct, dst_crs=crs_out,
              resampling=Resampling.average, src_nodata=np.nan, dst_nodata=np.nan)
    return out, ct


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[:h * f, :w * f].reshape(h, f, w, f).mean((1, 3))


def build(data: Path, work: Path) -> list[tuple]:
    """[(name, reference, target, reference mask or None, truth (x, y) in map units or a key of
    the result it must agree with, the target's pixel size)]; the 10 m S1 rows come first."""
    cases = []
    volkov = data / "s1s2_volkov" / "geotiff"
    for pid in PAIRS:
        with rasterio.open(volkov / f"{pid}_S1_VH.tif") as d:
            vh, t, crs = d.read(1).astype(np.float32), d.transform, d.crs
        moved = t @ Affine.translation(*S1_SHIFT)
        for f in (1, 2, 3, 4, 6, 8, 10):
            a = vh if f == 1 else block_mean(vh, f)
            tgt = _write(work / f"s1_{pid}_x{f}.tif", a.clip(0, 255).astype(np.uint8), moved @ Affine.scale(f), crs)
            cases.append((f"S1 {pid} {10 * f} m", str(volkov / f"{pid}_S2_RGB.tif"), tgt, None, f"S1 {pid}", 10.0 * f))
    for pid in PAIRS:  # the other way round: the reference coarse, the 10 m S1 scene under it
        with rasterio.open(volkov / f"{pid}_S2_RGB.tif") as d:
            rgb, t, crs = d.read().astype(np.float32), d.transform, d.crs
        for f in (3, 6, 10):
            coarse = np.stack([block_mean(b, f) for b in rgb]).round().astype(np.uint8)
            ref = _write(work / f"s2_{pid}_x{f}.tif", coarse, t @ Affine.scale(f), crs)
            tgt = str(work / f"s1_{pid}_x1.tif")
            cases.append((f"S2 {pid} at {10 * f} m over S1", ref, tgt, None, f"S1 {pid}", 10.0))
    with rasterio.open(volkov / "176_S2_RGB.tif") as d:
        green, t, crs = d.read(2).astype(np.float32), d.transform, d.crs
    for f in (3, 5, 6, 7, 9, 10):
        tgt = _write(work / f"green_x{f}.tif", (block_mean(green, f) * 37 + 500).astype(np.uint16),
                     t @ Affine.translation(*S1_SHIFT) @ Affine.scale(f), crs)
        cases.append((f"optical copy {10 * f} m", str(volkov / "176_S2_RGB.tif"), tgt, None,
                      (-S1_SHIFT[0] * t.a, -S1_SHIFT[1] * t.e), 10.0 * f))
    l8 = data / "landsat8_oli_tirs"
    with rasterio.open(l8 / "l8_B10.tif") as d:
        kelvin, t, crs = brightness_temperature(d.read(1)), d.transform, d.crs
    moved = t @ Affine.translation(*L8_SHIFT)
    truth = (-L8_SHIFT[0] * t.a, -L8_SHIFT[1] * t.e)
    for metres, crs_out in ((45, None), (60, None), (70, None), (100, None), (70, "EPSG:4326")):
        a, at = averaged(kelvin, moved, crs, metres, crs_out)
        tgt = _write(work / f"b10_{metres}{'_4326' if crs_out else ''}.tif", a, at, crs_out or crs, float("nan"))
        for mask in (None, str(l8 / "l8_BQA.tif")):
            cases.append((f"L8 B10 {metres} m{' EPSG:4326' if crs_out else ''}{' BQA' if mask else ''}",
                          str(l8 / "l8_B4.tif"), tgt, mask, truth, float(metres)))
    for pid in ("050", "176"):
        with rasterio.open(volkov / f"{pid}_S2_RGB.tif") as d:
            prof = d.profile
            fine = d.read(out_shape=(d.count, 4 * d.height, 4 * d.width), resampling=Resampling.cubic)
        for size in (4096, 2048, 1024):
            o = (4 * prof["height"] - size) // 2
            ref = work / f"fine_{pid}_{size}.tif"
            ft = prof["transform"] @ Affine.scale(1 / 4) @ Affine.translation(o, o)
            with rasterio.open(ref, "w", **dict(prof, width=size, height=size, transform=ft)) as dst:
                dst.write(fine[:, o:o + size, o:o + size])
            cases.append((f"S1 {pid} on 2.5 m, {size} px", str(ref), str(work / f"s1_{pid}_x1.tif"), None,
                          f"S1 {pid}", 10.0))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--min-working-px", type=float, nargs="+", default=None,
                    help="values of working_grid.MIN_WORKING_PX to compare (0: coarsen to the target's pixels); "
                         "default: georeg's own")
    ap.add_argument("--only", default="", help="run only the cases whose name holds this text")
    ap.add_argument("--work", default=None, help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    from georeg import working_grid

    rules = args.min_working_px or [working_grid.MIN_WORKING_PX]
    print(f"{'case':34s} {'rule':>5s} {'verdict':>10s} {'off m':>7s} {'inliers':>7s} {'coarsened':>9s} {'s':>5s}")
    wrong = 0
    with tempfile.TemporaryDirectory(prefix="georeg-coarse-") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        results = {}
        for name, ref, tgt, mask, truth, pixel in build(Path(args.data), work):
            if args.only not in name and not (isinstance(truth, str) and name == f"{truth} 10 m"):
                continue  # (a 10 m S1 pair runs whenever a case is judged against its result)
            for rule in rules:
                working_grid.MIN_WORKING_PX = rule or 1e-9
                c = cfg.with_options(reference={"mask": mask}) if mask else cfg
                t0 = time.perf_counter()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = georeg.register(ref, tgt, str(work / "out.tif"), c)
                except GeoregError as exc:
                    print(f"{name:34s} {rule:5.0f} {'failed':>10s}  {str(exc).splitlines()[0][:70]}")
                    continue
                shift = np.array(res.report["shift"]["mean_map"])
                if isinstance(truth, str):  # a 10 m pair's own result (under the first rule) is the truth
                    results.setdefault((truth, rule), shift)
                    truth_xy = results.get((truth, rules[0]), shift)
                else:
                    truth_xy = np.array(truth)
                off = float(np.hypot(*(shift - truth_xy)))
                wrong += res.quality == "reliable" and off >= pixel
                wk = res.report.get("working_grid")
                coarsened = f"{np.mean(wk['reference_px_per_px']):.2f}" if wk else "-"
                print(f"{name:34s} {rule:5.0f} {res.quality:>10s} {off:7.1f} {res.report['counts']['inliers']:7d} "
                      f"{coarsened:>9s} {time.perf_counter() - t0:5.1f}", flush=True)
    print(f"reliable but off by a target pixel or more: {wrong}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
