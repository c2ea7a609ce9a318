"""Benchmark cases built from the real pairs in ../shared/data (written to a scratch folder).

Each case is a reference, a target and how its error is judged:
- 'exact': the truth is known (Landsat OLI/TIRS share a grid; SRIF and NIR-VIS-RS come with a
  ground-truth transform that we undo before perturbing), error = distance to the truth;
- 'consistency': the pair is aligned only to a few pixels (Sentinel-1/2, 3MOS), so the error is the
  distance between a method's result on the perturbed pair and its own result on the unperturbed
  pair, the protocol of the tests.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data helpers live with the tests
from synthetic import resample_content, rotation_scale_matrix, shift_geotransform  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _training_split():
    """training.data's split rules, so --held-out picks exactly the images no weights were fitted on."""
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from training.data import S1S2_SPLIT, hash_split

    return S1S2_SPLIT, hash_split


@dataclass
class Case:
    set: str
    name: str
    reference: str
    target: str
    judge: str  # 'exact' or 'consistency'
    base_target: str | None = None  # the unperturbed target, for 'consistency'
    truth_target: str | None = None  # target whose geotransform is the truth, for 'exact'
    options: dict = field(default_factory=dict)
    truth_px: np.ndarray | None = None  # 'exact': 3x3 xy_t -> xy_r in reference-grid px, when no geotransform says it
    applied: np.ndarray | None = None  # 'consistency': the target's content was resampled (new px -> base px)
    # 'exact': the dataset truth's own error, measured without georeg (see _gt_correction): 2x3 C, the
    # content the truth puts at reference px p = (x, y) truly sits at p + C @ (x, y, 1)
    truth_correction: np.ndarray | None = None


def api(matcher: str, **output):
    """What a benchmark script that calls georeg's Python API needs: malloc tuned as the CLI tunes
    it, then (the ``georeg`` module, a config that overwrites, draws no quicklook and matches with
    ``matcher``, with ``output`` overrides, and :class:`georeg.errors.GeoregError`)."""
    from georeg.runtime import tune_malloc

    tune_malloc()
    import georeg
    from georeg.config import RegistrationConfig
    from georeg.errors import GeoregError

    cfg = RegistrationConfig().with_options(output={"overwrite": True, "quicklook": None, **output},
                                            matching={"matcher": matcher})
    return georeg, cfg, GeoregError


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def scan_line_gaps(shape, period=32, widest=14, tilt_deg=8.0, window=None):
    """Landsat 7's scan-line gaps since its scan line corrector failed (2003), as a boolean map of
    ``shape``: strips along the scan lines (tilted ``tilt_deg``, one every ``period`` rows), none at
    the middle column and ``widest`` px wide at the left and right edges; 22% of the pixels.
    ``window`` (row, column, height, width): only that part of the map (a crop of the scene)."""
    r, c, h, w = window or (0, 0, *shape)
    yy, xx = np.mgrid[r:r + h, c:c + w].astype(np.float32)
    along = yy + np.tan(np.radians(tilt_deg)) * xx
    return (along % period) < widest * np.abs(xx - shape[1] / 2) / (shape[1] / 2)


def _shifts(rng: np.random.Generator, n: int, limit: float) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in rng.uniform(-limit, limit, 2).round(1)) for _ in range(n)]


def _shifted_copies(tgt: str, rng: np.random.Generator, n: int, limit: float, prefix: str) -> list[tuple[tuple, str]]:
    """``n`` copies of ``tgt`` whose geotransforms are off by random shifts of up to ``limit`` px
    (a geocoding error), written to PREFIX0.tif, PREFIX1.tif, ...: [(shift, path)]."""
    out = []
    for i, s in enumerate(_shifts(rng, n, limit)):
        p = f"{prefix}{i}.tif"
        shift_geotransform(tgt, str(p), *s)
        out.append((s, str(p)))
    return out


def _consistency_cases(set_name: str, label: str, pair: tuple[str, str], rng, n: int, limit: float, prefix: str,
                       options: dict | None = None) -> list[Case]:
    """Shifted copies of a SAR target judged by self-consistency against the unshifted one."""
    ref, tgt = pair
    opts = {**(options or {}), "target": {"modality": "sar"}}
    return [Case(set_name, f"{label} shift {s}", ref, p, "consistency", tgt, options=opts)
            for s, p in _shifted_copies(tgt, rng, n, limit, prefix)]


def _write(path: Path, arr: np.ndarray, transform: Affine, crs: str, nodata=None, names=None, *,
           unscale=None, alpha: bool = False) -> str:
    """A GeoTIFF of ``arr`` ((H, W) or (bands, H, W), in its own dtype); ``names``: band
    descriptions; ``unscale``: GDAL's (scales, offsets), one per band; ``alpha``: the last band is
    an alpha band."""
    arr = arr if arr.ndim == 3 else arr[None]
    extra = {"photometric": "RGB", "alpha": "YES"} if alpha else {}
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype.name, crs=crs, transform=transform, nodata=nodata, **extra) as d:
        d.write(arr)
        for i, name in enumerate(names or []):
            d.set_band_description(i + 1, name)
        if unscale is not None:
            d.scales, d.offsets = unscale
    return str(path)


