"""georeg on the six RIFT demo pairs (SAR, infrared, night lights, map, depth and optical against
optical), which no benchmark set, training split or tuning has used: does the product generalise?

They have no ground truth, so every number is a consistency: the pair registered both ways round
must compose to the identity, and the target handed over as a picture turned and scaled by a
known amount (black corners, no nodata, no georeferencing: as users pass screenshots and
rotated scans) must give the plain pair's result composed with that motion. Distances are the
largest over the ground both images show, in the coarser image's pixels (a target shrunk to 0.6x
has 1.7 reference pixels to its pixel). Each of the two results compared has its own error of a
few tenths of a pixel, so a result is called wrong from 1.5 px.

    python benchmarks/unseen_pairs.py [--data ../shared/data] [--matcher auto] [--work DIR]

Prints one row per case (model, verdict, distance, seconds) and a summary; exits 1 when a result
called reliable is wrong.
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
from rasterio.errors import NotGeoreferencedWarning

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # synthetic data helpers live with the tests
from cases import api  # noqa: E402
from synthetic import rotation_scale_matrix  # noqa: E402

from georeg.coordinates import resample_by_matrix  # noqa: E402
from georeg.estimation import apply_h  # noqa: E402

PAIRS = ("sar-optical", "infrared-optical", "day-night", "map-optical", "depth-optical", "optical-optical")
# (rotation degrees, scale): the target's picture turned about its centre and scaled
VARIANTS = ((37.0, 1.0), (-120.0, 1.0), (200.0, 1.0), (75.0, 0.6), (-150.0, 0.6), (15.0, 1.6), (0.0, 1.3))
WRONG_PX = 1.5


def turned(theta_deg: float, scale: float, w: int, h: int) -> np.ndarray:
    """3x3 map from a picture's pixel positions (centres at half-integers) to those of its copy
    turned by ``theta_deg`` and scaled by ``scale`` about the picture's centre (the inverse of the
    synthetic data's new-to-old matrix for the opposite turn and scale)."""
    return np.linalg.inv(rotation_scale_matrix(w, h, -theta_deg, 1.0 / scale))


def write_turned(src: Path, dst: Path, motion: np.ndarray) -> None:
    """The picture ``src`` moved by ``motion`` into a same-size plain GeoTIFF (bilinear; outside
    black, no nodata declared, no georeferencing)."""
    with rasterio.open(src) as d:
        img = d.read().astype(np.float32)
    back = np.linalg.inv(motion)  # a pixel of the copy shows the picture there
    out = np.stack([resample_by_matrix(b, back, b.shape, centre=0.5)[0] for b in img]).round().clip(0, 255)
    with rasterio.open(dst, "w", driver="GTiff", width=out.shape[2], height=out.shape[1], count=out.shape[0],
                       dtype="uint8") as o:
        o.write(out.astype(np.uint8))


def inside(pts: np.ndarray, w: int, h: int) -> np.ndarray:
    return (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)


def grid(w: int, h: int, n: int = 41) -> np.ndarray:
    xx, yy = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
    return np.c_[xx.ravel(), yy.ravel()]


def shape(path) -> tuple[int, int]:
    with rasterio.open(path) as d:
        return d.width, d.height


def round_trip(fwd: np.ndarray, back: np.ndarray, ref_size, tgt_size) -> float | None:
    """Largest distance (px) by which reference points come back from the target through
    ``fwd @ back``, over the reference points whose place in the target lies inside it."""
    p = grid(*ref_size)
    p = p[inside(apply_h(back, p), *tgt_size)]
    return float(np.abs(apply_h(fwd @ back, p) - p).max(1).max()) if len(p) else None


def off_motion(got: np.ndarray, fwd: np.ndarray, motion: np.ndarray, ref_size, tgt_size, scale: float
               ) -> float | None:
    """Largest distance between the result ``got`` for the moved picture and the plain result
    ``fwd`` composed with the motion, over the moved picture's points that show ground both images
    show, in the coarser image's pixels."""
    truth = fwd @ np.linalg.inv(motion)
    p = grid(*tgt_size)
    p = p[inside(apply_h(np.linalg.inv(motion), p), *tgt_size) & inside(apply_h(truth, p), *ref_size)]
    if not len(p):
        return None
    return float(np.abs(apply_h(got, p) - apply_h(truth, p)).max(1).max()) / max(1.0, 1.0 / scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--work", default=None, help="keep the pictures and outputs here (default: a temporary folder)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the demo pairs are plain pictures
    root = Path(args.data) / "rift_samples"
    if not root.is_dir():
        sys.exit(f"the RIFT demo pairs are not at {root}; pass --data")
    georeg, cfg, GeoregError = api(args.matcher, tie_points=None)

    def register(ref, tgt, out):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the verdict is read from the result below
            try:
                res = georeg.register(str(ref), str(tgt), str(out), cfg)
            except GeoregError as exc:
                return None, "failed", str(exc).splitlines()[0], time.perf_counter() - t0
        return np.array(res.report["model"]["matrix_px"]), res.quality, res.report["model"]["type"], \
            time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory(prefix="georeg-unseen-") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        for pair in PAIRS:
            ref, tgt = root / pair / "pair2.jpg", root / pair / "pair1.jpg"  # the optical side is pair2
            (rw, rh), (tw, th) = shape(ref), shape(tgt)
            fwd, quality, kind, secs = register(ref, tgt, work / f"{pair}_fwd.tif")
            if fwd is None:
                rows.append((pair, "plain", kind, quality, None, secs))
                continue
            rows.append((pair, "plain", kind, quality, None, secs))
            back, quality, kind, secs = register(tgt, ref, work / f"{pair}_back.tif")
            dist = None if back is None else round_trip(fwd, back, (rw, rh), (tw, th))
            rows.append((pair, "both ways round", kind, quality, dist, secs))
            for theta, scale in VARIANTS:
                motion = turned(theta, scale, tw, th)
                # a neutral name, as the plain pair's pair1.jpg: file-name words are the modality's
                # tie-breaker, and '<pair>_s1.6' read as Sentinel-1, 'infrared-optical' as thermal
                pic = work / f"picture_{len(rows):02d}.tif"
                write_turned(tgt, pic, motion)
                got, quality, kind, secs = register(ref, pic, work / f"picture_{len(rows):02d}_out.tif")
                dist = None if got is None else off_motion(got, fwd, motion, (rw, rh), (tw, th), scale)
                rows.append((pair, f"turned {theta:+.0f} deg, scale {scale:g}", kind, quality, dist, secs))
    print(f"{'pair':18s} {'case':28s} {'model / error':24s} {'verdict':>10s} {'off px':>7s} {'s':>6s}")
    wrong = []
    for pair, case, kind, quality, dist, secs in rows:
        off = "-" if dist is None else f"{dist:.2f}"
        print(f"{pair:18s} {case:28s} {kind[:24]:24s} {quality:>10s} {off:>7s} {secs:6.1f}", flush=True)
        if quality == "reliable" and dist is not None and dist >= WRONG_PX:
            wrong.append(f"{pair} {case}")
    checked = [r for r in rows if r[1] != "plain"]
    n = len(checked)
    within = sum(r[4] is not None and r[4] < 1.0 for r in checked)
    reliable = sum(r[3] == "reliable" for r in checked)
    failed = sum(r[3] == "failed" for r in checked)
    print(f"{n} checks: {within} within 1 px of the plain result, {reliable} reliable, "
          f"{sum(r[3] == 'uncertain' for r in checked)} uncertain, {failed} failed; "
          f"reliable but {WRONG_PX} px or more off: {len(wrong)} {wrong if wrong else ''}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
