"""Patch-pair datasets built from the aligned real image pairs in ../shared/data.

Images are preprocessed exactly as the registration pipeline preprocesses its tiles
(:func:`georeg.preprocess.preprocess`), keypoints are detected on the optical image with georeg's
detector, and a crop larger than the patch is stored around each keypoint in both images, so
that augmentation can shift, scale and rotate before the centre 64x64 patch is cut.

Splits are disjoint by image; the Sentinel-1/2 pairs are split by Sentinel-2 tile
(train T11SLT, validation T11SMT, test T14RNT), so no test patch shares a tile with training.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from georeg.keypoints import detect
from georeg.preprocess import preprocess

CROP = 96  # stored crop; the 64 px patch is cut from its centre after augmentation
S1S2_SPLIT = {"T11SLT": "train", "T11SMT": "val", "T14RNT": "test"}


@dataclass
class ImagePair:
    source: str
    name: str
    split: str
    opt: np.ndarray  # (H, W) float32 in [0, 1], preprocessed
    other: np.ndarray
    valid: np.ndarray  # (H, W) bool, valid in both


def hash_split(key: str, val: float = 0.1, test: float = 0.1) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else ("val" if h < test + val else "train")


def _grey(path: Path) -> np.ndarray:
    im = Image.open(path)
    if im.mode in ("RGB", "RGBA"):
        a = np.asarray(im.convert("RGB"), np.float32)
        return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    return np.asarray(im.convert("L"), np.float32)


def _pair(source, name, split, opt, other, modality, valid=None) -> ImagePair:
    valid = np.ones(opt.shape, bool) if valid is None else valid
    o = preprocess(opt, valid, "optical", False)
    t = preprocess(other, valid, modality, False)
    return ImagePair(source, name, split, o, t, valid)


def _write_plain_tif(path: Path, a: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1,
                       dtype="float32", crs="EPSG:3395", transform=from_origin(0, 10.0 * a.shape[0], 10, 10)) as d:
        d.write(a.astype(np.float32), 1)


def align_to_optical(opt: np.ndarray, sar: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the few-pixel residual misalignment of an 'aligned' optical/SAR pair.

    georeg itself (baseline matcher, so no learned weights are involved) fits ``model``
    ('translation', 'affine' or 'local') from the SAR image to the optical one over the whole
    image, and the SAR is resampled (bilinear, as the pipeline samples targets) onto the optical
    grid. Returns the aligned SAR, its valid mask and a summary of the fit."""
    import tempfile

    from georeg.config import RegistrationConfig
    from georeg.pipeline import register

    with tempfile.TemporaryDirectory(prefix="georeg-align-") as td:
        _write_plain_tif(Path(td) / "opt.tif", opt)
        _write_plain_tif(Path(td) / "sar.tif", sar)
        cfg = RegistrationConfig().with_options(
            reference={"modality": "optical"}, target={"modality": "sar"},
            matching={"matcher": "baseline"}, estimation={"model": model})
        res = register(Path(td) / "opt.tif", Path(td) / "sar.tif", Path(td) / "out.tif", cfg)
    h, w = opt.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    src = res.model.inverse(np.stack([xx.ravel(), yy.ravel()], 1))  # optical pixel -> SAR pixel
    inside = ((src[:, 0] >= 0) & (src[:, 1] >= 0) & (src[:, 0] <= w - 1) & (src[:, 1] <= h - 1)).reshape(h, w)
    v = ndimage.map_coordinates(sar, [src[:, 1], src[:, 0]], order=1, mode="nearest").reshape(h, w)
    c = np.array([[w / 2, h / 2]])
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    info = {"model": model, "rmse_px": round(res.rmse_px, 3),
            "shift_at_centre_px": np.round(res.model.forward(c) - c, 2)[0].tolist(),
            "max_corner_shift_px": round(float(np.abs(res.model.forward(corners) - corners).max()), 2)}
    return v.astype(np.float32), inside, info