# the shared Landsat 8 scene's TIRS rescaling and thermal constants (its MTL file): radiance =
# ML * DN + AL, kelvin = K2 / ln(K1 / radiance + 1)
TIRS_CONSTANTS = {"B10": (3.342e-4, 0.1, 774.8853, 1321.0789), "B11": (3.342e-4, 0.1, 480.8883, 1201.1442)}


def brightness_temperature(dn: np.ndarray, band: str = "B10") -> np.ndarray:
    """Landsat 8 TIRS level-1 DN (``band`` B10 or B11 of the shared scene) -> kelvin, float64."""
    ml, al, k1, k2 = TIRS_CONSTANTS[band]
    return k2 / np.log(k1 / (ml * dn.astype(np.float64) + al) + 1.0)


def preview_amplitude(preview: np.ndarray) -> np.ndarray:
    """uint16 amplitude DN, as a Sentinel-1 GRD stores it, of an 8-bit SAR preview read as 25 dB."""
    db = preview.astype(np.float32) / 255 * 25 - 25
    return np.round(np.sqrt(10 ** (db / 10)) * 1000).astype(np.uint16)


def write_grd_like(dst: Path, rows, width: int, height: int, transform: Affine, crs) -> str:
    """A Sentinel-1 GRD measurement file as ESA writes it: uint16 amplitude DN, lines from south to
    north (an ascending pass: upside down), a zero border without nodata along the swath edge, a
    10 x 21 lattice of GCPs in EPSG:4326 with heights and no geotransform, and the TIFF tags of
    every measurement file (image description and software). ``rows(y0, y1)``: the scene's uint16
    rows y0 to y1 (north up, on ``transform`` in ``crs``); written 512 rows at a time."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS
    from rasterio.warp import transform as crs_transform
    from rasterio.windows import Window

    h, w = height, width
    r, c = (v.ravel() for v in np.meshgrid(np.linspace(0, h, 10), np.linspace(0, w, 21), indexing="ij"))
    lon, lat = crs_transform(crs, "EPSG:4326", *(transform @ (c, h - r)))  # file row r: the scene's h - r
    gcps = [GroundControlPoint(ri, ci, x, y, 85.0, id=str(i + 1))
            for i, (ri, ci, x, y) in enumerate(zip(r, c, lon, lat))]
    with rasterio.open(dst, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16", tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate") as out:
        for y in range(0, h, 512):
            n = min(512, h - y)
            block = np.asarray(rows(h - y - n, h - y), np.uint16)[::-1].copy()
            block[:, :48] = 0
            out.write(block[None], window=Window(0, y, w, n))
        out.gcps = (gcps, CRS.from_epsg(4326))
        out.update_tags(TIFFTAG_IMAGEDESCRIPTION="Sentinel-1A IW GRD HR L1", TIFFTAG_SOFTWARE="Sentinel-1 IPF 003.31")
    return str(dst)


def s1s2_geotiff(data: Path, work: Path, rng, n_shifts=4, held_out=False) -> list[Case]:
    out = []
    d = data / "s1s2_volkov" / "geotiff"
    # 050 lies in the training tile, 176 in the validation tile, 268 in the test tile
    for pid in (("176", "268") if held_out else ("050", "176", "268")):
        ref, tgt = str(d / f"{pid}_S2_RGB.tif"), str(d / f"{pid}_S1_VH.tif")
        out += _consistency_cases("s1s2_volkov/geotiff", pid, (ref, tgt), rng, n_shifts, 40, str(work / f"s1s2_{pid}_"))
    return out


def s1s2_png(data: Path, work: Path, rng, n_shifts=2, limit=None, held_out=False) -> list[Case]:
    """The 18 PNG pairs, georeferenced from georef_epsg3395.csv."""
    root = data / "s1s2_volkov"
    rows = {r["fragment"]: r for r in _csv(root / "georef_epsg3395.csv")}
    out = []
    names = sorted(p.name for p in (root / "opt").glob("*.png"))[:limit]
    if held_out:
        split, _ = _training_split()
        names = [n for n in names if n in rows and split.get(rows[n]["s2_tile"]) != "train"]
    for name in names:
        r = rows.get(name)
        if r is None or r["ambiguous"] == "1" or not (root / "sar" / name).exists():
            continue
        t = Affine(float(r["pixel_w"]), 0, float(r["x_min"]), 0, -float(r["pixel_h"]), float(r["y_max"]))
        stem = name[:-4]
        opt = np.asarray(Image.open(root / "opt" / name).convert("RGB")).transpose(2, 0, 1).copy()
        sar = np.asarray(Image.open(root / "sar" / name).convert("L"))
        ref = _write(work / f"png_{stem}_S2.tif", opt, t, "EPSG:3395")
        tgt = _write(work / f"png_{stem}_S1_VH.tif", sar, t, "EPSG:3395")
        out += _consistency_cases("s1s2_volkov/png", stem, (ref, tgt), rng, n_shifts, 40,
                                  str(work / f"png_{stem}_S1_VH_"))
    return out


def landsat(data: Path, work: Path, rng, n_shifts=4, masked=True, held_out=False) -> list[Case]:
    """Landsat 8 B4 vs B10. The only thermal scene; opt-ir training uses it, so it is never held out."""
    d = data / "landsat8_oli_tirs"
    ref, tgt = str(d / "l8_B4.tif"), str(d / "l8_B10.tif")
    # masked as users hand it over: the scene's own quality band as the mask, read by its product's rules
    # (georeg.masks: cloud confidence "maybe" or "yes" widened by 150 m, the README's recipe before)
    bqa = str(d / "l8_BQA.tif")
    opts = {"reference": {"mask": bqa}, "target": {"mask": bqa}} if masked else {}
    name = "landsat8 B4/B10" + (" cloud-masked" if masked else " no mask")
    out = []
    for s, p in _shifted_copies(tgt, rng, n_shifts, 20, str(work / f"l8_B10_{'m' if masked else 'n'}")):
        out.append(Case(name, f"shift {s}", ref, p, "exact", truth_target=tgt, options=opts))
    return out


def _threemos_rows(data: Path, rng, n_pairs: int, held_out: bool):
    """(index, row, optical (3, H, W), SAR (H, W)) of a random pick of aligned 3MOS pairs."""
    root = data / "3mos_previews"
    rows = [r for r in _csv(root / "pairs.csv") if r["likely_aligned"] == "1"
            and (root / r["opt_file"]).exists() and (root / r["sar_file"]).exists()]
    if held_out:
        _, hs = _training_split()
        rows = [r for r in rows if hs(r["source_file"]) != "train"]
    pick = rng.choice(len(rows), min(n_pairs, len(rows)), replace=False)
    for k in sorted(pick):
        r = rows[k]
        opt = np.asarray(Image.open(root / r["opt_file"]).convert("RGB")).transpose(2, 0, 1).copy()
        sar = np.asarray(Image.open(root / r["sar_file"]).convert("L")).copy()
        yield int(k), r, opt, sar


def threemos(data: Path, work: Path, rng, n_pairs=24, n_shifts=1, held_out=False) -> list[Case]:
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    out = []
    for _, r, opt, sar in _threemos_rows(data, rng, n_pairs, held_out):
        ref = _write(work / f"3mos_{r['pair_id']}_opt.tif", opt, t, "EPSG:32633")
        tgt = _write(work / f"3mos_{r['pair_id']}_sar.tif", sar, t, "EPSG:32633")
        out += _consistency_cases("3mos_previews (aligned)", r["pair_id"], (ref, tgt), rng, n_shifts, 12,
                                  str(work / f"3mos_{r['pair_id']}_sar_"), {"matching": {"max_shift": 16}})
    return out


def _aligned(moving: np.ndarray, ref_to_moving: np.ndarray, shape,
             centre: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``moving`` onto the reference frame: output pixel p shows moving at H p
    (``centre``: where a pixel centre sits in H's frame, see :func:`georeg.coordinates.through_matrix`)."""
    from georeg.coordinates import resample_by_matrix

    h, w = shape
    v, mx, my = resample_by_matrix(moving.astype(np.float32), ref_to_moving, shape, centre=centre)
    inside = ((mx >= 0) & (my >= 0) & (mx <= moving.shape[1] - 1) & (my <= moving.shape[0] - 1)).reshape(h, w)
    v = np.clip(np.rint(v), 1, 255).astype(np.uint8)  # 0 is kept for nodata
    v[~inside] = 0
    return v, inside


