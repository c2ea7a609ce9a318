"""georeg benchmark: accuracy and speed on the real sets against a phase-correlation baseline,
then time and peak memory on synthetic scenes of growing size. Everything in one run, so the
ratios compare like with like on a shared, noisy machine.

    python benchmarks/run.py                      # everything (about 10 minutes on 2 cores)
    python benchmarks/run.py --sets s1s2,landsat --sizes 2000
    python benchmarks/run.py --quick              # fewer pairs and sizes, for a smoke run

Error of a result = largest distance, over a 9x9 lattice of the target's interior, between where
the result puts a target pixel and where it belongs (see benchmarks/cases.py for the truth used
by each set), in reference pixels. A pair succeeds when that error is below 1 px. Where a
dataset's own truth is measurably off (NIR-VIS-RS, see cases._gt_correction), the truth is
corrected by that measurement and the success against the truth as given is printed beside it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import BUILDERS, Case  # noqa: E402

import georeg  # noqa: E402
from georeg.config import InputConfig, RegistrationConfig  # noqa: E402
from georeg.errors import GeoregError  # noqa: E402
from georeg.estimation import FittedModel, apply_h  # noqa: E402
from georeg.grid import Grid  # noqa: E402
from georeg.raster import RasterSource  # noqa: E402
from georeg.runtime import tune_malloc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data helpers live with the tests
from synthetic import lattice  # noqa: E402

from georeg.warp import target_to_true_map  # noqa: E402


def grid_of(path) -> Grid:
    """A raster's grid as georeg places it (a picture without georeferencing: on the pixel frame)."""
    with RasterSource(path, InputConfig(modality="optical"), "raster", pixel_frame_ok=True) as d:
        return d.grid


DUMP: dict = {}  # --dump: folder, and the case and method being run
OVERRIDES: dict = {}  # --set section.field=value, applied to every georeg run


def run_georeg(case: Case, target: str, out: Path, matcher: str = "auto", model: str | None = None):
    opts = {k: dict(v) for k, v in case.options.items()}
    opts.setdefault("matching", {})["matcher"] = matcher
    if model:
        opts.setdefault("estimation", {})["model"] = model
    for section, fields in OVERRIDES.items():
        opts.setdefault(section, {}).update(fields)
    cfg = RegistrationConfig().with_options(output={"overwrite": True}, **opts)
    t = time.perf_counter()
    try:
        res = georeg.register(case.reference, target, out, cfg)
    except GeoregError as exc:
        return None, time.perf_counter() - t, str(exc)
    res.model.params["quality"] = getattr(res, "quality", "")  # georeg before the verdict had none
    if DUMP.get("dir") and target == case.target:
        _dump(res, case, matcher)
    return res.model, time.perf_counter() - t, None


def _dump(res, case: Case, matcher: str) -> None:
    """Keep the report and tie points of a case (``--dump``), to study the verdict offline."""
    d = Path(DUMP["dir"]) / f"{DUMP['n']:03d}_{matcher}"
    d.mkdir(parents=True, exist_ok=True)
    DUMP["last"] = d  # evaluate() adds the error once it is known
    (d / "report.json").write_text(json.dumps(res.report, indent=1, default=str))
    res.tie_points.drop(columns="geometry").to_csv(d / "tiepoints.csv", index=False)
    (d / "case.json").write_text(json.dumps({"set": case.set, "name": case.name, "matcher": matcher}))


def run_phasecorr(case: Case, target: str, out: Path):
    """Baseline: skimage phase correlation of the whole overlap on the reference grid (translation)."""
    from skimage.registration import phase_cross_correlation

    from georeg.preprocess import preprocess
    from georeg.raster import overlap_window

    t = time.perf_counter()
    with RasterSource(case.reference, InputConfig(**case.options.get("reference", {})), "reference",
                      pixel_frame_ok=True) as r, \
            RasterSource(target, InputConfig(**case.options.get("target", {})), "target", pixel_frame_ok=True) as s:
        win, _ = overlap_window(r, s)
        a, av = r.read_on_grid(r.grid, win)
        b, bv = s.read_on_grid(r.grid, win)
        a = preprocess(a, av, "optical", False)
        b = preprocess(b, bv, s.modality, s.float_values)
        # masked pixels carry no signal: put them at each image's mean so they do not correlate
        a = np.where(av, a - a[av].mean(), 0.0)
        b = np.where(bv, b - b[bv].mean(), 0.0)
        shift, _, _ = phase_cross_correlation(a, b, upsample_factor=10, normalization="phase")
    dy, dx = shift  # b shifted by 'shift' registers with a: content of b at p sits at p + shift in a
    m = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
    model = FittedModel("translation", m, np.ones(0, bool), np.zeros(0))
    return model, time.perf_counter() - t, None


