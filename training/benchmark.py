"""One evaluation command for the FPR95 table: learned matchers against the weight-free
baseline and two simple references (NCC of normalised patches, kornia's SIFT descriptor), all on
the same held-out pairs in one run.

    python -m training evaluate --pair opt-sar --split test
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .data import PatchSet, balanced_subset, eval_pairs
from .evaluate import fpr95, fpr95_distance


def ncc_scores(opt: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    a = opt.float().flatten(1)
    b = other.float().flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-9)).numpy()


def sift_distances(opt: torch.Tensor, other: torch.Tensor, batch: int = 1024) -> np.ndarray:
    from kornia.feature import SIFTDescriptor

    sift = SIFTDescriptor(64, rootsift=True)
    out = []
    with torch.no_grad():
        for i in range(0, len(opt), batch):
            da = sift(opt[i:i + batch].float() / 255)
            db = sift(other[i:i + batch].float() / 255)
            out.append((da - db).norm(dim=1))
    return torch.cat(out).numpy()


def batched(fn, opt, other, batch=1024) -> np.ndarray:
    return torch.cat([fn(opt[i:i + batch], other[i:i + batch]) for i in range(0, len(opt), batch)]).numpy()


def evaluate(data_dir: Path, pair: str, split: str, matchers: dict, max_pairs: int = 0, seed: int = 0) -> dict:
    """``matchers``: label -> object with ``score(opt_uint8, other_uint8)`` (georeg matchers) or a
    KGLNet/RRLNet checkpoint path. Returns {label: {'fpr95': ..., 'seconds': ...}}."""
    from georeg.matchers import load

    ps = PatchSet.load(data_dir / f"{pair}_{split}.npz")
    opt, other, y, kind = eval_pairs(ps, seed=seed, with_kind=True)
    y, opt, other, kind = balanced_subset(max_pairs, seed, y, opt, other, kind)
    opt, other = torch.from_numpy(opt), torch.from_numpy(other)
    results = {"_pairs": {"positives": int(y.sum()), "negatives": int((1 - y).sum()),
                          "near_negatives": int((kind == 1).sum()), "random_negatives": int((kind == 2).sum()),
                          "split": split, "pair": pair}}
    subsets = {"near": kind != 2, "random": kind != 1}  # positives with one kind of negative

    def timed(label, fn, distance=False):
        t = time.perf_counter()
        s = fn()
        secs = time.perf_counter() - t
        score = -s if distance else s
        results[label] = {"fpr95": fpr95(y, score), "seconds": round(secs, 2)}
        for name, keep in subsets.items():
            results[label][f"fpr95_{name}_negatives"] = fpr95(y[keep], score[keep])
        if distance:
            results[label]["fpr95_descriptor_protocol"] = fpr95_distance(y, s)

    timed("NCC (normalised patches)", lambda: ncc_scores(opt, other))
    timed("SIFT descriptor (kornia)", lambda: sift_distances(opt, other), distance=True)
    base = load("baseline", "cpu")
    structural = {}

    def base_scores():
        structural["s"] = batched(base.score, opt, other)
        return structural["s"]

    timed("georeg baseline", base_scores)
    for label, m in matchers.items():
        if not getattr(m, "fusion", None):
            timed(label, lambda m=m: batched(m.score, opt, other))
            continue
        # the shipped score is sigmoid(learned * logit + structural * s + bias): compute the network's
        # logits once and report the fused matcher and the network alone from them
        cache = {}

        def fused(m=m, cache=cache):
            cache["logit"] = batched(m.network_logits, opt, other)
            return m.fuse(torch.from_numpy(cache["logit"]), torch.from_numpy(structural["s"])).numpy()

        timed(label, fused)
        timed(f"{label} (network only)", lambda cache=cache: 1 / (1 + np.exp(-cache["logit"])))
        if hasattr(m, "net") and hasattr(m.net, "desc"):
            def desc_dist(m=m):
                out = []
                with torch.no_grad():
                    for i in range(0, len(opt), 1024):
                        ea = m.net.encode(opt[i:i + 1024].float() / 255, "opt")["desc"]
                        eb = m.net.encode(other[i:i + 1024].float() / 255, "other")["desc"]
                        out.append((ea - eb).norm(dim=1))
                return torch.cat(out).numpy()
            timed(f"{label} (descriptor)", desc_dist, distance=True)
    return results


def table(results: dict) -> str:
    info = results["_pairs"]
    lines = [f"FPR95 (%) on {info['pair']} {info['split']}: {info['positives']} positive and "
             f"{info['negatives']} negative pairs ({info['near_negatives']} near: the nearest keypoint at least "
             f"8 px away; {info['random_negatives']} random keypoints of the same image)", "",
             "| method | FPR95 % (all negatives) | near negatives only | random negatives only | s |",
             "|---|---|---|---|---|"]
    for k, v in results.items():
        if k.startswith("_"):
            continue
        extra = f" (descriptor protocol {v['fpr95_descriptor_protocol']:.2f})" if "fpr95_descriptor_protocol" in v \
            else ""
        lines.append(f"| {k} | {v['fpr95']:.2f}{extra} | {v['fpr95_near_negatives']:.2f} | "
                     f"{v['fpr95_random_negatives']:.2f} | {v['seconds']} |")
    return "\n".join(lines)


def exported_matcher(manifest: Path):
    """The shipped-style matcher (with its fusion) of weights exported outside georeg/weights,
    given by the path of their manifest (``export --weights-dir DIR`` writes DIR/NAME.json)."""
    from georeg.matchers.learned import KGLMatcher, RRLMatcher

    name = manifest.stem
    cls = KGLMatcher if name.startswith("kgl") else RRLMatcher
    return cls(name, "cpu", directory=manifest.parent)


def checkpoint_matcher(path: Path):
    """A matcher-like wrapper of a training checkpoint (before export)."""
    from georeg.matchers.kgl import KGLNet
    from georeg.matchers.rrl import RRLNet

    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    if cfg["model"] == "kgl":
        net = KGLNet(cfg["width"])
    else:
        net = RRLNet(training_parts=True)
    net.load_state_dict(ck["model"])
    if cfg["model"] == "rrl":
        net.drop_training_parts()
    net.eval()

    class _M:
        def __init__(self):
            self.net = net

        def score(self, a, b):
            with torch.no_grad():
                return net(a.float() / 255, b.float() / 255)

    return _M()


def save(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2))