def _srif_picks(data: Path, rng, n_pairs: int, held_out: bool, category: str = "Optical-Infrared"):
    """(pair number, GT 3x3) of a random pick of ``n_pairs`` SRIF ``category`` pairs whose GT check
    found no residual; with ``held_out``, only Optical-Infrared pairs outside the learned matchers'
    training split (no matcher trained on another category).

    The check (gt_check.csv) calls a GT consistent up to a 2 px residual, measured in whole pixels;
    189 of the 200 Optical-Infrared pairs show none. The other 11 (1-1.4 px) cannot judge a 1 px
    criterion: on pair 48 (residual 1 px) the tie points depart from its GT by a 1-1.5% affine,
    1.5 px at the corners, wherever georeg's model puts them."""
    root = data / "srif_multimodal"
    ok = [r["pair"] for r in _csv(root / "gt_check.csv")
          if r["category"] == category and r["gt_consistent"] == "1" and float(r["residual_px"]) == 0.0
          and (root / category / f"pair{r['pair']}_2.jpg").exists()]
    if held_out and category == "Optical-Infrared":
        _, hs = _training_split()
        ok = [i for i in ok if hs(f"srif{i}") != "train"]
    pick = sorted(rng.choice(len(ok), min(n_pairs, len(ok)), replace=False))
    d = root / category
    for k in pick:
        i = ok[k]
        yield i, np.vstack([np.loadtxt(d / f"gt_{i}.txt").reshape(2, 3), [0, 0, 1]])


