"""Many pairs: ``run(manifest, outdir, config)`` registers every row of a manifest as an
independent task, locally in a pool of processes (default) or on a Dask cluster. The rows become
tasks in :mod:`georeg.manifest`.

- Each pair writes its raster, tie points and report to OUTDIR, all-or-nothing (see
  :func:`georeg.atomic.staged`); a failure is recorded with its message and the others go on.
- ``OUTDIR/summary.csv`` and ``summary.json`` hold one row per pair; they are rewritten as pairs
  finish, so an interrupted run leaves a summary of what finished.
- Outputs stay inside OUTDIR, never replace an input of the manifest and are never shared by two
  rows; a row that breaks this, or has a bad option value, is recorded as failed and the others run.
- Resume: a pair whose report carries the same task key (inputs, options) and whose outputs
  match the sizes and SHA-256 sums recorded in that report is skipped; anything else is redone.
- Workers use one torch thread each and load each matcher once (a per-process cache).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .atomic import write_text_atomic
from .config import RegistrationConfig
from .errors import ConfigError, FallbackWarning, GeoregError, warn
from .interrupts import later
from .manifest import PairTask, read_manifest, tasks_from_rows

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("index", "reference", "target", "output", "status", "error", "quality", "model", "shift_x_px",
                  "shift_y_px", "shift_x_map", "shift_y_map", "map_unit", "shift_x_m", "shift_y_m", "rmse_px",
                  "ce90_px", "corner_movement_px", "inliers",
                  "seconds", "target_modality", "modality_by", "matcher")

def finished_report(task: PairTask) -> dict | None:
    """The report of a finished run of this very task whose outputs verify, else None.

    Trusted only when the report parses as a georeg report made with the same task key (inputs
    and options), and the raster and tie points it lists have the recorded size and SHA-256 (a
    truncated or replaced output is recomputed). A damaged report is never an error: the pair
    is simply registered again."""
    try:
        rep = json.loads(Path(task.report).read_text(encoding="utf-8"))
        if not isinstance(rep, dict) or rep.get("batch", {}).get("key") != task.key:
            return None
        files = rep["files"]
        _ = (rep["model"]["type"], rep["residuals"]["rmse_px"], rep["residuals"]["ce90_px"], rep["counts"]["inliers"])
        from .outputs import file_sha256

        for key, path in (("raster", task.output), ("tie_points", task.tie_points)):
            want = files[key]
            if Path(path).stat().st_size != want["bytes"] or file_sha256(path) != want["sha256"]:
                log.info("row %d: %s does not match its report; registering again", task.index + 1, path)
                return None
        return rep
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def is_complete(task: PairTask) -> bool:
    """Outputs present, verified, and made by the same task (see :func:`finished_report`)."""
    return finished_report(task) is not None


# ---------------------------------------------------------------- worker side
def _matcher_for(task: PairTask):
    from .matchers import resolve_name
    from .raster import RasterSource

    with RasterSource(task.target, task.config.target, "target", pixel_frame_ok=True) as t:  # pictures too
        name = resolve_name(task.config.matching.matcher, t.modality)
    return _loaded_matcher(name, task.config.matching.device)


@functools.lru_cache(maxsize=4)
def _loaded_matcher(name: str, device: str):
    """A worker loads each matcher once and reuses it for its later pairs (weights load in about 1 s)."""
    from .matchers import load

    return load(name, device)


def run_task(task: PairTask) -> dict:
    """Register one pair; never raises for a pair's own failure (the row records it)."""
    from .pipeline import register

    t = time.perf_counter()
    row = failed_row(task, "")
    global _IN_TASK
    try:
        _IN_TASK = True
        res = register(task.reference, task.target, task.output, task.config, matcher=_matcher_for(task),
                       report_extra={"batch": {"key": task.key, "index": task.index}})
        uncertain = res.report.get("quality") == "uncertain" and not task.config.output.accept_uncertain
        row = report_row(task, res.report, "uncertain" if uncertain else "ok")
    except GeoregError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or an unreadable file must not stop the batch
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        if not _IN_POOL_WORKER:
            raise
        os._exit(130)  # the staged outputs were removed on the way here; no traceback from the pool
    finally:
        _IN_TASK = False
    row["seconds"] = round(time.perf_counter() - t, 2)
    return row


def _worker_init(driver_pid: int | None = None) -> None:
    """A pool worker's set-up (``driver_pid``: the driver's), or the driver's own when it registers
    the pairs itself, one after the other (its registrations may then use a second core)."""
    from .runtime import configure_worker

    if driver_pid is not None:
        _own_by_parent(driver_pid)  # first: the driver may die while torch is still importing
    configure_worker(1, pairs_side_by_side=driver_pid is not None)


_IN_POOL_WORKER = False
_IN_TASK = False


