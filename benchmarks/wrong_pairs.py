"""Wrong pairs: a reference and a target of two different places, handed over as if they were a
pair. Users do this (the wrong tile, the wrong date folder, a mislabelled file), and there is no
correct answer: georeg must fail or call the result ``uncertain``. A ``reliable`` result here is
a confident wrong answer, the worst thing georeg can give.

    python benchmarks/wrong_pairs.py [--data ../shared/data] [--per-set 8] [--matcher auto]

Each pair takes the reference of one benchmark case and the target picture of another case of the
same set from a different place (other S1/S2 fragments whose footprints do not touch, another 3MOS
source strip, another SRIF or NIR-VIS pair), written on the first case's target georeferencing
(same grid, same file kind), so that everything but the content is what a true pair would give.
Prints one row per pair (verdict, the reason, tie points) and per set the counts, and exits 1 when
any wrong pair comes out ``reliable``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np
import rasterio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import BUILDERS, Case, _csv, api  # noqa: E402

SETS = ("s1s2", "s1s2png", "3mos", "srif_rot", "srif_files", "nir_vis_h", "s1s2_rot")


@cache
def _rows(path: Path, key: str) -> dict[str, dict]:
    """A dataset's CSV table by ``key`` (read once)."""
    return {r[key]: r for r in _csv(path)}


def _place(data: Path, key: str, case: Case) -> str:
    """A label of the place a case shows: cases with the same label may overlap on the ground."""
    first = case.name.split(" ")[0]
    if key == "3mos":
        return _rows(data / "3mos_previews" / "pairs.csv", "pair_id")[first]["source_file"]
    if key == "s1s2png":
        return _png_block(data, first)
    if key in ("srif_rot", "srif_files"):
        return case.name.split(" (")[0]
    if key == "nir_vis_h":
        return case.name
    return case.reference  # one reference file per place


def _png_block(data: Path, stem: str) -> str:
    """S1/S2 PNG fragments are 1024 px blocks of a tile's grid: the tile and the block's 3x3
    neighbourhood (touching fragments share no ground, but label them alike to be safe)."""
    r = _rows(data / "s1s2_volkov" / "georef_epsg3395.csv", "fragment")[f"{stem}.png"]
    size = float(r["pixel_w"]) * int(r["width"])
    return f"{r['s2_tile']} {round(float(r['x_min']) / size)} {round(float(r['y_max']) / size)}"


def _adjacent(key: str, a: str, b: str) -> bool:
    """Whether two place labels (:func:`_place`) may share ground."""
    if key != "s1s2png":
        return a == b
    ta, xa, ya = a.split()
    tb, xb, yb = b.split()
    return ta == tb and abs(int(xa) - int(xb)) <= 1 and abs(int(ya) - int(yb)) <= 1


@cache
def _grey(path: str) -> np.ndarray:
    """The picture's first three bands averaged (read once per file)."""
    with rasterio.open(path) as d:
        return d.read(list(range(1, min(d.count, 3) + 1))).astype(np.float32).mean(0)


def _same_place(ref_a: str, ref_b: str, min_overlap: float = 0.05, min_corr: float = 0.3) -> bool:
    """Whether two optical references show common ground: the best translation between them by
    phase correlation (each of its four wrap-around readings) brings at least ``min_overlap`` of
    the pixels into correlation ``min_corr`` or more. Datasets cut several crops from one scene
    (SRIF Optical-Infrared pairs 1 and 8 overlap by a shift of (66, 53) px); such a "wrong" pair
    is a true one."""
    from skimage.registration import phase_cross_correlation

    a, b = _grey(ref_a), _grey(ref_b)
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = a[:h, :w], b[:h, :w]
    (dy, dx), _, _ = phase_cross_correlation(a, b, normalization=None)
    for sy in {int(dy) % h, int(dy) % h - h}:
        for sx in {int(dx) % w, int(dx) % w - w}:
            ya, yb = max(sy, 0), max(-sy, 0)
            xa, xb = max(sx, 0), max(-sx, 0)
            oh, ow = h - abs(sy), w - abs(sx)
            if oh * ow < min_overlap * h * w:
                continue
            pa, pb = a[ya:ya + oh, xa:xa + ow].ravel(), b[yb:yb + oh, xb:xb + ow].ravel()
            if np.corrcoef(pa, pb)[0, 1] >= min_corr:
                return True
    return False


