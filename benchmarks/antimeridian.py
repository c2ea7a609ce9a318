"""Pairs across the antimeridian: a scene that crosses 180 degrees (Fiji, Chukotka, the Aleutians),
exported to EPSG:4326, has longitudes past 180, or, written the other way round, past -180.

The S1/S2 GeoTIFF pairs 050, 176 and 268 placed on UTM 60N at 65 degrees north with 180 degrees
through their middle, the S1 scene's geotransform off by (13.4, -8.7) px; then the S1 target, or
the S2 reference, exported to EPSG:4326 (bilinear, about 10 m) with longitudes east of 180 and,
the same pixels, west of -180; and the S1 target as a Sentinel-1 GRD file holds it (uint16, lines
south to north, a zero border, GCPs in EPSG:4326, which jump from 179.9 to -179.9). Truth: the
same pair's result on UTM (the dataset's own alignment is good to a few pixels only): each
corrected target read onto the UTM reference's grid and phase-correlated with the UTM case's
corrected target (both the S1 scene), in metres.

    python benchmarks/antimeridian.py [--data ../shared/data] [--matcher auto] [--pairs 050,176,268]

Prints one row per case (the verdict, the distance from the UTM result in metres, tie points,
seconds) and exits 1 when a result is ``reliable`` but 10 m (a reference pixel) or more from it;
``inf``: the corrected target does not hold data over the middle of the grid (before 2026-12-07,
half of a geographic target's corrected copy was left blank, and the UTM target corrected under a
reference written west of -180 kept its geotransform uncorrected).
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
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.warp import transform as crs_transform

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import api, write_grd_like  # noqa: E402

S1_SHIFT = (13.4, -8.7)  # px of 10 m
LATITUDE = 65.0


def placed(a: np.ndarray, shift=(0.0, 0.0), geographic: str = "") -> tuple[np.ndarray, Affine, str]:
    """(bands, H, W) pixels on UTM 60N at LATITUDE with 180 degrees through their middle (the
    geotransform off by ``shift`` px), or exported from there to EPSG:4326 (``geographic``: 'east'
    of 180 or 'west' of -180, the same pixels)."""
    n, h, w = a.shape
    xs, ys = crs_transform("EPSG:4326", "EPSG:32660", [180.0], [LATITUDE])
    t = Affine(10, 0, xs[0] - w * 5, 0, -10, ys[0] + h * 5) @ Affine.translation(*shift)
    if not geographic:
        return a, t, "EPSG:32660"
    m_lon = 111320 * np.cos(np.radians(LATITUDE))
    ww, hh = int(w * 1.1), int(h * 1.1)  # (the footprint turns by the grid's convergence)
    gt = Affine(10 / m_lon, 0, 180.0 - ww * 5 / m_lon, 0, -10 / 110900, LATITUDE + hh * 5 / 110900)
    out = np.zeros((n, hh, ww), a.dtype)
    for i in range(n):
        reproject(a[i], out[i], src_transform=t, src_crs="EPSG:32660", dst_transform=gt,
                  dst_crs="+proj=longlat +datum=WGS84 +lon_wrap=180", resampling=Resampling.bilinear,
                  src_nodata=0, dst_nodata=0)
    return out, Affine.translation(-360.0 if geographic == "west" else 0.0, 0) @ gt, "EPSG:4326"


def write(path: Path, p: tuple[np.ndarray, Affine, str]) -> str:
    a, t, crs = p
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype=a.dtype, crs=crs, transform=t, nodata=0) as o:
        o.write(a)
    return str(path)


def _on_grid(path: str, grid_of: str) -> np.ndarray:
    """``path``'s first band warped (bilinear) onto the grid of ``grid_of``, NaN outside: with
    rasterio alone, not georeg (the judge of georeg before a change too), a geographic raster's
    longitudes wrapped around its centre (its file may run past 180 or -180)."""
    from rasterio.crs import CRS

    with rasterio.open(grid_of) as g:
        shape, transform, crs = (g.height, g.width), g.transform, g.crs
    with rasterio.open(path) as s:
        gcps, gcp_crs = s.gcps
        src_crs = gcp_crs if gcps else s.crs
        placed = {"gcps": gcps} if gcps else {"src_transform": s.transform}
        if src_crs.is_geographic:
            lons = [g.x for g in gcps] if gcps else [s.bounds.left, s.bounds.right]
            src_crs = CRS.from_proj4(f"{src_crs.to_proj4()} +lon_wrap={(min(lons) + max(lons)) / 2:.9g}")
        out = np.full(shape, np.nan, np.float32)
        reproject(s.read(1).astype(np.float32), out, src_crs=src_crs, src_nodata=0, dst_transform=transform,
                  dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.bilinear, **placed)
    return out


def offset_m(a: str, b: str, grid_of: str) -> float:
    """How far apart (metres) two corrected targets lie: both read onto the grid of ``grid_of`` (a
    UTM raster of 10 m) and phase-correlated over the middle 60% of it, where both must hold data
    (no mask's edge to match); infinite where they do not."""
    from skimage.registration import phase_cross_correlation

    reads = [_on_grid(p, grid_of) for p in (a, b)]
    h, w = reads[0].shape
    mid = (slice(h // 5, h - h // 5), slice(w // 5, w - w // 5))
    if not all(np.isfinite(d[mid]).all() for d in reads):
        return float("inf")
    shift = phase_cross_correlation(*(d[mid] for d in reads), upsample_factor=20)[0]
    return float(np.hypot(*shift)) * 10.0


def build(data: Path, work: Path, pairs) -> list[tuple[str, str, str, str]]:
    """[(name, reference, target, the name of the case whose result is the truth)], each UTM case
    before those it judges."""
    cases = []
    d = data / "s1s2_volkov" / "geotiff"
    for pid in pairs:
        with rasterio.open(d / f"{pid}_S2_RGB.tif") as s:
            rgb = s.read()
        with rasterio.open(d / f"{pid}_S1_VH.tif") as s:
            vh = s.read()
        ref = write(work / f"ref_{pid}.tif", placed(rgb))
        tgt = write(work / f"scene_{pid}.tif", placed(vh, S1_SHIFT))
        utm = f"S1/S2 {pid} UTM 60N"
        cases.append((utm, ref, tgt, utm))
        amp = vh[0].astype(np.uint16)  # (a GRD's uint16 amplitude DN; the S1 GeoTIFFs are 8-bit)
        a, t, crs = placed(vh, S1_SHIFT)
        grd = write_grd_like(work / f"grd_{pid}.tif", lambda y0, y1, amp=amp: amp[y0:y1], a.shape[2], a.shape[1],
                             t, crs)
        cases.append((f"S1/S2 {pid} target GCPs across 180", ref, grd, utm))
        for side in ("east", "west"):
            geo_tgt = write(work / f"scene_{pid}_{side}.tif", placed(vh, S1_SHIFT, side))
            cases.append((f"S1/S2 {pid} target {side} of {'' if side == 'east' else '-'}180", ref, geo_tgt, utm))
            geo_ref = write(work / f"ref_{pid}_{side}.tif", placed(rgb, geographic=side))
            cases.append((f"S1/S2 {pid} reference {side} of {'' if side == 'east' else '-'}180", geo_ref, tgt, utm))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--pairs", default="050,176,268")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    print(f"{'case':34s} {'verdict':>10s} {'off m':>7s} {'inliers':>7s} {'s':>5s}")
    wrong, outputs = 0, {}
    with tempfile.TemporaryDirectory(prefix="georeg-antimeridian-") as td:
        work = Path(td)
        with warnings.catch_warnings():  # (the GRD is written before its GCPs: "no geotransform")
            warnings.simplefilter("ignore")
            cases = build(Path(args.data), work, args.pairs.split(","))
        for i, (name, ref, tgt, truth) in enumerate(cases):
            t0 = time.perf_counter()
            out = str(work / f"out_{i}.tif")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = georeg.register(ref, tgt, out, cfg)
            except Exception as exc:  # (a crash counts: georeg before 2026-12-07 crashed on the GRD)
                what = "failed" if isinstance(exc, GeoregError) else "crashed"
                print(f"{name:34s} {what:>10s}  {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                continue
            outputs[name] = (out, ref)
            if truth not in outputs:
                print(f"{name:34s} {'-':>10s}  the UTM case failed: nothing to judge with")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                off = 0.0 if truth == name else offset_m(outputs[truth][0], out, outputs[truth][1])
            wrong += res.quality == "reliable" and off >= 10.0
            print(f"{name:34s} {res.quality:>10s} {off:7.1f} {res.report['counts']['inliers']:7d} "
                  f"{time.perf_counter() - t0:5.1f}", flush=True)
    print(f"reliable but off by a reference pixel (10 m) or more: {wrong}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
