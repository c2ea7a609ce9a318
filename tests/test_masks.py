"""Masks the user gives: plain masks, and products' quality bands handed over as they are (georeg.masks)."""

import logging
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from georeg.config import InputConfig
from georeg.errors import InputWarning
from georeg.masks import MaskRule, mask_rule
from georeg.raster import RasterSource

T = Affine(10, 0, 500000, 0, -10, 4000000)


def _write(path, arr, transform=T, descriptions=None):
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs="EPSG:32633", transform=transform) as d:
        d.write(arr)
        for i, name in enumerate(descriptions or []):
            d.set_band_description(i + 1, name)
    return str(path)


def _rule(path):
    with rasterio.open(path) as d, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rule = mask_rule(d, path, "reference")
    return rule, [w for w in caught if issubclass(w.category, InputWarning)]


def test_each_quality_band_layout_marks_clouds_and_fill_unusable():
    scl = np.arange(12, dtype=np.uint8)
    usable, cloud = MaskRule("s2-scl").usable(scl)
    assert list(np.flatnonzero(usable)) == [2, 4, 5, 6, 7, 10, 11]  # thin cirrus (10) veils, does not hide
    assert list(np.flatnonzero(cloud)) == [3, 8, 9]
    # Collection 2 QA_PIXEL: clear land, water, cirrus (kept), fill, dilated cloud, cloud, shadow
    qa = np.array([21824, 21952, 54596, 1, 21826, 22280, 23888], np.uint16)
    assert MaskRule("landsat-qa-pixel").usable(qa)[0].tolist() == [True, True, True, False, False, False, False]
    # Collection 1 BQA: clear, fill, cloud, cloud confidence medium, shadow confidence high, cirrus high (kept)
    c1 = np.array([2720, 1, 2800, 2752, 2976, 6816], np.uint16)
    ok, cloud = MaskRule("landsat-bqa-c1").usable(c1)
    assert ok.tolist() == [True, False, False, False, False, True]
    assert cloud.tolist() == [False, False, True, True, True, False]  # fill is not widened
    # pre-collection BQA (the scene in ../shared/data): clear, cloud yes, cloud maybe, cirrus high (kept)
    pre = np.array([20480, 53248, 36864, 28672, 1], np.uint16)
    assert MaskRule("landsat-bqa-pre").usable(pre)[0].tolist() == [True, False, False, True, False]
    assert MaskRule().usable(np.array([0, 1, 255]))[0].tolist() == [False, True, True]


def test_quality_bands_are_recognised_by_name_or_band_description_and_checked_by_value(tmp_path):
    classes = np.tile(np.arange(12, dtype=np.uint8), (12, 1))
    assert _rule(_write(tmp_path / "T33UUP_20240601T101559_SCL_20m.tif", classes))[0].kind == "s2-scl"
    qa = np.full((8, 8), 21824, np.uint16)
    assert _rule(_write(tmp_path / "LC09_L2SP_193027_20240601_02_T1_QA_PIXEL.TIF", qa))[0].kind == "landsat-qa-pixel"
    assert _rule(_write(tmp_path / "LC08_L1TP_193027_20170601_01_T1_BQA.TIF", np.full((8, 8), 2720, np.uint16))
                 )[0].kind == "landsat-bqa-c1"
    assert _rule(_write(tmp_path / "l8_BQA.tif", np.full((8, 8), 20480, np.uint16)))[0].kind == "landsat-bqa-pre"
    # an Earth Engine export: the band described as SCL is the one read
    stack = np.stack([np.full((12, 12), 900, np.uint16), classes.astype(np.uint16)])
    rule, _ = _rule(_write(tmp_path / "export.tif", stack, descriptions=["B4", "SCL"]))
    assert (rule.kind, rule.band) == ("nonzero", 1)  # uint16 values are not SCL's 8-bit classes: refused as SCL
    rule, caught = _rule(_write(tmp_path / "export8.tif", stack.astype(np.uint8), descriptions=["B4", "SCL"]))
    assert (rule.kind, rule.band) == ("s2-scl", 2) and "band 2" in rule.reason and not caught
    # named like SCL, but holding other values: a plain mask, said so
    rule, caught = _rule(_write(tmp_path / "scene_SCL.tif", np.full((8, 8), 200, np.uint8)))
    assert rule.kind == "nonzero" and caught and "named like a SCL band" in str(caught[0].message)
    # a 0/1 mask made from a quality band and named after it stays a plain mask (1 is not "fill" nor "defective")
    for name, dtype in (("T33UUP_SCL_clear.tif", np.uint8), ("l8_BQA_clear.tif", np.uint16)):
        rule, caught = _rule(_write(tmp_path / name, (classes > 5).astype(dtype)))
        assert rule.kind == "nonzero" and "values 0 to 1" in str(caught[0].message)
    # a plain 0/1 mask: no warning; a class map under a neutral name: a warning that says how it is read
    rule, caught = _rule(_write(tmp_path / "clear.tif", (classes > 5).astype(np.uint8)))
    assert rule.kind == "nonzero" and not caught
    rule, caught = _rule(_write(tmp_path / "mask.tif", classes))
    assert rule.kind == "nonzero" and "12 distinct values" in str(caught[0].message)
    assert "SCL, QA_PIXEL, BQA" in str(caught[0].message)
    # words that merely contain a product's letters are not its name
    assert _rule(_write(tmp_path / "rescaled.tif", (classes > 5).astype(np.uint8)))[0].kind == "nonzero"