def _srif_pairs(data: Path, rng, n_pairs: int, held_out: bool):
    """(pair number, optical (3, H, W), infrared (H, W), GT 3x3) of the SRIF Optical-Infrared pairs
    of :func:`_srif_picks`."""
    d = data / "srif_multimodal" / "Optical-Infrared"
    for i, a in _srif_picks(data, rng, n_pairs, held_out):
        opt = np.asarray(Image.open(d / f"pair{i}_1.jpg").convert("RGB")).transpose(2, 0, 1).copy()
        ir = np.asarray(Image.open(d / f"pair{i}_2.jpg").convert("L")).copy()
        yield i, opt, ir, a


def srif_ir(data: Path, work: Path, rng, n_pairs=20, n_shifts=1, held_out=False) -> list[Case]:
    """SRIF Optical-Infrared: the IR image is rotated by its GT; undo it (in the GT's corner-based
    convention), then perturb."""
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    out = []
    for i, opt, ir, a in _srif_pairs(data, rng, n_pairs, held_out):
        # the GT is corner-based (PIL's convention, pixel centres at half-integers; see srif_rot)
        aligned, _ = _aligned(ir, a, opt.shape[1:], centre=0.5)
        ref = _write(work / f"srif_{i}_opt.tif", opt, t, "EPSG:32633")
        tgt = _write(work / f"srif_{i}_ir.tif", aligned, t, "EPSG:32633", nodata=0)
        for s, p in _shifted_copies(tgt, rng, n_shifts, 15, str(work / f"srif_{i}_ir_")):
            out.append(Case("srif Optical-Infrared", f"pair {i} shift {s}", ref, p, "exact", truth_target=tgt,
                            options={"target": {"modality": "thermal"}, "matching": {"max_shift": 20}}))
    return out


def _unit_gradients(a: np.ndarray) -> np.ndarray:
    g = ndimage.sobel(a.astype(float), 1) + 1j * ndimage.sobel(a.astype(float), 0)
    return g / (np.abs(g) + 1e-3)


def _gt_correction(vis: np.ndarray, aligned: np.ndarray, n: int = 4, win: int = 160) -> np.ndarray | None:
    """How far the NIR-VIS-RS ground truth is from the content, measured without georeg.

    The dataset's GT warps an already registered NIR/VIS pair synthetically, so its error is that
    pair's own misregistration: gt_check.csv measures it as 0.56 px median, up to 1.7 px, for the
    whole image, and it varies inside an image (in Desert and Mountain pairs by up to 1 px between
    windows: relief). Measured here by orientation correlation (phase correlation of unit gradient
    vectors, scikit-image) of VIS against NIR resampled by the GT, in ``n`` x ``n`` windows of
    ``win`` px, and a robust affine through the window shifts (windows of little structure, such as
    open sea, give wild shifts and are dropped). Returns the 2x3 C of :class:`Case`, or None when
    fewer than 6 windows agree within 0.75 px."""
    from skimage.registration import phase_cross_correlation

    valid = ndimage.binary_erosion(aligned > 0, iterations=8)
    a = np.where(valid, _unit_gradients(vis.mean(0)), 0)
    b = np.where(valid, _unit_gradients(aligned), 0)
    h, w = valid.shape
    pos, shifts = [], []
    for y0 in np.linspace(0, h - win, n).astype(int):
        for x0 in np.linspace(0, w - win, n).astype(int):
            sl = np.s_[y0:y0 + win, x0:x0 + win]
            if valid[sl].mean() < 0.6:
                continue
            (dy, dx), _, _ = phase_cross_correlation(a[sl], b[sl], upsample_factor=20, normalization=None)
            if np.hypot(dx, dy) < 4:  # the GT is off by at most 1.7 px (gt_check.csv)
                pos.append((x0 + win / 2, y0 + win / 2))
                shifts.append((dx, dy))
    pos, shifts = np.array(pos).reshape(-1, 2), np.array(shifts).reshape(-1, 2)
    while len(pos) >= 6:
        design = np.c_[pos, np.ones(len(pos))]
        coef = np.linalg.lstsq(design, shifts, rcond=None)[0]
        res = np.linalg.norm(shifts - design @ coef, axis=1)
        if res.max() <= 0.75:
            return coef.T
        keep = np.arange(len(pos)) != res.argmax()
        pos, shifts = pos[keep], shifts[keep]
    return None


