"""Fit the texture model of georeg.modality: optical / SAR / thermal from one band's pixels.

    python -m training.modality [--data ../shared/data] [--out georeg/modality_model.json]

Samples are single bands as a user would hand them over: Sentinel-1 VH (GeoTIFF and PNG), the
SAR of 3MOS (five sensors), Sentinel-2 and other optical luminance, Landsat 8 OLI bands, NIR
(near-infrared is optical), SRIF infrared and Landsat TIRS (thermal), and multi-look SAR as a GRD
holds it, emulated over the S1/S2 PNG pairs' optical scenes (:func:`multilook_sar`). Images are split by a hash
of their name (training.data.hash_split), the model is a multinomial logistic regression over
georeg.modality.feature_vector and its pairwise products, fitted on 'train' and reported on
'val' + 'test'. Every image is also sampled 1.4-2.5x coarser (:func:`coarser_copy`), in the same
split, so that a resampled or lower-resolution band is recognised too, and judged (not fitted on)
with Landsat 7's scan-line gaps missing (:func:`gapped_copy`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from georeg.modality import FEATURES, MODALITY_CLASSES, feature_vector, model_terms, pairwise_terms, texture_features

from .data import _grey, hash_split

SAMPLE_PX = 512  # georeg.modality.central_sample's size
COARSER = (1.4, 2.5)  # the coarser copies' pixel size, in native pixels
COARSER_KINDS = ("smoothed", "bilinear")


def _centre(a: np.ndarray, size: int = SAMPLE_PX) -> np.ndarray:
    h, w = a.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return a[y0:y0 + size, x0:x0 + size]


def _raster(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as d:
        a = d.read().astype(np.float32)
    return a.mean(0) if a.shape[0] >= 3 else a[0]


def coarser_copy(key: str, img: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre of ``img`` as a coarser product or a user's downsized copy shows it: pixels
    COARSER times larger (a factor drawn from the key), low-pass filtered before bilinear
    interpolation or interpolated bilinearly without a prefilter (alternating by key), up to SAMPLE_PX px. A shrunk SAR
    target (1.8-2x, bilinear) lost enough speckle to be taken for thermal by a model fitted at
    native resolution only. Invalid pixels stay invalid wherever they reach."""
    from skimage.transform import resize

    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    f = COARSER[0] + (COARSER[1] - COARSER[0]) * ((h % 1000) / 999)
    kind = COARSER_KINDS[(h // 1000) % 2]
    size = min(round(SAMPLE_PX * f), *img.shape)
    img, valid = _centre(img, size), _centre(valid, size)
    shape = (max(8, round(img.shape[0] / f)), max(8, round(img.shape[1] / f)))
    average = kind == "smoothed"
    out = resize(img, shape, order=1, anti_aliasing=average, preserve_range=True).astype(np.float32)
    ok = resize(valid.astype(np.float32), shape, order=1, anti_aliasing=average, preserve_range=True) > 0.999
    return out, ok


def gapped_copy(img: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``img`` with Landsat 7's scan-line gaps (benchmarks/cases.scan_line_gaps: 22% of the
    pixels in strips along the scan lines) missing, held at 0 as nodata is."""
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    from cases import scan_line_gaps

    ok = valid & ~scan_line_gaps(img.shape)
    return np.where(ok, img, 0.0).astype(np.float32), ok


MULTILOOK = ((2.0, "intensity"), (4.4, "amplitude"), (8.0, "intensity"), (3.0, "amplitude"), (6.0, "amplitude"))


def multilook_sar(key: str, luminance: np.ndarray) -> np.ndarray:
    """Multi-look SAR as a Sentinel-1 GRD measurement file or a speckle-filtered product holds it
    (uint16-like DN), emulated over an optical scene: its luminance squared as the reflectivity,
    times gamma-distributed speckle of a number of looks, as intensity or amplitude (both drawn
    from the key, :data:`MULTILOOK`). The dataset's SAR is 8-bit previews and dB: without such
    samples the texture model took 4.4-look amplitude for thermal at 0.6-0.9."""
    h = int(hashlib.sha1(("ml" + key).encode()).hexdigest()[:8], 16)
    looks, kind = MULTILOOK[h % len(MULTILOOK)]
    refl = (luminance.astype(np.float64) / max(float(luminance.max()), 1e-9)) ** 2 + 1e-3
    intensity = refl * np.random.default_rng(h).gamma(looks, 1 / looks, refl.shape)
    return np.round((intensity * 1e4) if kind == "intensity" else np.sqrt(intensity) * 1e3).astype(np.float32)


def samples(data: Path, coarser: bool = True, gapped: bool = True
            ) -> list[tuple[str, str, np.ndarray, np.ndarray, str]]:
    """(key, class, image, valid, 'native', 'coarser' or 'gapped') for every sample image, and after
    each one its :func:`coarser_copy` (``coarser``) and its :func:`gapped_copy` (``gapped``) under
    the same key (so in the same split)."""
    out = []

    def add(key, cls, img, nodata_zero=False):
        big = _centre(img, int(SAMPLE_PX * COARSER[1]) + 2)
        valid = big > 0 if nodata_zero else np.ones(big.shape, bool)
        out.append((key, cls, _centre(big), _centre(valid), "native"))
        if coarser:
            out.append((key, cls, *coarser_copy(key, big, valid), "coarser"))
        if gapped:
            out.append((key, cls, *gapped_copy(_centre(big), _centre(valid)), "gapped"))

    s1 = data / "s1s2_volkov"
    for p in sorted((s1 / "sar").glob("*.png")):
        add(f"s1png{p.stem}", "sar", _grey(p))
    for p in sorted((s1 / "opt").glob("*.png")):
        add(f"s2png{p.stem}", "optical", _grey(p))
    for p in sorted((s1 / "extra_gray" / "sar").glob("*"))[:40]:
        add(f"s1gray{p.stem}", "sar", _grey(p))
    for p in sorted((s1 / "extra_gray" / "opt").glob("*"))[:40]:
        add(f"s2gray{p.stem}", "optical", _grey(p))
    for p in sorted((s1 / "opt").glob("*.png")):
        add(f"ml{p.stem}", "sar", multilook_sar(p.stem, _grey(p)))
    for p in sorted((s1 / "geotiff").glob("*_S1_VH.tif")):
        add(f"s1tif{p.stem}", "sar", _raster(p), True)
    for p in sorted((s1 / "geotiff").glob("*_S2_RGB.tif")):
        add(f"s2tif{p.stem}", "optical", _raster(p), True)
    mos = data / "3mos_previews"
    for p in sorted((mos / "sar").glob("*.png"))[::2]:
        add(f"3mos{p.stem}", "sar", _grey(p))
    for p in sorted((mos / "opt").glob("*.png"))[::4]:
        add(f"3mos{p.stem}", "optical", _grey(p))
    srif = data / "srif_multimodal" / "Optical-Infrared"
    for p in sorted(srif.glob("pair*_2.jpg"))[::2]:
        add(f"srif{p.stem.split('_')[0][4:]}", "thermal", _grey(p), True)
    for p in sorted(srif.glob("pair*_1.jpg"))[::4]:
        add(f"srif{p.stem.split('_')[0][4:]}", "optical", _grey(p))
    nir = data / "nir_vis_rs"
    for p in sorted(nir.glob("*/NIR_TF_*.png")):
        add(f"nir{p.parent.name}{p.stem.split('_')[-1]}", "optical", _grey(p), True)
    for p in sorted(nir.glob("*/VIS_*.png"))[::2]:
        add(f"nir{p.parent.name}{p.stem.split('_')[-1]}", "optical", _grey(p))
    ls = data / "landsat8_oli_tirs"
    for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8"):
        if (ls / f"l8_{b}.tif").exists():
            add(f"landsat{b}", "optical", _raster(ls / f"l8_{b}.tif"), True)
    for b in ("B10", "B11"):
        if (ls / f"l8_{b}.tif").exists():
            add(f"landsat{b}", "thermal", _raster(ls / f"l8_{b}.tif"), True)
    return out


def fit(x: np.ndarray, y: np.ndarray, k: int, l2: float = 1e-2, steps: int = 3000, lr: float = 0.5,
        class_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by gradient descent (standardised inputs)."""
    n, d = x.shape
    w, b = np.zeros((k, d)), np.zeros(k)
    onehot = np.eye(k)[y]
    cw = np.ones(n) if class_weight is None else class_weight[y]
    for _ in range(steps):
        logits = x @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) * cw[:, None] / cw.sum()
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(0)
    return w, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "georeg" / "modality_model.json"))
    ap.add_argument("--native-only", action="store_true",
                    help="fit on native-resolution samples only (the coarser copies are still evaluated)")
    ap.add_argument("--terms", choices=("linear", "pairwise"), default="pairwise",
                    help="the features alone, or with their pairwise products (default)")
    ap.add_argument("--l2", type=float, default=0.03, help="weight decay of the logistic regression")
    args = ap.parse_args(argv)
    rows = []
    for key, cls, img, valid, copy in samples(Path(args.data)):
        f = texture_features(img, valid)
        if f is not None:
            rows.append((key, MODALITY_CLASSES.index(cls), feature_vector(f), copy))
    split = np.array([hash_split(r[0]) for r in rows])
    copies = np.array([r[3] for r in rows])
    y = np.array([r[1] for r in rows])
    x = np.array([r[2] for r in rows])
    tr = split == "train"
    # the gapped copies are judged, not fitted on: fitting on them cost held-out coarser bands and SAR
    # exported as uint16 amplitude DN more than it gained on gapped ones (HISTORY, 2026-12-07, fourth session)
    fit_on = tr & (copies == "native") if args.native_only else tr & (copies != "gapped")
    model = {"classes": list(MODALITY_CLASSES), "features": list(FEATURES), "terms": args.terms,
             "mean": x[fit_on].mean(0).tolist(), "std": (x[fit_on].std(0) + 1e-9).tolist()}
    if args.terms == "pairwise":
        t = pairwise_terms(model_terms(x[fit_on], {**model, "terms": "linear"}))
        model.update(term_mean=t.mean(0).tolist(), term_std=(t.std(0) + 1e-9).tolist())
    z = model_terms(x, model)
    counts = np.bincount(y[fit_on], minlength=len(MODALITY_CLASSES))
    w, b = fit(z[fit_on], y[fit_on], len(MODALITY_CLASSES), l2=args.l2,
               class_weight=counts.sum() / np.maximum(counts, 1))
    pred = (z @ w.T + b).argmax(1)
    report = {}
    for name, sel in (("train", tr), ("held_out", ~tr)):
        for copy in ("native", "coarser", "gapped"):
            part = sel & (copies == copy)
            if not part.any():
                continue
            conf = np.zeros((3, 3), int)
            for t, p in zip(y[part], pred[part]):
                conf[t, p] += 1
            entry = f"{name}_{copy}"
            report[entry] = {"n": int(part.sum()), "accuracy": float((pred[part] == y[part]).mean()),
                             "confusion_rows_true_cols_pred": conf.tolist()}
            print(f"{entry}: {part.sum()} samples, accuracy {report[entry]['accuracy']:.3f}")
            for c, r in zip(MODALITY_CLASSES, conf):
                print(f"  {c:8s} -> {dict(zip(MODALITY_CLASSES, r.tolist()))}")
    model.update(weights=w.tolist(), bias=b.tolist())
    model["training"] = {"command": "python -m training.modality", "data": "../shared/data: s1s2_volkov, "
                          "3mos_previews, srif_multimodal Optical-Infrared, nir_vis_rs, landsat8_oli_tirs; "
                          "multi-look SAR emulated over the s1s2_volkov opt PNGs (2-8 looks, intensity or amplitude)",
                          "split": "training.data.hash_split of the image name",
                          "coarser_copies": None if args.native_only else
                          f"each image also {COARSER[0]}-{COARSER[1]}x coarser ({', '.join(COARSER_KINDS)})",
                          "gapped_copies": "each image also with Landsat 7's scan-line gaps missing, judged only",
                          "terms": args.terms, "l2": args.l2, **report}
    Path(args.out).write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
