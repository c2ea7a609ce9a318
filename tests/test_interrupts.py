"""SIGTERM and Ctrl-C at bad moments (georeg.interrupts): inside an import, or between making a
file and the code that removes it, the KeyboardInterrupt waits until the moment has passed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from georeg.interrupts import signals_held, terminate

GEOREG = [sys.executable, "-c", "from georeg._entry import main; main()"]


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter with georeg's handler on SIGUSR1 (a signal nothing
    else uses); its stdout."""
    code = textwrap.dedent("""
        import os, signal, sys, time
        sys.path.insert(0, {folder!r})
        from georeg.interrupts import signals_held, terminate
        signal.signal(signal.SIGUSR1, terminate)
    """).format(folder=str(tmp_path)) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_signal_inside_an_import_takes_effect_after_it(tmp_path):
    # the module signals itself while it is being imported, then works on for 0.3 s: the
    # interrupt must not cut its import (Python would report it swallowed, or as an ImportError)
    (tmp_path / "slow_module.py").write_text(textwrap.dedent("""
        import os, signal, time
        os.kill(os.getpid(), signal.SIGUSR1)
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            pass
        done = True
    """))
    # (the retried signal may land on any statement after the import, a print half written
    # included: what the handler saw is read once the interrupt has been caught)
    r = _script(tmp_path, """
        try:
            import slow_module
            time.sleep(2)
            print("no interrupt")
        except KeyboardInterrupt:
            print("interrupted after the import", getattr(sys.modules.get("slow_module"), "done", None))
    """)
    assert r.stdout.split("\n")[:1] == ["interrupted after the import True"], r.stdout + r.stderr


def test_a_signal_inside_signals_held_takes_effect_after_the_block():
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, signal, time
        from georeg.interrupts import signals_held, terminate
        signal.signal(signal.SIGUSR1, terminate)
        try:
            with signals_held():
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.3)
                print("block done")
            time.sleep(2)
            print("no interrupt")
        except KeyboardInterrupt:
            print("interrupted after the block")
    """)], capture_output=True, text=True, timeout=60)
    assert r.stdout.split("\n")[:2] == ["block done", "interrupted after the block"], r.stdout + r.stderr


def test_outside_such_moments_the_handler_interrupts_at_once():
    with pytest.raises(KeyboardInterrupt):
        terminate(signal.SIGTERM, sys._getframe())
    with signals_held():  # held: returns and sends the signal again later (to a handler set here)
        seen = []
        old = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
        try:
            terminate(signal.SIGUSR1, sys._getframe())
            deadline = time.time() + 2
            while not seen and time.time() < deadline:
                time.sleep(0.01)
        finally:
            signal.signal(signal.SIGUSR1, old)
    assert seen == [signal.SIGUSR1]


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.5, 0.7, 0.9, 1.2])
def test_sigterm_during_start_up_ends_cleanly(small_pair, tmp_path, delay):
    """SIGTERM while the command imports its modules and checks its outputs: exit code 130, one
    line, nothing left in the output folder (or, where the run was done first, exit 0)."""
    ref, tgt = small_pair("sar_vh.tif")
    out = tmp_path / "out" / "out.tif"
    out.parent.mkdir()
    p = subprocess.Popen([*GEOREG, "register", str(ref), str(tgt), "-o", str(out), "-q", "--matcher", "baseline"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert p.returncode == 130, err
    assert err.strip() == "Interrupted; no output was written.", err
    assert sorted(f.name for f in out.parent.iterdir()) == []
