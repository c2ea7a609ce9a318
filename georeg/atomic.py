"""Atomic file writing: write under a temporary name in the destination folder, then rename.

Outputs therefore never appear half-written; a failure or Ctrl-C leaves at most a hidden
``.name.partial-PID.ext`` file, which the context manager removes when it can.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def partial_path(path: str | os.PathLike) -> Path:
    """Temporary sibling of ``path`` that keeps its extension (GDAL and OGR choose drivers by it)."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial-{os.getpid()}{p.suffix}")


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
def staged(paths: dict[str, str]) -> Iterator[dict[str, Path]]:
    """Yield temporary paths for a set of outputs; rename them all only if the block succeeds.

    Either every output of a run appears, or none does (a failure or Ctrl-C deletes the
    temporary files)."""
    tmps = {key: partial_path(path) for key, path in paths.items()}
    for tmp in tmps.values():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
    try:
        yield tmps
    except BaseException:
        for tmp in tmps.values():
            _remove(tmp)
        raise
    for key, tmp in tmps.items():
        if tmp.exists():
            os.replace(tmp, paths[key])
        for side in _sidecars(tmp):
            _remove(side)


def _sidecars(p: Path) -> list[Path]:
    return [p.with_name(p.name + ext) for ext in (".aux.xml", "-journal", "-wal", "-shm")]


def _remove(p: Path) -> None:
    for q in [p, *_sidecars(p)]:
        with contextlib.suppress(FileNotFoundError):
            q.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
