"""Clouds and the masks users have: Landsat 8 B4 (red) against the same product's TIRS B10, whose
geotransform is moved by a known shift, registered without a mask and with cloud masks of
several completeness made from the product's own quality band, as users make them: the
high-confidence clouds alone, not widened (6% of this scene); medium and high confidence, not
widened (15%); the README's recipe (medium and high, widened by 5 pixels); the ``BQA`` file
itself, which georeg reads by its product name (clouds widened by 150 m). Then masks made without
a quality band, by a threshold on the pixels (clouds are bright in red and cold in the thermal
band): the brightest 10% or 20% of B4, the coldest 10% or 20% of B10. Last, masks given for the
reference alone (many users have a cloud mask for the optical scene only): the quality band's
medium and high confidence, and the brightest 10% of B4.

The scene (``../shared/data/landsat8_oli_tirs``) has a broad band of cumulus across its middle.
Clouds sit at another height than the ground and OLI and TIRS see them from slightly different
angles, so tie points on clouds follow a motion of their own. The bands of one L1T product are
co-registered, so the truth is the shift applied. A result 1 px or more from it that is called
``reliable`` is a confident wrong answer: the script exits 1 when there is one.

    python benchmarks/cloud_masks.py [--data ../shared/data] [--shifts 6] [--matcher auto] [--reference B8]
                                     [--seed 7] [--masks none,"B10 coldest 10%"] [--target-as celsius100]

``--target-as`` stores the target B10 as users also have it: the product's DN (default), or its
brightness temperature (the product's rescaling and thermal constants) as float32 kelvin or
degrees Celsius, or as int16 tenths or hundredths of a degree Celsius (a land-surface
temperature or thermal camera export), or stretched to 8 bits over its range as a quick-look
(``byte``: ``gdal_translate -ot Byte -scale``, 0 the fill), or rendered through the "jet" or
"hot" colour ramp as three 8-bit bands (``jet``, ``hot``: a thermal quick-look, a map saved as it
was shown); the file's name stays neutral.

Each mask is given as ``--ref-mask`` and ``--target-mask`` (the target's on the target's
moved grid: the same product's pixels), except those for the reference alone. Prints one row per
shift and mask (the correction, its error, the verdict, seconds) and a summary per mask.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import api, brightness_temperature  # noqa: E402

PIXEL_M = 30.0  # the target's pixels, in which shifts and errors are given (B8's are 15 m)
README_SHIFT = (20.0, -20.0)  # the README's example


def _cloud_confidence(bqa: np.ndarray) -> np.ndarray:
    """Landsat 8 pre-collection BQA cloud confidence, bits 14-15 (0 none .. 3 high)."""
    return (bqa.astype(np.int64) >> 14) & 3


def _brightest(band: np.ndarray, share: float) -> np.ndarray:
    return band < np.percentile(band, 100 * (1 - share))


def _coldest(band: np.ndarray, share: float) -> np.ndarray:
    return band > np.percentile(band, 100 * share)


REF_ONLY = ", reference only"  # a mask name ending so is given as --ref-mask alone
MASKS = {  # name -> clear (True: usable) from the bands {"BQA", "B4", "B10"}; None: no mask; "BQA": the file itself
    "none": None,
    "QA high, not widened": lambda b: _cloud_confidence(b["BQA"]) < 3,
    "QA medium+high, not widened": lambda b: _cloud_confidence(b["BQA"]) < 2,
    "QA medium+high, widened 5 px (README)": lambda b: ~ndimage.binary_dilation(_cloud_confidence(b["BQA"]) >= 2,
                                                                               iterations=5),
    "the BQA file itself": "BQA",
    "B4 brightest 10%": lambda b: _brightest(b["B4"], 0.1),
    "B4 brightest 20%": lambda b: _brightest(b["B4"], 0.2),
    "B10 coldest 10%": lambda b: _coldest(b["B10"], 0.1),
    "B10 coldest 20%": lambda b: _coldest(b["B10"], 0.2),
    "QA medium+high" + REF_ONLY: lambda b: _cloud_confidence(b["BQA"]) < 2,
    "B4 brightest 10%" + REF_ONLY: lambda b: _brightest(b["B4"], 0.1),
}


def shifts(n: int, seed: int = 7, limit: float = 30.0) -> list[tuple[float, float]]:
    """The README's shift and ``n - 1`` random ones within +-``limit`` px (0.1 px steps)."""
    rng = np.random.default_rng(seed)
    return [README_SHIFT] + [tuple(float(v) for v in np.round(rng.uniform(-limit, limit, 2), 1)) for _ in range(n - 1)]


