"""What georeg decides as the modality of the datasets' own files, handed over as they are (PNG,
JPEG and GeoTIFF, no modality given): counts per group of files whose sensor is known.

    python benchmarks/modality_files.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import collections
import os
import warnings
from pathlib import Path

from georeg.config import InputConfig
from georeg.raster import RasterSource

HERE = Path(__file__).resolve().parent

GROUPS = {  # name (true class): (glob under the data folder, at most this many files)
    "SRIF infrared JPEG (thermal)": ("srif_multimodal/Optical-Infrared/pair*_2.jpg", 60),
    "SRIF optical JPEG, grey (optical)": ("srif_multimodal/Optical-Infrared/pair*_1.jpg", 30),
    "3MOS SAR PNG (sar)": ("3mos_previews/sar/*.png", 60),
    "3MOS optical PNG (optical)": ("3mos_previews/opt/*.png", 30),
    "Sentinel-1 VH GeoTIFF (sar)": ("s1s2_volkov/geotiff/*_S1_VH.tif", 30),
    "NIR-VIS near-infrared PNG (optical)": ("nir_vis_rs/*/NIR_TF_*.png", 40),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    for name, (pattern, limit) in GROUPS.items():
        files = sorted(Path(args.data).glob(pattern))[:limit]
        counts: collections.Counter = collections.Counter()
        for f in files:
            with RasterSource(f, InputConfig(), "target", pixel_frame_ok=True) as s:
                counts[s.modality] += 1
        print(f"{name:38s} {len(files):3d} files: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
