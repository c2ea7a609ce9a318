import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine

from georeg.errors import UnknownMatcherError
from georeg.features import box_count, box_count_at, fft_size, ncc_search, oriented_gradient_channels
from georeg.keypoints import detect
from georeg.matchers import BaselineMatcher, load
from georeg.matching import peak_analysis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # cases.scan_line_gaps


def _texture(n=256, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.0).astype(np.float32)


def test_oriented_gradients_shape_and_norm():
    img = torch.from_numpy(_texture())[None, None]
    f = oriented_gradient_channels(img)
    assert f.shape == (1, 9, 256, 256)
    norm = f.pow(2).sum(1).sqrt()
    assert float(norm.max()) <= 1.0 + 1e-5


@pytest.mark.parametrize("shape", [(1, 3, 300, 257), (2, 2, 9, 40), (1, 1, 64, 1), (1, 1, 3, 3)])
@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_cpu_blur_is_the_separable_gaussian_with_reflect_padding(shape, sigma, monkeypatch):
    """The CPU blur against scipy's 1-D correlations (mirror: the edge pixel not repeated; nearest
    where the image is narrower than the kernel's radius), and the same numbers whatever its blocks."""
    from scipy.ndimage import correlate1d

    import georeg.features as feats

    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    k = feats._gauss_kernel(sigma, "cpu", torch.float32).numpy()
    mode = "mirror" if min(shape[-2:]) > len(k) // 2 else "nearest"
    want = correlate1d(correlate1d(x.numpy(), k, axis=-1, mode=mode), k, axis=-2, mode=mode)
    got = feats.gaussian_blur(x, sigma)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert float(np.abs(got.numpy() - want).max()) < 3e-7
    assert torch.equal(x, torch.rand(shape, generator=torch.Generator().manual_seed(3)))  # the input is kept
    monkeypatch.setattr(feats, "BLUR_ROWS", 5)
    monkeypatch.setattr(feats, "BLUR_COLUMNS", 7)
    assert torch.equal(feats.gaussian_blur(x, sigma), got)


def _whole_tensor_features(img, n_orient=9, grad_sigma=1.0, cell_sigma=2.0, eps_ratio=0.1):
    """The features written as whole-tensor operations (their definition, before the memory-lean
    version built them a few orientations at a time)."""
    import math

    from georeg.features import gaussian_blur, gradients

    gx, gy = gradients(img, grad_sigma)
    theta = torch.arange(n_orient, dtype=img.dtype) * (math.pi / n_orient)
    ch = (gx * torch.cos(theta).view(1, -1, 1, 1) + gy * torch.sin(theta).view(1, -1, 1, 1)).abs()
    ch = gaussian_blur(ch, cell_sigma)
    ch = 0.25 * torch.roll(ch, 1, dims=1) + 0.5 * ch + 0.25 * torch.roll(ch, -1, dims=1)
    norm = torch.sqrt((ch * ch).sum(1, keepdim=True))
    eps = eps_ratio * norm.mean(dim=(1, 2, 3), keepdim=True) + 1e-6
    return ch / (norm + eps)


@pytest.mark.parametrize("shape,kw", [((1, 1, 130, 97), {}), ((3, 1, 64, 64), {}),
                                      ((1, 1, 80, 80), {"n_orient": 6, "cell_sigma": 1.0}),
                                      ((1, 1, 70, 90), {"n_orient": 8})])
@pytest.mark.parametrize("small_px", [0, None])  # one orientation at a time, or three (a small image)
def test_oriented_gradients_equal_the_whole_tensor_definition(shape, kw, small_px, monkeypatch):
    from georeg import features as feats

    if small_px is not None:
        monkeypatch.setattr(feats, "OGC_CPU_SMALL_PX", small_px)
    img = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(oriented_gradient_channels(img, **kw), _whole_tensor_features(img, **kw))


