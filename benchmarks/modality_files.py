"""What georeg decides as the modality of the datasets' own files, handed over as they are (PNG,
JPEG and GeoTIFF, no modality given): counts per group of files whose sensor is known.

    python benchmarks/modality_files.py [--data ../shared/data]

Then the same SAR bands as users also bring them, written as neutral uint16 GeoTIFFs: the 8-bit
previews read as 30 dB of backscatter and stored as linear power or amplitude DN, or as int16
dB in tenths or hundredths; Landsat 8's TIRS bands as int16 degrees Celsius in whole units,
tenths or hundredths and stretched to 8 bits (whole and in quarters); and emulated
few-look SAR: the Sentinel-2 pairs' luminance (squared, as a reflectivity) times gamma-distributed
speckle of 1 and 4.4 looks, as intensity and as amplitude.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from georeg.config import InputConfig
from georeg.raster import RasterSource

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: the training package reads the datasets' images
from training.data import _grey  # noqa: E402
from training.modality import _raster  # noqa: E402

sys.path.insert(0, str(HERE))
from cases import brightness_temperature  # noqa: E402

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
    renditions(Path(args.data))


def _decide(arr: np.ndarray, folder: Path, i: int, dtype: str = "uint16") -> str:
    path = folder / f"band_{i}.tif"
    info = np.iinfo(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=dtype,
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000)) as d:
        d.write(np.clip(np.round(arr), info.min, info.max).astype(dtype)[None])
    with RasterSource(path, InputConfig(), "target") as s:
        return s.modality


def _thermal_integers(data: Path, folder: Path, n: int, groups: dict) -> int:
    """Landsat 8 B10 and B11 as int16 degrees Celsius in whole units, tenths and hundredths, and
    stretched to 8 bits over their range (``gdal_translate -ot Byte -scale``), whole and each
    quarter; returns the next file number."""
    for band in ("B10", "B11"):
        path = data / "landsat8_oli_tirs" / f"l8_{band}.tif"
        if not path.exists():
            continue
        celsius = brightness_temperature(_raster(path), band) - 273.15
        h, w = celsius.shape
        parts = [celsius] + [celsius[i * h // 2:(i + 1) * h // 2, j * w // 2:(j + 1) * w // 2]
                             for i in range(2) for j in range(2)]
        for unit in (1, 10, 100):
            for part in parts:
                groups[f"L8 TIRS as int16 C x {unit} (thermal)"][_decide(part * unit, folder, n, "int16")] += 1
                n += 1
        for part in parts:
            byte = 254.0 * (part - part.min()) / np.ptp(part)
            groups["L8 TIRS stretched to 8 bits (thermal)"][_decide(byte, folder, n, "uint8")] += 1
            n += 1
    return n


def renditions(data: Path) -> None:
    rng = np.random.default_rng(0)
    sar = sorted((data / "s1s2_volkov" / "geotiff").glob("*_S1_VH.tif")) + sorted(
        (data / "3mos_previews" / "sar").glob("*.png"))[::5]
    opt = sorted((data / "s1s2_volkov" / "geotiff").glob("*_S2_RGB.tif"))
    groups: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory() as td:
        n = 0
        for p in sar:
            g = (_raster(p) if p.suffix == ".tif" else _grey(p)).astype(np.float64)
            power = 10.0 ** (3.0 * ((g - g.min()) / max(g.max() - g.min(), 1e-9) - 1.0))
            for name, arr in (("linear power", power * 1e4), ("amplitude DN", np.sqrt(power) * 1e3)):
                groups[f"SAR previews as {name} (sar)"][_decide(arr, Path(td), n)] += 1
                n += 1
            for unit in (10, 100):  # 30 dB of backscatter in integer tenths or hundredths of a dB
                db = 30.0 * ((g - g.min()) / max(g.max() - g.min(), 1e-9) - 1.0) + 5.0
                groups[f"SAR previews as int16 dB x {unit} (sar)"][_decide(db * unit, Path(td), n, "int16")] += 1
                n += 1
        n = _thermal_integers(data, Path(td), n, groups)
        for p in opt:
            refl = (_raster(p).astype(np.float64) / 255.0) ** 2 + 1e-3
            for crop in range(4):  # the four 512 px quarters
                r = refl[(crop // 2) * 512:(crop // 2) * 512 + 512, (crop % 2) * 512:(crop % 2) * 512 + 512]
                for looks in (1.0, 4.4):
                    speckled = r * rng.gamma(looks, 1 / looks, r.shape)
                    for name, arr in (("intensity", speckled * 1e4), ("amplitude", np.sqrt(speckled) * 1e3)):
                        groups[f"emulated {looks:g}-look {name} (sar)"][_decide(arr, Path(td), n)] += 1
                        n += 1
    for name, counts in groups.items():
        print(f"{name:38s} {sum(counts.values()):3d} bands: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
