"""Process-level CPU tuning, applied by georeg's entry points (CLI, batch workers, benchmarks),
never at import.

Measured on a 2-core AVX2 machine: with glibc's defaults every large torch temporary is an mmap
that is unmapped and page-faulted again on the next call; ``M_MMAP_MAX=0`` and a 1 GiB
``M_TRIM_THRESHOLD`` keep freed memory in the heap and made patch CNNs and the feature filters
2-3x faster. Worker processes also use one torch thread: two threads collapse when anything else
runs on the machine. ``M_ARENA_MAX=1`` keeps the threads that a registration runs (its two matching
directions side by side) on that one heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.util
import logging
import os
import sys
import threading
import types

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_done = False  # mallopt settings are per process by nature: applied once, never undone


def tune_malloc(trim_threshold: int = 1 << 30) -> bool:
    """Apply the glibc malloc settings; returns False where glibc is not the C library."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
        # one heap for every thread: a thread's own arena keeps what it freed apart (the two
        # matching directions side by side peaked at 657-683 MB on the 1024 px S1/S2 pair with
        # glibc's arenas, 579-616 MB with one, the same seconds; one after the other 534-558 MB)
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        return False
    _done = ok
    log.debug("glibc mallopt applied: %s", ok)
    return ok


GDAL_CACHE_MB = 64


def limit_gdal_cache(mb: int = GDAL_CACHE_MB) -> None:
    """Cap GDAL's block cache (default: 5% of the machine's memory, over 1 GB on a 24 GB machine,
    filled by any decimated read of a large raster). Tiles read each block about once and a 10980
    px raster's decimated reads do not fit a small cache anyway: 64 MB instead of 256 MB lowered
    those reads' peak by 192 MB in the same time. A user's own GDAL_CACHEMAX is kept. Call before
    the first raster is read."""
    import os

    os.environ.setdefault("GDAL_CACHEMAX", str(mb))


class _Deferred(types.ModuleType):
    """A stand-in in ``sys.modules`` for a module whose import waits for its first use: the first
    lookup of anything it does not hold (a function, ``__path__`` for a submodule's import)
    imports the module in its place and answers from it, as later lookups do. It holds only the
    module's name, import spec, file, loader and package, so ``import`` statements, ``is not
    None`` checks and code that walks ``sys.modules`` (``inspect.getmodule``) do not import it."""

    def __getattr__(self, attr: str):
        return getattr(_import_deferred(self), attr)


_deferred_lock = threading.Lock()


def _import_deferred(stand_in: _Deferred) -> types.ModuleType:
    """The module itself, imported in the stand-in's place in ``sys.modules`` (where its import
    fails, nothing is left there, as after any failed import)."""
    with _deferred_lock:
        if sys.modules.get(stand_in.__name__) is stand_in:
            del sys.modules[stand_in.__name__]
        return importlib.import_module(stand_in.__name__)


def defer_boto3() -> bool:
    """Where boto3 is installed, rasterio imports it at its own import (for the credentials of an
    S3 session), 0.09-0.13 s and 15-20 MB of every fresh ``georeg`` command, which reads no S3
    path in most uses (``python -X importtime``; 1024 px pair's peak 602-621 -> 582-610 MiB with
    boto3 left out). Before rasterio's import, put a :class:`_Deferred` stand-in for it in
    ``sys.modules``: rasterio sees it installed as before, and it is imported at its first use (an
    S3 session's credentials; :func:`load_deferred` before a remote raster is opened). Returns
    whether it was deferred. For entry points (the CLI), never at import."""
    if "boto3" in sys.modules or "rasterio" in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec("boto3")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    stand_in = _Deferred("boto3")
    # what code that walks sys.modules asks of every module (inspect.getmodule, which torch's import
    # calls, reads each one's __file__), answered without importing it
    stand_in.__spec__, stand_in.__file__, stand_in.__loader__ = spec, spec.origin, spec.loader
    stand_in.__package__ = spec.parent
    sys.modules["boto3"] = stand_in
    return True


def load_deferred() -> None:
    """Import what :func:`defer_boto3` deferred, here and now: a remote raster is about to be
    opened. Where boto3 is installed but cannot be imported (a broken or mismatched botocore),
    rasterio is left as its own import would have left it: without boto3 (GDAL's own credential
    handling), instead of failing at the open."""
    stand_in = sys.modules.get("boto3")
    if not isinstance(stand_in, _Deferred):
        return
    try:
        _import_deferred(stand_in)
    except ImportError as exc:
        log.debug("boto3 could not be imported (%s); rasterio goes on without it", exc)
        session = sys.modules.get("rasterio.session")
        if session is not None and getattr(session, "boto3", None) is stand_in:
            session.boto3 = None


