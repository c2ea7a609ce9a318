"""Recovery of known perturbations on real optical/SAR and optical/thermal pairs (../shared/data).

The Sentinel-1/2 pairs carry a few pixels of misalignment of their own, so each perturbed
result is compared with georeg's result on the unperturbed pair: both must put every target
pixel of the interior at the same corrected map position. Landsat OLI and TIRS bands share one
grid, so there the truth is the unperturbed geotransform itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from synthetic import (
    corrected_positions,
    lattice,
    resample_content,
    rotation_scale_matrix,
    shift_geotransform,
)

import georeg
from georeg.config import RegistrationConfig
from georeg.grid import Grid

pytestmark = pytest.mark.data
PAIRS = ["050", "176", "268"]
SHIFTS = [(40.0, -40.0), (-40.0, 25.0), (13.0, 38.0)]


def _grid(path) -> Grid:
    with rasterio.open(path) as d:
        return Grid(d.transform, d.width, d.height, d.crs)


def _register(ref, tgt, out, **sections):
    cfg = RegistrationConfig().with_options(output={"overwrite": True}, **sections)
    return georeg.register(ref, tgt, out, cfg)


class _Unperturbed(dict):
    """georeg's result on each unperturbed pair, computed when a test first asks for it (the default
    run needs one pair, the slow run all three)."""

    def __init__(self, volkov, folder):
        super().__init__()
        self.volkov, self.folder = volkov, folder

    def __missing__(self, pid):
        ref, tgt = self.volkov / f"{pid}_S2_RGB.tif", self.volkov / f"{pid}_S1_VH.tif"
        self[pid] = _register(ref, tgt, self.folder / f"{pid}.tif")
        return self[pid]


@pytest.fixture(scope="module")
def unperturbed(volkov, tmp_path_factory):
    return _Unperturbed(volkov, tmp_path_factory.mktemp("unperturbed"))


# every pair and shift with -m slow; the default run has the smoke test below on a crop
CASES = [(pid, shift) for shift in SHIFTS for pid in PAIRS]


@pytest.mark.slow
@pytest.mark.parametrize("pid,shift", CASES)
def test_s1s2_geocoding_shift(volkov, unperturbed, tmp_path, pid, shift):
    _check_geocoding_shift(volkov, unperturbed, tmp_path, pid, shift)


@pytest.fixture(scope="module")
def crops(volkov, tmp_path_factory):
    """The central 512 px of pair 176 (S2 and S1 files, names kept), a quarter of the pair's area."""
    from rasterio.windows import Window

    d = tmp_path_factory.mktemp("crops")
    win = Window(256, 256, 512, 512)
    for name in ("176_S2_RGB.tif", "176_S1_VH.tif"):
        with rasterio.open(volkov / name) as src:
            prof = {**src.profile, "width": 512, "height": 512, "transform": src.window_transform(win)}
            with rasterio.open(d / name, "w", **prof) as dst:
                dst.write(src.read(window=win))
    return d


def test_s1s2_geocoding_shift_smoke(crops, tmp_path_factory, tmp_path):
    """The same check with the default (learned) matcher on a 512 px crop of pair 176."""
    _check_geocoding_shift(crops, _Unperturbed(crops, tmp_path_factory.mktemp("unperturbed_crop")), tmp_path,
                           "176", SHIFTS[0])


def _check_geocoding_shift(volkov, unperturbed, tmp_path, pid, shift):
    ref, tgt = volkov / f"{pid}_S2_RGB.tif", volkov / f"{pid}_S1_VH.tif"
    # the file name keeps the clue that the target is SAR, as the unperturbed run had it
    perturbed = tmp_path / f"{pid}_S1_VH_shifted.tif"
    shift_geotransform(str(tgt), str(perturbed), *shift)
    result = _register(ref, perturbed, tmp_path / "out.tif")
    assert result.report["target"]["modality"] == unperturbed[pid].report["target"]["modality"] == "sar"
    g0, g1 = _grid(tgt), _grid(perturbed)
    pts = lattice(100, 100, g0.width - 100, g0.height - 100)
    err_px = np.linalg.norm(corrected_positions(result, g1, pts) - corrected_positions(unperturbed[pid], g0, pts),
                            axis=1) / g0.pixel_size
    assert err_px.max() < 1.0, f"pair {pid}, shift {shift}: max error {err_px.max():.2f} px"
    # and the correction itself is the perturbation (plus the pair's own few-pixel residual)
    assert np.allclose(result.report["shift"]["mean_px"], np.subtract(unperturbed[pid].report["shift"]["mean_px"],
                                                                      shift), atol=1.0)


@pytest.mark.slow
def test_s1s2_rotation_and_scale(volkov, unperturbed, tmp_path):
    pid = "268"
    ref, tgt = volkov / f"{pid}_S2_RGB.tif", volkov / f"{pid}_S1_VH.tif"
    g = _grid(tgt)
    m = rotation_scale_matrix(g.width, g.height, 3.0, 1.02)
    warped = tmp_path / f"{pid}_S1_VH_rotated.tif"
    resample_content(str(tgt), str(warped), m)
    result = _register(ref, warped, tmp_path / "out.tif")
    assert result.report["target"]["modality"] == "sar"
    pts = lattice(150, 150, g.width - 150, g.height - 150)
    old = (m @ np.c_[pts, np.ones(len(pts))].T).T[:, :2]
    err_px = np.linalg.norm(corrected_positions(result, g, pts) - corrected_positions(unperturbed[pid], g, old),
                            axis=1) / g.pixel_size
    assert err_px.max() < 1.5, f"max error {err_px.max():.2f} px"
    assert abs(result.report["model"]["parameters"]["rotation_deg"]
               - unperturbed[pid].report["model"]["parameters"]["rotation_deg"] - 3.0) < 0.1