TARGET_AS = ("dn", "kelvin", "celsius", "celsius10", "celsius100", "byte", "jet", "hot")


def stored_as(b10: np.ndarray, profile: dict, how: str) -> tuple[np.ndarray, dict]:
    """B10's DN as ``how`` (:data:`TARGET_AS`) stores them, and the profile to write them with."""
    if how == "dn":
        return b10, profile
    kelvin = brightness_temperature(b10)
    if how in ("byte", "jet", "hot"):  # gdal_translate -ot Byte -scale over the data (0 stays the fill)
        lo, hi = float(kelvin[b10 > 0].min()), float(kelvin[b10 > 0].max())
        x = (kelvin - lo) / (hi - lo)
        if how in ("jet", "hot"):  # through a colour ramp: dark blue, cyan, yellow, dark red; black, red, white
            rgb = np.stack([np.clip(1.5 - np.abs(4 * x - c), 0, 1) for c in (3, 2, 1)] if how == "jet" else
                           [np.clip(3 * x - c, 0, 1) for c in (0, 1, 2)])
            return np.round(255 * rgb).astype(np.uint8), {**profile, "dtype": "uint8", "count": 3,
                                                          "photometric": "RGB", "nodata": None}
        out = np.where(b10 > 0, np.round(1 + 254 * x), 0).astype(np.uint8)
        return out, {**profile, "dtype": "uint8", "nodata": 0}
    if how in ("kelvin", "celsius"):
        return (kelvin - (273.15 if how == "celsius" else 0.0)).astype(np.float32), {**profile, "dtype": "float32"}
    unit = 10 if how == "celsius10" else 100
    return np.round((kelvin - 273.15) * unit).astype(np.int16), {**profile, "dtype": "int16"}


def _write(path: Path, arr: np.ndarray, profile: dict, transform: Affine) -> str:
    with rasterio.open(path, "w", **{**profile, "transform": transform}) as d:
        d.write(arr if arr.ndim == 3 else arr[None])
    return str(path)