_pairs_side_by_side = False  # this process is one of a batch's workers: the pairs use the cores


def configure_worker(threads: int = 1, pairs_side_by_side: bool = True) -> None:
    """Settings for a worker process: malloc tuning, GDAL's cache and ``threads`` torch threads.
    ``pairs_side_by_side``: other workers register other pairs at the same time (a pool of them, a
    Dask cluster), so a registration keeps to one core (:func:`directions_side_by_side`)."""
    global _pairs_side_by_side
    _pairs_side_by_side = pairs_side_by_side
    tune_malloc()
    limit_gdal_cache()
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op CPU threads set to ``threads`` inside the block and the caller's setting
    restored after (0: left as it is). A registration runs on one by default
    (:attr:`georeg.config.MatchingConfig.threads`): torch's default, a thread per core, collapses
    when anything else runs on the machine, its threads waiting for one another at every small
    operation. The setting is the process's: registrations running at once in Python threads of one
    process share it (give them the same ``threads``)."""
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def directions_side_by_side(threads: int) -> bool:
    """Whether a tile's two matching directions (the reference's keypoints searched in the target,
    the target's in the reference) run at the same time, each in a Python thread of its own: when
    torch runs one thread per operation (``threads`` 1, the default), the process may use two cores
    or more, and it is not one of a batch's workers registering pairs side by side.

    Unlike torch's own threads, which wait for one another at every operation and collapse when
    another program holds a core, the two directions share nothing until both are done: beside a
    busy process they take about the time of one after the other. The numbers are the same either
    way (each operation still runs on one thread, in the same order). Measured on the 1024 px S1/S2
    pair of ``benchmarks/scene_speed.py`` (2 cores, one process, `auto`, 2026-12-05): 3.55-3.67 ->
    2.88-3.04 s a registration when idle, 3.55 -> 3.28-3.39 s beside a busy process. Two threads
    also read the coarse step's two rasters (:func:`at_once`), prepare a tile's two sides and
    compute the structure probe's windows (:func:`in_order`)."""
    return threads == 1 and not _pairs_side_by_side and usable_cores() >= 2


def compression_threads() -> int:
    """Threads for GDAL's compression of an output GeoTIFF (its NUM_THREADS creation option): two
    where this process may use two cores (not one of a batch's workers, whose pairs use them), else
    one. The pixels are the same either way. Writing the 10980 px mosaic's corrected copy (DEFLATE,
    512 px tiles, 2026-12-05, 2 cores): 1.46-1.83 -> 0.77-0.83 s."""
    return 2 if not _pairs_side_by_side and usable_cores() >= 2 else 1


def in_order(fn, items, two_threads: bool):
    """``fn(item)`` for each of ``items``, yielded in order. With ``two_threads``, two calls run at
    a time in threads of their own (torch, numpy and scipy's loops release the GIL) while the next
    item is drawn in the calling thread: an iterator that reads a raster stays in one thread (a
    GDAL dataset is not to be read from two at once), and at most three items' results are held
    at a time. Each call's numbers are the same either way."""
    if not two_threads:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2, thread_name_prefix="georeg-part") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextlib.contextmanager
def read_ahead(read, n: int, ahead: bool):
    """An iterator over ``read(0)`` ... ``read(n - 1)``. With ``ahead``, the reads run one after
    the other in a thread of their own, each started as soon as the caller takes the one before
    it: the caller works on item ``j`` while ``j + 1`` is read (the only thread that reads during
    the loop; a read that raises raises in the caller). On leaving, a read under way is waited for."""
    if not ahead:
        yield (read(j) for j in range(n))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="georeg-read") as pool:
        def reads():
            nxt = pool.submit(read, 0) if n else None
            for j in range(n):
                cur, nxt = nxt, (pool.submit(read, j + 1) if j + 1 < n else None)
                yield cur.result()

        yield reads()


def at_once(first, second, two_threads: bool):
    """``(first(), second())``, the two calls at the same time in threads of their own with
    ``two_threads`` (e.g. the decimated reads of two rasters: each its own GDAL dataset)."""
    if not two_threads:
        return first(), second()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="georeg-part") as pool:
        other = pool.submit(second)
        return first(), other.result()
