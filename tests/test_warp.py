"""georeg.warp and georeg.coordinates: frames, the pixel-centre convention and the geotransform
a model gives, on small grids without files."""

import math

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from georeg.coordinates import apply_affine, as_points, resample_by_matrix, through_matrix, to_crs
from georeg.errors import ShapeError
from georeg.estimation import FittedModel
from georeg.grid import Grid
from georeg.warp import corrected_transform, dense_coords, output_to_source, shift_summary, target_to_true_map

UTM = CRS.from_epsg(32633)


def _model(m) -> FittedModel:
    return FittedModel("affine", np.asarray(m, float), np.ones(1, bool), np.zeros(1))


def test_pixel_centres_are_half_integers():
    g = Grid(Affine(10, 0, 500000, 0, -10, 4000000), 100, 80, UTM)
    assert tuple(apply_affine(g.transform, np.array([[0.5, 0.5]]))[0]) == (500005.0, 3999995.0)
    back = apply_affine(~g.transform, apply_affine(g.transform, np.array([[3.25, 7.5]])))
    assert np.allclose(back, [[3.25, 7.5]])


def test_as_points_refuses_a_transposed_array():
    assert as_points([[1, 2], [3, 4], [5, 6]]).shape == (3, 2)
    with pytest.raises(ShapeError, match="transposed"):
        as_points(np.zeros((2, 5)))


def test_through_matrix_conventions():
    shift = np.array([[1, 0, 2.0], [0, 1, -1.0], [0, 0, 1]])
    x, y = through_matrix(shift, 3, 2)
    assert np.allclose(x, [2, 3, 4, 2, 3, 4]) and np.allclose(y, [-1, -1, -1, 0, 0, 0])
    # a rotation about the image centre: with centre 0.5 the centre pixel's centre maps to itself
    a = np.deg2rad(30)
    c = 2.5  # centre of a 5x5 image in the half-integer frame
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    m = np.array([[1, 0, c], [0, 1, c], [0, 0, 1]]) @ rot @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    x, y = through_matrix(m, 5, 5, centre=0.5)
    assert np.allclose((x[12], y[12]), (2.0, 2.0))
    img = np.arange(25, dtype=np.float32).reshape(5, 5)
    v, _, _ = resample_by_matrix(img, shift, (2, 2))
    assert v[1, 0] == img[0, 2]


def test_corrected_transform_of_a_translation_is_exact():
    g = Grid(Affine(10, 0, 500000, 0, -10, 4000000), 200, 200, UTM)
    model = _model([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])
    t, dev = corrected_transform(model, g, g)
    assert dev == 0.0
    assert (t.c, t.f) == (500030.0, 4000020.0)  # 3 px east, 2 px north (rows grow southward)
    # the target pixel whose content belongs 3 px right and 2 px up now sits there on the map
    f = target_to_true_map(model, g, g)
    assert np.allclose(f(np.array([[10.5, 10.5]])), apply_affine(g.transform, np.array([[13.5, 8.5]])))


def test_corrected_transform_across_crs_reports_its_deviation():
    ref = Grid(Affine(10, 0, 500000, 0, -10, 4000000), 200, 200, UTM)
    wgs = CRS.from_epsg(4326)
    x0, y0 = to_crs(UTM, wgs, np.array([[500000.0, 4000000.0]]))[0]
    tgt = Grid(Affine(1e-4, 0, x0, 0, -1e-4, y0), 220, 180, wgs)
    t, dev = corrected_transform(_model([[1, 0, 1.5], [0, 1, 0.5], [0, 0, 1]]), ref, tgt)
    assert 0 < dev < 0.05


def test_output_to_source_and_dense_coords_agree():
    g = Grid(Affine(10, 0, 0, 0, -10, 0), 64, 48, UTM)
    model = _model([[1.01, 0.02, 3.0], [-0.01, 0.99, 1.0], [0, 0, 1]])
    mapping = output_to_source(model, g, g, g)
    dense = dense_coords(mapping, 0, 0, 64, 48, step=16)
    xs, ys = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    exact = mapping(np.c_[xs.ravel(), ys.ravel()]).reshape(48, 64, 2)
    assert np.abs(dense - exact).max() < 1e-9  # exact for an affine mapping


