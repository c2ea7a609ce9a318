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
    before = torch.get_num_threads()
    try:
        runtime.configure_worker(1)
        assert torch.get_num_threads() == 1
        assert os.environ["GDAL_CACHEMAX"] == str(runtime.GDAL_CACHE_MB)
        if sys.platform.startswith("linux"):
            assert runtime.tune_malloc() is True  # idempotent once applied
    finally:
        torch.set_num_threads(before)


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
