"""georeg.atomic: outputs appear all together or not at all; leftovers of killed runs go."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from georeg.atomic import atomic_path, output_lock, remove_stale, staged, write_text_atomic
from georeg.errors import OutputExistsError, OutputLockedError


def test_staged_publishes_all_outputs_only_on_success(tmp_path):
    paths = {"a": str(tmp_path / "a.txt"), "b": str(tmp_path / "b.txt")}
    with pytest.raises(RuntimeError), staged(paths) as tmp:
        tmp["a"].write_text("new a")
        raise RuntimeError("failed half-way")
    assert not any(tmp_path.iterdir())
    with staged(paths) as tmp:
        tmp["a"].write_text("a1")
        tmp["b"].write_text("b1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_staged_without_overwrite_keeps_an_output_that_appeared(tmp_path):
    paths = {"a": str(tmp_path / "a.txt")}
    with pytest.raises(OutputExistsError), staged(paths, overwrite=False) as tmp:
        tmp["a"].write_text("mine")
        (tmp_path / "a.txt").write_text("theirs")
    assert (tmp_path / "a.txt").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_and_text(tmp_path):
    with atomic_path(tmp_path / "sub" / "x.bin") as p:
        p.write_bytes(b"123")
        assert not (tmp_path / "sub" / "x.bin").exists()
    assert (tmp_path / "sub" / "x.bin").read_bytes() == b"123"
    write_text_atomic(tmp_path / "t.csv", "a,b\n")
    assert (tmp_path / "t.csv").read_text() == "a,b\n"


def test_remove_stale_spares_live_runs(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".out.partial-{dead}.tif").write_text("x")
    (tmp_path / f".out.partial-{os.getpid()}.tif").write_text("x")
    (tmp_path / "keep.tif").write_text("x")
    removed = remove_stale(tmp_path)
    assert [p.name for p in removed] == [f".out.partial-{dead}.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".out.partial-{os.getpid()}.tif", "keep.tif"])


def test_output_lock_refuses_a_second_live_run(tmp_path):
    out = tmp_path / "out.tif"
    with output_lock(out):
        code = ("import sys; from georeg.atomic import output_lock\n"
                "from georeg.errors import OutputLockedError\n"
                f"try:\n    with output_lock({str(out)!r}): pass\n"
                "except OutputLockedError: sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    with output_lock(out):  # released: taken again
        pass
    assert OutputLockedError


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are told from /proc (Linux)")
def test_a_killed_process_not_yet_reaped_holds_no_lock():
    """A zombie (killed, not yet waited for by its parent, as a killed Dask worker can be for a
    while) answers kill(pid, 0) but writes nothing: its lock is not a live run's."""
    import signal
    import time

    from georeg.atomic import _alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        for _ in range(200):  # until the kernel has made it a zombie (not reaped: no wait yet)
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert not _alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not _alive(child.pid)
