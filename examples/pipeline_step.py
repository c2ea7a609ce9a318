"""georeg as one step of a Python processing pipeline.

Registers a Sentinel-1 VH scene onto a Sentinel-2 scene (or any pair you pass), checks the
result against a quality gate, and hands the corrected raster and the tie points to the next
step. Run it from the repository root:

    python examples/pipeline_step.py                       # the example pair from ../shared/data
    python examples/pipeline_step.py OPTICAL.tif SAR.tif --out-dir results/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import georeg
from georeg.config import EstimationConfig, MatchingConfig, OutputConfig, RegistrationConfig
from georeg.errors import GeoregError

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "s1s2_volkov" / "geotiff"


def register_step(reference: Path, target: Path, out_dir: Path, max_rmse_px: float = 2.5):
    """Register ``target`` onto ``reference`` and refuse results that fail the quality gate."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = target.stem
    config = RegistrationConfig(
        matching=MatchingConfig(max_shift=400, max_shift_unit="m"),  # expected geocoding error
        estimation=EstimationConfig(model="auto"),
        output=OutputConfig(tie_points=str(out_dir / f"{stem}_tiepoints.gpkg"),
                            report=str(out_dir / f"{stem}_report.json"), overwrite=True),
    )
    result = georeg.register(reference, target, out_dir / f"{stem}_registered.tif", config)
    if result.rmse_px > max_rmse_px:
        raise RuntimeError(f"{target.name}: RMSE {result.rmse_px:.2f} px is above the gate of {max_rmse_px} px")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", nargs="?", default=str(EXAMPLE / "176_S2_RGB.tif"))
    ap.add_argument("target", nargs="?", default=str(EXAMPLE / "176_S1_VH.tif"))
    ap.add_argument("--out-dir", default=None, help="default: a new folder under the system's temp folder")
    args = ap.parse_args()
    args.out_dir = args.out_dir or tempfile.mkdtemp(prefix="georeg_example_")
    try:
        result = register_step(Path(args.reference), Path(args.target), Path(args.out_dir))
    except GeoregError as exc:
        print(f"registration failed: {exc}", file=sys.stderr)
        return exc.exit_code
    rep = result.report
    inliers = result.tie_points[result.tie_points["inlier"]]
    print(f"model {rep['model']['type']}, shift {rep['shift']['mean_map'][0]:+.1f} m east, "
          f"{rep['shift']['mean_map'][1]:+.1f} m north; RMSE {result.rmse_px:.2f} px from {len(inliers)} inliers")
    print(f"corrected raster: {result.outputs['raster']}")
    print(f"tie points:       {result.outputs['tie_points']} (columns: {', '.join(inliers.columns[:6])}, ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
