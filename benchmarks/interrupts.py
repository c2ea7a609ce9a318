"""Ctrl-C and SIGTERM at random moments of a `georeg register` (or `georeg batch`) run: every run
must end with exit code 130 and the output folder as it was (or with exit code 0 where it was done
first). The pair is the 256 px S1/S2 pair of ``scene_speed.py`` (pair 176, the target's
geotransform off by (13.4, -8.7) px); the registration takes about 2.5 s on 2 cores, so moments
from 0.15 s on fall in the imports, the checks, the matching and the writing.

    python benchmarks/interrupts.py [--runs 40] [--seed 1] [--from 0.15] [--to 2.0] [--signal TERM|INT]
                                    [--batch] [--entry module|script]

Prints each bad run (exit code, files left, the last lines of stderr) and a summary line, and
exits 1 when any run was bad. Run it from the checkout whose code it measures (``python -m`` and
``-c`` put the current folder first on the path). Measured 2026-12-05 (seed 1, 40 runs): the code
before georeg.interrupts (58b8e62) 6 bad, each exit -2 (the process ended by SIGINT after printing
"Interrupted"); an earlier script of the same kind also saw exit -6, exit 1 with "ImportError:
initialization failed", exit 0 with the signal lost, and the output lock or the folder probe left
behind; after: 0 of 40.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scene_speed import build_pair  # noqa: E402

ENTRIES = {"module": [sys.executable, "-m", "georeg.cli"],  # as the QGIS plugin's bridge runs georeg
           "script": [sys.executable, "-c", "from georeg._entry import main; main()"]}  # the console script


def one_run(command: list[str], args: list[str], folder: Path, delay: float, signum: int) -> tuple[int, list[str], str]:
    """Start ``georeg ARGS``, send ``signum`` after ``delay`` s; (exit code, hidden files left in
    ``folder``, stderr)."""
    env = {**os.environ, "GEOREG_SERVER": "off"}
    p = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signum)
    _, err = p.communicate(timeout=300)
    left = sorted(f.name for f in folder.rglob("*")) if folder.exists() else []
    return p.returncode, left, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--from", dest="lo", type=float, default=0.15, help="earliest moment, seconds after the start")
    ap.add_argument("--to", dest="hi", type=float, default=2.0, help="latest moment")
    ap.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    ap.add_argument("--batch", action="store_true", help="interrupt 'georeg batch' of three pairs on 2 workers")
    ap.add_argument("--entry", choices=tuple(ENTRIES), default="module",
                    help="'python -m georeg.cli' (the QGIS bridge's way) or the console script's entry")
    a = ap.parse_args()
    signum = signal.SIGTERM if a.signal == "TERM" else signal.SIGINT
    rng = random.Random(a.seed)
    bad = interrupted = 0
    with tempfile.TemporaryDirectory(prefix="georeg-interrupts-") as tmp:
        work = Path(tmp)
        ref, tgt = build_pair(Path(a.data), work, 256)
        manifest = work / "pairs.csv"
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["reference", "target", "output"])
            w.writerows([ref, tgt, f"p{i}.tif"] for i in range(3))
        for i in range(a.runs):
            folder = work / f"run{i}"
            delay = rng.uniform(a.lo, a.hi)
            if a.batch:
                args = ["batch", str(manifest), "-o", str(folder), "-q", "--workers", "2"]
            else:
                folder.mkdir()
                args = ["register", ref, tgt, "-o", str(folder / "out.tif"), "-q", "--model", "local",
                        "--align-grids", "--cog"]
            code, left, err = one_run(ENTRIES[a.entry], args, folder, delay, signum)
            interrupted += code == 130
            # a batch keeps its finished pairs: only hidden (partial, lock) files count as left over
            leftover = [n for n in left if n.startswith(".")] if a.batch else (left if code == 130 else [])
            if code not in (0, 130) or leftover or (code == 130 and "Interrupted" not in err):
                bad += 1
                print(f"run {i}: SIG{a.signal} after {delay:.2f} s: exit {code}, left {leftover}, "
                      f"stderr: {' | '.join(err.strip().splitlines()[-2:])[:300]}")
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{a.runs} runs, {interrupted} interrupted (exit 130), {a.runs - interrupted - bad} done first, "
          f"{bad} bad")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
