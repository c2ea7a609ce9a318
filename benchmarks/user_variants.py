"""One real S1/S2 pair handed over the ways users hand data over: the target as linear power or dB
floats with nodata, as linear power with the speckle of a GRD (4.4 looks) or an SLC (1 look), as
uint16 amplitude DN (a GRD product), two polarisations, reprojected to EPSG:4326 at 20 m or to a
State Plane CRS in US feet, as a false-colour RGB composite of VV, VH and their ratio (on its grid
and in EPSG:4326), as a GRD file georeferenced by GCPs, on a pixel grid turned 20 degrees (a
rotated geotransform), georeferenced 3 km off, with 6x coarser pixels, with an undeclared collar of
0 or (dB floats) of -3.4e38, half empty, cropped small, inside a larger scene of another place, as
dB in uint16 with GDAL's scale and offset, as dB with 1% of its pixels NaN; the reference as 16-bit
reflectance with four bands, as one Sentinel-2 L2A band in JPEG 2000, cropped, on a grid turned 20
degrees, as RGBA with a transparent strip, with 4x finer pixels, hazy, dark, as its negative, under
snow or a thin cloud veil, noisy, or with opaque clouds painted over 12% of it, alone and with a
Sentinel-2 scene classification (SCL, 20 m) beside it given as ``--ref-mask``; the target flooded,
over-stretched to 255, or 40% another place's ground; and the roles swapped (the S1 scene as the
reference, the S2 scene as the target, off by the opposite shift). Every variant carries the same
georeferencing error (the far one 3 km more), so every correction (the swapped pair's negated, the
far one's less the 3 km) must agree with the plain pair's on the ground, and none may be called
reliable while disagreeing by a pixel of the coarser picture or more (10 m; 60 m for the target
with 6x coarser pixels).

    python benchmarks/user_variants.py [--data ../shared/data] [--matcher auto] [--work DIR]

Prints one row per variant (correction and its distance from the plain pair's, on the ground in
the plain pair's 10 m pixels; verdict, detected modality, seconds) and exits 1 when a variant
is reliable but wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window
from skimage.transform import rescale

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import _write, api, preview_amplitude, write_grd_like  # noqa: E402

SHIFT_PX = (13.4, -8.7)  # the target's georeferencing error, pixels (x, y)
PIXEL_M = 10.0  # the pair's pixel size
PAIR = "176"
TURNED = "rotated geotransform, grid turned 20 deg"
TURNED_PX = 1330  # holds the 1024 px scene turned 20 degrees
SWAPPED = "roles swapped: S1 reference, S2 target"  # its correction is the plain pair's, negated
REF_TURNED = "reference on a grid turned 20 deg"
FAR = "georeferencing 3 km off (beyond --max-shift)"
FAR_PX = (240.0, -180.0)  # added to SHIFT_PX: the coarse pass must find it; its correction is the plain one's less this
COARSE = "target 6x coarser (60 m pixels)"
COARSE_FACTOR = 6
JP2 = "reference one band, L2A JPEG 2000"
WIDE = "target 2x larger, the rest elsewhere"
FEET = "State Plane, US survey feet (EPSG:2230)"
FEET_CRS = "EPSG:2230"
WORLD = "PNG + world file, no .prj, --target-crs"
LON360 = "EPSG:4326 on 0-360 longitudes"
FALSE_COLOUR = "false colour VV/VH/ratio"  # three 8-bit bands: read as optical by their count
# a correction is wrong from one pixel of the coarser picture on (the verdict judges in those too):
# 10 m for every variant but the coarse target's 60 m
TOLERANCE_PX = {COARSE: float(COARSE_FACTOR)}


def _turned_grid(centre: tuple[float, float]) -> Affine:
    """The geotransform of a TURNED_PX square grid of PIXEL_M pixels turned 20 degrees against the
    map about ``centre`` (map coordinates)."""
    half = TURNED_PX / 2 * PIXEL_M
    return (Affine.translation(*centre) @ Affine.rotation(20) @ Affine.translation(-half, half)
            @ Affine.scale(PIXEL_M, -PIXEL_M))


def _crop(src: str, dst: Path, win: Window) -> str:
    with rasterio.open(src) as d:
        prof = {**d.profile, "width": win.width, "height": win.height, "transform": d.window_transform(win)}
        arr = d.read(window=win)
    with rasterio.open(dst, "w", **prof) as o:
        o.write(arr)
    return str(dst)


def build(data: Path, work: Path) -> list[tuple[str, str, str]]:
    """(variant, reference, target[, reference mask[, config options]]) files; every target off by
    SHIFT_PX."""
    d = data / "s1s2_volkov" / "geotiff"
    ref = str(d / f"{PAIR}_S2_RGB.tif")
    with rasterio.open(d / f"{PAIR}_S1_VH.tif") as s:
        vh = s.read(1).astype(np.float32)
        crs, t = s.crs, s.transform @ Affine.translation(*SHIFT_PX)
    db = vh / 255 * 25 - 25  # the 8-bit preview as dB
    out = [("plain (8-bit, as given)", ref, _write(work / "target.tif", vh.astype(np.uint8), t, crs))]
    lin = (10 ** (db / 10)).astype(np.float32)
    lin[:, :100] = 0
    out.append(("linear power, float32, nodata 0 strip", ref, _write(work / "linear.tif", lin, t, crs, 0)))
    # the dataset's previews are smoothed; a GRD's intensity carries multiplicative speckle of about
    # 4.4 looks (IW), an SLC's of one look
    rng = np.random.default_rng(176)
    for looks in (4.4, 1.0):
        speckled = (10 ** (db / 10) * rng.gamma(looks, 1 / looks, db.shape)).astype(np.float32)
        out.append((f"linear power, {looks:g}-look speckle", ref,
                    _write(work / f"speckle{looks:g}.tif", speckled, t, crs)))
    amp = preview_amplitude(vh)  # a GRD's amplitude DN
    out.append(("amplitude DN, uint16", ref, _write(work / "amplitude.tif", amp, t, crs)))
    dbn = db.astype(np.float32)
    dbn[-150:] = np.nan
    out.append(("dB, float32, NaN nodata strip", ref, _write(work / "db.tif", dbn, t, crs, float("nan"))))
    db100 = np.round(db * 100).astype(np.int16)  # dB scaled by 100 in 16-bit integers
    db100[:, :60] = -32768
    out.append(("dB x 100, int16, nodata -32768 strip", ref, _write(work / "db100.tif", db100, t, crs, -32768)))
    vv = np.clip(vh * 1.1 + 20, 0, 255)
    out.append(("two bands VV, VH", ref, _write(work / "dual.tif", np.stack([vv, vh]).astype(np.uint8), t, crs,
                                                names=["VV", "VH"])))
    h, w = vh.shape
    bounds = rasterio.transform.array_bounds(h, w, t)
    geo_t, gw, gh = calculate_default_transform(crs, "EPSG:4326", w, h, *bounds)
    geo_t, gw, gh = geo_t @ Affine.scale(2.0), gw // 2, gh // 2  # about 20 m
    geo = np.zeros((gh, gw), np.float32)
    reproject(vh, geo, src_transform=t, src_crs=crs, dst_transform=geo_t, dst_crs="EPSG:4326",
              resampling=Resampling.bilinear, dst_nodata=0)
    out.append(("EPSG:4326 at about 20 m", ref, _write(work / "geographic.tif", geo, geo_t, "EPSG:4326", 0)))
    # the same on 0-360 longitudes, as climate and ocean grids are often stored
    out.append((LON360, ref, _write(work / "geographic360.tif", geo, Affine.translation(360, 0) @ geo_t,
                                    "EPSG:4326", 0)))
    # a PNG export with its world file and no .prj: the user names its CRS (--target-crs)
    from PIL import Image

    Image.fromarray(vh.astype(np.uint8)).save(work / "export.png")
    (work / "export.pgw").write_text("\n".join(str(v) for v in (t.a, t.d, t.b, t.e, *(t @ (0.5, 0.5)))) + "\n")
    out.append((WORLD, ref, str(work / "export.png"), None, {"target": {"crs": crs.to_string()}}))
    # a projected CRS in US survey feet (California zone 6, where the pair lies), 30 ft pixels: county
    # and state GIS hand data over in it
    feet_t, fw, fh = calculate_default_transform(crs, FEET_CRS, w, h, *bounds, resolution=30.0)
    feet = np.zeros((fh, fw), np.float32)
    reproject(vh, feet, src_transform=t, src_crs=crs, dst_transform=feet_t, dst_crs=FEET_CRS,
              resampling=Resampling.bilinear, dst_nodata=0)
    out.append((FEET, ref, _write(work / "state_plane.tif", feet.clip(0, 255).astype(np.uint8), feet_t, FEET_CRS, 0)))
    # a false-colour composite (VV, VH, their ratio as a difference of dB), as SAR viewers and the
    # Copernicus Browser export Sentinel-1: three 8-bit bands, on the scene's grid and in EPSG:4326
    composite = np.stack([vv, vh, np.clip((vv - vh) * 4 + 60, 0, 255)]).astype(np.uint8)
    out.append((FALSE_COLOUR, ref, _write(work / "false_colour.tif", composite, t, crs)))
    geo_rgb = np.zeros((3, gh, gw), np.float32)
    for b in range(3):
        reproject(composite[b].astype(np.float32), geo_rgb[b], src_transform=t, src_crs=crs, dst_transform=geo_t,
                  dst_crs="EPSG:4326", resampling=Resampling.bilinear, dst_nodata=0)
    out.append((f"{FALSE_COLOUR}, EPSG:4326", ref,
                _write(work / "false_colour_geographic.tif", geo_rgb.clip(0, 255).astype(np.uint8), geo_t,
                       "EPSG:4326", 0)))
    grd = write_grd_like(work / "grd.tif", lambda y0, y1: amp[y0:y1], amp.shape[1], amp.shape[0], t, crs)
    out.append(("GCPs as a GRD: upside down, zero border", ref, grd))
    # rows stored from south to north under a positive pixel height (GeoTIFFs converted from NetCDF often are)
    south_up = t @ Affine.translation(0, vh.shape[0]) @ Affine.scale(1, -1)
    out.append(("south-up rows, positive pixel height", ref,
                _write(work / "south_up.tif", vh[::-1].astype(np.uint8), south_up, crs)))
    # a pixel grid turned 20 degrees against the map (a rotated geotransform: aerial blocks, some
    # SAR and drone products), the same pixel size, the corners outside the scene nodata
    turned_t = _turned_grid(t @ (w / 2, h / 2))
    turned = np.zeros((TURNED_PX, TURNED_PX), np.float32)
    reproject(vh, turned, src_transform=t, src_crs=crs, dst_transform=turned_t, dst_crs=crs,
              resampling=Resampling.bilinear, dst_nodata=0)
    out.append((TURNED, ref, _write(work / "turned_grid.tif", turned.clip(0, 255).astype(np.uint8), turned_t, crs, 0)))
    # georeferencing far beyond the default --max-shift (40 px): a wrong orbit file, a product in
    # another datum's coordinates, a hand-placed picture
    out.append((FAR, ref, _write(work / "far.tif", vh.astype(np.uint8), t @ Affine.translation(*FAR_PX), crs)))
    # pixels six times coarser than the reference's (a thermal band or a wide-swath SAR product
    # against 10 m optical), averaged from the same scene on the same shifted grid
    coarse_t = t @ Affine.scale(COARSE_FACTOR)
    coarse = np.zeros((h // COARSE_FACTOR, w // COARSE_FACTOR), np.float32)
    reproject(vh, coarse, src_transform=t, src_crs=crs, dst_transform=coarse_t, dst_crs=crs,
              resampling=Resampling.average)
    out.append((COARSE, ref, _write(work / "coarse.tif", coarse.clip(0, 255).astype(np.uint8), coarse_t, crs)))
    # the roles swapped: the S1 scene as the reference, the S2 scene as the target, off the other way
    with rasterio.open(ref) as r:
        s2, rt = r.read(), r.transform
    rgb = s2.astype(np.float32)  # the reference's variants below start from it
    s2_t = rt @ Affine.translation(-SHIFT_PX[0], -SHIFT_PX[1])
    out.append((SWAPPED, str(d / f"{PAIR}_S1_VH.tif"), _write(work / "optical_target.tif", s2, s2_t, crs)))
    yy, xx = np.mgrid[0:vh.shape[0], 0:vh.shape[1]]
    collar = vh.astype(np.uint8).clip(1)  # a tilted footprint, its outside exactly 0, no nodata declared
    collar[(xx < 250 - yy / 4) | (yy > 820 + xx / 5)] = 0
    out.append(("zero collar, no nodata (Landsat L1-like)", ref, _write(work / "collar.tif", collar, t, crs)))
    lowest = db.astype(np.float32)  # float32's lowest as the collar, undeclared (ArcGIS and many exporters)
    lowest[collar == 0] = np.finfo(np.float32).min
    out.append(("dB float32, -3.4e38 collar, no nodata", ref, _write(work / "lowest.tif", lowest, t, crs)))
    half = vh.copy()
    half[:, 600:] = 0
    out.append(("right 40% nodata", ref, _write(work / "half.tif", half.astype(np.uint8), t, crs, 0)))
    out.append(("300 px target crop", ref, _crop(out[0][2], work / "crop300.tif", Window(500, 400, 300, 300))))
    # a street grid with a 40 px period: the verdict must not call a period's jump reliable
    out.append(("200 px target crop, street grid", ref, _crop(out[0][2], work / "crop200.tif",
                                                                Window(100, 600, 200, 200))))
    refl = _write(work / "reflectance.tif", np.concatenate([rgb * 40, rgb.mean(0)[None] * 40]).astype(np.uint16), rt,
                  crs, 0, ["B4", "B3", "B2", "B8"])
    out.append(("reference 16-bit, 4 bands", refl, out[0][2]))
    # one band as a Sentinel-2 L2A product stores it: JPEG 2000, uint16 reflectance x 10000 plus the
    # 1000 offset of processing baseline 04.00, no nodata declared, named as in the SAFE folder
    b04 = np.round(rgb[0] / 255 * 3000 + 1000).astype(np.uint16)
    jp2 = work / "T11SLT_20200101T183751_B04_10m.jp2"
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=w, height=h, count=1, dtype="uint16", crs=crs,
                       transform=rt, QUALITY="100", REVERSIBLE="YES") as o:
        o.write(b04, 1)
    out.append((JP2, str(jp2), out[0][2]))
    out.append(("reference 400 px crop", _crop(ref, work / "ref_crop400.tif", Window(300, 200, 400, 400)), out[0][2]))
    # the reference on a grid turned 20 degrees: the working grid is then turned against the map
    ref_turned_t = _turned_grid(rt @ (w / 2, h / 2))
    ref_turned = np.zeros((3, TURNED_PX, TURNED_PX), np.float32)
    for b in range(3):
        reproject(rgb[b], ref_turned[b], src_transform=rt, src_crs=crs, dst_transform=ref_turned_t, dst_crs=crs,
                  resampling=Resampling.bilinear, dst_nodata=0)
    out.append((REF_TURNED, _write(work / "ref_turned_grid.tif", ref_turned.clip(0, 255).astype(np.uint8),
                                   ref_turned_t, crs, 0), out[0][2]))
    stored = np.round((db + 40) * 1000).astype(np.uint16)  # dB as rioxarray stores it: uint16, scale, offset
    out.append(("dB as uint16 with scale and offset", ref,
                _write(work / "scaled.tif", stored, t, crs, unscale=((0.001,), (-40.0,)))))
    specked = db.astype(np.float32)
    specked[np.random.default_rng(3).random(specked.shape) < 0.01] = np.nan  # the dB of zero power
    out.append(("dB, float32, 1% NaN pixels scattered", ref, _write(work / "specked.tif", specked, t, crs,
                                                                    float("nan"))))
    rgba = np.concatenate([rgb, np.full_like(rgb[:1], 255)]).astype(np.uint8)
    rgba[:3, :, :150], rgba[3, :, :150] = 255, 0  # a transparent strip, white under it
    out.append(("reference RGBA, transparent strip", _write(work / "rgba.tif", rgba, rt, crs, alpha=True), out[0][2]))
    fine_t = rt @ Affine.scale(0.25)
    fine = np.stack([rescale(b, 4, order=3, preserve_range=True) for b in rgb]).clip(0, 255).astype(np.uint8)
    out.append(("reference 4x finer pixels (2.5 m)", _write(work / "fine.tif", fine, fine_t, crs), out[0][2]))
    # the reference's radiometry as other dates, seasons and exports give it, its geometry unchanged
    ry, rx = np.mgrid[0:rgb.shape[1], 0:rgb.shape[2]]
    veil = (np.hypot(rx - 0.7 * rgb.shape[2], ry - 0.3 * rgb.shape[1]) < 0.36 * rgb.shape[2])[None]
    looks = {"reference hazy (contrast 25%, +150)": rgb * 0.25 + 150,
             "reference dark (gamma 3)": 255 * (rgb / 255) ** 3,
             "reference negative": 255 - rgb,
             "reference snow over its left half": np.where(rx[None] < rgb.shape[2] // 2, 250 - 0.1 * rgb, rgb),
             "reference thin cloud veil over 40%": np.where(veil, 0.3 * rgb + 140, rgb),
             "reference noisy (sigma 25)": rgb + np.random.default_rng(25).normal(0, 25, rgb.shape)}
    for i, (name, a) in enumerate(looks.items()):
        out.append((name, _write(work / f"ref_look{i}.tif", a.clip(0, 255).astype(np.uint8), rt, crs), out[0][2]))
    # the target's content changed or stretched: a flood (dark water with speckle over 28% of it), an
    # 8-bit export stretched three times too far (three quarters of it at 255), and 40% of it another
    # place's ground (a mosaic gone wrong): uncertain, or right
    flood = np.hypot(xx - 0.35 * w, yy - 0.6 * h) < 0.3 * w
    water = np.random.default_rng(28).gamma(4.4, 1 / 4.4, vh.shape) * np.percentile(vh, 5) * 0.5
    out.append(("target flooded (28% dark water)", ref,
                _write(work / "flood.tif", np.where(flood, water, vh).clip(0, 255).astype(np.uint8), t, crs)))
    out.append(("target over-stretched (75% at 255)", ref,
                _write(work / "stretched.tif", (vh * 3).clip(0, 255).astype(np.uint8), t, crs)))
    with rasterio.open(d / "050_S1_VH.tif") as o:
        other = o.read(1)[:h, :w]
    out.append(("target 40% another place", ref,
                _write(work / "mixed.tif", np.where(xx > 0.6 * w, other, vh).astype(np.uint8), t, crs)))
    # the scene inside a target twice its size whose rest is another place's ground (a larger SAR
    # scene or mosaic than the reference): the overlap is the reference's footprint
    wide = np.tile(other, (2, 2))
    wide[h // 2:h // 2 + h, w // 2:w // 2 + w] = vh
    out.append((WIDE, ref,
                _write(work / "wide.tif", wide.astype(np.uint8), t @ Affine.translation(-w // 2, -h // 2), crs)))
    # clouds over the reference, with the product's scene classification beside it (20 m, as L2A has it)
    cloudy, scl = rgb.copy(), np.full((rgb.shape[1] // 2, rgb.shape[2] // 2), 4, np.uint8)
    for cy, cx, rad in ((260, 300, 90), (700, 640, 120), (380, 850, 70)):
        d = np.hypot(*np.mgrid[-cy:rgb.shape[1] - cy, -cx:rgb.shape[2] - cx])
        cloudy = np.where(d < rad, 235.0, cloudy)  # an opaque cumulus
        yy, xx = np.mgrid[0:scl.shape[0], 0:scl.shape[1]]
        scl[np.hypot(yy * 2 - cy, xx * 2 - cx) < rad + 4] = 9
    cloud_ref = _write(work / "T11SLT_20200101T183751_B432_10m.tif", cloudy.astype(np.uint8), rt, crs)
    scl_path = _write(work / "T11SLT_20200101T183751_SCL_20m.tif", scl, rt @ Affine.scale(2), crs)
    out.append(("reference cloudy (12%), no mask", cloud_ref, out[0][2], None))
    out.append(("reference cloudy, its SCL as --ref-mask", cloud_ref, out[0][2], scl_path))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--work", default=None, help="keep the variants and outputs here (default: a temporary folder)")
    args = ap.parse_args()
    georeg, cfg, GeoregError = api(args.matcher)
    with tempfile.TemporaryDirectory(prefix="georeg-variants-") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        rows, plain = [], None
        for i, (name, ref, tgt, *rest) in enumerate(build(Path(args.data), work)):
            t0 = time.perf_counter()
            mask, options = (rest + [None, None])[:2]
            c = cfg.with_options(reference={"mask": mask}) if mask else cfg
            c = c.with_options(**options) if options else c
            try:
                res = georeg.register(ref, tgt, str(work / f"out{i}_{Path(tgt).stem}_{Path(ref).stem}.tif"), c)
            except GeoregError as exc:
                rows.append((name, None, None, "failed", str(exc).splitlines()[0], time.perf_counter() - t0))
                continue
            # on the ground, in the plain reference's 10 m pixels: a finer reference has other pixels
            shift = np.array(res.report["shift"]["mean_map"]) / PIXEL_M * (1, -1) * (-1 if name == SWAPPED else 1)
            if name == FAR:
                shift = shift + FAR_PX  # what is left of the correction once the extra offset is taken back
            plain = shift if plain is None else plain
            rows.append((name, shift, float(np.hypot(*(shift - plain))), res.quality,
                         res.report["target"]["modality"], time.perf_counter() - t0))
    print(f"{'variant':40s} {'correction px':>16s} {'vs plain':>9s} {'verdict':>10s} {'modality':>9s} {'s':>6s}")
    wrong = 0
    for name, shift, dist, quality, modality, secs in rows:
        if shift is None:
            print(f"{name:40s} {'-':>16s} {'-':>9s} {quality:>10s} {'':>9s} {secs:6.1f}  {modality}")
            continue
        wrong += quality == "reliable" and dist >= TOLERANCE_PX.get(name, 1.0)
        print(f"{name:40s} {shift[0]:+7.2f} {shift[1]:+7.2f} {dist:9.2f} {quality:>10s} {modality:>9s} {secs:6.1f}")
    print(f"(target georeferencing off by {SHIFT_PX[0]:+.1f}, {SHIFT_PX[1]:+.1f} px; reliable but wrong: {wrong})")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