def s1s2_pairs(data: Path, align: str = "none", splits=("train", "val", "test"),
               names: set[str] | None = None) -> list[ImagePair]:
    """Sentinel-1/2 pairs. ``align``: 'none' keeps the authors' alignment (a few px off, see
    alignment_check.csv); 'translation', 'affine' or 'local' first removes the residual with
    :func:`align_to_optical`. ``names`` (fragment ids such as '003') loads only those."""
    root = data / "s1s2_volkov"
    with open(root / "georef_epsg3395.csv", newline="") as f:
        tiles = {r["fragment"]: r["s2_tile"] for r in csv.DictReader(f)}
    out = []
    for sub in ("", "extra_gray/"):
        for p in sorted((root / sub / "opt").glob("*.png")):
            tile = tiles.get(p.name)
            sar = root / sub / "sar" / p.name
            if tile is None or not sar.exists() or S1S2_SPLIT[tile] not in splits or \
                    (names is not None and p.stem not in names):
                continue
            out.append(_s1s2_pair(p.stem, S1S2_SPLIT[tile], _grey(p), _grey(sar), align))
    import rasterio

    for pid, tile in (("050", "T11SLT"), ("176", "T11SMT"), ("268", "T14RNT")):
        g = root / "geotiff"
        if not (g / f"{pid}_S2_RGB.tif").exists() or S1S2_SPLIT[tile] not in splits or \
                (names is not None and pid not in names):
            continue
        with rasterio.open(g / f"{pid}_S2_RGB.tif") as d:
            a = d.read().astype(np.float32)
            opt = 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]
        with rasterio.open(g / f"{pid}_S1_VH.tif") as d:
            sar = d.read(1).astype(np.float32)
        out.append(_s1s2_pair(f"geotiff_{pid}", S1S2_SPLIT[tile], opt, sar, align))
    return out


ALIGNMENT_LOG: dict[str, dict] = {}


def _s1s2_pair(name: str, split: str, opt: np.ndarray, sar: np.ndarray, align: str) -> ImagePair:
    valid = None
    if align != "none":
        sar, valid, info = align_to_optical(opt, sar, align)
        ALIGNMENT_LOG[f"s1s2/{name}"] = info
    return _pair("s1s2", name, split, opt, sar, "sar", valid)


THREEMOS_SENSORS = ("ALOS", "GF3", "RCM", "Redarsat", "SEN")  # as spelt in pairs.csv