def test_hls_fmask_cloud_probability_and_qa60_layouts():
    # HLS Fmask bits: clear (low aerosol), cirrus bit (reserved, kept), cloud, adjacent, shadow, snow, water, fill
    hls = np.array([64, 65, 66, 68, 72, 80, 96, 255], np.uint8)
    assert MaskRule("hls-fmask").usable(hls)[0].tolist() == [True, True, False, False, False, True, True, False]
    # the Fmask algorithm's classes: land, water, shadow, snow, cloud, fill
    ok, cloud = MaskRule("fmask-classes").usable(np.array([0, 1, 2, 3, 4, 255], np.uint8))
    assert ok.tolist() == [True, True, False, True, False, False] and cloud.tolist() == [0, 0, 1, 0, 1, 0]
    ok, cloud = MaskRule("s2-cldprb").usable(np.array([0, 34, 35, 100], np.uint8))
    assert ok.tolist() == [True, True, False, False] and cloud.tolist() == [False, False, True, True]
    assert MaskRule("s2-qa60").usable(np.array([0, 1024, 2048, 3072], np.uint16))[0].tolist() == [
        True, False, True, False]  # opaque clouds (bit 10) out, cirrus (bit 11) kept
    assert (MaskRule("hls-fmask").outside, MaskRule("s2-cldprb").outside, MaskRule("s2-qa60").outside) == (255, 100, 0)


def test_hls_fmask_cloud_probability_and_qa60_are_recognised_and_checked(tmp_path):
    hls = np.array([[64, 66, 255, 96]] * 4, np.uint8)
    assert _rule(_write(tmp_path / "HLS.L30.T16RBT.2020288T164032.v2.0.Fmask.tif", hls))[0].kind == "hls-fmask"
    classes = np.array([[0, 1, 2, 4, 255]] * 5, np.uint8)
    assert _rule(_write(tmp_path / "LC08_L1TP_020039_20200601_Fmask4.tif", classes))[0].kind == "fmask-classes"
    prob = np.tile(np.arange(0, 101, 10, dtype=np.uint8), (4, 1))
    rule, caught = _rule(_write(tmp_path / "T16RBT_20200601T163901_MSK_CLDPRB_20m.tif", prob))
    assert rule.kind == "s2-cldprb" and not caught
    rule, caught = _rule(_write(tmp_path / "MSK_CLDPRB_20m.tif", np.zeros((4, 4), np.uint8)))  # a clear scene
    assert rule.kind == "s2-cldprb" and not caught
    # an Earth Engine export with QA60 as its second band; an empty QA60 masks nothing, said so
    stack = np.stack([np.full((4, 4), 900, np.uint16), np.array([[0, 1024, 2048, 0]] * 4, np.uint16)])
    rule, caught = _rule(_write(tmp_path / "s2.tif", stack, descriptions=["B4", "QA60"]))
    assert (rule.kind, rule.band) == ("s2-qa60", 2) and not caught
    rule, caught = _rule(_write(tmp_path / "s2_2023.tif", stack * 0, descriptions=["B4", "QA60"]))
    assert rule.kind == "s2-qa60" and "flags no cloud" in str(caught[0].message)
    rule, caught = _rule(_write(tmp_path / "clear_QA60.tif", np.array([[0, 1]] * 4, np.uint16)))
    assert rule.kind == "nonzero" and "named like a QA60 band" in str(caught[0].message)