def nir_vis(data: Path, work: Path, rng, n_shifts=1, held_out=False) -> list[Case]:
    """NIR-VIS-RS: undo the synthetic homography of NIR_TF, then perturb. The truth carries the
    GT's own error as measured by :func:`_gt_correction`."""
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    out = []
    for cat, i, vis, nir, h in _nir_vis_pairs(data, held_out):
        aligned, _ = _aligned(nir, h, vis.shape[1:])
        correction = _gt_correction(vis, aligned)
        ref = _write(work / f"nir_{cat}_{i}_vis.tif", vis, t, "EPSG:32633")
        tgt = _write(work / f"nir_{cat}_{i}_nir.tif", aligned, t, "EPSG:32633", nodata=0)
        for j, s in enumerate(_shifts(rng, n_shifts, 20)):
            p = work / f"nir_{cat}_{i}_nir_{j}.tif"
            shift_geotransform(tgt, str(p), *s)
            out.append(Case("nir_vis_rs", f"{cat} {i} shift {s}", ref, str(p), "exact", truth_target=tgt,
                            options={"target": {"modality": "optical"}}, truth_correction=correction))
    return out


def _nir_vis_pairs(data: Path, held_out: bool):
    """(category, number, VIS (3, H, W), NIR_TF (H, W), GT homography VIS -> NIR_TF) of every pair."""
    root = data / "nir_vis_rs"
    hs = _training_split()[1] if held_out else None
    for cat in ("City", "Coast", "Desert", "Mountain"):
        for gt in sorted((root / cat).glob("GT_*.txt")):
            i = gt.stem.split("_")[1]
            if hs is not None and hs(f"nir{cat}{i}") == "train":
                continue
            vis = np.asarray(Image.open(root / cat / f"VIS_{i}.png").convert("RGB")).transpose(2, 0, 1).copy()
            nir = np.asarray(Image.open(root / cat / f"NIR_TF_{i}.png").convert("L")).copy()
            yield cat, i, vis, nir, np.loadtxt(gt).reshape(3, 3)


# ---------------------------------------------------------------- geometry as users bring it
# Every target is called target.tif (in a folder of its own) and no modality is given: georeg
# must find the rotation, scale and sensor from the data.

def _neutral(work: Path, set_key: str, i: int) -> Path:
    d = work / f"{set_key}_{i:03d}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _random_similarity(rng, w: int, h: int, lo: float = 2.0, hi: float = 15.0, offset=None
                       ) -> tuple[np.ndarray, float, float, tuple[float, float]]:
    """A rotation of lo-hi degrees either way and a scale of 0.9-1.1 about the centre; with
    ``offset`` (lo, hi px), also a shift of that length in a random direction. Returns the
    matrix, the angle, the scale and the shift."""
    angle = float(rng.uniform(lo, hi) * rng.choice([-1, 1]))
    scale = float(rng.uniform(0.9, 1.1))
    shift = (0.0, 0.0)
    if offset is not None:
        r, phi = rng.uniform(*offset), rng.uniform(0, 2 * np.pi)
        shift = (float(r * np.cos(phi)), float(r * np.sin(phi)))
    return rotation_scale_matrix(w, h, angle, scale, shift), angle, scale, shift


def srif_rot(data: Path, work: Path, rng, n_pairs=20, held_out=False) -> list[Case]:
    """SRIF Optical-Infrared with the dataset's ground-truth rotation as given (up to 90 degrees).
    The GT maps image-1 to image-2 positions in PIL's corner-based convention (on pairs 45 and 65
    the tie points' mean residual is 0.3 px under that reading and 1.2 px under the centre-based
    one), so the truth is its inverse, unchanged."""
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    out = []
    for i, opt, ir, a in _srif_pairs(data, rng, n_pairs, held_out):
        folder = _neutral(work, "srif_rot", int(i))
        ref = _write(folder / "reference.tif", opt, t, "EPSG:32633")
        tgt = _write(folder / "target.tif", ir, t, "EPSG:32633", nodata=0)
        angle = float(np.degrees(np.arctan2(-a[1, 0], a[0, 0])))
        out.append(Case("srif opt/IR, GT rotation as given", f"pair {i} ({angle:+.0f} deg)", ref, tgt, "exact",
                        truth_px=np.linalg.inv(a)))
    return out


def _bands_first(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1).copy() if a.ndim == 3 else a.copy()


