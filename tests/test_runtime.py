"""georeg.runtime: process tuning applied by entry points, idempotent, and never at import."""

import json
import os
import subprocess
import sys

import pytest

from georeg import runtime


def test_import_tunes_nothing():
    code = ("import os, georeg, georeg.pipeline, georeg.runtime as r; "
            "print(r._done, 'GDAL_CACHEMAX' in os.environ)")
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_worker_settings(monkeypatch):
    import torch

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(runtime, "_pairs_side_by_side", False)  # given back after the test
    before = torch.get_num_threads()
    try:
        runtime.configure_worker(1)
        assert torch.get_num_threads() == 1
        assert runtime._pairs_side_by_side  # a batch's worker: its pair keeps to one core
        runtime.configure_worker(1, pairs_side_by_side=False)  # the driver registering the pairs itself
        assert not runtime._pairs_side_by_side
        assert os.environ["GDAL_CACHEMAX"] == str(runtime.GDAL_CACHE_MB)
        if sys.platform.startswith("linux"):
            assert runtime.tune_malloc() is True  # idempotent once applied
    finally:
        torch.set_num_threads(before)


def test_the_two_matching_directions_run_side_by_side_only_where_a_core_is_free(monkeypatch):
    monkeypatch.setattr(runtime, "_pairs_side_by_side", False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    assert runtime.directions_side_by_side(1)
    assert not runtime.directions_side_by_side(0) and not runtime.directions_side_by_side(2)  # torch's threads
    monkeypatch.setattr(runtime, "usable_cores", lambda: 1)
    assert not runtime.directions_side_by_side(1)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 8)
    monkeypatch.setattr(runtime, "_pairs_side_by_side", True)  # a batch worker beside others
    assert not runtime.directions_side_by_side(1)


@pytest.mark.parametrize("matcher", ["baseline", "kgl-opt-sar"])
def test_the_directions_side_by_side_give_the_same_tie_points(small_pair, tmp_path, monkeypatch, matcher):
    """Each direction in a thread of its own: the same tie points, to the bit, as one after the other."""
    import threading

    import numpy as np

    import georeg
    import georeg.matching as M
    from georeg.config import RegistrationConfig

    ref, tgt = small_pair()
    cfg = RegistrationConfig().with_options(matching={"matcher": matcher},
                                            output={"quicklook": None, "tie_points": None, "report": None})
    seen, search = set(), M._search

    def spy(*a, **k):
        seen.add(threading.current_thread().name.startswith("georeg-direction"))
        return search(*a, **k)

    monkeypatch.setattr(M, "_search", spy)
    out = {}
    for side_by_side in (False, True):
        monkeypatch.setattr(M, "directions_side_by_side", lambda threads, s=side_by_side: s)
        seen.clear()
        res = georeg.register(ref, tgt, tmp_path / f"out{side_by_side}.tif", cfg)
        assert seen == {side_by_side}
        out[side_by_side] = res
    a, b = (out[s].tie_point_table for s in (False, True))
    assert len(a) == len(b) > 20 and len(a.columns) >= 5 and list(a.columns) == list(b.columns)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    for col in a.columns:
        assert np.array_equal(a.columns[col], b.columns[col]), col
    assert out[False].report["shift"] == out[True].report["shift"]


def test_a_pass_reads_the_next_tile_ahead_and_finds_the_same_tie_points(small_pair, tmp_path, monkeypatch):
    """Over several tiles a thread of its own reads the next tile while this one is matched (every
    read in that one thread): the same tie points, to the bit, as reading each tile when it comes."""
    import threading

    import numpy as np

    import georeg
    import georeg.passes as P
    from georeg.config import RegistrationConfig

    ref, tgt = small_pair(size=512)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline", "tile_size_px": 256},
                                            output={"quicklook": None, "tie_points": None, "report": None})
    threads, read, ahead = [], P.read_tile, P.read_ahead

    def spy(*a, **k):
        threads.append(threading.current_thread().name)
        return read(*a, **k)

    monkeypatch.setattr(P, "read_tile", spy)
    out = {}
    for on in (False, True):
        monkeypatch.setattr(P, "read_ahead", lambda fn, n, wanted, on=on: ahead(fn, n, wanted and on))
        threads.clear()
        out[on] = georeg.register(ref, tgt, tmp_path / f"out{on}.tif", cfg)
        assert len(threads) >= 4  # four tiles a pass
        assert set(threads) == ({"georeg-read_0"} if on else {"MainThread"})
    a, b = (out[s].tie_point_table for s in (False, True))
    assert len(a) == len(b) > 20
    for col in a.columns:
        assert np.array_equal(a.columns[col], b.columns[col]), col
    assert out[False].report["shift"] == out[True].report["shift"]


def test_a_users_gdal_cache_is_kept(monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    runtime.limit_gdal_cache()
    assert os.environ["GDAL_CACHEMAX"] == "512"


def test_torch_threads_are_set_inside_the_block_and_given_back():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with runtime.torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with runtime.torch_threads(0):  # 0: the process's own setting
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), runtime.torch_threads(1):
            raise RuntimeError("given back on an error too")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads, expected", [(None, 1), (3, 3), (0, 2)])
