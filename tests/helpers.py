"""Small helpers shared by test files."""


def sigint_as_in_a_terminal() -> None:
    """For a child that stands for a command typed in a terminal: Ctrl-C (SIGINT) interrupts it.
    A test runner started in the background (nohup, '&' without job control) passes SIGINT on
    ignored, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def georeg_server(env: dict, log, timeout_s: float = 180.0):
    """A context manager: ``georeg serve -v`` started with ``env`` (its socket from
    GEOREG_SERVER_SOCKET or XDG_RUNTIME_DIR there), its messages in the file ``log``, ready on
    entry and stopped on exit."""
    import contextlib
    import subprocess
    import sys
    import time
    from pathlib import Path

    @contextlib.contextmanager
    def run():
        log_path = Path(log)
        with open(log_path, "w") as f:
            p = subprocess.Popen([sys.executable, "-m", "georeg.cli", "serve", "-v", "--idle-minutes", "10"],
                                 stdout=f, stderr=f, env=env)
        try:
            t0 = time.time()
            while "ready at" not in log_path.read_text():
                assert p.poll() is None, log_path.read_text()
                assert time.time() - t0 < timeout_s, f"georeg serve was not ready after {timeout_s:.0f} s"
                time.sleep(0.2)
            yield p
        finally:
            p.terminate()
            p.wait(timeout=60)

    return run()