def _stop_on_signal(signum, frame):
    """In a pool worker: interrupt the pair in hand (its staged outputs are removed on the way
    out, then the process ends quietly), or end at once when idle. Inside an import or while
    a file is made or removed, a moment later (:func:`georeg.interrupts.later`)."""
    if _IN_TASK:
        if later(signum, frame):
            return
        raise KeyboardInterrupt
    os._exit(130)


def _own_by_parent(driver_pid: int, poll_s: float = 0.5, grace_s: float = 5.0) -> None:
    """A pool worker stops when its driver is gone, whatever killed it (SIGKILL, the OOM killer):
    SIGTERM (and SIGINT) interrupt the pair in hand, whose staged outputs are then removed, and a
    watchdog thread that sees the parent change sends that SIGTERM itself, then ends the process
    after ``grace_s`` if it is still there (an idle worker blocked on its queue)."""
    import signal
    import threading

    global _IN_POOL_WORKER
    _IN_POOL_WORKER = True
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)  # Ctrl-C reaches the whole process group

    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="georeg-parent-watch", daemon=True).start()


# ---------------------------------------------------------------- driver side
def write_summary(outdir: str | os.PathLike, rows: list[dict]) -> None:
    out = Path(outdir)
    rows = sorted(rows, key=lambda r: r["index"])
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
    if executor not in ("local", "dask"):
        raise ConfigError(f"executor must be 'local' or 'dask'; got {executor!r}")
    if executor == "dask":
        check_scheduler(scheduler or "local")
    out = Path(outdir)
    tasks = _tasks_of(manifest, out, cfg)  # a manifest refused leaves no output folder behind
    out.mkdir(parents=True, exist_ok=True)
    rows, todo = _rows_already_known(tasks, resume)
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
        else:
            _run_local(todo, workers or os.cpu_count() or 1, finished)
    finally:
        _rows_of_published(todo, rows)
        write_summary(out, list(rows.values()))
        from .atomic import remove_stale

        for folder in {Path(t.output).parent for t in tasks} | {out}:
            remove_stale(folder)  # what workers that died mid-write left behind
    return sorted(rows.values(), key=lambda r: r["index"])


def _tasks_of(manifest, out: Path, cfg: RegistrationConfig) -> list[PairTask]:
    if isinstance(manifest, (str, os.PathLike)):
        return read_manifest(manifest, out, cfg)
    if manifest and isinstance(manifest[0], PairTask):
        return list(manifest)
    return tasks_from_rows(manifest, out, cfg)


def _rows_already_known(tasks: list[PairTask], resume: bool) -> tuple[dict[int, dict], list[PairTask]]:
    """Rows of the tasks that need no run (invalid rows; complete outputs when resuming), and the rest."""
    rows: dict[int, dict] = {}
    todo = []
    for t in tasks:
        rep = finished_report(t) if resume and not t.error else None
        if t.error:
            rows[t.index] = failed_row(t, t.error)
        elif rep is not None:
            rows[t.index] = report_row(t, rep, "skipped (complete)", seconds=0.0)
        else:
            todo.append(t)
    return rows, todo


def _rows_of_published(todo: list[PairTask], rows: dict[int, dict]) -> None:
    """An interruption between a pair's last output and its row: the verified outputs decide."""
    for t in todo:
        rep = finished_report(t) if t.index not in rows else None
        if rep is not None:
            uncertain = rep.get("quality") == "uncertain" and not t.config.output.accept_uncertain
            rows[t.index] = report_row(t, rep, "uncertain" if uncertain else "ok")


def check_scheduler(scheduler: str) -> None:
    """'local', or the address of a running scheduler: tcp://, tls://, ws://, wss:// or inproc://."""
    if scheduler != "local" and not re.fullmatch(r"(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+(:\d+)?/?", scheduler):
        raise ConfigError(f"`scheduler` must be 'local' or a Dask scheduler address such as tcp://host:8786; "
                          f"got {scheduler!r}")


def _shift_columns(rep: dict) -> dict:
    """Mean shift over the overlap, pixels (x right, y down), map units (x east, y north; degrees
    to 1e-9, about 0.1 mm) and ground metres (where the report has them)."""
    sh = rep.get("shift", {})
    px, mp, gm = sh.get("mean_px"), sh.get("mean_map"), sh.get("mean_m")
    if not px or not mp:
        return {}
    places = 9 if sh.get("map_unit") == "degree" else 2
    out = {"shift_x_px": round(px[0], 3), "shift_y_px": round(px[1], 3),
           "shift_x_map": round(mp[0], places), "shift_y_map": round(mp[1], places),
           "map_unit": sh.get("map_unit", "")}
    if gm:
        out.update(shift_x_m=round(gm[0], 3), shift_y_m=round(gm[1], 3))
    return out


