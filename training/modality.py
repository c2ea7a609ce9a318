"""Fit the texture model of georeg.modality: optical / SAR / thermal from one band's pixels.

    python -m training.modality [--data ../shared/data] [--out georeg/modality_model.json]

Samples are single bands as a user would hand them over: Sentinel-1 VH (GeoTIFF and PNG), the
SAR of 3MOS (five sensors), Sentinel-2 and other optical luminance, Landsat 8 OLI bands, NIR
(near-infrared is optical), SRIF infrared and Landsat TIRS (thermal). Images are split by a hash
of their name (training.data.hash_split), the model is a multinomial logistic regression over
georeg.modality.feature_vector, fitted on 'train' and reported on 'val' + 'test'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from georeg.modality import FEATURES, MODALITY_CLASSES, feature_vector, texture_features

from .data import _grey, hash_split


def _centre(a: np.ndarray, size: int = 512) -> np.ndarray:
    h, w = a.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return a[y0:y0 + size, x0:x0 + size]


def _raster(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as d:
        a = d.read().astype(np.float32)
    return a.mean(0) if a.shape[0] >= 3 else a[0]


def samples(data: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(key, class, image, valid) for every sample image."""
    out = []

    def add(key, cls, img, nodata_zero=False):
        img = _centre(img)
        valid = img > 0 if nodata_zero else np.ones(img.shape, bool)
        out.append((key, cls, img, valid))

    s1 = data / "s1s2_volkov"
    for p in sorted((s1 / "sar").glob("*.png")):
        add(f"s1png{p.stem}", "sar", _grey(p))
    for p in sorted((s1 / "opt").glob("*.png")):
        add(f"s2png{p.stem}", "optical", _grey(p))
    for p in sorted((s1 / "extra_gray" / "sar").glob("*"))[:40]:
        add(f"s1gray{p.stem}", "sar", _grey(p))
    for p in sorted((s1 / "extra_gray" / "opt").glob("*"))[:40]:
        add(f"s2gray{p.stem}", "optical", _grey(p))
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
    args = ap.parse_args(argv)
    rows = []
    for key, cls, img, valid in samples(Path(args.data)):
        f = texture_features(img, valid)
        if f is not None:
            rows.append((key, MODALITY_CLASSES.index(cls), feature_vector(f)))
    split = np.array([hash_split(k) for k, _, _ in rows])
    y = np.array([c for _, c, _ in rows])
    x = np.array([v for _, _, v in rows])
    tr = split == "train"
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-9
    z = (x - mean) / std
    counts = np.bincount(y[tr], minlength=len(MODALITY_CLASSES))
    w, b = fit(z[tr], y[tr], len(MODALITY_CLASSES), class_weight=counts.sum() / np.maximum(counts, 1))
    pred = (z @ w.T + b).argmax(1)
    report = {}
    for name, sel in (("train", tr), ("held_out", ~tr)):
        conf = np.zeros((3, 3), int)
        for t, p in zip(y[sel], pred[sel]):
            conf[t, p] += 1
        report[name] = {"n": int(sel.sum()), "accuracy": float((pred[sel] == y[sel]).mean()),
                        "confusion_rows_true_cols_pred": conf.tolist()}
        print(f"{name}: {sel.sum()} samples, accuracy {report[name]['accuracy']:.3f}")
        for c, r in zip(MODALITY_CLASSES, conf):
            print(f"  {c:8s} -> {dict(zip(MODALITY_CLASSES, r.tolist()))}")
    model = {"classes": list(MODALITY_CLASSES), "features": list(FEATURES),
             "mean": mean.tolist(), "std": std.tolist(), "weights": w.tolist(), "bias": b.tolist(),
             "training": {"command": "python -m training.modality", "data": "../shared/data: s1s2_volkov, "
                          "3mos_previews, srif_multimodal Optical-Infrared, nir_vis_rs, landsat8_oli_tirs",
                          "split": "training.data.hash_split of the image name", **report}}
    Path(args.out).write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