def _as_target_of(case: Case, other: Case, dst: Path) -> str:
    """``other``'s target picture in ``case``'s target file kind: a georeferenced target is
    rewritten on ``case``'s target grid (cropped or padded with its nodata), a picture without
    georeferencing is used as it is."""
    with rasterio.open(case.target) as d:
        geo = d.crs is not None
        prof = d.profile
    if not geo:
        return other.target
    with rasterio.open(other.target) as o:
        arr = o.read(1)
    out = np.full((prof["height"], prof["width"]), prof.get("nodata") or 0, dtype=prof["dtype"])
    h, w = min(out.shape[0], arr.shape[0]), min(out.shape[1], arr.shape[1])
    out[:h, :w] = arr[:h, :w]
    with rasterio.open(dst, "w", **{**prof, "count": 1}) as o:
        o.write(out[None])
    return str(dst)


def build(data: Path, work: Path, per_set: int, sets=SETS) -> list[tuple[str, str, str, str, str]]:
    """[(set, label, reference, target, output)]: per set up to ``per_set`` wrong pairs, each with
    an output path in its own folder under ``work`` (a picture without georeferencing is the
    dataset's own file: its output must not go beside it)."""
    out = []
    for key in sets:
        folder = work / key
        folder.mkdir(parents=True, exist_ok=True)
        cases = BUILDERS[key](data, folder, np.random.default_rng(7))
        # one case per place, the places in a fixed order
        seen, picks = set(), []
        for c in cases:
            p = _place(data, key, c)
            if p not in seen:
                seen.add(p)
                picks.append((p, c))
        n = 0
        for i, (place, case) in enumerate(picks):
            if n >= per_set:
                break
            others = (c for q, c in picks[i + 1:] + picks[:i]
                      if not _adjacent(key, place, q) and not _same_place(case.reference, c.reference))
            other = next(others, None)
            if other is None:
                continue
            d = folder / f"wrong_{i:02d}"
            d.mkdir(exist_ok=True)
            tgt = _as_target_of(case, other, d / "target.tif")
            out.append((case.set, f"{case.name} <- {other.name}", case.reference, tgt, str(d / "out.tif")))
            n += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--per-set", type=int, default=8)
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--work", default=None, help="keep the pairs and outputs here (default: a temporary folder)")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    with tempfile.TemporaryDirectory(prefix="georeg-wrong-") as td:
        work = Path(args.work or td)
        counts: dict[str, dict[str, int]] = {}
        print(f"{'set':42s} {'pair':46s} {'verdict':>9s} {'tie pts':>7s} {'s':>5s}  reason")
        for set_name, label, ref, tgt, output in build(Path(args.data), work, args.per_set, args.sets.split(",")):
            t0 = time.perf_counter()
            try:
                res = georeg.register(ref, tgt, output, cfg)
                quality, n = res.quality, res.report["counts"]["inliers"]
                reason = res.report["verdict"].get("reason") or ""
            except GeoregError as exc:
                quality, n, reason = "failed", 0, str(exc).splitlines()[0]
            counts.setdefault(set_name, {"failed": 0, "uncertain": 0, "reliable": 0})[quality] += 1
            print(f"{set_name[:42]:42s} {label[:46]:46s} {quality:>9s} {n:7d} {time.perf_counter() - t0:5.1f}  "
                  f"{reason[:90]}", flush=True)
        print()
        print(f"{'set':42s} {'pairs':>5s} {'failed':>6s} {'uncertain':>9s} {'reliable (wrong)':>16s}")
        for s, c in counts.items():
            print(f"{s[:42]:42s} {sum(c.values()):5d} {c['failed']:6d} {c['uncertain']:9d} {c['reliable']:16d}")
        wrong = sum(c["reliable"] for c in counts.values())
        print(f"reliable results on wrong pairs: {wrong}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
