"""Atomic file writing: write under a temporary name in the destination folder, then rename.

Outputs therefore never appear half-written:

- :func:`staged` writes a set of outputs under hidden ``.NAME.partial-PID.ext`` names and puts
  them in place all together or not at all: old outputs are moved aside first and restored if
  any step fails, so a failed ``--overwrite`` leaves the previous set exactly as it was.
- Leftovers of a run that was killed (``.NAME.partial-PID.ext``, ``.NAME.old-PID.ext``,
  ``.georeg-PID-*/``) are removed by the next run that writes to the same folder, once no
  process with that PID is alive.
- :func:`output_lock` keeps a second run from writing the same outputs at the same time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputExistsError, OutputLockedError
from .interrupts import signals_held


def partial_path(path: str | os.PathLike) -> Path:
    """Temporary sibling of ``path`` that keeps its extension (GDAL and OGR choose drivers by it)."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial-{os.getpid()}{p.suffix}")


def _aside_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.old-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure delete it."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, final)
    for side in _sidecars(tmp):
        _remove(side)


@contextlib.contextmanager
def staged(paths: dict[str, str], overwrite: bool = True) -> Iterator[dict[str, Path]]:
    """Yield temporary paths for a set of outputs; put them all in place only if the block succeeds.

    Either every output of a run appears, or none does and any previous outputs are left as they
    were. Without ``overwrite`` an output that appeared meanwhile (another run) is not replaced:
    :class:`OutputExistsError`."""
    for folder in {Path(p).parent for p in paths.values()}:
        remove_stale(folder)
    tmps = {key: partial_path(path) for key, path in paths.items()}
    for tmp in tmps.values():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
    try:
        yield tmps
        with signals_held():  # a Ctrl-C waits for the renames: the whole set in place or none of it
            _commit(tmps, {k: Path(p) for k, p in paths.items()}, overwrite)
    finally:
        for tmp in tmps.values():
            _remove(tmp)


def _commit(tmps: dict[str, Path], finals: dict[str, Path], overwrite: bool) -> None:
    """Move the old set aside, the new set in, then delete the old set; undo on any failure."""
    keys = [k for k, tmp in tmps.items() if tmp.exists()]
    aside: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for k in keys:
            final = finals[k]
            if os.path.lexists(final):
                if not overwrite:
                    raise OutputExistsError(f"output exists: {final} (written meanwhile by another run?); "
                                            "use `overwrite=True` to replace it or choose another path")
                os.replace(final, _aside_path(final))
                aside[final] = _aside_path(final)
        for k in keys:
            if overwrite:
                os.replace(tmps[k], finals[k])
            else:
                os.link(tmps[k], finals[k])  # fails if the name appeared meanwhile: never replaces
                tmps[k].unlink()
            placed.append(finals[k])
    except BaseException:
        for final in placed:
            _remove(final)
        for final, old in aside.items():
            with contextlib.suppress(OSError):
                os.replace(old, final)
        raise
    for old in aside.values():
        _remove(old)
    for k in keys:
        for side in _sidecars(tmps[k]):
            _remove(side)


_LEFTOVER = re.compile(r"^\.(?:.+\.(?:partial|old)-(\d+)(?:[.\-].*)?|georeg-(\d+)-.*)$")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs. A zombie (killed, not yet reaped by its parent: a Dask worker
    its nanny has not waited for) answers ``kill(pid, 0)`` but writes nothing: not alive. Its lock
    had made the retried pair fail ("another georeg run ... is writing") in
    tests/test_batch.py::test_dask_cluster_with_a_worker_killed, 2 of 9 runs on a busy machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]  # the field after the command name
    except (OSError, IndexError):  # no /proc (not Linux) or the process just went: kill's answer stands
        return True
    return state not in ("Z", "X")


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the leftovers of georeg runs that were killed (their PID is no longer alive) in
    ``folder``; returns what was removed. Files of live runs are never touched."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.name.startswith(".") and p.name.endswith(".lock") and p.is_file():
            if _lock_owner(p) is None:  # a lock whose run was killed
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
            continue
        m = _LEFTOVER.match(p.name)
        if not m:
            continue
        # sidecars (.aux.xml, -journal, ...) carry the same PID in their name
        pid = int(m.group(1) or m.group(2))
        if _alive(pid):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``path`` for the whole run: a second run on the same output
    refuses with :class:`OutputLockedError` while the first is alive; a lock left by a killed run
    is taken over."""
    p = Path(path)
    lock = p.with_name(f".{p.name}.lock")
    me = f"{os.getpid()} {socket.gethostname()}"
    with signals_held():  # a Ctrl-C between making the lock and the try below would leave it
        _take_lock(lock, me, p)
    try:
        yield
    finally:
        with signals_held(), contextlib.suppress(OSError):
            if lock.read_text() == me:
                lock.unlink()


def _take_lock(lock: Path, me: str, p: Path) -> None:
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None:
                raise OutputLockedError(f"another georeg run (process {owner}) is writing {p} right now; wait for "
                                        f"it to finish or choose another output (remove {lock} if that "
                                        "process is gone)") from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # its owner is dead: take it over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return
    raise OutputLockedError(f"could not take the lock {lock}; remove it if no georeg run is writing {p}")


def _lock_owner(lock: Path) -> int | None:
    """PID of the live process holding ``lock`` on this host, else None."""
    try:
        pid_text, host = lock.read_text().split(" ", 1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None  # unreadable or half-written: treated as stale
    if host != socket.gethostname():
        return pid  # another machine's run: cannot check, so respect it
    return pid if _alive(pid) else None


def _sidecars(p: Path) -> list[Path]:
    return [p.with_name(p.name + ext) for ext in (".aux.xml", "-journal", "-wal", "-shm")]


def _remove(p: Path) -> None:
    for q in [p, *_sidecars(p)]:
        with contextlib.suppress(FileNotFoundError):
            q.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