@pytest.mark.parametrize("matcher", ["auto", "baseline"])
@pytest.mark.parametrize("shift", [(20.0, -20.0), (-20.0, 15.0)])
def test_landsat_optical_vs_thermal(landsat, landsat_clear_mask, tmp_path, shift, matcher):
    """'auto' uses the shipped kgl-opt-ir weights when they are recommended, else the baseline."""
    ref, tgt = landsat / "l8_B4.tif", landsat / "l8_B10.tif"
    perturbed = tmp_path / "b10_shifted.tif"
    shift_geotransform(str(tgt), str(perturbed), *shift)
    result = _register(ref, perturbed, tmp_path / "out.tif", matching={"matcher": matcher},
                       reference={"mask": str(landsat_clear_mask)}, target={"mask": str(landsat_clear_mask)})
    assert result.report["target"]["modality"] == "thermal"
    g0, g1 = _grid(tgt), _grid(perturbed)
    pts = lattice(50, 50, g0.width - 50, g0.height - 50)
    truth = np.c_[[g0.transform @ tuple(p) for p in pts]]
    err_px = np.linalg.norm(corrected_positions(result, g1, pts) - truth, axis=1) / g0.pixel_size
    assert err_px.max() < 1.0, f"shift {shift}: max error {err_px.max():.2f} px"



@pytest.mark.slow
@pytest.mark.parametrize("band", ["B4", "B8"])
def test_landsat_with_a_threshold_mask_that_leaves_cloud_edges_is_not_reliable_on_the_clouds(landsat, tmp_path,
                                                                                              band):
    """B10's coldest tenth masked in both rasters (a threshold a user might take for a cloud mask)
    leaves the cumulus band's edges, whose parallax between OLI and TIRS the tie points follow, 13-15
    px from the truth. Against the red B4 the first pass around no shift had found the truth on many
    tie points; against the 15 m panchromatic B8 the coarse shift was taken on the clouds and nothing
    but the inversion of the two images' contrast around the inliers gives them away. Not reliable,
    or right: against B8, matched again with the clouds that result lined up left out, the ground."""
    ref, tgt = landsat / f"l8_{band}.tif", landsat / "l8_B10.tif"
    perturbed = tmp_path / "b10_shifted.tif"
    shift_geotransform(str(tgt), str(perturbed), 20.0, -20.0)
    with rasterio.open(tgt) as d:
        b10, prof = d.read(1).astype(np.float64), {**d.profile, "dtype": "uint8", "nodata": None}
    clear = (b10 > np.percentile(b10, 10)).astype(np.uint8)[None]
    masks = []
    for name, src in (("ref", tgt), ("target", perturbed)):  # on B10's 30 m grid, for B8 too
        with rasterio.open(src) as d, rasterio.open(tmp_path / f"{name}_clear.tif", "w",
                                                    **{**prof, "transform": d.transform}) as o:
            o.write(clear)
        masks.append(str(tmp_path / f"{name}_clear.tif"))
    import warnings

    from georeg.errors import UncertainResultWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertainResultWarning)
        result = _register(ref, perturbed, tmp_path / "out.tif", reference={"mask": masks[0]},
                           target={"mask": masks[1]})
    moved_px = np.array(result.report["shift"]["mean_map"]) / 30.0 * (1, -1)  # in B10's 30 m pixels
    err = np.hypot(*(moved_px + (20.0, -20.0)))
    assert result.quality != "reliable" or err < 1.0, f"reliable and {err:.1f} px off"
    if err >= 1.0 and band == "B4":
        assert result.report["verdict"]["rival_motion"]["tie_points"] >= 100
    if band == "B8":
        assert result.quality == "reliable" and err < 1.0, (err, result.report["verdict"])
        assert result.report["clouds_left_out"]["first_attempt"]["reason"].startswith("around")  # the inversion


@pytest.mark.slow
def test_sar_against_sar_with_independent_speckle(volkov, tmp_path):
    """A Sentinel-1 time series: the same scene as linear power with two independent draws of
    4.4-look speckle, one the reference (read as optical by its role), the other the target off
    by a known shift. The truth is exact."""
    import warnings

    from affine import Affine

    with rasterio.open(volkov / "176_S1_VH.tif") as s:
        db = s.read(1).astype(np.float32) / 255 * 25 - 25
        prof = {**s.profile, "dtype": "float32", "count": 1}
    rng = np.random.default_rng(176)
    shift = (13.4, -8.7)
    paths = []
    for name, t in (("ref", prof["transform"]), ("tgt", prof["transform"] * Affine.translation(*shift))):
        lin = (10 ** (db / 10) * rng.gamma(4.4, 1 / 4.4, db.shape)).astype(np.float32)
        with rasterio.open(tmp_path / f"{name}.tif", "w", **{**prof, "transform": t}) as o:
            o.write(lin[None])
        paths.append(str(tmp_path / f"{name}.tif"))
    cfg = RegistrationConfig().with_options(output={"quicklook": None, "tie_points": None},
                                            matching={"matcher": "baseline"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: not uncertain, not read oddly
        res = georeg.register(*paths, str(tmp_path / "out.tif"), cfg)
    assert res.quality == "reliable" and res.report["target"]["modality"] == "sar"
    assert np.abs(np.array(res.report["shift"]["mean_px"]) + shift).max() < 0.1
