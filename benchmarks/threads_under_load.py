"""One registration's time with one torch thread (georeg's default, ``--threads 1``) and with
torch's default of one thread per core (``--threads 0``), on an idle machine and beside one busy
process, as a user's machine rarely is idle (QGIS drawing, a browser, a second georeg). A third
setting runs ``--threads 1`` on one core only (the process's CPU affinity, Linux): a tile's two
matching directions then run one after the other instead of side by side (georeg's default where
a second core is there, :func:`georeg.runtime.directions_side_by_side`).

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

# (label, --threads, the cores the process may use: None for all)
SETTINGS = (("one thread (default)", "1", None), ("torch's default", "0", None),
            ("one thread, one core", "1", {0}))
LOADS = ("idle", "one busy process beside")


def run_once(ref: str, tgt: str, out: Path, threads: str, cores: set[int] | None = None) -> dict:
    """Wall and CPU seconds of one ``georeg register`` process (``scene_speed.run_georeg``, the
    default matcher) on ``cores`` (None: all; the child inherits this process's affinity, which is
    given back after), and its shift and threads."""
    if gnu_time() is None:
        raise SystemExit("GNU time is needed for the CPU seconds (Debian: apt-get install time)")
    env = {k: v for k, v in OWN_PROCESS.items() if k not in ("GEOREG_THREADS", "OMP_NUM_THREADS")}
    before = os.sched_getaffinity(0) if cores is not None else None
    if cores is not None:
        os.sched_setaffinity(0, cores)
    try:
        r = run_georeg(ref, tgt, out.parent, "auto", env, tag=f"_{out.stem}", extra=("--threads", threads))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
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
                runs: dict[str, list[dict]] = {label: [] for label, *_ in SETTINGS}
                for r in range(args.rounds):
                    order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
                    for i, (label, threads, cores) in enumerate(order):
                        runs[label].append(run_once(ref, tgt, work / f"out{size}_{i}.tif", threads, cores))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            med = {}
            for label, *_ in SETTINGS:
                rs = runs[label]
                med[label] = statistics.median(x["wall"] for x in rs)
                shift = ", ".join(f"{v:+.3f}" for v in rs[-1]["shift"])
                print(f"{size:>6} {load:<26} {label:<22} {rs[-1]['threads']!s:>7} {min(x['wall'] for x in rs):>9.2f} "
                      f"{med[label]:>8.2f} {statistics.median(x['cpu'] for x in rs):>6.1f} {shift:>18}")
            one, torch_default, one_core = (med[label] for label, *_ in SETTINGS)
            print(f"{size:>6} {load:<26} torch's default / one thread: {torch_default / one:.2f}x; one core / one "
                  f"thread (the directions one after the other): {one_core / one:.2f}x (median wall)")
    if work_ctx is not None:
        work_ctx.cleanup()


if __name__ == "__main__":
    main()
