"""Many pairs: ``run(manifest, outdir, config)`` registers every row of a manifest as an
independent task, locally in a pool of processes (default) or on a Dask cluster.

- Each pair writes its raster, tie points and report to OUTDIR, all-or-nothing (see
  :func:`georeg.atomic.staged`); a failure is recorded with its message and the others go on.
- ``OUTDIR/summary.csv`` and ``summary.json`` hold one row per pair; they are rewritten as pairs
  finish, so an interrupted run leaves a summary of what finished.
- Resume: a pair whose outputs exist and whose report carries the same task key (inputs, options)
  is skipped.
- Workers use one torch thread each and load each matcher once (a per-process cache).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomic
from .config import RegistrationConfig, parse_shift
from .errors import ConfigError, GeoregError, InputError

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("index", "reference", "target", "output", "status", "error", "quality", "model", "rmse_px",
                  "ce90_px", "inliers", "seconds")

# manifest columns that set registration options per row: column -> (section, field, parser)
ROW_OPTIONS = {
    "model": ("estimation", "model", str),
    "threshold": ("estimation", "threshold_px", float),
    "matcher": ("matching", "matcher", str),
    "max_shift": ("matching", "max_shift", None),
    "modality": ("target", "modality", str),
    "ref_band": ("reference", "band", int),
    "target_band": ("target", "band", int),
    "ref_nodata": ("reference", "nodata", float),
    "target_nodata": ("target", "nodata", float),
    "ref_mask": ("reference", "mask", str),
    "target_mask": ("target", "mask", str),
    "search": ("matching", "search", str),
}


@dataclass(frozen=True)
class PairTask:
    index: int
    reference: str
    target: str
    output: str
    tie_points: str
    report: str
    config: RegistrationConfig
    key: str


def _task_key(reference: str, target: str, cfg: RegistrationConfig) -> str:
    d = cfg.to_dict()
    d["output"] = {k: v for k, v in d["output"].items() if k not in ("tie_points", "report", "quicklook",
                                                                      "overwrite")}
    stat = []
    for p in (reference, target):
        try:
            st = os.stat(p)
            stat.append([st.st_size, int(st.st_mtime)])
        except OSError:
            stat.append(None)
    blob = json.dumps({"reference": reference, "target": target, "files": stat, "config": d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _row_config(base: RegistrationConfig, row: dict, where: str) -> RegistrationConfig:
    changes: dict[str, dict] = {}
    for col, value in row.items():
        if col in ("reference", "target", "output") or value in (None, ""):
            continue
        if col not in ROW_OPTIONS:
            raise ConfigError(f"{where}: unknown manifest column {col!r}; known: reference, target, output, "
                              f"{', '.join(ROW_OPTIONS)}")
        section, field, parse = ROW_OPTIONS[col]
        if col == "max_shift":
            v, unit = parse_shift(value)
            changes.setdefault(section, {}).update(max_shift=v, max_shift_unit=unit)
            continue
        try:
            changes.setdefault(section, {})[field] = parse(value)
        except ValueError:
            raise ConfigError(f"{where}: column {col!r} has the bad value {value!r}") from None
    try:
        return base.with_options(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def tasks_from_rows(rows: Iterable[dict], outdir: str | os.PathLike, config: RegistrationConfig,
                    base_dir: str | os.PathLike = ".", where: str = "manifest") -> list[PairTask]:
    out_dir = Path(outdir)
    tasks, seen = [], set()
    for i, row in enumerate(rows):
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
        line = f"{where} row {i + 1}"
        if not row.get("reference") or not row.get("target"):
            raise InputError(f"{line}: 'reference' and 'target' are required")
        ref = str((Path(base_dir) / row["reference"]).resolve())
        tgt = str((Path(base_dir) / row["target"]).resolve())
        name = row.get("output") or f"{Path(tgt).stem}_registered.tif"
        output = out_dir / name
        if output.resolve() in seen:
            raise InputError(f"{line}: output {output.name} is used twice; give the rows distinct 'output' names")
        seen.add(output.resolve())
        stem = output.with_suffix("")
        cfg = _row_config(config, row, line)
        cfg = cfg.with_options(output={"tie_points": f"{stem}_tiepoints.gpkg", "report": f"{stem}_report.json",
                                       "quicklook": None, "overwrite": True})
        tasks.append(PairTask(i, ref, tgt, str(output), cfg.output.tie_points, cfg.output.report, cfg,
                              _task_key(ref, tgt, cfg)))
    return tasks


def read_manifest(path: str | os.PathLike, outdir, config: RegistrationConfig) -> list[PairTask]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"manifest not found: {path}")
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"reference", "target"} <= {c.strip() for c in reader.fieldnames}:
            raise InputError(f"manifest {path} must be a CSV with the columns 'reference,target' "
                             f"(found {reader.fieldnames})")
        rows = list(reader)
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    return tasks_from_rows(rows, outdir, config, p.parent, str(p.name))


def rows_from_globs(ref_glob: str, target_glob: str) -> list[dict]:
    """Pair the files of two globs in sorted order."""
    refs, tgts = sorted(glob.glob(ref_glob)), sorted(glob.glob(target_glob))
    if not refs or not tgts:
        raise InputError(f"--pairs matched {len(refs)} reference and {len(tgts)} target files; check the globs")
    if len(refs) != len(tgts):
        raise InputError(f"--pairs matched {len(refs)} reference but {len(tgts)} target files; "
                         "they are paired in sorted order, so the counts must agree")
    return [{"reference": r, "target": t} for r, t in zip(refs, tgts, strict=True)]


def is_complete(task: PairTask) -> bool:
    """Outputs present and the report made by the same task (same inputs and options)."""
    if not all(Path(p).exists() for p in (task.output, task.tie_points, task.report)):
        return False
    try:
        rep = json.loads(Path(task.report).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return rep.get("batch", {}).get("key") == task.key


# ---------------------------------------------------------------- worker side
_MATCHERS: dict = {}


def _matcher_for(task: PairTask):
    from .matchers import load, resolve_name
    from .raster import RasterSource

    with RasterSource(task.target, task.config.target, "target") as t:
        name = resolve_name(task.config.matching.matcher, t.modality)
    key = (name, task.config.matching.device)
    if key not in _MATCHERS:
        _MATCHERS[key] = load(name, task.config.matching.device)
    return _MATCHERS[key]


def run_task(task: PairTask) -> dict:
    """Register one pair; never raises for a pair's own failure (the row records it)."""
    from .pipeline import register

    t = time.perf_counter()
    row = {"index": task.index, "reference": task.reference, "target": task.target, "output": task.output,
           "status": "ok", "error": "", "quality": "", "model": "", "rmse_px": "", "ce90_px": "", "inliers": "",
           "seconds": ""}
    try:
        res = register(task.reference, task.target, task.output, task.config, matcher=_matcher_for(task),
                       report_extra={"batch": {"key": task.key, "index": task.index}})
        rep = res.report
        row.update(model=rep["model"]["type"], rmse_px=round(rep["accuracy"]["rmse_px"], 3),
                   ce90_px=round(rep["accuracy"]["ce90_px"], 3), inliers=rep["counts"]["inliers"],
                   quality=rep.get("quality", ""))
        if rep.get("quality") == "uncertain" and not task.config.output.accept_uncertain:
            row.update(status="uncertain", error=rep["verdict"]["reason"])
    except GeoregError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or an unreadable file must not stop the batch
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - t, 2)
    return row


