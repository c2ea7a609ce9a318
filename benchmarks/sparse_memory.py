"""Memory and time on a huge, mostly empty pair (issue 13): a SIZE x SIZE tiled, compressed,
sparse GeoTIFF pair whose valid data is one 2000 x 2000 block in the middle, against the same
block registered alone, in the same run. Each registration is a fresh ``georeg register``
process; its wall time and peak RSS (the child's ru_maxrss) are reported.

    python benchmarks/sparse_memory.py                 # 60000 px, the issue's case
    python benchmarks/sparse_memory.py --size 20000

Targets: peak RSS under 1.5 GB on the sparse pair, and time within 2x of the block alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data helpers live with the tests
from synthetic import synthetic_pair  # noqa: E402

BLOCK = 2000


def make_pair(folder: Path, size: int) -> tuple[tuple[str, str], tuple[str, str]]:
    blk = (str(folder / "block_ref.tif"), str(folder / "block_tgt.tif"))
    synthetic_pair(*blk, size=BLOCK, seed=3, new_to_old=np.array([[1, 0, 5.0], [0, 1, -3.0], [0, 0, 1.0]]))
    sparse = []
    off = (size - BLOCK) // 2
    for path in blk:
        with rasterio.open(path) as s:
            arr, prof, t = s.read(), s.profile, s.transform
        prof.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                    nodata=0, transform=t @ Affine.translation(-off, -off), sparse_ok=True, BIGTIFF="YES")
        out = str(folder / f"sparse_{Path(path).name}")
        with rasterio.open(out, "w", **prof) as d:
            d.write(np.where(arr == 0, 1, arr).astype(prof["dtype"]), window=Window(off, off, BLOCK, BLOCK))
        sparse.append(out)
    return blk, tuple(sparse)


def run(ref: str, tgt: str, out: Path, matcher: str) -> dict:
    code = ("import resource, sys, time; from georeg._entry import main; t = time.perf_counter()\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code or 0\nelse:\n    rc = 0\n"
            "print('BENCH', rc, time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, "register", ref, tgt, "-o", str(out), "--overwrite", "-q",
                        "--matcher", matcher], capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("BENCH")]
    rc, _, rss = line[-1].split()[1:] if line else (p.returncode, 0, float("nan"))
    rep = json.loads(out.with_name(out.stem + "_report.json").read_text()) if int(rc) in (0, 1) else {}
    return {"rc": int(rc), "seconds": wall, "peak_rss_mb": float(rss), "tiles": rep.get("counts", {}).get("tiles"),
            "shift_px": rep.get("model", {}).get("parameters", {}).get("shift_px_at_centre"),
            "error": p.stderr.strip().splitlines()[-2] if int(rc) not in (0, 1) else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=60000)
    ap.add_argument("--matcher", default="baseline")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="georeg-sparse-") as td:
        d = Path(td)
        t = time.perf_counter()
        blk, sparse = make_pair(d, args.size)
        print(f"built the pair in {time.perf_counter() - t:.1f} s", flush=True)
        a = run(*blk, d / "block_out.tif", args.matcher)
        b = run(*sparse, d / "sparse_out.tif", args.matcher)
    print(f"{'pair':24s} {'seconds':>8s} {'peak RSS MB':>12s} {'tiles':>6s}  shift px at centre")
    for name, r in ((f"block {BLOCK} px alone", a), (f"sparse {args.size} px", b)):
        print(f"{name:24s} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} {r['tiles']!s:>6s}  {r['shift_px']} "
              f"{r['error']}")
    print(f"time ratio sparse / block: {b['seconds'] / a['seconds']:.2f} (target <= 2); "
          f"sparse peak RSS {b['peak_rss_mb']:.0f} MB (target < 1500)")
    print("largest child's peak RSS:", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "MB")


if __name__ == "__main__":
    main()
