"""One band rendered through a colour ramp as three 8-bit bands (georeg.ramps)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from georeg.config import InputConfig
from georeg.outputs import modality_text
from georeg.ramps import find_ramp
from georeg.raster import RasterSource


def _jet(x: np.ndarray) -> np.ndarray:
    return np.round(255 * np.stack([np.clip(1.5 - np.abs(4 * x - c), 0, 1) for c in (3, 2, 1)])).astype(np.uint8)


def _hot(x: np.ndarray) -> np.ndarray:
    return np.round(255 * np.stack([np.clip(3 * x - c, 0, 1) for c in (0, 1, 2)])).astype(np.uint8)


def _field(seed: int, shape=(400, 400), sigma=12.0) -> np.ndarray:
    f = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return (f - f.min()) / np.ptp(f)


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable")


def test_a_band_rendered_through_jet_or_hot_is_found_and_its_values_recovered_in_order():
    """jet's luminance peaks in the middle of its range (yellow), hot's rises: either way the
    position along the ramp is the band, in its order, 0 at the darker end."""
    x = _field(1)
    valid = np.ones(x.shape, bool)
    for render in (_jet, _hot):
        rgb = render(x)
        ramp = find_ramp(rgb, valid)
        assert ramp is not None, render.__name__
        values, ok = ramp.values(rgb, valid)
        assert ok.all() and values.dtype == np.uint16 and values.min() >= 1
        assert np.corrcoef(_ranks(values), _ranks(x))[0, 1] > 0.999, render.__name__
        assert values[x > 0.95].mean() > values[x < 0.05].mean()  # not upside down
    # jet's luminance does not rank the band: that is what reading it as colour did
    lum = _jet(x).astype(float).T @ np.array([0.299, 0.587, 0.114])
    assert abs(np.corrcoef(_ranks(lum.T), _ranks(x))[0, 1]) < 0.9
    # colours far from the ramp (a label, a legend's frame) are no value of the band
    rgb = _jet(x)
    rgb[:, :20, :20] = 255
    values, ok = find_ramp(rgb, valid).values(rgb, valid)
    assert not ok[:20, :20].any() and ok[20:, 20:].all()


def test_colour_images_class_maps_and_greys_are_no_ramp():
    valid = np.ones((400, 400), bool)
    natural = np.stack([_field(s) for s in (2, 3, 4)])
    for levels in (256, 16, 6):  # independent channels fill a volume of colour space, however coarse
        assert find_ramp(np.round(natural * (levels - 1)).astype(np.uint8) * (255 // (levels - 1)), valid) is None
    low = np.round(100 + 20 * natural).astype(np.uint8)  # a dull scene: few colours, in a blob
    assert find_ramp(low, valid) is None
    classes = (np.random.default_rng(5).integers(0, 8, (25, 25)).repeat(16, 0).repeat(16, 1))
    table = np.random.default_rng(6).integers(0, 256, (8, 3)).astype(np.uint8)
    assert find_ramp(table[classes].transpose(2, 0, 1), valid) is None
    grey = np.round(255 * _field(7)).astype(np.uint8)
    assert find_ramp(np.stack([grey] * 3), valid) is None


def test_a_thermal_band_rendered_through_jet_is_read_as_the_band_and_as_thermal(shared_data, tmp_path):
    """Landsat 8 B10 saved as it was shown in jet (three 8-bit bands, a neutral name) was
    `optical` by its band count and read as jet's luminance: on B4 `uncertain` 12.6 px off, the
    clouds' motion. Now its colours are read back into the band: thermal by its pixels, the read
    ranks the pixels as B10 does; the ramp is named in the band label."""
    path = shared_data / "landsat8_oli_tirs" / "l8_B10.tif"
    if not path.exists():
        pytest.skip(f"the Landsat 8 scene is not in {shared_data}")
    with rasterio.open(path) as d:
        dn, prof = d.read(1).astype(np.float64), d.profile
    target = tmp_path / "scene.tif"
    with rasterio.open(target, "w", **dict(prof, count=3, dtype="uint8", photometric="RGB")) as o:
        o.write(_jet((dn - dn.min()) / np.ptp(dn)))
    with RasterSource(target, InputConfig(), "target") as src:
        assert src.ramp is not None and "colour ramp" in src.band_label
        assert (src.modality, src.modality_decision.by) == ("thermal", "pixels"), src.modality_decision.to_dict()
        text = modality_text({"target": {"modality": src.modality,
                                         "modality_evidence": src.modality_decision.to_dict()}})
        assert "its colours as the one band they render through a colour ramp" in text, text
        data, valid = src.read_on_grid(src.grid)
    assert valid.all() and np.corrcoef(_ranks(data), _ranks(dn))[0, 1] > 0.999
    # the same file's natural-colour neighbours are not ramps
    with RasterSource(shared_data / "s1s2_volkov" / "geotiff" / "268_S2_RGB.tif", InputConfig(), "target") as src:
        assert src.ramp is None and src.modality == "optical"


def test_a_ramp_with_an_undeclared_white_collar_keeps_the_collar_out(tmp_path):
    """A rendering whose outside is white (not a colour of the ramp) reads the outside as missing."""
    x = _field(8, (512, 512))
    rgb = _jet(x)
    rgb[:, :, :60] = 255
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8", photometric="RGB",
                       crs="EPSG:32633", transform=Affine(30, 0, 500000, 0, -30, 4000000)) as d:
        d.write(rgb)
    with RasterSource(path, InputConfig(), "target") as src:
        assert src.ramp is not None
        data, valid = src.read_on_grid(src.grid)
    assert not valid[:, :60].any() and valid[:, 61:].all()
    assert np.corrcoef(_ranks(data[:, 61:]), _ranks(x[:, 61:]))[0, 1] > 0.999


def test_a_colour_table_in_a_ramps_colours_is_read_as_positions_along_it(tmp_path):
    """A paletted rendering of one band (a web map's temperature layer as a paletted PNG: 256
    entries of jet) was `optical` by its colour table and read as its colours' luminance, which
    jet does not order; now its modality comes from its pixels and the read ranks as the band.
    A table of unrelated colours (a class map) is optical and read as luminance, as before."""
    x = _field(9, (512, 512))
    table_colours = _jet(np.linspace(0, 1, 256))
    profile = dict(driver="GTiff", width=512, height=512, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(30, 0, 500000, 0, -30, 4000000), photometric="palette")
    ramp_path, class_path = tmp_path / "ramp.tif", tmp_path / "classes.tif"
    with rasterio.open(ramp_path, "w", **profile) as d:
        d.write(np.round(x * 255).astype(np.uint8)[None])
        d.write_colormap(1, {i: (*map(int, table_colours[:, i]), 255) for i in range(256)})
    rng = np.random.default_rng(10)
    with rasterio.open(class_path, "w", **profile) as d:
        d.write(rng.integers(0, 8, (32, 32)).repeat(16, 0).repeat(16, 1).astype(np.uint8)[None])
        d.write_colormap(1, {i: (*map(int, rng.integers(0, 256, 3)), 255) for i in range(256)})
    with RasterSource(ramp_path, InputConfig(), "target") as src:
        assert "ramp" in src.band_label and src.modality_decision.by != "metadata", src.modality_decision.to_dict()
        text = modality_text({"target": {"modality": src.modality,
                                         "modality_evidence": src.modality_decision.to_dict()}})
        assert "colour ramp" in text, text
        data, valid = src.read_on_grid(src.grid)
    assert valid.all() and np.corrcoef(_ranks(data), _ranks(x))[0, 1] > 0.999
    with RasterSource(class_path, InputConfig(), "target") as src:
        assert src.band_label.endswith("as luminance)") and (src.modality, src.modality_decision.by) == (
            "optical", "metadata")
