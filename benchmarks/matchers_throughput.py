"""Throughput of the matchers: patches/s for per-patch encoding, pairs/s scored from cached
features, and pairs/s for full pair forwards, on the CPU (and CUDA when torch sees a GPU).

    python benchmarks/matchers_throughput.py [--threads 1] [--batch 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from georeg.matchers.baseline import BaselineMatcher
from georeg.matchers.kgl import KGLNet
from georeg.matchers.rrl import RRLNet
from georeg.runtime import tune_malloc


def _rate(fn, n: int, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n / best


def run(device: str, batch: int, repeat: int) -> list[tuple]:
    rows = []
    a = torch.rand(batch, 1, 64, 64, device=device)
    b = torch.rand(batch, 1, 64, 64, device=device)
    ctx = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        for label, net in (("KGL-Net w1.0", KGLNet(1.0)), ("KGL-Net w0.5", KGLNet(0.5))):
            net = net.eval().to(device)
            fa, fb = net.encode(a, "opt")["f_dif"], net.encode(b, "other")["f_dif"]
            rows.append((device, label, "encode patch (desc + metric features)",
                         _rate(lambda net=net: net.encode(a, "opt"), batch, repeat), "patches/s"))
            rows.append((device, label, "head on cached features",
                         _rate(lambda net=net, fa=fa, fb=fb: net.head(fa, fb), batch, repeat), "pairs/s"))
            rows.append((device, label, "full pair forward",
                         _rate(lambda net=net: net(a, b), batch, repeat), "pairs/s"))
        # the memory layout georeg's matchers use (georeg/matchers/learned.py): same numbers, faster convolutions
        net = KGLNet(1.0).eval().to(device, memory_format=torch.channels_last)
        a_cl = a.contiguous(memory_format=torch.channels_last)
        rows.append((device, "KGL-Net w1.0 channels-last", "encode patch (desc + metric features)",
                     _rate(lambda: net.encode(a_cl, "opt"), batch, repeat), "patches/s"))
        rrl = RRLNet(training_parts=False).eval().to(device)
        ea, eb = rrl.encode(a, "opt"), rrl.encode(b, "other")
        rows.append((device, "RRL-Net", "encode patch (encoder + FIL)",
                     _rate(lambda: rrl.encode(a, "opt"), batch, repeat), "patches/s"))
        rows.append((device, "RRL-Net", "per-pair stream on cached encodings",
                     _rate(lambda: rrl.pair(ea, eb), batch, repeat), "pairs/s"))
        rows.append((device, "RRL-Net", "full pair forward", _rate(lambda: rrl(a, b), batch, repeat), "pairs/s"))
        base = BaselineMatcher(device)
        rows.append((device, "baseline", "score pairs", _rate(lambda: base.score(a, b), batch, repeat), "pairs/s"))
    # the shipped matchers as the pipeline calls them: 6 candidates per keypoint, fusion included
    from georeg.matchers import available, load

    n = max(1, batch // 6)
    ref, cand = a[:n].cpu(), torch.rand(n, 6, 1, 64, 64)
    for name in sorted(available()):
        m = load(name, device)
        rows.append((device, name, "rank 6 candidates per keypoint (shipped)",
                     _rate(lambda m=m: m.rank(ref, cand), n, repeat), "keypoints/s"))
        rows.append((device, name, "rank 6 candidates, target side (shipped)",
                     _rate(lambda m=m: m.rank_reverse(ref, cand), n, repeat), "keypoints/s"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, CPU threads {args.threads}, batch {args.batch}")
    print(f"{'device':6s} {'model':14s} {'what':44s} {'rate':>10s}")
    for dev in devices:
        for d, model, what, rate, unit in run(dev, args.batch, args.repeat):
            print(f"{d:6s} {model:14s} {what:44s} {rate:10.0f} {unit}", flush=True)


if __name__ == "__main__":
    main()
