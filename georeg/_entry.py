"""The ``georeg`` console script. Kept apart from :mod:`georeg.cli` so that Ctrl-C or SIGTERM
while the CLI's modules are still being imported ends with one line and exit code 130, not a
traceback; SIGTERM (``timeout``, schedulers, ``kill``) is handled like Ctrl-C everywhere, so
partial outputs are removed the same way."""

from __future__ import annotations

import signal
import sys

from .interrupts import terminate as _terminate


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        from .server import forward

        code = forward(sys.argv[1:])  # a running 'georeg serve' takes 'register' before any import
        if code is not None:
            sys.exit(code)
        from .cli import main as cli_main

        cli_main(try_server=False)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting stays quiet
        sys.stderr.write("Interrupted; no output was written.\n")
        sys.exit(130)