METHODS = {"georeg": run_georeg, "phasecorr": run_phasecorr}


def positions(model, case: Case, target: str, pts: np.ndarray) -> np.ndarray:
    return target_to_true_map(model, grid_of(case.reference), grid_of(target))(pts)


def truth_positions(case: Case, pts: np.ndarray) -> np.ndarray:
    """Map positions where target pixels ``pts`` truly belong, from a pixel-frame truth matrix."""
    rg, tg = grid_of(case.reference), grid_of(case.target)
    on_ref = np.c_[[(~rg.transform) @ (tg.transform @ tuple(p)) for p in pts]]
    return np.c_[[rg.transform @ tuple(p) for p in apply_h(case.truth_px, on_ref)]]


def corrected_truth(case: Case, truth: np.ndarray) -> np.ndarray:
    """Truth map positions moved by the dataset truth's own measured error (``case.truth_correction``)."""
    t = grid_of(case.reference).transform
    on_ref = np.c_[[(~t) @ tuple(p) for p in truth]]
    on_ref = on_ref + np.c_[on_ref, np.ones(len(on_ref))] @ case.truth_correction.T
    return np.c_[[t @ tuple(p) for p in on_ref]]


def _consistency_truth(fn, name: str, case: Case, model, pts, work: Path, own_base: dict):
    """Where the turned target's lattice points ``pts`` truly belong, by georeg's result on the
    unturned pair (cached in ``own_base``): (by the same model as ``model``, by the unturned pair's
    own auto result, that result's model kind, the verdict on the unturned result used as the
    truth), or None when georeg failed on the unturned pair.

    The judge is the unturned pair registered with the model this run chose: the turn and scale
    are what is tested, not which model auto prefers on each. (On the S1/S2 PNG pairs, whose
    content differs by up to 1% of scale and half a degree, auto took a translation on the
    unturned pair and a similarity on the turned one, 1.3-4 px apart at the corners.) The error
    against the unturned pair's own auto result is kept beside it."""
    key = (name, case.reference, case.base_target)
    m0 = _own_base(fn, name, case, work, own_base)
    if m0 is None:
        return None
    base_pts = pts if case.applied is None else apply_h(case.applied, pts)
    truth_auto = positions(m0, case, case.base_target, base_pts)
    truth, judge = truth_auto, m0
    if getattr(fn, "func", None) is run_georeg and model.kind != m0.kind:
        key_same = key + (model.kind,)
        if key_same not in own_base:
            own_base[key_same] = fn(case, case.base_target, work / "out.tif", model=model.kind)[0]
        if own_base[key_same] is not None:
            truth, judge = positions(own_base[key_same], case, case.base_target, base_pts), own_base[key_same]
    return truth, truth_auto, m0.kind, judge.params.get("quality")


@functools.cache
def _pixel_size(path: str) -> float:
    """The raster's pixel size, opened once per run (every method's result is judged with it)."""
    return grid_of(path).pixel_size


def _own_base(fn, name: str, case: Case, work: Path, own_base: dict):
    """The method's own result on the unturned pair (None when it failed), run once per pair."""
    key = (name, case.reference, case.base_target)
    if key not in own_base:
        own_base[key] = fn(case, case.base_target, work / "out.tif")[0]
    return own_base[key]


def _base_reliable(fn, name: str, case: Case, work: Path, own_base: dict) -> bool:
    """Whether georeg's own result on the unturned pair (the consistency truth) is reliable."""
    m0 = _own_base(fn, name, case, work, own_base)
    return m0 is not None and m0.params.get("quality") == "reliable"


