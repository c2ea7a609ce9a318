"""Seconds per training step of KGL-Net on one torch thread and on two, on an idle machine and
beside one busy process (a Python loop): whether a training should be given ``--threads 1`` when
it runs in the background. Each measurement is a fresh process (malloc tuned as georeg's entry
points tune it) that builds the network, takes one step to warm up and times the next ones on
random 64 px patches (forward, a loss over the outputs, backward, Adam), as ``training train``
does on real ones.

    python benchmarks/training_threads.py [--width 0.5] [--batch 128] [--steps 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

STEP = """
import sys, time, torch
from georeg.runtime import tune_malloc
tune_malloc()
from georeg.matchers.kgl import KGLNet
threads, width, batch, steps = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = KGLNet(width=width).train()
opt = torch.optim.Adam(net.parameters(), 1e-3)
a, b = torch.rand(batch, 1, 64, 64), torch.rand(batch, 1, 64, 64)
def step():
    out = net(a, b)
    parts = out.values() if isinstance(out, dict) else (out if isinstance(out, tuple) else (out,))
    loss = sum(v.float().mean() for v in parts if torch.is_tensor(v))
    opt.zero_grad()
    loss.backward()
    opt.step()
step()
t = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - t) / steps)
"""


def seconds_per_step(threads: int, width: float, batch: int, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", STEP, str(threads), str(width), str(batch), str(steps)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the step failed: {out.stderr.strip()[-400:]}")
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    print(f"KGL-Net width {args.width}, batch {args.batch}, {args.steps} timed steps per measurement")
    for load in ("idle", "one busy process beside"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            secs = {t: seconds_per_step(t, args.width, args.batch, args.steps) for t in (1, 2)}
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        print(f"{load:<26} one thread {secs[1]:.2f} s/step, two threads {secs[2]:.2f} s/step "
              f"({secs[2] / secs[1]:.2f}x)")


if __name__ == "__main__":
    main()
