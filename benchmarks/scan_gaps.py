"""Scan-line gaps: Landsat 7 ETM+ scenes since its scan line corrector failed (May 2003) miss about
22% of their pixels in strips along the scan lines, none at the middle of the swath and up to
14 px wide at 30 m towards its edges; the archive's thermal record from then until 2022 is all
like that. Emulated (:func:`cases.scan_line_gaps`, declared nodata 0) on the pairs of
``../shared/data``:

- Landsat 8 B4 (red, reference) against B10 (thermal, target) of one product, whose geotransform
  is moved by known shifts (the bands are co-registered: the truth is the shift): gaps in the
  target (an ETM+ thermal band on another sensor's optical scene), in the reference (an ETM+ red
  band under a thermal scene), and in both at the same pixels (two bands of one ETM+ product), each
  with the scene's quality band as both masks and without a mask; and gaps in the target at 0
  without nodata declared (as USGS level-1 GeoTIFFs come), without a mask, over the whole band and
  over an area of interest clipped out of a larger scene (:data:`CROP`: no corner of it in a gap);
- the S1/S2 GeoTIFF pairs 050, 176 and 268, the S1 target's geotransform off by (13.4, -8.7) px:
  gaps in the S2 reference (an ETM+ optical scene under a SAR scene), and in the S1 scene averaged
  to 30 m (a target of ETM+'s pixel size on a 10 m reference, matched on a grid of about 20 m,
  where georeg leaves the gaps unfilled: ``raster.MAX_GAP_UPSAMPLING``), each judged against the
  same pair without gaps (the dataset's own alignment is off by up to 7 px: its
  alignment_check.csv), on a lattice over 10-90% of the reference.

A result 1 px or more from its truth that is called ``reliable`` is a confident wrong answer; for
the S1/S2 rows, whose judge is itself an estimate, beyond the two results' own precision (the sum
of their ``instability_px``, the 90th percentile of how far a model's corners move when its tie
points are resampled, which the report gives) and at least a pixel of the coarser picture (3 px
for the 30 m targets). The script exits 1 when there
is one.

    python benchmarks/scan_gaps.py [--data ../shared/data] [--shifts 5] [--matcher auto] [--seed 7]

Prints one row per registration (error, verdict, tie points, seconds) and a summary per variant.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import _write, api, scan_line_gaps  # noqa: E402

S1S2_SHIFT = (13.4, -8.7)  # the S1 targets' georeferencing error, px
PAIRS = ("050", "176", "268")
SCENE = (6000, 7000)  # rows and columns of a Landsat 7 scene at 30 m, for the gaps of a clipped part of it
CROP = (2582, 2047)  # where the clipped rows' part lies: no corner of it in a gap, 14% of it gaps


def _lattice(width: int, height: int, n: int = 12) -> np.ndarray:
    """(n*n, 2) reference pixel positions over 10-90% of a width x height scene."""
    xs, ys = np.linspace(0.1 * width, 0.9 * width, n), np.linspace(0.1 * height, 0.9 * height, n)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def _moved(res, pts: np.ndarray) -> np.ndarray:
    """Where the result's model puts ``pts`` (reference-grid pixels)."""
    m = np.array(res.report["model"]["matrix_px"])
    q = np.c_[pts, np.ones(len(pts))] @ m.T
    return q[:, :2] / q[:, 2:]


def _gapped(src: str, dst: Path, transform: Affine | None = None, declared: bool = True, crop=None) -> str:
    """``src`` with scan-line gaps (0; data that were 0 become 1), on ``transform`` if given, with 0
    declared as nodata or (``declared`` False) not, as USGS level-1 GeoTIFFs come; ``crop`` (row,
    column): the gaps of a part of a larger scene (:data:`SCENE`) there, as an area of interest
    clipped out of a Landsat 7 band has them."""
    with rasterio.open(src) as d:
        a, crs, t = d.read(), d.crs, d.transform
    gaps = scan_line_gaps(a.shape[1:]) if crop is None else scan_line_gaps(SCENE, window=(*crop, *a.shape[1:]))
    a = np.where(gaps, 0, np.maximum(a, 1)).astype(a.dtype)
    return _write(dst, a, transform or t, crs, 0 if declared else None)


def landsat_cases(data: Path, work: Path, shifts: list[tuple[float, float]]):
    """(variant, reference, target, options, truth shift) for the Landsat rows."""
    d = data / "landsat8_oli_tirs"
    b4, b10, bqa = str(d / "l8_B4.tif"), str(d / "l8_B10.tif"), str(d / "l8_BQA.tif")
    with rasterio.open(b10) as s:
        t10, a10, crs = s.transform, s.read(), s.crs
    b4_gaps = _gapped(b4, work / "b4_gaps.tif")
    for i, s in enumerate(shifts):
        moved = t10 @ Affine.translation(*s)
        plain = _write(work / f"b10_{i}.tif", a10, moved, crs)
        gapped = _gapped(b10, work / f"b10_gaps_{i}.tif", moved)
        for where, ref, tgt in (("the target", b4, gapped), ("the reference", b4_gaps, plain),
                                ("both bands", b4_gaps, gapped)):
            for masked in (True, False):
                opts = {"reference": {"mask": bqa}, "target": {"mask": bqa}} if masked else {}
                yield (f"Landsat B4/B10, gaps in {where}, {'BQA mask' if masked else 'no mask'}", ref, tgt, opts, s)
        undeclared = _gapped(b10, work / f"b10_gaps_undeclared_{i}.tif", moved, declared=False)
        yield "Landsat B4/B10, gaps in the target, 0 undeclared", b4, undeclared, {}, s
        clipped = _gapped(b10, work / f"b10_gaps_clipped_{i}.tif", moved, declared=False, crop=CROP)
        yield "Landsat B4/B10, gaps in the target, 0 undeclared, clipped", b4, clipped, {}, s