def _judge(fn, name: str, case: Case, model, pts: np.ndarray, work: Path, own_base: dict, row: dict):
    """(where ``model`` puts ``pts``, where they truly belong, a note for the log), recording in
    ``row`` whether the case can be judged and the side errors; None when the consistency truth is
    missing (georeg failed on the unturned pair), recorded as an error."""
    px = _pixel_size(case.reference)
    got = positions(model, case, case.target, pts)
    note = ""
    if case.judge == "exact":
        row["judgeable"].append(True)
        if case.truth_px is not None:
            truth = truth_positions(case, pts)
        else:
            tt = grid_of(case.truth_target)
            truth = np.c_[[tt.transform @ tuple(p) for p in pts]]
    else:
        judged = _consistency_truth(fn, name, case, model, pts, work, own_base)
        if judged is None:
            row["errors"].append(float("inf"))
            row["judgeable"].append(False)
            row["errors_vs_own_auto"].append(float("inf"))
            return None
        truth, truth_auto, base_kind, base_quality = judged
        # the truth allows a judgement where the unturned pair's own result is reliable: an
        # uncertain one (a pair with two motions, a mostly featureless scene) is no yardstick
        row["judgeable"].append(base_quality == "reliable")
        e_auto = float(np.linalg.norm(got - truth_auto, axis=1).max() / px)
        row["errors_vs_own_auto"].append(e_auto)
        if truth is not truth_auto:
            note = f" ({e_auto:.2f} px from the unturned pair's {base_kind})"
    if case.truth_correction is not None:  # judge with the dataset truth's own error taken out
        e_given = float(np.linalg.norm(got - truth, axis=1).max() / px)
        row.setdefault("errors_vs_given_truth", []).append(e_given)
        truth = corrected_truth(case, truth)
        note = f" ({e_given:.2f} px from the dataset's truth as given)"
    return got, truth, note


def evaluate(cases: list[Case], work: Path, verbose: bool) -> dict:
    results: dict = {}
    own_base: dict = {}
    for n, case in enumerate(cases):
        DUMP["n"] = n
        tg = grid_of(case.target)
        pts = lattice(tg.width * 0.1, tg.height * 0.1, tg.width * 0.9, tg.height * 0.9)
        px = _pixel_size(case.reference)
        for name, fn in METHODS.items():
            DUMP.pop("last", None)  # a dump belongs to this method's run only
            model, secs, err = fn(case, case.target, work / "out.tif")
            row = results.setdefault(case.set, {}).setdefault(name, {"errors": [], "seconds": [], "failures": 0,
                                                                     "uncertain": 0, "confident_wrong": 0,
                                                                     "errors_vs_own_auto": [],
                                                                     "judgeable": []})
            row["seconds"].append(secs)
            if model is None:
                row["failures"] += 1
                row["errors"].append(float("inf"))
                row["judgeable"].append(case.judge == "exact" or _base_reliable(fn, name, case, work, own_base))
                if verbose:
                    print(f"  {case.set} {case.name} {name}: failed ({err})", flush=True)
                continue
            judged = _judge(fn, name, case, model, pts, work, own_base, row)
            if judged is None:  # georeg failed on the unturned pair: nothing to judge with
                continue
            got, truth, note = judged
            e = float(np.linalg.norm(got - truth, axis=1).max() / px)
            row["errors"].append(e)
            quality = model.params.get("quality", "")
            row["uncertain"] += quality == "uncertain"
            row["confident_wrong"] += quality == "reliable" and e >= 1.0
            if DUMP.get("last"):
                (DUMP.pop("last") / "error.json").write_text(json.dumps({"error_px": e, "quality": quality}))
            if verbose:
                print(f"  {case.set} {case.name} {name}: error {e:.2f} px{note}, {secs:.2f} s {quality}", flush=True)
    return results


