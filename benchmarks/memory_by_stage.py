"""Where a registration's peak memory comes from: a thread samples the process's resident memory
every 10 ms together with the georeg functions on the main thread's stack, and each rise of the
high-water mark is charged to the innermost georeg frames running at that moment.

    python benchmarks/memory_by_stage.py REFERENCE TARGET [--matcher auto] [--batch-size 32]

The largest charges are printed, then the peak. Memory that is freed stays in the heap (georeg's
malloc settings), so a later stage only raises the peak by what it needs beyond the free heap.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("target")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="keypoints per search batch (default: georeg's)")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("needs Linux (/proc/self/status)")

    from georeg.runtime import limit_gdal_cache, tune_malloc

    tune_malloc()
    limit_gdal_cache()
    main_id = threading.main_thread().ident
    series: list[tuple[int, str]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            frame, names = sys._current_frames().get(main_id), []
            while frame is not None:
                if "georeg" in frame.f_code.co_filename:
                    names.append(frame.f_code.co_name)
                frame = frame.f_back
            series.append((rss_mb(), "/".join(reversed(names[:4])) or "(imports)"))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    import georeg
    from georeg.config import RegistrationConfig

    matching = {"matcher": args.matcher}
    if args.batch_size:
        matching["batch_size"] = args.batch_size
    cfg = RegistrationConfig().with_options(matching=matching, output={"overwrite": True, "accept_uncertain": True})
    with tempfile.TemporaryDirectory() as td:
        georeg.register(args.reference, args.target, Path(td) / "out.tif", cfg)
    done.set()
    high, charged = 0, collections.Counter()
    for mb, where in series:
        if mb > high:
            charged[where] += mb - high
            high = mb
    for where, mb in charged.most_common(args.top):
        print(f"{mb:6d} MB  {where}")
    print(f"peak {high} MB (resident, sampled every 10 ms)")


if __name__ == "__main__":
    main()