def build(data: Path, work: Path, shift: tuple[float, float], reference: str = "B4", target_as: str = "dn"
          ) -> tuple[str, str, dict[str, tuple[str, str | None] | None]]:
    """(reference band ``reference``, target moved by ``shift`` px and stored as ``target_as``,
    {mask name: (reference mask, target mask or None) or None}; the reference's mask is on the
    BQA's 30 m grid, also for B8)."""
    d = data / "landsat8_oli_tirs"
    with rasterio.open(d / "l8_B10.tif") as s:
        b10, prof = s.read(1), dict(s.profile)
    with rasterio.open(d / "l8_BQA.tif") as s:
        bqa, qprof = s.read(1), dict(s.profile)
    with rasterio.open(d / "l8_B4.tif") as s:
        bands = {"BQA": bqa, "B4": s.read(1).astype(np.float64), "B10": b10.astype(np.float64)}
    ref_t = qprof["transform"]
    moved = prof["transform"] * Affine.translation(*shift)
    target = _write(work / "target.tif", *stored_as(b10, prof, target_as), moved)
    masks: dict[str, tuple[str, str] | None] = {}
    mprof = {**qprof, "dtype": "uint8", "nodata": None}
    for i, (name, rule) in enumerate(MASKS.items()):
        if rule is None:
            masks[name] = None
        elif rule == "BQA":  # the product's names: georeg reads them as Landsat quality bands
            masks[name] = (shutil.copy(d / "l8_BQA.tif", work / "LC08_ref_BQA.tif"),
                           _write(work / "LC08_target_BQA.tif", bqa, qprof, moved))
        else:
            clear = rule(bands).astype(np.uint8)
            masks[name] = (_write(work / f"mask{i}_ref.tif", clear, mprof, ref_t),
                           None if name.endswith(REF_ONLY) else _write(work / f"mask{i}_target.tif", clear, mprof,
                                                                        moved))
    return str(d / f"l8_{reference}.tif"), target, masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--shifts", type=int, default=6, help="the README's shift and this many minus one random ones")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--reference", default="B4", choices=("B4", "B8"), help="red (30 m) or panchromatic (15 m)")
    ap.add_argument("--seed", type=int, default=7, help="of the random shifts")
    ap.add_argument("--masks", default=None, help="comma-separated mask names to run (default: all)")
    ap.add_argument("--target-as", default="dn", choices=TARGET_AS, help="how the target B10 is stored")
    args = ap.parse_args()
    chosen = list(MASKS) if args.masks is None else [m.strip() for m in args.masks.split(",")]
    unknown = [m for m in chosen if m not in MASKS]
    if unknown:
        sys.exit(f"unknown mask {unknown[0]!r}; the masks are: {', '.join(MASKS)}")
    georeg, cfg, GeoregError = api(args.matcher)
    from georeg.errors import UncertainResultWarning

    warnings.simplefilter("ignore", UncertainResultWarning)  # the rows say it
    rows = []
    print(f"{'shift px':>14s}  {'mask':40s} {'correction px':>16s} {'error':>6s} {'verdict':>10s} {'s':>5s} target")
    with tempfile.TemporaryDirectory(prefix="georeg-clouds-") as td:
        work = Path(td)
        for shift in shifts(args.shifts, args.seed):
            ref, tgt, masks = build(Path(args.data), work, shift, args.reference, args.target_as)
            for name, pair in ((n, masks[n]) for n in chosen):
                target_mask = {} if pair is None or pair[1] is None else {"target": {"mask": pair[1]}}
                c = cfg if pair is None else cfg.with_options(reference={"mask": pair[0]}, **target_mask)
                t0 = time.perf_counter()
                try:
                    res = georeg.register(ref, tgt, str(work / "out.tif"), c)
                except GeoregError as exc:
                    rows.append((name, None, "failed"))
                    print(f"{shift[0]:+6.1f} {shift[1]:+6.1f}  {name:40s} failed: {str(exc).splitlines()[0]}")
                    continue
                corr = np.array(res.report["shift"]["mean_map"]) / PIXEL_M * (1, -1)
                err = float(np.hypot(*(corr + shift)))
                rows.append((name, err, res.quality))
                print(f"{shift[0]:+6.1f} {shift[1]:+6.1f}  {name:40s} {corr[0]:+7.2f} {corr[1]:+7.2f} {err:6.2f} "
                      f"{res.quality:>10s} {time.perf_counter() - t0:5.1f} {res.report['target']['modality']}",
                      flush=True)
    print(f"\n{'mask':40s} {'cases':>5s} {'reliable within 1 px':>21s} {'uncertain':>9s} {'failed':>6s} "
          f"{'reliable but wrong':>18s} {'median error px':>15s}")
    wrong = 0
    for name in chosen:
        mine = [r for r in rows if r[0] == name]
        errs = [e for _, e, _ in mine if e is not None]
        good = sum(q == "reliable" and e < 1 for _, e, q in mine)
        bad = sum(q == "reliable" and e >= 1 for _, e, q in mine)
        wrong += bad
        print(f"{name:40s} {len(mine):5d} {good:21d} {sum(q == 'uncertain' for *_, q in mine):9d} "
              f"{sum(q == 'failed' for *_, q in mine):6d} {bad:18d} "
              f"{(f'{np.median(errs):.2f}' if errs else '-'):>15s}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