def test_an_scl_band_at_20m_masks_clouds_widened_and_shadows_on_a_10m_raster(tmp_path):
    img = _write(tmp_path / "b04.tif", np.full((200, 200), 500, np.uint16))
    scl = np.full((100, 100), 4, np.uint8)  # vegetation
    scl[40:50, 40:50] = 9  # a cloud of 200 m, 100 m from the top left of the block
    scl[80:, :] = 0  # no data along the bottom
    scl[10, 90] = 10  # thin cirrus: usable
    path = _write(tmp_path / "T33UUP_20240601T101559_SCL_20m.tif", scl, transform=T @ Affine.scale(2))
    with RasterSource(img, InputConfig(mask=path), "reference") as r:
        _, valid = r.read_on_grid(r.grid)
        report = r.mask_rule.to_dict()
    yy, xx = np.mgrid[:200, :200]
    # the cloud (10 m rows and columns 80-99) widened by 150 m = 15 pixels, as a diamond
    dist = np.maximum(np.maximum(80 - yy, yy - 99), 0) + np.maximum(np.maximum(80 - xx, xx - 99), 0)
    expected = (dist > 15) & (yy < 160)
    assert (valid == expected).all()
    assert report["kind"] == "s2-scl" and "file name" in report["reason"]


def test_outside_a_landsat_quality_band_nothing_is_usable(tmp_path):
    img = _write(tmp_path / "b4.tif", np.full((60, 60), 900, np.uint16))
    qa = np.full((30, 60), 21824, np.uint16)  # covers the top half only
    path = _write(tmp_path / "LC08_L2SP_001002_20240101_02_T1_QA_PIXEL.TIF", qa)
    with RasterSource(img, InputConfig(mask=path), "reference") as r:
        _, valid = r.read_on_grid(r.grid)
    assert valid[:30].all() and not valid[30:].any()


@pytest.mark.slow
@pytest.mark.parametrize("shift", [(4.3, -2.6)])
def test_landsat_bqa_given_as_the_mask_registers_as_the_readme_recipe_does(landsat, landsat_clear_mask, tmp_path,
                                                                          shift):
    """The scene's own BQA handed over as --ref-mask/--target-mask reads as the README's recipe (cloud
    confidence maybe or yes, dilated 5 px = 150 m): the same result as with the recipe's mask."""
    import georeg
    from georeg.config import RegistrationConfig

    with rasterio.open(landsat / "l8_B10.tif") as s:
        prof, data = s.profile, s.read()
    prof["transform"] = prof["transform"] @ Affine.translation(*shift)
    tgt = tmp_path / "b10.tif"
    with rasterio.open(tgt, "w", **prof) as o:
        o.write(data)
    out = {}
    for name, mask in (("recipe", landsat_clear_mask), ("bqa", landsat / "l8_BQA.tif")):
        cfg = RegistrationConfig().with_options(output={"quicklook": None}, reference={"mask": str(mask)},
                                                target={"mask": str(mask)})
        out[name] = georeg.register(str(landsat / "l8_B4.tif"), str(tgt), str(tmp_path / f"{name}.tif"), cfg)
    assert out["bqa"].report["target"]["mask"]["kind"] == "landsat-bqa-pre"
    assert out["recipe"].report["target"]["mask"]["kind"] == "nonzero"
    a, b = (np.array(out[k].report["shift"]["mean_px"]) for k in ("recipe", "bqa"))
    assert np.abs(a - b).max() < 0.02 and out["bqa"].quality == out["recipe"].quality == "reliable"
    assert np.abs(b - (-np.array(shift))).max() < 0.5