@pytest.mark.parametrize("shape,kw", [((1, 1, 130, 97), {}), ((2, 1, 80, 80), {"n_orient": 6, "cell_sigma": 1.0})])
def test_float16_storage_keeps_the_channels_and_the_search(shape, kw):
    """The tile matcher keeps its channels in float16: within float16 rounding of the float32
    definition, and the search finds the same placements with scores within 1e-3."""
    img = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    wide = _whole_tensor_features(img, **kw)
    narrow = oriented_gradient_channels(img, storage=torch.float16, **kw)
    assert narrow.dtype == torch.float16
    assert float((narrow.float() - wide).abs().max()) < 1e-3
    assert float((narrow.float() - wide).abs().max()) > 0  # really narrowed, not the float32 numbers
    p, r = 24, 8
    tmpl, win = (slice(30, 30 + p), slice(33, 33 + p)), (slice(30 - r, 30 + p + r), slice(30 - r, 30 + p + r))
    m_wide = ncc_search(wide[:, :, tmpl[0], tmpl[1]], wide[:, :, win[0], win[1]])
    m_narrow = ncc_search(narrow[:, :, tmpl[0], tmpl[1]], narrow[:, :, win[0], win[1]])
    assert torch.equal(m_wide.flatten(1).argmax(1), m_narrow.flatten(1).argmax(1))
    assert float((m_wide - m_narrow).abs().max()) < 1e-3
    assert BaselineMatcher().prepare(img[:, :1]).dtype == torch.float16


def test_ncc_search_finds_known_offset():
    img = torch.from_numpy(_texture())[None, None]
    f = oriented_gradient_channels(img)
    p, r = 32, 10
    y, x = 100, 120
    dy, dx = 4, -7
    # the template is cut (dx, dy) away from the window centre: the best placement is (r + dx, r + dy)
    win = f[:, :, y - r:y - r + p + 2 * r, x - r:x - r + p + 2 * r]
    tmpl = f[:, :, y + dy:y + dy + p, x + dx:x + dx + p]
    m = ncc_search(tmpl, win)
    assert m.shape == (1, 2 * r + 1, 2 * r + 1)
    v, u = divmod(int(m.flatten().argmax()), 2 * r + 1)
    assert (u - r, v - r) == (dx, dy)
    assert float(m.max()) > 0.999


def test_fft_size_is_a_fast_size_at_least_n():
    for n in range(1, 300):
        f = fft_size(n)
        assert f >= n and f % 4 == 0 and f - n < 40
        k = f
        for q in (2, 3, 5):
            while k % q == 0:
                k //= q
        assert k == 1, (n, f)
    assert (fft_size(76), fft_size(144), fft_size(146)) == (80, 144, 160)


