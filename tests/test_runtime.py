"""georeg.runtime: process tuning applied by entry points, idempotent, and never at import."""

import os
import subprocess
import sys

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