def summarise(results: dict) -> list[dict]:
    rows = []
    for set_name, methods in results.items():
        for name, r in methods.items():
            e = np.array(r["errors"])
            judged = np.array(r["judgeable"], bool)  # one entry per case, as errors
            ea = np.array(r.get("errors_vs_own_auto", []))
            eg = np.array(r.get("errors_vs_given_truth", []))
            rows.append({"set": set_name, "method": name, "pairs": len(e),
                         "success_rate": float((e < 1.0).mean()), "median_error_px": float(np.median(e)),
                         "seconds_per_pair": float(np.mean(r["seconds"])), "failures": r["failures"],
                         "uncertain": r["uncertain"], "confident_wrong": r["confident_wrong"],
                         "judgeable": int(judged.sum()),
                         "success_judgeable": float((e[judged] < 1.0).mean()) if judged.any() else None,
                         "success_vs_own_auto": float((ea < 1.0).mean()) if len(ea) else None,
                         "success_vs_given_truth": float((eg < 1.0).mean()) if len(eg) else None})
    return rows


def scale_run(size: int, work: Path) -> dict:
    """Register a synthetic size x size scene pair in a fresh process that does nothing else;
    its wall time and its own peak RSS (the scene is made beforehand, in another process)."""
    make = f"import sys; sys.path.insert(0, {str(HERE)!r}); from scaling import make_scene; " \
           f"make_scene({str(work)!r}, {size})"
    subprocess.run([sys.executable, "-c", make], check=True)
    code = f"""
import sys, time, resource, json
sys.path.insert(0, {str(HERE)!r})
from scaling import make_scene
from georeg.runtime import tune_malloc
tune_malloc()
ref, tgt = make_scene({str(work)!r}, {size})
import georeg
from georeg.config import RegistrationConfig
t = time.perf_counter()
r = georeg.register(ref, tgt, {str(work / f"scale_{size}_out.tif")!r},
                    RegistrationConfig().with_options(output={{"overwrite": True}}))
secs = time.perf_counter() - t
print(json.dumps({{"seconds": secs, "shift_px": r.report["shift"]["mean_px"], "tiles": r.report["counts"]["tiles"],
                  "inliers": r.report["counts"]["inliers"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"size": size, "error": out.stderr[-2000:]}
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["size"] = size
    return info


# the sets in the order they are built: the random picks of each depend on the sets built before
# it, so a run gives the same picks whatever order --sets lists them in
SET_ORDER = ("s1s2", "s1s2png", "landsat", "landsat_nomask", "3mos", "srif_ir", "nir_vis", "srif_rot", "s1s2_rot",
             "s1s2png_rot", "3mos_rot", "rot90", "nir_vis_h", "srif_files", "s1s2_rot_offset", "s1s2_scale",
             "srif_night", "srif_depth", "s1s2gray_rot")
# sets that run only when named, each drawing its pairs from a generator of its own (so their picks
# do not depend on which other sets are built), none part of the default run whose table the
# README keeps: the close-range photographs (SRIF Nighttime: a street at night, visible against
# thermal; Optical-Depth: rooms against a depth camera), outside georeg's scope and with parallax
# between near and far objects that a single model cannot follow, to see how georeg generalises;
# and the 40 grey S1/S2 PNG pairs turned, more held-out pairs for the rotated S1/S2 PNG set
OPT_IN = {"srif_night": 2027, "srif_depth": 2028, "s1s2gray_rot": 2029}
DEFAULT_SETS = tuple(key for key in SET_ORDER if key not in OPT_IN)


def ordered_sets(names: list[str]) -> list[str]:
    """The sets ``names`` (blanks and repeats dropped) in SET_ORDER."""
    return [key for key in SET_ORDER if key in names]


def _check_sets(ap: argparse.ArgumentParser, sets: str, evaluate: str | None) -> None:
    """Exit with the parser's error when --sets names an unknown set or --evaluate one not built."""
    unknown = set(sets.split(",")) - set(SET_ORDER) - {""}
    if unknown:
        ap.error(f"--sets names sets that do not exist: {', '.join(sorted(unknown))}; "
                 f"the sets are {', '.join(SET_ORDER)}")
    outside = set((evaluate or "").split(",")) - set(sets.split(",")) - {""}
    if outside:
        ap.error(f"--evaluate names sets that --sets does not build: {', '.join(sorted(outside))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = HERE.parent.parent / "shared" / "data"
    ap.add_argument("--data", default=os.environ.get("GEOREG_SHARED_DATA", str(default_data)))
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS),
                    help="comma-separated sets, built in this order whatever the order given (the random "
                         "picks of a set depend on the sets built before it); "
                         f"{', '.join(OPT_IN)} only when named")
    ap.add_argument("--sizes", default="2000,5000,10000")
    ap.add_argument("--quick", action="store_true", help="a few pairs per set and sizes 1024 and 2000 only")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--matchers", default="auto",
                    help="comma-separated georeg matchers to compare (e.g. baseline,kgl); each is a method")
    ap.add_argument("--held-out", action="store_true",
                    help="only pairs outside the learned matchers' training split (validation and test images; "
                         "Landsat, the only thermal scene, stays in and is trained on)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many cases per set")
    ap.add_argument("--evaluate", default=None, metavar="SETS",
                    help="build every set of --sets (so that the random picks are those of a run of all of "
                         "them) but evaluate only these: one run split over processes")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--dump", help="keep each georeg case's report, tie points and error in this folder")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a config field in every georeg run, e.g. matching.keypoints_per_tile=768")
    args = ap.parse_args()
    _check_sets(ap, args.sets, args.evaluate)
    DUMP["dir"] = args.dump
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            OVERRIDES.setdefault(section, {})[name] = json.loads(value)  # numbers, true/false, lists
        except json.JSONDecodeError:
            OVERRIDES.setdefault(section, {})[name] = value  # words such as translation
    tune_malloc()
    data = Path(args.data)
    if not (data / "s1s2_volkov").is_dir():
        sys.exit(f"real data not found at {data}; pass --data")

    METHODS.clear()
    for name in [m for m in args.matchers.split(",") if m]:
        METHODS["georeg" if name == "auto" else f"georeg[{name}]"] = functools.partial(run_georeg, matcher=name)
    METHODS["phasecorr"] = run_phasecorr
    rng = np.random.default_rng(2026)
    summary: dict = {"sets": [], "scaling": []}
    with tempfile.TemporaryDirectory(prefix="georeg-bench-") as td:
        work = Path(td)
        cases: list[Case] = []
        for key in ordered_sets(args.sets.split(",")):
            # the opt-in sets draw from their own generators: run alone, they draw what they draw in
            # a run of every set
            own = np.random.default_rng(OPT_IN[key]) if key in OPT_IN else rng
            built = BUILDERS[key](data, work, own, held_out=args.held_out)
            if args.evaluate is None or key in args.evaluate.split(","):
                cases += built[: (4 if args.quick else args.limit)]
        print(f"{len(cases)} cases; georeg {georeg.__version__}", flush=True)
        results = evaluate(cases, work, args.verbose)
        summary["sets"] = summarise(results)
        print(f"\n{'set':36s} {'method':18s} {'pairs':>5s} {'success':>8s} {'median err px':>14s} {'s/pair':>7s} "
              f"{'uncertain':>9s} {'reliable but wrong':>18s} {'vs own auto':>11s} {'vs truth as given':>17s} "
              f"{'judgeable: success (n)':>22s}")
        for r in summary["sets"]:
            own = "-" if r["success_vs_own_auto"] is None else f"{r['success_vs_own_auto']:.0%}"
            given = "-" if r["success_vs_given_truth"] is None else f"{r['success_vs_given_truth']:.0%}"
            judgeable = ("-" if r["success_judgeable"] is None
                         else f"{r['success_judgeable']:.0%} ({r['judgeable']})")
            print(f"{r['set']:36s} {r['method']:18s} {r['pairs']:5d} {r['success_rate']:8.0%} "
                  f"{r['median_error_px']:14.2f} {r['seconds_per_pair']:7.2f} {r['uncertain']:9d} "
                  f"{r['confident_wrong']:18d} {own:>11s} {given:>17s} {judgeable:>22s}")
        sizes = [1024, 2000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
        print(f"\n{'scene px':>9s} {'seconds':>8s} {'peak RSS MB':>12s} {'tiles':>6s} {'inliers':>8s}")
        for size in sizes:
            info = scale_run(size, work)
            summary["scaling"].append(info)
            if "error" in info:
                print(f"{size:9d} failed: {info['error']}")
                continue
            print(f"{size:9d} {info['seconds']:8.1f} {info['peak_rss_mb']:12.0f} {info['tiles']:6d} "
                  f"{info['inliers']:8d}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