def _worker_init() -> None:
    from .runtime import configure_worker

    configure_worker(1)


# ---------------------------------------------------------------- driver side
def write_summary(outdir: str | os.PathLike, rows: list[dict]) -> None:
    out = Path(outdir)
    rows = sorted(rows, key=lambda r: r["index"])
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out / "summary.csv", buf.getvalue())
    write_text_atomic(out / "summary.json", json.dumps(rows, indent=2) + "\n")


def run(manifest, outdir: str | os.PathLike, config: RegistrationConfig | None = None, *,
        executor: str = "local", workers: int | None = None, scheduler: str | None = None, resume: bool = True,
        progress: Callable[[dict, int, int], None] | None = None) -> list[dict]:
    """Register every pair of ``manifest`` (a CSV path, or a list of PairTask or row dicts).

    executor: 'local' (process pool of ``workers``, default all cores) or 'dask' (``scheduler`` is a
    'tcp://host:port' address or 'local' for a LocalCluster). Returns the summary rows."""
    cfg = config or RegistrationConfig()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(manifest, (str, os.PathLike)):
        tasks = read_manifest(manifest, out, cfg)
    elif manifest and isinstance(manifest[0], PairTask):
        tasks = list(manifest)
    else:
        tasks = tasks_from_rows(manifest, out, cfg)
    rows: dict[int, dict] = {}
    todo = []
    for t in tasks:
        if resume and is_complete(t):
            rep = json.loads(Path(t.report).read_text())
            rows[t.index] = {"index": t.index, "reference": t.reference, "target": t.target, "output": t.output,
                             "status": "skipped (complete)", "error": "", "quality": rep.get("quality", ""),
                             "model": rep["model"]["type"],
                             "rmse_px": round(rep["accuracy"]["rmse_px"], 3),
                             "ce90_px": round(rep["accuracy"]["ce90_px"], 3),
                             "inliers": rep["counts"]["inliers"], "seconds": 0.0}
        else:
            todo.append(t)
    done = len(rows)

    def finished(row: dict) -> None:
        nonlocal done
        rows[row["index"]] = row
        done += 1
        write_summary(out, list(rows.values()))
        if progress:
            progress(row, done, len(tasks))

    try:
        if executor == "dask":
            from .batch_dask import run_dask

            run_dask(todo, scheduler or "local", workers, finished)
        elif executor == "local":
            _run_local(todo, workers or os.cpu_count() or 1, finished)
        else:
            raise ConfigError(f"executor must be 'local' or 'dask'; got {executor!r}")
    finally:
        write_summary(out, list(rows.values()))
    return sorted(rows.values(), key=lambda r: r["index"])