def test_a_registration_runs_on_the_threads_it_is_given_and_leaves_the_callers(small_pair, tmp_path, threads,
                                                                                expected):
    import torch

    import georeg
    from georeg.config import RegistrationConfig

    ref, tgt = small_pair()
    options = {"matcher": "baseline"} if threads is None else {"matcher": "baseline", "threads": threads}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the caller's own setting
        res = georeg.register(ref, tgt, tmp_path / "out.tif", RegistrationConfig().with_options(matching=options))
        assert res.report["cpu_threads"] == expected
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_cli_takes_its_threads_from_the_option_or_georeg_threads(small_pair, tmp_path):
    from click.testing import CliRunner

    from georeg.cli import georeg

    ref, tgt = small_pair()
    base = ["register", str(ref), str(tgt), "--matcher", "baseline", "--quicklook", "none", "-q"]
    runner = CliRunner()
    res = runner.invoke(georeg, [*base, "-o", str(tmp_path / "a.tif")], env={"GEOREG_THREADS": "2"})
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a_report.json").read_text())["cpu_threads"] == 2
    res = runner.invoke(georeg, [*base, "-o", str(tmp_path / "b.tif"), "--threads", "1"], env={"GEOREG_THREADS": "2"})
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b_report.json").read_text())["cpu_threads"] == 1
    res = runner.invoke(georeg, [*base, "-o", str(tmp_path / "c.tif"), "--threads", "-1"])
    assert res.exit_code == 2
    assert "threads must be 0" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("c*"))


def test_in_order_runs_two_at_a_time_draws_items_here_and_keeps_the_order():
    import threading

    here, drawn_in, barrier = threading.current_thread(), [], threading.Barrier(2, timeout=10)

    def items():
        for i in range(6):
            drawn_in.append(threading.current_thread())  # the reads of a raster stay in this thread
            yield i

    def work(i):
        if i < 2:
            barrier.wait()  # the first two only get past this when they run at the same time
        return i * i

    assert list(runtime.in_order(work, items(), True)) == [0, 1, 4, 9, 16, 25]
    assert drawn_in == [here] * 6
    assert list(runtime.in_order(lambda i: -i, iter(range(4)), False)) == [0, -1, -2, -3]


def test_at_once_runs_both_calls_at_the_same_time():
    import threading

    barrier = threading.Barrier(2, timeout=10)

    def call(value):
        barrier.wait()
        return value

    assert runtime.at_once(lambda: call("a"), lambda: call("b"), True) == ("a", "b")
    assert runtime.at_once(lambda: 1, lambda: 2, False) == (1, 2)


def test_read_ahead_reads_in_one_thread_one_item_ahead_in_order():
    import threading

    started, names = [], set()
    taken = threading.Event()

    def read(j):
        names.add(threading.current_thread().name)
        started.append(j)
        if j == 1:  # item 1 is read while the caller still holds item 0
            assert taken.wait(10)
        return j * 10

    with runtime.read_ahead(read, 4, True) as reads:
        assert next(reads) == 0
        taken.set()
        assert list(reads) == [10, 20, 30]
    assert started == [0, 1, 2, 3] and len(names) == 1 and names != {threading.current_thread().name}
    with runtime.read_ahead(read, 3, False) as reads:  # in the calling thread
        names.clear()
        assert list(reads) == [0, 10, 20] and names == {threading.current_thread().name}

    def broken(j):
        raise ValueError(f"damaged {j}")

    with pytest.raises(ValueError, match="damaged 0"), runtime.read_ahead(broken, 2, True) as reads:
        next(reads)


def test_boto3_waits_for_its_first_use_where_the_cli_defers_it():
    """rasterio imports boto3 (0.09-0.13 s, 15-20 MB) where it is installed; the CLI's stand-in keeps
    it out of a command that reads no S3 path, and the first use imports it."""
    pytest.importorskip("boto3")
    code = """
import sys
from georeg.runtime import defer_boto3, load_deferred
assert defer_boto3()
import rasterio, rasterio.session
assert "botocore" not in sys.modules and rasterio.session.boto3 is not None
import boto3
assert "botocore" not in sys.modules and type(boto3).__name__ == "_Deferred"
assert boto3.__spec__.name == "boto3" and boto3.__file__.endswith("__init__.py") and "botocore" not in sys.modules
import inspect, torch  # torch's import walks sys.modules (inspect.getmodule)
assert inspect.getmodule(inspect) is inspect and "botocore" not in sys.modules
assert rasterio.session.boto3.Session.__name__ == "Session" and "botocore" in sys.modules
assert type(sys.modules["boto3"]).__name__ == "module"
import boto3.session
assert boto3.session.Session is rasterio.session.boto3.Session
load_deferred()
assert not defer_boto3()  # imported once, nothing to defer
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # a remote raster's open imports it first, on the thread that opens it
    code = ("import sys; from georeg.runtime import defer_boto3; defer_boto3(); from georeg.remote import "
            "configure_network; configure_network(); print(type(sys.modules['boto3']).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "module", r.stderr


def test_a_boto3_that_cannot_be_imported_leaves_rasterio_without_it(tmp_path):
    """Installed but broken (its import fails): rasterio's own import would have gone on without
    it, and so does a remote open after the CLI deferred it."""
    broken = tmp_path / "boto3"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('botocore is too old')\n")
    code = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
from georeg.runtime import defer_boto3
assert defer_boto3()
import rasterio.session
from georeg.remote import configure_network
configure_network()
assert rasterio.session.boto3 is None and "boto3" not in sys.modules
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
