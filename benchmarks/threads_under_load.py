"""One registration's time with one torch thread (georeg's default, ``--threads 1``) and with
torch's default of one thread per core (``--threads 0``), on an idle machine and beside one busy
process, as a user's machine rarely is idle (QGIS drawing, a browser, a second georeg).

Each run is a whole ``georeg register`` process (``GEOREG_SERVER=off``) on the S2 optical / S1 VH
pair of ``scene_speed.py`` (neutral names, the target's geotransform off by (13.4, -8.7) px); the
thread settings alternate within each round so that both see the same machine. The busy process
is a Python loop on one core. Prints, per size and load, the fastest and median wall seconds and
the median CPU seconds of each setting over the rounds, the ratio of their medians, and each
setting's shift (the same result either way).

    python benchmarks/threads_under_load.py [--sizes 256,1024] [--rounds 3] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scene_speed import OWN_PROCESS, build_pair, gnu_time, run_georeg  # noqa: E402

SETTINGS = (("1", "one thread (default)"), ("0", "torch's default"))
LOADS = ("idle", "one busy process beside")


def run_once(ref: str, tgt: str, out: Path, threads: str) -> dict:
    """Wall and CPU seconds of one ``georeg register`` process (``scene_speed.run_georeg``, the
    default matcher), and its shift and threads."""
    if gnu_time() is None:
        raise SystemExit("GNU time is needed for the CPU seconds (Debian: apt-get install time)")
    env = {k: v for k, v in OWN_PROCESS.items() if k not in ("GEOREG_THREADS", "OMP_NUM_THREADS")}
    r = run_georeg(ref, tgt, out.parent, "auto", env, tag=f"_{out.stem}", extra=("--threads", threads))
    if r["rc"] != 0 or "shift_px" not in r:
        raise SystemExit(f"georeg failed: {r['tail'][0][-400:]}")
    return {"wall": r["seconds"], "cpu": r["cpu_s"], "shift": r["shift_px"], "threads": r["cpu_threads"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None, help="folder for the scenes and outputs (default: a temporary one)")
    args = ap.parse_args()
    work_ctx = tempfile.TemporaryDirectory(prefix="georeg-threads-") if args.work is None else None
    work = Path(args.work or work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; {args.rounds} rounds; a whole 'georeg register' process per run")
    print(f"{'size':>6} {'load':<26} {'setting':<22} {'threads':>7} {'fastest s':>9} {'median s':>8} "
          f"{'CPU s':>6} {'shift px':>18}")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        ref, tgt = build_pair(Path(args.data), work, size)
        for load in LOADS:
            busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None)
            try:
                runs: dict[str, list[dict]] = {s: [] for s, _ in SETTINGS}
                for r in range(args.rounds):
                    order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
                    for threads, _ in order:
                        runs[threads].append(run_once(ref, tgt, work / f"out{size}_{threads}.tif", threads))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            med = {}
            for threads, label in SETTINGS:
                rs = runs[threads]
                med[threads] = statistics.median(x["wall"] for x in rs)
                shift = ", ".join(f"{v:+.3f}" for v in rs[-1]["shift"])
                print(f"{size:>6} {load:<26} {label:<22} {rs[-1]['threads']!s:>7} {min(x['wall'] for x in rs):>9.2f} "
                      f"{med[threads]:>8.2f} {statistics.median(x['cpu'] for x in rs):>6.1f} {shift:>18}")
            print(f"{size:>6} {load:<26} torch's default / one thread: {med['0'] / med['1']:.2f}x (median wall)")
    if work_ctx is not None:
        work_ctx.cleanup()


if __name__ == "__main__":
    main()