def threemos_pairs(data: Path, hold_out: tuple[str, ...] = ()) -> list[ImagePair]:
    """3MOS pairs flagged aligned, at the dataset's own alignment. Pairs of a sensor in
    ``hold_out`` go to the split ``holdout-SENSOR`` instead of train/val/test, so a network can be
    trained without that sensor and scored on it."""
    root = data / "3mos_previews"
    with open(root / "pairs.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["likely_aligned"] == "1"]
    out = []
    for r in rows:
        if not (root / r["opt_file"]).exists() or not (root / r["sar_file"]).exists():
            continue
        # split by source mosaic (sensor and scene), so neighbouring columns stay together
        split = f"holdout-{r['sensor']}" if r["sensor"] in hold_out else hash_split(r["source_file"])
        out.append(_pair("3mos", r["pair_id"], split, _grey(root / r["opt_file"]),
                         _grey(root / r["sar_file"]), "sar"))
    return out


def _warp_back(img: np.ndarray, ref_to_img: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    from georeg.coordinates import resample_by_matrix

    h, w = shape
    v, mx, my = resample_by_matrix(img, ref_to_img, shape)
    inside = (mx >= 1) & (my >= 1) & (mx <= img.shape[1] - 2) & (my <= img.shape[0] - 2)
    return v.astype(np.float32), inside.reshape(h, w)


def srif_ir_pairs(data: Path) -> list[ImagePair]:
    root = data / "srif_multimodal" / "Optical-Infrared"
    out = []
    for gt in sorted(root.glob("gt_*.txt"), key=lambda p: int(p.stem[3:])):
        i = gt.stem[3:]
        if not (root / f"pair{i}_2.jpg").exists():
            continue
        opt = _grey(root / f"pair{i}_1.jpg")
        a = np.vstack([np.loadtxt(gt).reshape(2, 3), [0, 0, 1]])
        ir, valid = _warp_back(_grey(root / f"pair{i}_2.jpg"), a, opt.shape)
        valid &= ndimage.binary_erosion(ir > 0, iterations=2)
        out.append(_pair("srif_ir", f"pair{i}", hash_split(f"srif{i}"), opt, ir, "thermal", valid))
    return out


def nir_vis_pairs(data: Path) -> list[ImagePair]:
    root = data / "nir_vis_rs"
    out = []
    for cat in ("City", "Coast", "Desert", "Mountain"):
        for gt in sorted((root / cat).glob("GT_*.txt")):
            i = gt.stem.split("_")[1]
            vis = _grey(root / cat / f"VIS_{i}.png")
            nir, valid = _warp_back(_grey(root / cat / f"NIR_TF_{i}.png"), np.loadtxt(gt).reshape(3, 3), vis.shape)
            out.append(_pair("nir_vis", f"{cat}_{i}", hash_split(f"nir{cat}{i}"), vis, nir, "thermal", valid))
    return out


def landsat_pairs(data: Path) -> list[ImagePair]:
    """Landsat 8 B4 vs B10, clouds masked with the BQA band; the scene's west half trains,
    the east quarter validates and... one scene only, so it is used for training alone."""
    import rasterio

    d = data / "landsat8_oli_tirs"
    if not (d / "l8_B4.tif").exists():
        return []
    with rasterio.open(d / "l8_B4.tif") as a, rasterio.open(d / "l8_B10.tif") as b, \
            rasterio.open(d / "l8_BQA.tif") as q:
        opt, tir, qa = a.read(1).astype(np.float32), b.read(1).astype(np.float32), q.read(1)
    valid = ~ndimage.binary_dilation(((qa >> 14) & 3) >= 2, iterations=5)
    return [_pair("landsat", "l8_B4_B10", "train", opt, tir, "thermal", valid)]


SOURCES = {
    "opt-sar": (s1s2_pairs, threemos_pairs),
    "opt-ir": (srif_ir_pairs, nir_vis_pairs, landsat_pairs),
}


@dataclass
class PatchSet:
    """Stored crops around keypoints: crops (N, 2, CROP, CROP) uint8 [opt, other], and for each
    crop its image index and keypoint position, so negatives can be chosen by distance."""

    crops: np.ndarray
    image: np.ndarray
    xy: np.ndarray
    images: list[str]

    def __len__(self) -> int:
        return len(self.crops)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, crops=self.crops, image=self.image, xy=self.xy,
                            images=np.array(self.images))

    @classmethod
    def load(cls, path: Path) -> PatchSet:
        z = np.load(path)
        return cls(z["crops"], z["image"], z["xy"], list(z["images"]))


def extract(pairs: list[ImagePair], per_megapixel: int = 450, crop: int = CROP) -> PatchSet:
    crops, image, xys, names = [], [], [], []
    half = crop // 2
    for k, p in enumerate(pairs):
        n = max(16, int(per_megapixel * p.opt.size / 1e6))
        kp, _ = detect(p.opt, p.valid, n, border=half + 1, patch_size=crop, min_valid=0.999, nms_radius=6)
        for x, y in kp:
            o = p.opt[y - half:y + half, x - half:x + half]
            t = p.other[y - half:y + half, x - half:x + half]
            crops.append(np.stack([o, t]))
        image += [k] * len(kp)
        xys.append(kp)
        names.append(f"{p.source}/{p.name}")
    arr = (np.clip(np.stack(crops), 0, 1) * 255).round().astype(np.uint8) if crops else \
        np.zeros((0, 2, crop, crop), np.uint8)
    return PatchSet(arr, np.array(image, np.int32), np.concatenate(xys) if xys else np.zeros((0, 2)), names)


def build(data: Path, pair: str, out_dir: Path, align: str = "none",
          hold_out: tuple[str, ...] = ()) -> dict[str, Path]:
    """Extract train/val/test patch sets for a modality pair ('opt-sar', 'opt-ir') into out_dir.
    ``align`` (opt-sar only) removes the Sentinel-1/2 residual misalignment first. ``hold_out``
    (opt-sar only): 3MOS sensors kept out of train/val/test, each written as its own split
    ``holdout-SENSOR`` (see :func:`threemos_pairs`)."""
    from georeg.errors import ConfigError

    unknown = sorted(set(hold_out) - set(THREEMOS_SENSORS))
    if unknown or (hold_out and pair != "opt-sar"):
        raise ConfigError(f"--hold-out takes 3MOS sensors of the opt-sar pair ({', '.join(THREEMOS_SENSORS)}); "
                          f"got {', '.join(hold_out)} for {pair}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ALIGNMENT_LOG.clear()
    pairs = []
    for fn in SOURCES[pair]:
        if fn is s1s2_pairs:
            pairs += fn(data, align)
        elif fn is threemos_pairs:
            pairs += fn(data, hold_out)
        else:
            pairs += fn(data)
    paths, info = {}, {}
    for split in ("train", "val", "test", *(f"holdout-{s}" for s in hold_out)):
        chosen = [p for p in pairs if p.split == split]
        ps = extract(chosen)
        path = out_dir / f"{pair}_{split}.npz"
        ps.save(path)
        paths[split] = path
        info[split] = {"images": len(chosen), "patches": len(ps),
                       "by_source": {s: sum(1 for p in chosen if p.source == s) for s in {p.source for p in chosen}}}
    if ALIGNMENT_LOG:
        info["s1s2_alignment"] = {"model": align, "pairs": dict(ALIGNMENT_LOG)}
    (out_dir / f"{pair}_info.json").write_text(json.dumps(info, indent=2))
    return paths


def balanced_subset(n: int, seed: int, y: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most ``n`` of the balanced pairs from :func:`eval_pairs` (positives first, then their
    negatives in the same order), keeping each chosen keypoint's positive and negative together.
    Returns ``y`` and ``arrays`` subset alike (unchanged when there are no more than ``n``)."""
    if not n or len(y) <= n:
        return (y, *arrays)
    half = len(y) // 2
    pick = np.random.default_rng(seed).choice(half, n // 2, replace=False)
    idx = np.r_[pick, pick + half]
    return (y[idx], *(a[idx] for a in arrays))


def eval_pairs(ps: PatchSet, seed: int = 0, min_dist: float = 8.0, hard_fraction: float = 0.5,
               patch: int = 64, with_kind: bool = False):
    """Balanced labelled pairs for FPR95: every keypoint gives one positive (its own opt/other
    patches) and one negative (its opt patch against another keypoint's other patch of the same
    image, at least ``min_dist`` px away; the nearest such keypoint for ``hard_fraction`` of them,
    a random one otherwise). Returns opt (M, 1, 64, 64), other (M, 1, 64, 64) uint8, labels (M,),
    and with ``with_kind`` a fourth array: 0 positive, 1 near (hard) negative, 2 random negative."""
    rng = np.random.default_rng(seed)
    c0 = (ps.crops.shape[-1] - patch) // 2
    centre = ps.crops[:, :, c0:c0 + patch, c0:c0 + patch]
    neg = np.full(len(ps), -1)
    hard = np.zeros(len(ps), bool)
    for img in np.unique(ps.image):
        idx = np.flatnonzero(ps.image == img)
        if len(idx) < 2:
            continue
        xy = ps.xy[idx].astype(np.float64)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        d[d < min_dist] = np.inf
        for a, i in enumerate(idx):
            ok = np.flatnonzero(np.isfinite(d[a]))
            if len(ok) == 0:
                continue
            hard[i] = rng.random() < hard_fraction
            j = ok[np.argmin(d[a, ok])] if hard[i] else rng.choice(ok)
            neg[i] = idx[j]
    keep = np.flatnonzero(neg >= 0)
    opt = np.concatenate([centre[keep, 0], centre[keep, 0]])[:, None]
    other = np.concatenate([centre[keep, 1], centre[neg[keep], 1]])[:, None]
    labels = np.r_[np.ones(len(keep)), np.zeros(len(keep))].astype(np.int64)
    if with_kind:
        return opt, other, labels, np.r_[np.zeros(len(keep)), np.where(hard[keep], 1, 2)].astype(np.int64)
    return opt, other, labels