def _failed_row(task: PairTask, error: str) -> dict:
    return {"index": task.index, "reference": task.reference, "target": task.target, "output": task.output,
            "status": "failed", "error": error, "quality": "", "model": "", "rmse_px": "", "ce90_px": "", "inliers": "",
            "seconds": ""}


def _run_local(tasks: list[PairTask], workers: int, finished: Callable[[dict], None], max_crashes: int = 2) -> None:
    """Process pool; when a worker dies, the unfinished pairs go to a fresh pool, and a pair that
    was in flight during ``max_crashes`` deaths is recorded as failed."""
    if workers <= 1:
        _worker_init()
        for t in tasks:
            finished(run_task(t))
        return
    crashes: dict[int, int] = {}
    pending = list(tasks)
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), initializer=_worker_init)
        futures = {pool.submit(run_task, t): t for t in pending}
        pending = []
        broken = False
        try:
            while futures and not broken:
                ready, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in ready:
                    task = futures.pop(f)
                    try:
                        finished(f.result())
                    except BrokenProcessPool:
                        broken = True
                        futures[f] = task
                        break
            if broken:
                for task in futures.values():
                    crashes[task.index] = crashes.get(task.index, 0) + 1
                    if crashes[task.index] >= max_crashes:
                        finished(_failed_row(task, "a worker process died while registering this pair "
                                                   f"({crashes[task.index]} times)"))
                    else:
                        pending.append(task)
                log.warning("a worker process died; %d pair(s) go to a fresh pool", len(pending))
        except KeyboardInterrupt:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