def _srif_other(category: str, label: str, key: str):
    """A builder of SRIF ``category`` pairs with the GT rotation as given (the convention of
    :func:`srif_rot`), each image written as the dataset stores it (RGB or grey) under neutral names,
    with no nodata (a night picture is mostly black; the turned image's corners are black too).
    These are close-range photographs, not scenes from orbit: Nighttime shows a street at night from
    a mast, a visible camera against a thermal one, with bare branches in front of the street;
    Optical-Depth shows rooms against a depth camera. Near and far objects move apart between the
    two cameras (parallax), which no single model follows, so the sets say how georeg generalises
    and whether its verdict notices, not how it registers satellite scenes (run.py's OPT_IN)."""
    def build(data: Path, work: Path, rng, n_pairs=20, held_out=False) -> list[Case]:
        t = Affine(10, 0, 500000, 0, -10, 4000000)
        out = []
        d = data / "srif_multimodal" / category
        for i, a in _srif_picks(data, rng, n_pairs, held_out, category):
            folder = _neutral(work, key, int(i))
            one, two = (_bands_first(np.asarray(Image.open(d / f"pair{i}_{j}.jpg"))) for j in (1, 2))
            ref = _write(folder / "reference.tif", one, t, "EPSG:32633")
            tgt = _write(folder / "target.tif", two, t, "EPSG:32633")
            angle = float(np.degrees(np.arctan2(-a[1, 0], a[0, 0])))
            out.append(Case(label, f"pair {i} ({angle:+.0f} deg)", ref, tgt, "exact", truth_px=np.linalg.inv(a)))
        return out
    return build


def srif_files(data: Path, work: Path, rng, n_pairs=20, held_out=False) -> list[Case]:
    """SRIF Optical-Infrared exactly as the dataset gives it: the two JPEG files, without
    georeferencing (registered in pixel coordinates), both grey stored as three identical bands,
    the infrared turned by its GT with black corners and no nodata. Same truth as :func:`srif_rot`."""
    root = data / "srif_multimodal" / "Optical-Infrared"
    out = []
    for i, a in _srif_picks(data, rng, n_pairs, held_out):
        angle = float(np.degrees(np.arctan2(-a[1, 0], a[0, 0])))
        out.append(Case("srif opt/IR, dataset JPEG files as given", f"pair {i} ({angle:+.0f} deg)",
                        str(root / f"pair{i}_1.jpg"), str(root / f"pair{i}_2.jpg"), "exact",
                        truth_px=np.linalg.inv(a)))
    return out


def _rotated_cases(set_name: str, key: str, pairs, work: Path, rng, per_pair: int, geometry=None,
                   footprint: bool = False) -> list[Case]:
    """pairs: (name, reference path, aligned target path, options). Each target's content is
    resampled through ``geometry(rng, w, h, j)`` -> (new-to-old matrix, angle, scale, shift) for
    its j-th case (default: a rotation of 2-15 degrees either way and a scale of 0.9-1.1). With
    ``footprint``, judged on the ground the turned target shows (:func:`_footprint_base`)."""
    if geometry is None:
        def geometry(rng, w, h, j):
            return _random_similarity(rng, w, h)

    out = []
    n = 0
    for name, ref, tgt, opts in pairs:
        with rasterio.open(tgt) as d:
            w, h = d.width, d.height
        for j in range(per_pair):
            m, angle, scale, (dx, dy) = geometry(rng, w, h, j)
            folder = _neutral(work, key, n)
            n += 1
            dst = folder / "target.tif"
            resample_content(str(tgt), str(dst), m)
            base, applied = _footprint_base(str(tgt), m, folder / "base_footprint.tif") if footprint else (str(tgt), m)
            moved = f" offset ({dx:+.0f}, {dy:+.0f}) px" if (dx, dy) != (0.0, 0.0) else ""
            out.append(Case(set_name, f"{name} rot {angle:+.1f} deg scale {scale:.3f}{moved}", str(ref), str(dst),
                            "consistency", base, options=dict(opts), applied=applied))
    return out


def _turns(angles):
    """A geometry for :func:`_rotated_cases`: the j-th of ``angles``, no scale, no shift."""
    def geometry(rng, w, h, j):
        return rotation_scale_matrix(w, h, float(angles[j]), 1.0), float(angles[j]), 1.0, (0.0, 0.0)
    return geometry


