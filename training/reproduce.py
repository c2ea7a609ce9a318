"""Compare weights re-made from a manifest's command with the shipped ones.

The manifest's command is run with ``export --weights-dir DIR`` so that the shipped files stay as
they are; ``python -m training compare NAME --weights-dir DIR`` then reports whether the two files
are bit-identical and how far apart their test FPR95s are, against the sampling noise of an FPR95
measured on the manifest's number of test negatives (two binomial standard errors)."""

from __future__ import annotations

import math
from pathlib import Path

from georeg.matchers.weights import available

FIELDS = ("val_fpr95", "test_fpr95", "test_fpr95_network_only", "test_fpr95_near_negatives",
          "test_fpr95_random_negatives", "baseline_test_fpr95")
# the test negatives each FPR95 field is measured on (the rest: all of them)
NEGATIVES = {"test_fpr95_near_negatives": "near_negatives", "test_fpr95_random_negatives": "random_negatives"}


def noise_pp(fpr95: float, negatives: int) -> float:
    """Two binomial standard errors, in percentage points, of a false-positive rate of ``fpr95`` %
    measured on ``negatives`` negatives."""
    p = min(max(fpr95 / 100.0, 0.0), 1.0)
    return 200.0 * math.sqrt(p * (1.0 - p) / max(negatives, 1))


def manifest(name: str, directory: Path | None = None) -> dict:
    found = available(directory)
    if name not in found:
        where = directory if directory is not None else "georeg/weights"
        raise LookupError(f"expected a manifest {name}.json in {where}; found {', '.join(sorted(found)) or 'none'}")
    return found[name]


def compare(name: str, directory: Path, shipped_dir: Path | None = None) -> dict:
    """The shipped manifest of ``name`` against the one re-made in ``directory``: one row per
    FPR95 field with both values, the difference, the noise bound and whether it is within it."""
    a, b = manifest(name, shipped_dir), manifest(name, directory)
    pairs = a.get("test_pairs") or {}
    negatives = int(pairs.get("negatives", 0))
    rows = {}
    for f in FIELDS:
        if a.get(f) is None or b.get(f) is None:
            continue
        # validation runs on a subsample whose size the manifest does not record: no bound
        n = 0 if f == "val_fpr95" else int(pairs.get(NEGATIVES.get(f, "negatives"), negatives))
        bound = noise_pp(a[f], n) if n else float("nan")
        diff = b[f] - a[f]
        rows[f] = {"shipped": a[f], "remade": b[f], "diff": round(diff, 2), "noise": round(bound, 2),
                   "within_noise": (abs(diff) <= bound) if n else None}
    return {"name": name, "bit_identical": a.get("sha256") == b.get("sha256"),
            "sha256": {"shipped": a.get("sha256"), "remade": b.get("sha256")}, "rows": rows}


def table(res: dict) -> str:
    lines = [f"{res['name']}: weights bit-identical: {'yes' if res['bit_identical'] else 'no'}",
             f"{'field':30s} {'shipped':>8s} {'remade':>8s} {'diff':>7s} {'2 SE':>6s}  within noise"]
    for f, r in res["rows"].items():
        w = "n/a" if r["within_noise"] is None else ("yes" if r["within_noise"] else "NO")
        lines.append(f"{f:30s} {r['shipped']:8.2f} {r['remade']:8.2f} {r['diff']:+7.2f} {r['noise']:6.2f}  {w}")
    return "\n".join(lines)
