"""Small helpers shared by test files."""


def sigint_as_in_a_terminal() -> None:
    """For a child that stands for a command typed in a terminal: Ctrl-C (SIGINT) interrupts it.
    A test runner started in the background (nohup, '&' without job control) passes SIGINT on
    ignored, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