def test_shift_summary_in_pixels_map_units_and_ground_metres():
    """Map units as the CRS has them; ground metres through the projection's scale where the
    shift is: UTM at its central meridian 0.9996, World Mercator 1/cos(latitude), State Plane
    in US survey feet; degrees by the ellipsoid's metres per degree."""
    from georeg.grid import metres_per_degree

    model = _model([[1, 0, 2.0], [0, 1, -4.0], [0, 0, 1]])
    utm = shift_summary(model, (0, 0, 100, 100), Grid(Affine(10, 0, 499500, 0, -10, 7000500), 100, 100,
                                                      CRS.from_epsg(32633)))
    assert np.allclose(utm["mean_px"], [2, -4]) and np.allclose(utm["mean_map"], [20, 40])
    assert utm["map_unit"] == "m" and np.allclose(utm["mean_m"], np.array([20, 40]) / 0.9996, rtol=1e-4)
    assert np.isclose(utm["max_m"], np.hypot(20, 40) / 0.9996, rtol=1e-4)
    # World Mercator at 60 degrees north: its scale there is sec(60) sqrt(1 - e^2 sin^2 60) = 1.995 on
    # the WGS 84 ellipsoid, so a map metre is about half a metre on the ground
    y60 = 8362698.0  # EPSG:3395's northing of 60 degrees
    merc = shift_summary(model, (0, 0, 100, 100), Grid(Affine(10, 0, 0, 0, -10, y60 + 500), 100, 100,
                                                       CRS.from_epsg(3395)))
    k = 2 * np.sqrt(1 - 0.00669438 * 0.75)
    assert np.allclose(merc["mean_m"], np.array([20, 40]) / k, rtol=1e-3), merc
    # State Plane (California zone 5) in US survey feet: a foot is 0.3048006 m, the scale about 1
    feet = shift_summary(model, (0, 0, 100, 100), Grid(Affine(10, 0, 6514513, 0, -10, 1856465), 100, 100,
                                                       CRS.from_epsg(2229)))
    assert feet["map_unit"] == "US survey foot" and np.allclose(feet["mean_m"], [6.096, 12.192], rtol=1e-4)
    # degrees of a geographic CRS, 1e-4 degree pixels at 60 degrees north: a degree of longitude
    # there is half a degree of latitude on the ground
    geo = shift_summary(model, (0, 0, 100, 100), Grid(Affine(1e-4, 0, 10, 0, -1e-4, 60.005), 100, 100,
                                                      CRS.from_epsg(4326)))
    assert geo["map_unit"] == "degree" and np.allclose(geo["mean_map"], [2e-4, 4e-4])
    assert np.allclose(geo["mean_m"], np.array([2e-4, 4e-4]) * metres_per_degree(60.0), rtol=1e-6)
    assert np.allclose(metres_per_degree(60.0), [55800.0, 111412.2], rtol=1e-4)  # the ellipsoid's
    # the pixel frame of pictures: no ground
    pic = shift_summary(model, (0, 0, 100, 100), Grid(Affine.identity(), 100, 100, None))
    assert pic["map_unit"] == "px" and "mean_m" not in pic