def test_ncc_search_equals_the_direct_sum_on_padded_sizes():
    """Every placement, computed by hand in float64, on window sizes the transform pads (76, 146)
    and one it does not (144): the padding must not wrap a placement round."""
    rng = np.random.default_rng(3)
    for p, s in ((64, 76), (64, 146), (64, 144), (8, 13)):
        t = rng.random((2, 3, p, p))
        w = rng.random((2, 3, s, s))
        m = ncc_search(torch.from_numpy(t).float(), torch.from_numpy(w).float()).double().numpy()
        k = s - p + 1
        assert m.shape == (2, k, k)
        for n in range(2):
            t0 = t[n] - t[n].mean()
            for v, u in ((0, 0), (k - 1, k - 1), (0, k - 1), (k - 1, 0), (k // 2, k // 3)):
                c = w[n, :, v:v + p, u:u + p]
                c0 = c - c.mean()
                want = (t0 * c0).sum() / np.sqrt((t0 * t0).sum() * (c0 * c0).sum())
                assert abs(m[n, v, u] - want) < 1e-4, (p, s, n, v, u)


def test_peak_analysis_subpixel():
    k = 21
    yy, xx = np.mgrid[0:k, 0:k]
    true = (9.3, 11.7)
    maps = torch.from_numpy(np.exp(-((xx - true[0]) ** 2 + (yy - true[1]) ** 2) / 8.0))[None].float()
    uv, best, ratio, interior = peak_analysis(maps)
    assert interior[0]
    assert abs(uv[0, 0] - true[0]) < 0.15 and abs(uv[0, 1] - true[1]) < 0.15


def test_box_counts_match_direct_counts():
    m = np.random.default_rng(3).random((40, 50)) > 0.4
    c = box_count(m, 5)
    padded = np.pad(m, 2)
    direct = np.array([[padded[y:y + 5, x:x + 5].sum() for x in range(50)] for y in range(40)])
    assert c.dtype == np.int32 and (c == direct).all()  # edges included: outside counts as False
    xy = np.array([[0, 0], [49, 39], [10, 20], [3, 38]])
    assert (box_count_at(m, 5, xy) == direct[xy[:, 1], xy[:, 0]]).all()


def test_keypoints_are_spread_and_inside():
    img = _texture(512)
    valid = np.ones_like(img, bool)
    valid[:, :100] = False
    xy, sc = detect(img, valid, 100, border=40, patch_size=32)
    assert 60 <= len(xy) <= 100
    assert (xy[:, 0] >= 116).all()  # the patch must lie in the valid part
    assert (xy >= 40).all() and (xy < 512 - 40).all()
    # spread: every quadrant of the valid area gets points
    qx = xy[:, 0] > 306
    qy = xy[:, 1] > 256
    assert all(((qx == a) & (qy == b)).sum() > 5 for a in (0, 1) for b in (0, 1))


def test_keypoints_of_a_tile_half_outside_the_data_fill_the_budget():
    # the cells outside the valid half have no points; their places go to the valid cells, which
    # each get their own share before any gets a second round (before: 63 of these 120)
    img = _texture(512)
    valid = np.ones_like(img, bool)
    valid[:, 256:] = False
    n = 120
    xy, sc = detect(img, valid, n, border=40, patch_size=64)
    assert len(xy) == n and len(np.unique(xy, axis=0)) == n
    assert (xy[:, 0] <= 256 - 32).all()  # every patch (98% of it) inside the valid half
    assert (np.diff(sc) <= 0).all()  # strongest first, as before
    # spread: each of four horizontal bands of the valid half gets a fair share
    bands = np.digitize(xy[:, 1], [143, 246, 349])
    assert np.bincount(bands, minlength=4).min() > n / 8
    # a whole valid tile gets its n points too
    full, _ = detect(img, np.ones_like(valid), n, border=40, patch_size=64)
    assert len(full) == n


def test_matcher_api_scores_pairs():
    m = load("baseline", device="cpu")
    assert isinstance(m, BaselineMatcher)
    img = torch.from_numpy(_texture(128))
    img = (img - img.min()) / (img.max() - img.min())
    a = torch.stack([img[0:64, 0:64], img[32:96, 32:96]])[:, None]
    b = torch.stack([img[0:64, 0:64], img[64:128, 0:64]])[:, None]
    s = m.score(a, b)
    assert s.shape == (2,)
    assert float(s[0]) > 0.99 and float(s[1]) < 0.8
    s8 = m.score((a * 255).to(torch.uint8), (b * 255).to(torch.uint8))
    assert torch.allclose(s8, s, atol=0.02)
    with pytest.raises(ValueError, match=r"\(N, 1, P, P\)"):
        m.score(a[:, 0], b[:, 0])


def test_unknown_matcher():
    with pytest.raises(UnknownMatcherError, match="unknown matcher 'nope'; available: baseline"):
        load("nope")


@pytest.mark.parametrize("shape,k", [((1, 1, 90, 70), 17), ((6, 1, 21, 21), 5), ((2, 3, 15, 40), 3)])
def test_max_filter_equals_max_pooling(shape, k):
    """The CPU's running maximum gives max_pool2d's numbers (padding counts as -inf)."""
    import torch.nn.functional as F

    from georeg.features import max_filter

    x = torch.randn(shape, generator=torch.Generator().manual_seed(k))
    pooled = F.max_pool2d(F.max_pool2d(x, (1, k), stride=1, padding=(0, k // 2)), (k, 1), stride=1,
                          padding=(k // 2, 0))
    assert torch.equal(max_filter(x, k), pooled)


def test_small_holes_and_thin_gaps_take_their_surroundings_and_the_outside_stays_empty():
    """Scattered missing pixels (a dB image's -inf, nodata specks) and thin strips of them (Landsat
    7's scan-line gaps, up to 14 px wide) are filled from the valid pixels around them and count as
    data; the area outside the footprint, a larger gap and a short one that is no strip stay out."""
    from georeg.missing import GAP_ELONGATION, MAX_GAP_PX, MAX_HOLE_PX, fill_missing

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:200]
    img = (np.sin(xx / 9.0) + np.cos(yy / 13.0)).astype(np.float32)
    valid = np.ones(img.shape, bool)
    valid[:, 150:] = False  # outside the footprint
    valid[20:44, 20:44] = False  # a gap of 576 px, 24 px across
    assert MAX_HOLE_PX < 576 and MAX_GAP_PX < 24
    valid[100:114, :140] = False  # a strip 14 px wide from the array's edge into the data
    valid[160:164, 60:158] = False  # a strip 4 px wide into the outside
    valid[60:78, 60:72] = False  # a blob 12 x 18 px, 216 px
    assert GAP_ELONGATION * MAX_GAP_PX > 18
    scattered = (rng.random(img.shape) < 0.01) & valid
    valid &= ~scattered
    out, filled = fill_missing(np.where(valid, img, 0.0).astype(np.float32), valid)
    large = np.zeros_like(valid)  # the outside, the gap, the blob, the array's edge and the pixels that touch them
    large[:, 148:] = large[18:46, 18:46] = large[58:80, 58:74] = True
    large[:2] = large[-2:] = large[:, :2] = True
    inside = scattered & ~large
    assert filled[inside].all() and np.abs(out[inside] - img[inside]).max() < 0.2  # of a range of 4
    assert filled[100:114, :140].all() and np.abs(out[100:114, :140] - img[100:114, :140]).max() < 0.5
    assert filled[160:164, 60:150].all()
    assert not filled[:, 150:].any() and not filled[20:44, 20:44].any() and not filled[60:78, 60:72].any()
    assert (out[~filled] == 0).all()


def test_thin_gaps_are_judged_in_the_rasters_own_pixels(tmp_path):
    """Gaps 14 px wide in a 30 m raster are filled when it is read on its own grid, on a 1.4x finer
    one (20 px there) and on a 2x coarser one; not on a 3x finer one (upsampled, the filled strips
    misled the learned matcher), nor where the caller asks for the data as they are; a 30 px gap
    is filled on none."""
    import rasterio

    from georeg.config import InputConfig
    from georeg.missing import MAX_GAP_PX, MAX_GAP_UPSAMPLING
    from georeg.raster import RasterSource

    yy, xx = np.mgrid[0:240, 0:240]
    img = (100 + 50 * np.sin(xx / 9.0) + 50 * np.cos(yy / 13.0)).astype(np.uint8)
    img[60:74, :] = img[150:180, :] = 0
    assert 14 <= MAX_GAP_PX < 30 and 1.4 <= MAX_GAP_UPSAMPLING < 3
    path = tmp_path / "gaps.tif"
    with rasterio.open(path, "w", driver="GTiff", width=240, height=240, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:32633", transform=Affine(30, 0, 500000, 0, -30, 4000000)) as d:
        d.write(img, 1)
    with RasterSource(str(path), InputConfig(), "target") as src:
        for k, filled in ((1, True), (1.4, True), (0.5, True), (3, False)):
            grid = src.grid.scaled(1 / k)
            _, valid = src.read_on_grid(grid)
            rows = slice(round(62 * k), round(72 * k))
            assert valid[rows, 10:-10].all() == filled, k
            assert not valid[round(152 * k):round(178 * k)].any(), k
        _, valid = src.read_on_grid(src.grid, fill_gaps=False)  # the quicklook's reads
        assert not valid[60:74].any()


def test_a_users_mask_is_not_filled(small_pair, tmp_path):
    """Pixels a user's mask excludes (scattered cloud pixels) stay excluded: only the raster's own
    missing pixels are filled."""
    import rasterio

    from georeg.config import InputConfig
    from georeg.raster import RasterSource

    ref, _ = small_pair("tgt.tif")
    with rasterio.open(ref) as d:
        prof = d.profile
    keep = np.random.default_rng(1).random((prof["height"], prof["width"])) > 0.01
    mask = tmp_path / "mask.tif"
    with rasterio.open(mask, "w", **dict(prof, count=1, dtype="uint8", nodata=None)) as m:
        m.write(keep.astype(np.uint8), 1)
    with RasterSource(str(ref), InputConfig(mask=str(mask)), "reference") as src:
        _, valid = src.read_on_grid(src.grid)
    assert (valid == keep).all()


def _scattered_nan(a, prof):
    a = a.astype(np.float32)
    a[np.random.default_rng(3).random(a.shape) < 0.01] = np.nan
    return a, dict(prof, dtype="float32", nodata=float("nan"))


def _scan_line_gaps(a, prof):
    from cases import scan_line_gaps

    gaps = scan_line_gaps(a.shape)
    assert 0.2 < gaps.mean() < 0.25
    return np.where(gaps, 0, np.maximum(a, 1)).astype(a.dtype), dict(prof, nodata=0)


@pytest.mark.parametrize("missing", [_scattered_nan, _scan_line_gaps])
def test_a_target_with_missing_pixels_is_matched_from_both_sides(small_pair, tmp_path, missing):
    """A float target with 1% scattered NaN pixels (dB of a power image with zeros; resampled, they
    spoil about 4% of the pixels), and a target with Landsat 7-like scan-line gaps (nodata 0, 22% of
    its pixels in strips): no patch of either was 98% valid, so the target side gave no tie point
    and the result was uncertain. Filled, both sides match as on the whole target."""
    import rasterio

    import georeg
    from georeg.config import RegistrationConfig

    ref, tgt = small_pair("tgt.tif")
    with rasterio.open(tgt) as d:
        a, prof = missing(d.read(1), d.profile)
    holed = tmp_path / "holed.tif"
    with rasterio.open(holed, "w", **prof) as o:
        o.write(a, 1)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"},
                                            output={"quicklook": None, "tie_points": None, "report": None})
    res = georeg.register(str(ref), str(holed), str(tmp_path / "out.tif"), cfg)
    counts = res.report["counts"]
    assert counts["backward"] > 0.5 * counts["forward"], counts
    assert res.quality == "reliable"
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3), res.report["shift"]


@pytest.mark.parametrize("declared, clipped", [
    pytest.param(True, False, id="nodata_0_and_BQA"),
    pytest.param(False, False, id="0_undeclared_no_mask", marks=pytest.mark.slow),
    pytest.param(False, True, id="0_undeclared_clipped", marks=pytest.mark.slow)])
def test_landsat_thermal_with_scan_line_gaps_registers_reliably(landsat, tmp_path, declared, clipped):
    """Landsat 8's B10 (thermal) with Landsat 7-like scan-line gaps, its geotransform off by a known
    shift, on B4: `reliable` within 0.5 px of the truth and read as thermal, with 0 declared as
    nodata and the scene's BQA as both masks (it was `uncertain` on the reference's tie points
    alone, and `optical`), and with the gaps' 0 undeclared, as USGS level-1 files come, and no mask
    (it was `uncertain` and 11.6 px off, the gaps read as data); so too an area clipped out of a
    larger scene whose corners miss the gaps (the gaps were read as data)."""
    import rasterio
    from cases import scan_line_gaps
    from scan_gaps import CROP, SCENE

    import georeg
    from georeg.config import RegistrationConfig

    shift = (8.3, -8.2)
    with rasterio.open(landsat / "l8_B10.tif") as s:
        a, prof = s.read(1), s.profile
    gaps = scan_line_gaps(SCENE, window=(*CROP, *a.shape)) if clipped else scan_line_gaps(a.shape)
    a[gaps] = 0
    prof.update(nodata=0 if declared else None, transform=prof["transform"] @ Affine.translation(*shift))
    tgt = tmp_path / "b10.tif"
    with rasterio.open(tgt, "w", **prof) as o:
        o.write(a, 1)
    bqa = str(landsat / "l8_BQA.tif")
    masks = {"reference": {"mask": bqa}, "target": {"mask": bqa}} if declared else {}
    cfg = RegistrationConfig().with_options(output={"quicklook": None, "tie_points": None, "report": None}, **masks)
    res = georeg.register(str(landsat / "l8_B4.tif"), str(tgt), str(tmp_path / "out.tif"), cfg)
    assert res.report["target"]["modality"] == "thermal", res.report["target"]["modality_evidence"]
    assert res.quality == "reliable", res.report["verdict"]["reason"]
    assert np.abs(np.array(res.report["shift"]["mean_px"]) + shift).max() < 0.5, res.report["shift"]
    # (declared nodata: no fill value looked for)
    assert res.report["target"]["scan_line_gaps"] == (0.0 if declared else pytest.approx(gaps.mean(), abs=0.01))


@pytest.mark.parametrize("model", ["translation", "affine"])
def test_a_float_target_with_an_undeclared_minus_3e38_collar_registers(small_pair, tmp_path, model):
    """A float32 target whose footprint's outside is -3.4e38 (float32's lowest, the fill of ArcGIS
    and many exporters) with no nodata declared: the collar is masked, the result is the plain
    pair's, and the corrected copy declares the fill as nodata, whether it is copied (translation)
    or resampled (affine). Before, the fill was averaged into the coarse pass and overflowed the
    speckle filter: no tie point at all."""
    import rasterio

    import georeg
    from georeg.config import RegistrationConfig

    ref, tgt = small_pair("tgt.tif")
    with rasterio.open(tgt) as d:
        a, prof = d.read(1).astype(np.float32), d.profile
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    collar = (xx < 80 - yy / 4) | (yy > 250 + xx / 6)
    a[collar] = -3.4028235e38
    filled = tmp_path / "filled.tif"
    with rasterio.open(filled, "w", **dict(prof, dtype="float32", nodata=None)) as o:
        o.write(a, 1)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, estimation={"model": model},
                                            output={"quicklook": None, "tie_points": None, "report": None})
    res = georeg.register(str(ref), str(filled), str(tmp_path / "out.tif"), cfg)
    assert res.quality == "reliable"
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3), res.report["shift"]
    assert res.report["target"]["edge_fill_value"] == pytest.approx(-3.4028235e38)
    with rasterio.open(tmp_path / "out.tif") as o:
        assert o.nodata == pytest.approx(-3.4028235e38)
        out, valid = o.read(1), o.read_masks(1) > 0
    assert valid.mean() > 0.5 and out[valid].min() > -1e6, out[valid].min()


def test_a_degenerate_model_reads_nothing_through_it(small_pair):
    """sample_through: a model that spreads a window over far more than MAX_READ_AREA times its
    area, or maps its points nowhere, gives an all-invalid window of the right shape without
    reading (a first pass on a mirror image once asked for a 395 GiB read); a plain shift reads."""
    from rasterio.windows import Window

    from georeg.config import InputConfig
    from georeg.matching import sample_through
    from georeg.raster import RasterSource

    _, tgt = small_pair("tgt.tif")
    with RasterSource(str(tgt), InputConfig(), "target") as src:
        win = Window(10, 20, 100, 80)
        for inverse in (lambda xy: xy * 1000.0, lambda xy: np.full_like(xy, np.nan)):
            data, valid = sample_through(src, src.grid, win, inverse)
            assert data.shape == valid.shape == (80, 100) and not valid.any()
        data, valid = sample_through(src, src.grid, win, lambda xy: xy + (3.0, -2.0))
        assert valid.all() and data.std() > 0
        plain, _ = src.read_on_grid(src.grid, Window(13, 18, 100, 80))
        assert np.allclose(data, plain, atol=1e-3)
