"""georeg.pipeline: argument and output checks before any work, progress, cancellation, and the
stages' result on a small synthetic pair."""

import numpy as np
import pytest

import georeg
from georeg.config import RegistrationConfig
from georeg.errors import CancelledError, InputError, OutputExistsError
from georeg.pipeline import check_outputs


@pytest.fixture(scope="module")
def pair(small_pair):
    return small_pair("sar.tif")


def test_check_outputs_refuses_before_any_work(tmp_path, pair):
    ref, tgt = pair
    with pytest.raises(InputError, match="also an input"):
        check_outputs({"raster": str(tgt)}, [str(ref), str(tgt)], overwrite=True)
    with pytest.raises(InputError, match="share the path"):
        check_outputs({"raster": str(tmp_path / "a.tif"), "report": str(tmp_path / "a.tif")}, [], True)
    (tmp_path / "b.tif").write_text("old")
    # Python callers are told the keyword; the CLI turns `overwrite=True` into --overwrite (test_cli)
    with pytest.raises(OutputExistsError, match="use `overwrite=True`"):
        check_outputs({"raster": str(tmp_path / "b.tif")}, [], overwrite=False)
    with pytest.raises(InputError, match="does not exist"):
        check_outputs({"raster": str(tmp_path / "nope" / "c.tif")}, [], True)


def test_register_refuses_bad_arguments(tmp_path, pair):
    ref, tgt = pair
    with pytest.raises(InputError, match="config must be a georeg RegistrationConfig"):
        georeg.register(ref, tgt, tmp_path / "o.tif", {"model": "affine"})
    with pytest.raises(InputError, match="output must be a file path"):
        georeg.register(ref, tgt, "  ")


def test_progress_cancel_and_result(tmp_path, pair):
    ref, tgt = pair
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, estimation={"model": "translation"},
                                            output={"report": str(tmp_path / "r.json")})
    with pytest.raises(CancelledError):
        georeg.register(ref, tgt, tmp_path / "c.tif", cfg, cancel=lambda: True)
    assert not list(tmp_path.iterdir()), "a cancelled run leaves nothing"
    seen = []
    res = georeg.register(ref, tgt, tmp_path / "o.tif", cfg, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)
    assert res.quality == "reliable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "r.json"]
    assert set(res.report["timings_s"]) >= {"open", "coarse", "pass1", "verdict", "write", "total"}