def report_row(task: PairTask, rep: dict, status: str, seconds: float | str = "") -> dict:
    """The summary row of a pair whose verified report ``rep`` is on disk ("" for an unknown time)."""
    matcher = rep.get("matcher")
    target = rep.get("target", {})
    moves = rep["verdict"].get("instability_px")
    return {"index": task.index, "reference": task.reference, "target": task.target, "output": task.output,
            "status": status, "error": rep["verdict"]["reason"] if status == "uncertain" else "",
            "quality": rep.get("quality", ""), "model": rep["model"]["type"],
            "rmse_px": round(rep["residuals"]["rmse_px"], 3), "ce90_px": round(rep["residuals"]["ce90_px"], 3),
            # the verdict's measured precision: how far the model's corners move under resampling
            "corner_movement_px": "" if moves is None else round(moves, 3),
            "inliers": rep["counts"]["inliers"], "seconds": seconds, **_shift_columns(rep),
            "target_modality": target.get("modality", ""),
            "modality_by": (target.get("modality_evidence") or {}).get("by", ""),
            "matcher": matcher.get("name", "") if isinstance(matcher, dict) else matcher or ""}


def failed_row(task: PairTask, error: str) -> dict:
    """The summary row of a pair that failed with ``error`` (the local and Dask runners share it)."""
    return {**dict.fromkeys(SUMMARY_FIELDS, ""), "index": task.index, "reference": task.reference,
            "target": task.target, "output": task.output, "status": "failed", "error": error}


_STOP_ASKED = False  # the driver was sent Ctrl-C or SIGTERM (see _interrupt_driver)


def _interrupt_driver(signum, frame):
    """The driver's Ctrl-C and SIGTERM: KeyboardInterrupt, as Python's own handler raises, and
    remembered. When the signal lands while the pool forks a worker, the exception is raised
    inside fork's at-fork callbacks (logging's lock release), which print 'Exception ignored' and
    drop it: the batch then ran to its end (exit 0) after a Ctrl-C. The pool's loop raises it again."""
    global _STOP_ASKED
    _STOP_ASKED = True
    raise KeyboardInterrupt


def _check_stop() -> None:
    if _STOP_ASKED:
        raise KeyboardInterrupt


def _drain(futures: dict, finished: Callable[[dict], None]) -> bool:
    """Hand each finished pair's row to ``finished``; True when the pool broke (a worker died),
    with the pairs still in flight left in ``futures``."""
    while futures:
        _check_stop()
        ready, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
        for f in ready:
            task = futures.pop(f)
            try:
                finished(f.result())
            except BrokenProcessPool:
                futures[f] = task
                return True
    return False


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C: SIGTERM each worker, which removes the staged outputs of its pair, then let go.

    The pool's manager thread is joined (bounded) before returning: shutdown(wait=False) only
    drops it, and a manager thread still closing its wake-up pipe at interpreter exit races with
    concurrent.futures' exit handler writing to that pipe (CPython 3.11: 'OSError: [Errno 9] Bad
    file descriptor' and a traceback after 'Interrupted')."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(10)
    pool.shutdown(wait=False, cancel_futures=True)
    if manager is not None:
        manager.join(10)  # the workers are gone, so it sees a broken pool and ends at once


def _run_local(tasks: list[PairTask], workers: int, finished: Callable[[dict], None], max_crashes: int = 2) -> None:
    """Process pool; when a worker dies, the unfinished pairs go to a fresh pool, and a pair that
    was in flight during ``max_crashes`` deaths is recorded as failed."""
    if workers <= 1:
        _worker_init()
        for t in tasks:
            finished(run_task(t))
        return
    import signal
    import threading

    global _STOP_ASKED
    _STOP_ASKED = False
    from .interrupts import terminate as _terminate

    handlers = {}
    if threading.current_thread() is threading.main_thread():  # signals are the main thread's
        # only in place of the handlers that stop with KeyboardInterrupt anyway (Python's, the
        # CLI's): a caller's own handler stays in charge
        for sig, ours in ((signal.SIGINT, (signal.default_int_handler, _terminate)), (signal.SIGTERM, (_terminate,))):
            if signal.getsignal(sig) in ours:
                handlers[sig] = signal.signal(sig, _interrupt_driver)
    try:
        _run_pools(tasks, workers, finished, max_crashes)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _run_pools(tasks: list[PairTask], workers: int, finished: Callable[[dict], None], max_crashes: int) -> None:
    crashes: dict[int, int] = {}
    pending = list(tasks)
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), initializer=_worker_init,
                                   initargs=(os.getpid(),))
        todo, pending = pending, []
        try:
            futures = {pool.submit(run_task, t): t for t in todo}  # the pool forks its workers here
            _check_stop()
            if not _drain(futures, finished):
                continue
            for task in futures.values():  # in flight when a worker died
                crashes[task.index] = crashes.get(task.index, 0) + 1
                if crashes[task.index] >= max_crashes:
                    finished(failed_row(task, "a worker process died while registering this pair "
                                               f"({crashes[task.index]} times)"))
                else:
                    pending.append(task)
            warn(FallbackWarning, f"a worker process died; {len(pending)} pair(s) go to a fresh pool")
        except KeyboardInterrupt:
            _stop_pool(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
