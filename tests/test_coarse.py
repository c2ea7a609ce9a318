"""georeg.coarse: the global shift at reduced resolution, on a synthetic pair with a known offset."""

import numpy as np
import pytest
from synthetic import synthetic_pair

from georeg.coarse import coarse_shift
from georeg.config import InputConfig
from georeg.errors import EmptyOverlapError
from georeg.raster import RasterSource, overlap_window


def _open(ref, tgt):
    return RasterSource(str(ref), InputConfig(), "reference"), RasterSource(str(tgt), InputConfig(modality="sar"),
                                                                             "target")


def test_a_large_shift_is_found_at_coarse_resolution(tmp_path):
    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    # target content sits 37 px right and 21 px up of where the reference has it
    synthetic_pair(str(ref), str(tgt), size=512, seed=2, new_to_old=np.array([[1, 0, -37.0], [0, 1, 21.0], [0, 0, 1]]))
    r, t = _open(ref, tgt)
    with r, t:
        win, _ = overlap_window(r, t)
        res = coarse_shift(r, t, r.grid, win, 256)
    assert res.accepted and res.peak_ratio > 1.5 and res.factor == 2.0
    assert np.allclose(res.shift_px, (37.0, -21.0), atol=2.0)


def test_no_common_valid_pixel_is_an_input_error(tmp_path):
    import rasterio

    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=128, seed=1)
    with rasterio.open(tgt, "r+") as d:
        d.nodata = 0
        d.write(np.zeros((1, 128, 128), d.dtypes[0]))
    r, t = _open(ref, tgt)
    with r, t, pytest.raises(EmptyOverlapError, match="no pixel there is valid in both"):
        coarse_shift(r, t, r.grid, overlap_window(r, t)[0], 64)