def _averaged(src: str, factor: int) -> tuple[np.ndarray, Affine, object]:
    """``src``'s first band block-averaged ``factor`` x ``factor`` (uint8, data at least 1), its
    geotransform and CRS."""
    with rasterio.open(src) as d:
        a, t, crs = d.read(1).astype(np.float32), d.transform, d.crs
    h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    c = a[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))
    return np.maximum(c, 1).astype(np.uint8), t @ Affine.scale(factor), crs


def s1s2_cases(data: Path, work: Path):
    """(variant, reference, target, reference without gaps, target without gaps) for the S1/S2 rows:
    gaps in the S2 reference; and the S1 scene averaged to 30 m with gaps, which georeg matches on a
    working grid of about 20 m (the gaps' width judged in the raster's own pixels)."""
    d = data / "s1s2_volkov" / "geotiff"
    for pid in PAIRS:
        with rasterio.open(d / f"{pid}_S1_VH.tif") as s:
            tgt = _write(work / f"s1_{pid}.tif", s.read(), s.transform @ Affine.translation(*S1S2_SHIFT), s.crs)
        ref = str(d / f"{pid}_S2_RGB.tif")
        yield f"S1/S2 {pid}, gaps in the S2 reference", _gapped(ref, work / f"s2_gaps_{pid}.tif"), tgt, ref, tgt
    for pid in PAIRS:
        a, t, crs = _averaged(str(d / f"{pid}_S1_VH.tif"), 3)
        moved = t @ Affine.translation(S1S2_SHIFT[0] / 3, S1S2_SHIFT[1] / 3)
        plain = _write(work / f"s1_30m_{pid}.tif", a, moved, crs, 0)
        ref = str(d / f"{pid}_S2_RGB.tif")
        yield (f"S1/S2 {pid}, 30 m S1 target with gaps", ref, _gapped(plain, work / f"s1_30m_gaps_{pid}.tif"), ref,
               plain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--shifts", type=int, default=5, help="shifts of the Landsat target (default 5)")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    rng = np.random.default_rng(args.seed)
    shifts = [tuple(float(v) for v in rng.uniform(-15, 15, 2).round(1)) for _ in range(args.shifts)]
    rows = []

    def run(ref: str, tgt: str, opts: dict, out: Path):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = georeg.register(ref, tgt, str(out), cfg.with_options(**opts) if opts else cfg)
            except GeoregError as exc:
                return None, str(exc).splitlines()[0], time.perf_counter() - t0
        return res, "", time.perf_counter() - t0

    def record(variant: str, label: str, res, err: float | None, note: str, secs: float,
               allowed: float = 1.0) -> None:
        quality = res.quality if res is not None else "failed"
        inliers = res.report["counts"]["inliers"] if res is not None else 0
        rows.append((variant, err, quality, secs, allowed))
        e = f"{err:6.2f}" if err is not None else "     -"
        print(f"  {variant + label:72s} error {e} px  {quality:9s} {inliers:4d} tie points {secs:5.1f} s  {note}",
              flush=True)

    with tempfile.TemporaryDirectory(prefix="georeg-scan-gaps-") as td:
        work = Path(td)
        with rasterio.open(Path(args.data) / "landsat8_oli_tirs" / "l8_B4.tif") as d:
            pts = _lattice(d.width, d.height)
        for variant, ref, tgt, opts, s in landsat_cases(Path(args.data), work, shifts):
            res, note, secs = run(ref, tgt, opts, work / "out.tif")
            err = None if res is None else float(np.linalg.norm(_moved(res, pts) - (pts - s), axis=1).max())
            record(variant, f" {s}", res, err, note if res is None else "", secs)
        for variant, ref, tgt, plain_ref, plain_tgt in s1s2_cases(Path(args.data), work):
            with rasterio.open(plain_ref) as d:
                pts = _lattice(d.width, d.height)
            plain, note, _ = run(plain_ref, plain_tgt, {}, work / "plain.tif")
            if plain is None:
                print(f"  {variant}: the pair without gaps failed ({note}); nothing to judge with")
                continue
            res, note, secs = run(ref, tgt, {}, work / "out.tif")
            if res is None:
                record(variant, "", None, None, note, secs)
                continue
            err = float(np.linalg.norm(_moved(res, pts) - _moved(plain, pts), axis=1).max())
            precision = [r.report["verdict"]["instability_px"] or 0.0 for r in (plain, res)]
            coarser = 3.0 if "30 m" in variant else 1.0  # a pixel of the coarser picture, in reference px
            record(variant, "", res, err, f"(without gaps: {plain.quality}, {plain.report['model']['type']}; "
                   f"precision {precision[0]:.2f} and {precision[1]:.2f} px)", secs, max(coarser, sum(precision)))
    print(f"\n{'variant':60s} {'n':>3s} {'<1 px':>6s} {'median':>7s} {'reliable':>9s} {'wrong':>6s} {'s':>6s}")
    wrong_total = 0
    for variant in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == variant]
        errs = np.array([r[1] if r[1] is not None else np.inf for r in sel])
        reliable = sum(r[2] == "reliable" for r in sel)
        wrong = sum(r[2] == "reliable" and e >= r[4] for r, e in zip(sel, errs))
        wrong_total += wrong
        print(f"{variant:60s} {len(sel):3d} {np.mean(errs < 1.0):6.0%} {np.median(errs):7.2f} {reliable:9d} {wrong:6d} "
              f"{np.mean([r[3] for r in sel]):6.1f}")
    print(f"(matcher {args.matcher}; reliable but wrong: {wrong_total})")
    sys.exit(1 if wrong_total else 0)


if __name__ == "__main__":
    main()