@pytest.mark.slow
def test_landsat_high_confidence_clouds_alone_are_mask_enough(landsat, tmp_path):
    """A partial mask as users make one from the product's BQA, the high-confidence clouds only and
    not widened (6% of the scene, not the cumulus' thin edges): the truth, reliable, at once. Without
    a mask the first result follows the clouds' parallax (uncertain); georeg matches again with the
    clouds it lined up left out, and that is the truth too (since 2026-12-06)."""
    import warnings

    import georeg
    from georeg.config import RegistrationConfig

    shift = (20.0, -20.0)
    with rasterio.open(landsat / "l8_B10.tif") as s:
        prof, data = s.profile, s.read()
    with rasterio.open(landsat / "l8_BQA.tif") as q:
        clear = ((q.read(1).astype(np.int64) >> 14) & 3) < 3
        mprof = {**q.profile, "dtype": "uint8", "nodata": None}
    assert 0.04 < 1 - clear.mean() < 0.08
    mask = tmp_path / "clear.tif"
    with rasterio.open(mask, "w", **mprof) as o:
        o.write(clear.astype(np.uint8)[None])
    prof["transform"] = prof["transform"] @ Affine.translation(*shift)
    tgt = tmp_path / "b10.tif"
    with rasterio.open(tgt, "w", **prof) as o:
        o.write(data)
    out = {}
    for name, m in (("mask", str(mask)), ("none", None)):
        cfg = RegistrationConfig().with_options(output={"quicklook": None}, reference={"mask": m},
                                                target={"mask": m})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = georeg.register(str(landsat / "l8_B4.tif"), str(tgt), str(tmp_path / f"{name}.tif"), cfg)
    assert out["mask"].quality == "reliable" and out["mask"].report["clouds_left_out"] is None
    assert np.abs(np.array(out["mask"].report["shift"]["mean_px"]) + shift).max() < 0.5
    left_out = out["none"].report["clouds_left_out"]
    assert left_out is not None and left_out["first_attempt"]["quality"] == "uncertain"
    assert out["none"].quality == "reliable"
    assert np.abs(np.array(out["none"].report["shift"]["mean_px"]) + shift).max() < 0.5


def test_a_mask_that_leaves_almost_nothing_says_so_when_registration_fails(small_pair, tmp_path, caplog):
    """Clouds over 99.6% of the reference: the failure says how little was usable, and why."""
    import georeg
    from georeg.config import RegistrationConfig
    from georeg.errors import TooFewTiePointsError

    ref, tgt = small_pair()
    with rasterio.open(ref) as d:
        scl = np.full((d.height, d.width), 9, np.uint8)  # cloud of high probability
        scl[130:180, 130:180] = 4  # 50 px, 20 px once the clouds around are widened by 150 m
        path = tmp_path / "S2_SCL_20m.tif"
        with rasterio.open(path, "w", driver="GTiff", width=d.width, height=d.height, count=1, dtype="uint8",
                           crs=d.crs, transform=d.transform) as o:
            o.write(scl[None])
    cfg = RegistrationConfig().with_options(output={"quicklook": None}, reference={"mask": str(path)})
    with pytest.raises(TooFewTiePointsError) as err, caplog.at_level(logging.INFO, logger="georeg"):
        georeg.register(str(ref), str(tgt), str(tmp_path / "out.tif"), cfg)
    # rotation and scale are not searched on so little (it took half a minute to find nothing)
    assert "too little to search rotation and scale" in caplog.text and "searching rotation" not in caplog.text
    msg = str(err.value)
    assert "% of the overlap is usable in both rasters" in msg and f"--ref-mask {path}" in msg
    assert not (tmp_path / "out.tif").exists()


def test_a_plain_mask_s_own_nodata_is_unusable(tmp_path):
    """A 0/1 mask that declares 255 as its nodata: those pixels are not usable (they were, as any
    non-zero value, before the mask was warped with a nodata of its own), and no warning."""
    img = _write(tmp_path / "img.tif", np.full((20, 20), 100, np.uint8))
    m = np.ones((20, 20), np.uint8)
    m[:5], m[15:] = 255, 0
    path = tmp_path / "mask.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=T, nodata=255) as d:
        d.write(m[None])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with RasterSource(img, InputConfig(mask=str(path)), "reference") as r:
            _, valid = r.read_on_grid(r.grid)
    assert not valid[:5].any() and valid[5:15].all() and not valid[15:].any()
