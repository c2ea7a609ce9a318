"""Small scenes: real optical/SAR pairs cropped to 160, 128 and 96 px (thumbnails, chips cut for a
field, the corner of a scene that overlaps), the target's geotransform off by a random shift of up
to 8 px. Few tie points and little structure: georeg must either register them or say that it
cannot; a ``reliable`` result that is wrong is the failure this measures.

    python benchmarks/small_scenes.py [--data ../shared/data] [--sizes 160,128,96] [--pairs 12]

Pairs: 3MOS pairs flagged aligned (a random pick), cropped about their centre, and S1/S2 GeoTIFF
pairs 050, 176 and 268 cropped at two random places each. The truth is the nominal alignment
corrected by the pair's own residual: for 3MOS the dataset's gradient-orientation check
(``check_dx_px``, ``check_dy_px``; up to 3 px, within about 1.3 px of what georeg finds on the
full 256 px pairs), for S1/S2 (a terrain residual of a few pixels that varies over the scene)
georeg's own result on the unshifted 512 px crop about the same centre, which must be reliable
(hundreds of tie points; 0.25 px median in the benchmark's S1/S2 set). The error is the largest
over the crop's corners; a result is called wrong from 3 px. Prints one row per crop and per size
the counts; exits 1 when any result called reliable is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import _threemos_rows, _write, api  # noqa: E402

WRONG_PX = 3.0
MAX_SHIFT = 8.0


def crops(data: Path, work: Path, n_pairs: int, rng) -> list[tuple[str, str, str, tuple[int, int], tuple | None]]:
    """[(label, reference, aligned target, (row, col) of the crop's centre, the pair's residual)]:
    full-size aligned pairs as GeoTIFFs on one grid, where to cut them and, for 3MOS, the
    dataset's residual as a correction (x, y px; None: to be measured)."""
    out = []
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    for _, r, opt, sar in _threemos_rows(data, rng, n_pairs, held_out=False):
        ref = _write(work / f"{r['pair_id']}_opt.tif", opt, t, "EPSG:32633")
        tgt = _write(work / f"{r['pair_id']}_sar.tif", sar, t, "EPSG:32633")
        residual = (-float(r["check_dx_px"]), -float(r["check_dy_px"]))  # the SAR content's offset, undone
        out.append((f"3MOS {r['pair_id']}", ref, tgt, (sar.shape[0] // 2, sar.shape[1] // 2), residual))
    d = data / "s1s2_volkov" / "geotiff"
    for pid in ("050", "176", "268"):
        ref, tgt = str(d / f"{pid}_S2_RGB.tif"), str(d / f"{pid}_S1_VH.tif")
        with rasterio.open(tgt) as s:
            h, w = s.height, s.width
        for _ in range(2):
            centre = tuple(int(v) for v in rng.integers(256, (h - 256, w - 256)))
            out.append((f"S1/S2 {pid}", ref, tgt, centre, None))
    return out


def cut(src: str, dst: Path, centre: tuple[int, int], size: int, shift=(0.0, 0.0)) -> str:
    """``size`` px of ``src`` about ``centre``, its geotransform moved by ``shift`` px (x, y)."""
    win = Window(centre[1] - size // 2, centre[0] - size // 2, size, size)
    with rasterio.open(src) as d:
        prof = {**d.profile, "width": size, "height": size,
                "transform": d.window_transform(win) @ Affine.translation(*shift)}
        arr = d.read(window=win)
    with rasterio.open(dst, "w", **prof) as o:
        o.write(arr)
    return str(dst)


def corner_error(matrix: np.ndarray, size: int, shift, residual) -> float:
    """Largest distance over the crop's corners between the model (target px as georeferenced ->
    reference px) and the truth: the target's content sits ``shift`` px before where its
    geotransform puts it, and the pair's own ``residual`` correction on top."""
    c = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float)
    truth = c[:, :2] - np.asarray(shift) + np.asarray(residual)
    return float(np.linalg.norm((c @ matrix.T)[:, :2] - truth, axis=1).max())


def local_residual(register, ref: str, tgt: str, work: Path, centre) -> tuple[float, float] | None:
    """The S1/S2 pair's own correction at ``centre``: georeg on the unshifted 512 px crop about it,
    when reliable (else None: the crop is left out)."""
    r = cut(ref, work / "truth_r.tif", centre, 512)
    t = cut(tgt, work / "truth_t.tif", centre, 512)
    res = register(r, t, str(work / "truth_out.tif"))
    if res.quality != "reliable":
        return None
    m = np.array(res.report["model"]["matrix_px"])
    d = m @ np.array([256.0, 256.0, 1.0]) - np.array([256.0, 256.0, 1.0])
    return float(d[0]), float(d[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--sizes", default="160,128,96")
    ap.add_argument("--pairs", type=int, default=12, help="3MOS pairs (the S1/S2 crops come on top)")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--work", default=None, help="keep the crops and outputs here (default: a temporary folder)")
    ap.add_argument("--dump", default=None, help="write each result's report, with its error, to this folder")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(11)
    counts = {s: {"reliable": 0, "within 3 px": 0, "uncertain": 0, "failed": 0, "reliable but wrong": 0}
              for s in sizes}
    with tempfile.TemporaryDirectory(prefix="georeg-small-") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        if args.dump:
            Path(args.dump).mkdir(parents=True, exist_ok=True)
        print(f"{'pair':26s} {'px':>4s} {'shift px':>13s} {'verdict':>9s} {'model':>11s} {'error px':>8s} "
              f"{'tie pts':>7s} {'s':>5s}")

        def register(r: str, t: str, out: str):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return georeg.register(r, t, out, cfg)

        for k, (label, ref, tgt, centre, residual) in enumerate(crops(Path(args.data), work, args.pairs, rng)):
            if residual is None:
                try:
                    residual = local_residual(register, ref, tgt, work, centre)
                except GeoregError:
                    residual = None
                if residual is None:
                    print(f"{label:26s} at {centre}: the 512 px crop is not reliable, left out", flush=True)
                    continue
            for size in sizes:
                shift = tuple(float(v) for v in rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2).round(1))
                r = cut(ref, work / f"c{k:02d}_{size}_r.tif", centre, size)
                t = cut(tgt, work / f"c{k:02d}_{size}_t.tif", centre, size, shift)
                t0 = time.perf_counter()
                try:
                    res = register(r, t, str(work / f"c{k:02d}_{size}_out.tif"))
                except GeoregError as exc:
                    counts[size]["failed"] += 1
                    print(f"{label:26s} {size:4d} {shift[0]:+6.1f} {shift[1]:+6.1f} {'failed':>9s}  "
                          f"{str(exc).splitlines()[0][:80]}", flush=True)
                    continue
                err = corner_error(np.array(res.report["model"]["matrix_px"]), size, shift, residual)
                if args.dump:
                    rep = {**res.report, "benchmark": {"pair": label, "size": size, "shift_px": shift, "error_px": err}}
                    (Path(args.dump) / f"c{k:02d}_{size}.json").write_text(json.dumps(rep, default=str))
                c = counts[size]
                c[res.quality] += 1
                c["within 3 px"] += err < WRONG_PX
                c["reliable but wrong"] += res.quality == "reliable" and err >= WRONG_PX
                print(f"{label:26s} {size:4d} {shift[0]:+6.1f} {shift[1]:+6.1f} {res.quality:>9s} "
                      f"{res.report['model']['type']:>11s} {err:8.2f} {res.report['counts']['inliers']:7d} "
                      f"{time.perf_counter() - t0:5.1f}", flush=True)
    print()
    print(f"{'size px':>7s} " + " ".join(f"{k:>18s}" for k in next(iter(counts.values()))))
    for s, c in counts.items():
        print(f"{s:7d} " + " ".join(f"{v:18d}" for v in c.values()))
    wrong = sum(c["reliable but wrong"] for c in counts.values())
    print(f"reliable but wrong (>= {WRONG_PX:.0f} px): {wrong}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
