"""How the command line stops on SIGTERM and Ctrl-C: :func:`terminate` raises KeyboardInterrupt,
so that the staged outputs are removed on the way out and the command ends with exit code 130,
except where an exception would do harm; there the signal is sent again a moment later.

Measured before this module (SIGTERM at random moments of a 256 px `georeg register`, 40 runs;
``tests/test_hardening.py``): raised inside an import, the KeyboardInterrupt was swallowed by a
module lock's weakref callback (the command ran to its end, exit 0), became "ImportError:
initialization failed" (an internal error, exit 1) or cut a C++ library's initialisation (the
process ended by SIGABRT or SIGINT); raised between making a file and the code that removes it
(the output folder's probe, the output lock), it left that file behind."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

RETRY_S = 0.02  # a signal that arrived at a bad moment is sent again this much later

_held = 0  # blocks of signals_held() being run


def _in_import(frame) -> bool:
    """Whether ``frame`` (where the main thread was when a signal's handler ran) is inside
    Python's import machinery, a module's top level being run included."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def terminate(signum, frame):
    """The handler of SIGTERM and (in the CLI) SIGINT: KeyboardInterrupt, or, inside an import or
    a :func:`signals_held` block, the same signal again RETRY_S later (torch's import takes about
    a second)."""
    if not later(signum, frame):
        raise KeyboardInterrupt


def later(signum, frame) -> bool:
    """For a handler about to raise KeyboardInterrupt: where ``frame`` is inside an import or a
    :func:`signals_held` block is running, send ``signum`` again RETRY_S later and return True
    (the handler then returns); else False."""
    if not (_held or _in_import(frame)):
        return False
    retry = threading.Timer(RETRY_S, os.kill, (os.getpid(), signum))
    retry.daemon = True
    retry.start()
    return True


@contextlib.contextmanager
def signals_held():
    """A few statements :func:`terminate` must not cut (a file made and removed, a lock taken):
    a signal that arrives meanwhile takes effect after the block. Without georeg's handler (the
    Python API in a caller's process) it changes nothing."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1


def flush_standard_streams() -> None:
    """Flush stdout and stderr before a process ends with ``os._exit`` (a served command's child,
    the CLI's :func:`georeg.cli.leave`); a closed pipe or stream is passed over: nothing more can
    be said there."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
