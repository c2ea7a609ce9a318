"""Register many scene pairs from Python with georeg.batch, then read the summary.

    python examples/batch_api.py                    # the three Sentinel-1/2 GeoTIFF pairs of ../shared/data
    python examples/batch_api.py manifest.csv OUTDIR [--workers 2] [--scheduler tcp://host:8786]

A manifest is a CSV with the columns reference,target and optionally output and per-row options
(model, matcher, max_shift, modality, ref_band, target_band, ref_nodata, target_nodata, ref_mask,
target_mask, threshold).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from georeg import batch
from georeg.config import RegistrationConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "s1s2_volkov" / "geotiff"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", nargs="?")
    ap.add_argument("outdir", nargs="?", default=None, help="default: a new folder under the system's temp folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address, or 'local'")
    args = ap.parse_args()
    args.outdir = args.outdir or tempfile.mkdtemp(prefix="georeg_batch_")
    rows = args.manifest or [{"reference": str(DATA / f"{p}_S2_RGB.tif"), "target": str(DATA / f"{p}_S1_VH.tif")}
                             for p in ("050", "176", "268")]
    config = RegistrationConfig().with_options(matching={"max_shift": 400, "max_shift_unit": "m"})
    summary = batch.run(rows, args.outdir, config, executor="dask" if args.scheduler else "local",
                        workers=args.workers, scheduler=args.scheduler,
                        progress=lambda row, done, total: print(f"[{done}/{total}] {Path(row['target']).name}: "
                                                                f"{row['status']} {row['error']}", flush=True))
    ok = [r for r in summary if r["status"] != "failed"]
    print(f"{len(ok)}/{len(summary)} registered; summary in {Path(args.outdir) / 'summary.csv'}")
    return 0 if len(ok) == len(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
