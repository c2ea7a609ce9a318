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

    from georeg import server

    @contextlib.contextmanager
    def run():
        p = server.start(log, env, idle_minutes=10, timeout_s=timeout_s)
        try:
            yield p
        finally:
            p.terminate()
            p.wait(timeout=60)

    return run()
