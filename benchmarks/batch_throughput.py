"""Pairs per minute of `georeg batch` on one manifest: 1, 2 and N local workers, and through Dask
(a LocalCluster of N single-threaded workers), in one run.

    python benchmarks/batch_throughput.py [--pairs 8] [--workers-max N]

The manifest is made of Landsat 8 B4/B10 pairs with different geocoding errors, from ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from georeg import batch
from georeg.config import RegistrationConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data helpers live with the tests
from synthetic import shift_geotransform  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(here.parent.parent / "shared" / "data")))
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--workers-max", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    l8 = Path(args.data) / "landsat8_oli_tirs"
    if not l8.is_dir():
        sys.exit(f"real data not found at {args.data}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="georeg-batch-bench-") as td:
        work = Path(td)
        rows = []
        for i in range(args.pairs):
            p = work / f"b10_{i}.tif"
            shift_geotransform(str(l8 / "l8_B10.tif"), str(p), *rng.uniform(-15, 15, 2))
            rows.append({"reference": str(l8 / "l8_B4.tif"), "target": str(p)})
        cfg = RegistrationConfig()
        runs = [("local", 1), ("local", 2)]
        if args.workers_max > 2:
            runs.append(("local", args.workers_max))
        runs.append(("dask", args.workers_max))
        print(f"{args.pairs} pairs (Landsat B4 vs B10, 603x627 px), {os.cpu_count()} cores")
        print(f"{'executor':10s} {'workers':>7s} {'seconds':>8s} {'pairs/min':>10s} {'failed':>7s}")
        for executor, n in runs:
            out = work / f"out_{executor}_{n}"
            t = time.perf_counter()
            summary = batch.run(rows, out, cfg, executor=executor, workers=n,
                                scheduler="local" if executor == "dask" else None, resume=False)
            secs = time.perf_counter() - t
            failed = sum(1 for r in summary if r["status"] == "failed")
            print(f"{executor:10s} {n:7d} {secs:8.1f} {60 * len(rows) / secs:10.1f} {failed:7d}", flush=True)
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