def test_ground_aspect_of_square_degrees_and_projected_pixels():
    """Square degrees are cos(latitude) times narrower than tall on the ground; projected pixels
    as their sides say; no CRS: square."""
    north = Grid(Affine(1e-4, 0, 10, 0, -1e-4, 60.005), 100, 100, CRS.from_epsg(4326))
    assert np.isclose(north.ground_aspect, 111412.2 / 55800.0, rtol=1e-3)  # WGS 84 metres per degree at 60 N
    assert np.isclose(Grid(Affine(1e-4, 0, 10, 0, -1e-4, 0.005), 100, 100, CRS.from_epsg(4326)).ground_aspect,
                      110574.3 / 111319.5, rtol=1e-3)
    assert Grid(Affine(10, 0, 0, 0, -20, 0), 10, 10, CRS.from_epsg(32633)).ground_aspect == 2.0
    assert Grid(Affine(10, 0, 0, 0, -20, 0), 10, 10, None).ground_aspect == 1.0
    assert (north.map_unit, Grid(Affine.identity(), 1, 1, None).map_unit) == ("degree", "px")
    g = north.scaled((2.0, 0.5))
    assert (g.width, g.height) == (50, 200) and np.isclose(g.transform.a, 2e-4) and np.isclose(g.transform.e, -5e-5)


def test_dense_coords_of_affine_and_curved_mappings_agree_with_pointwise():
    """Affine mappings take the direct route (outer sums), others the interpolated lattice; both
    agree with mapping every pixel centre."""
    a = np.array([[1.0003, 0.002, 13.4], [-0.0015, 0.9998, -8.7]])
    curved = lambda xy: xy + 1e-6 * xy ** 2  # noqa: E731  (interpolation error 1e-6 * 8 ** 2)
    for mapping, tol in ((lambda xy: xy @ a[:, :2].T + a[:, 2], 1e-9), (curved, 1e-4)):
        dense = dense_coords(mapping, 30, 50, 70, 45, step=16)
        mx, my = np.meshgrid(np.arange(70) + 30.5, np.arange(45) + 50.5)
        direct = mapping(np.c_[mx.ravel(), my.ravel()]).reshape(45, 70, 2)
        assert dense.shape == (45, 70, 2) and np.abs(dense - direct).max() < tol


def test_ground_metres_of_a_projected_grid_at_the_antimeridian():
    """The report's shift in metres takes the projection's scale from a step of about 100 m turned
    into longitude and latitude; on a UTM 60N scene whose middle lies on 180 degrees that step
    went from 180 to -180 (a ground metre per map unit of 3.6e5 before)."""
    from rasterio.warp import transform as crs_transform

    from georeg.grid import Grid

    xs, ys = crs_transform("EPSG:4326", "EPSG:32660", [180.0], [65.0])
    for east_of in (-50.0, 0.0, 50.0):  # the step across 180 or beside it
        g = Grid(Affine(10, 0, xs[0] + east_of - 500, 0, -10, ys[0] + 500), 100, 100, CRS.from_epsg(32660))
        m = g.map_offsets_m(np.array([[10.0, -20.0]]), (50.0, 50.0))[0]
        assert np.allclose(m, (10.0, -20.0), rtol=0.005), (east_of, m)


@pytest.mark.parametrize("epsg, lat_ts", [(3031, -71.0), (3413, 70.0)])
def test_ground_metres_of_a_polar_stereographic_grid_at_the_pole(epsg, lat_ts):
    """Polar stereographic grids (Antarctic and Arctic scenes) shrink the ground by the projection's
    scale, (1 + sin|latitude of true scale|) / 2 at the pole; a pixel of 10 map metres there is
    10.28 m (EPSG:3031) and 10.31 m (EPSG:3413) on the ground. Measured as longitude and latitude
    differences the step beside the pole came out 9.8 m (5% short)."""
    from georeg.grid import Grid

    k_pole = (1 + math.sin(math.radians(abs(lat_ts)))) / 2
    for centre in ((0.0, 0.0), (3000.0, -2000.0), (1_650_000.0, 0.0)):  # on the pole, beside it, about 75 degrees
        g = Grid(Affine(10, 0, centre[0] - 5120, 0, -10, centre[1] + 5120), 1024, 1024, CRS.from_epsg(epsg))
        m = g.map_offsets_m(np.array([[10.0, -20.0]]), (512.0, 512.0))[0]
        if centre[0] < 1e6:
            assert np.allclose(m, np.array([10.0, -20.0]) / k_pole, rtol=0.002), (centre, m)
        assert g.ground_pixel_size_m == pytest.approx(abs(m[0]), rel=1e-3)