def _footprint_base(base: str, new_to_old: np.ndarray, dst: Path, margin: int = 2) -> tuple[str, np.ndarray]:
    """The unturned target on the ground its turned copy shows only (the rest nodata 0, cropped
    to that ground's bounding box), and the turned copy's pixels -> the crop's pixels.

    A consistency truth is the unturned pair's own model, and S1/S2 content differs by more than
    a similarity over a whole scene (terrain, the datasets' own residuals): for a target magnified
    2x, which shows the central quarter of the scene, a model fitted to the whole scene was 2-4 px
    from one fitted there (pairs 050 and 268), so the judge is fitted on the same ground."""
    from rasterio.windows import Window

    with rasterio.open(base) as d:
        w, h = d.width, d.height
        corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]])
        on_old = corners @ new_to_old.T
        x0, y0 = np.maximum(np.floor(on_old[:, :2].min(0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(on_old[:, :2].max(0)).astype(int) + margin, [w, h])
        win = Window(int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        prof = {**d.profile, "width": win.width, "height": win.height, "transform": d.window_transform(win),
                "nodata": 0}
        arr = d.read(window=win)
    # base pixels whose place in the turned copy lies inside its frame (within ``margin`` px)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    q = np.linalg.inv(new_to_old) @ np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    inside = ((q[0] >= -0.5 - margin) & (q[0] <= w - 0.5 + margin) & (q[1] >= -0.5 - margin)
              & (q[1] <= h - 0.5 + margin)).reshape(xx.shape)
    arr[:, ~inside] = 0
    with rasterio.open(dst, "w", **prof) as o:
        o.write(arr)
    return str(dst), np.array([[1.0, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ new_to_old


def _neutral_copy(work: Path, key: str, i: int, ref: np.ndarray | str, tgt: np.ndarray | str, t=None,
                  crs=None) -> tuple[str, str]:
    """reference.tif and base.tif (the aligned target) in a folder of their own."""
    import shutil

    folder = _neutral(work, key + "_base", i)
    if isinstance(ref, str):
        shutil.copy(ref, folder / "reference.tif")
        shutil.copy(tgt, folder / "base.tif")
        return str(folder / "reference.tif"), str(folder / "base.tif")
    return _write(folder / "reference.tif", ref, t, crs), _write(folder / "base.tif", tgt, t, crs)


def s1s2_rot(data: Path, work: Path, rng, per_pair=2, held_out=False, angles=None, key="s1s2_rot",
             offset=None) -> list[Case]:
    d = data / "s1s2_volkov" / "geotiff"
    pairs = []
    for k, pid in enumerate(("176", "268") if held_out else ("050", "176", "268")):
        ref, base = _neutral_copy(work, key, k, str(d / f"{pid}_S2_RGB.tif"), str(d / f"{pid}_S1_VH.tif"))
        pairs.append((pid, ref, base, {}))
    name = "S1/S2 GeoTIFF rotated 2-15 deg" if angles is None else "S1/S2 GeoTIFF turned 90/180/270"
    if offset is not None:
        name = f"S1/S2 GeoTIFF rotated 2-15 deg, offset {offset[0]:.0f}-{offset[1]:.0f} px"
    if angles is not None:
        return _rotated_cases(name, key, pairs, work, rng, len(angles), _turns(angles))
    return _rotated_cases(name, key, pairs, work, rng, per_pair,
                          lambda rng, w, h, j: _random_similarity(rng, w, h, offset=offset))


def s1s2_scale(data: Path, work: Path, rng, held_out=False) -> list[Case]:
    """S1/S2 GeoTIFF pairs turned by any angle and scaled 0.5-0.7x (the target magnified: it shows
    the central part of the scene) or 1.4-2x (shrunk inside a frame of empty pixels), three per
    pair: the ends of the global search's 0.5-2x range, which the other sets (0.9-1.1) leave alone."""
    d = data / "s1s2_volkov" / "geotiff"
    pairs = []
    for k, pid in enumerate(("176", "268") if held_out else ("050", "176", "268")):
        ref, base = _neutral_copy(work, "s1s2_scale", k, str(d / f"{pid}_S2_RGB.tif"), str(d / f"{pid}_S1_VH.tif"))
        pairs.append((pid, ref, base, {}))
    drawn = itertools.count()  # the set's n-th case alternates magnified and shrunk

    def geometry(rng, w, h, j):
        n = next(drawn)
        angle = float(rng.uniform(-180.0, 180.0))
        scale = float(np.exp(rng.uniform(*np.log((0.5, 0.7) if n % 2 == 0 else (1.4, 2.0)))))
        return rotation_scale_matrix(w, h, angle, scale), angle, scale, (0.0, 0.0)

    return _rotated_cases("S1/S2 GeoTIFF any rotation, scale 0.5-0.7 or 1.4-2", "s1s2_scale", pairs, work, rng, 3,
                          geometry, footprint=True)


def s1s2_rot_offset(data: Path, work: Path, rng, held_out=False) -> list[Case]:
    """Rotated as :func:`s1s2_rot` and moved 50-150 px as well, beyond ``--max-shift``: the global
    search must find the shift with the rotation (its sign was mirrored until 2026-12-01 and no set
    noticed, every other rotated set turning about the centre)."""
    return s1s2_rot(data, work, rng, per_pair=3, held_out=held_out, key="s1s2_rot_offset", offset=(50.0, 150.0))


def s1s2png_rot(data: Path, work: Path, rng, per_pair=1, held_out=False, sub: str = "",
                set_name: str = "S1/S2 PNG rotated 2-15 deg", key: str = "s1s2png_rot") -> list[Case]:
    """The S1/S2 PNG pairs (``sub``: "" for the 18 colour ones, "extra_gray/" for the 40 grey ones),
    georeferenced from georef_epsg3395.csv, each target turned 2-15 degrees and scaled 0.9-1.1."""
    root = data / "s1s2_volkov"
    rows = {r["fragment"]: r for r in _csv(root / "georef_epsg3395.csv")}
    names = sorted(p.name for p in (root / sub / "opt").glob("*.png"))
    if held_out:
        split, _ = _training_split()
        names = [n for n in names if n in rows and split.get(rows[n]["s2_tile"]) != "train"]
    pairs = []
    for k, name in enumerate(names):
        r = rows.get(name)
        if r is None or r["ambiguous"] == "1" or not (root / sub / "sar" / name).exists():
            continue
        t = Affine(float(r["pixel_w"]), 0, float(r["x_min"]), 0, -float(r["pixel_h"]), float(r["y_max"]))
        opt = np.asarray(Image.open(root / sub / "opt" / name).convert("RGB")).transpose(2, 0, 1).copy()
        sar = np.asarray(Image.open(root / sub / "sar" / name).convert("L")).copy()
        ref, base = _neutral_copy(work, key, k, opt, sar, t, "EPSG:3395")
        pairs.append((name[:-4], ref, base, {}))
    return _rotated_cases(set_name, key, pairs, work, rng, per_pair)


def s1s2gray_rot(data: Path, work: Path, rng, held_out=False) -> list[Case]:
    """:func:`s1s2png_rot` on the 40 grey PNG pairs (extra_gray/): with ``held_out``, the 23 of the
    validation and test tiles, which the learned matchers never trained on."""
    return s1s2png_rot(data, work, rng, held_out=held_out, sub="extra_gray/",
                       set_name="S1/S2 grey PNG rotated 2-15 deg", key="s1s2gray_rot")


def _threemos_pairs(data: Path, work: Path, rng, n_pairs: int, held_out: bool, key: str):
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    pairs = []
    for k, r, opt, sar in _threemos_rows(data, rng, n_pairs, held_out):
        ref, base = _neutral_copy(work, key, k, opt, sar, t, "EPSG:32633")
        pairs.append((r["pair_id"], ref, base, {}))
    return pairs


def threemos_rot(data: Path, work: Path, rng, n_pairs=24, held_out=False) -> list[Case]:
    pairs = _threemos_pairs(data, work, rng, n_pairs, held_out, "3mos_rot")
    return _rotated_cases("3MOS rotated 2-15 deg", "3mos_rot", pairs, work, rng, 1)


def rot90(data: Path, work: Path, rng, held_out=False) -> list[Case]:
    """90, 180 and 270 degrees on the S1/S2 GeoTIFF pairs and on four 3MOS pairs."""
    out = s1s2_rot(data, work, rng, held_out=held_out, angles=(90.0, 180.0, 270.0), key="rot90_s1s2")
    pairs = _threemos_pairs(data, work, rng, 4, held_out, "rot90_3mos")
    return out + _rotated_cases("3MOS turned 90/180/270", "rot90_3mos", pairs, work, rng, 3,
                                _turns((90.0, 180.0, 270.0)))


def nir_vis_h(data: Path, work: Path, rng, held_out=False) -> list[Case]:
    """NIR-VIS-RS with the ground-truth homography as given (NIR_TF is the warped image). The GT
    maps VIS pixel centres to NIR_TF pixel centres; its own error (0.56 px median in gt_check.csv,
    varying inside an image) is measured by :func:`_gt_correction` and judged with."""
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    out = []
    for n, (cat, i, vis, nir, h) in enumerate(_nir_vis_pairs(data, held_out)):
        folder = _neutral(work, "nir_vis_h", n)
        ref = _write(folder / "reference.tif", vis, t, "EPSG:32633")
        tgt = _write(folder / "target.tif", nir, t, "EPSG:32633", nodata=0)
        truth = half @ np.linalg.inv(h) @ np.linalg.inv(half)
        correction = _gt_correction(vis, _aligned(nir, h, vis.shape[1:])[0])
        out.append(Case("nir_vis_rs, GT homography as given", f"{cat} {i}", ref, tgt, "exact",
                        truth_px=truth / truth[2, 2], truth_correction=correction))
    return out


BUILDERS = {
    "s1s2": s1s2_geotiff,
    "s1s2png": s1s2_png,
    "landsat": landsat,
    "landsat_nomask": lambda d, w, r, held_out=False: landsat(d, w, r, masked=False),
    "3mos": threemos,
    "srif_ir": srif_ir,
    "nir_vis": nir_vis,
    "srif_files": srif_files,
    "srif_rot": srif_rot,
    "s1s2_rot": s1s2_rot,
    "s1s2png_rot": s1s2png_rot,
    "3mos_rot": threemos_rot,
    "rot90": rot90,
    "nir_vis_h": nir_vis_h,
    "s1s2_rot_offset": s1s2_rot_offset,
    "s1s2_scale": s1s2_scale,
    "srif_night": _srif_other("Nighttime", "srif night street (close range), GT rotation as given", "srif_night"),
    "srif_depth": _srif_other("Optical-Depth", "srif room/depth (close range), GT rotation as given", "srif_depth"),
    "s1s2gray_rot": s1s2gray_rot,
}


def describe(cases: list[Case]) -> str:
    return json.dumps({c.set: sum(1 for x in cases if x.set == c.set) for c in cases})
