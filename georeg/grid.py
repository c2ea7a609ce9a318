"""Grids: :class:`Grid` (a transform, a size and a CRS), :class:`GCPGrid` (placed by ground
control points or RPCs through GDAL's transformers), the pixel frame of rasters without
georeferencing, and ground metres. Pixel positions follow :mod:`georeg.coordinates` (centres at
half-integers)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.warp import transform as crs_transform
from rasterio.windows import Window


def metres_per_degree(lat: float) -> np.ndarray:
    """Metres on the WGS 84 ellipsoid per degree of longitude and of latitude at latitude ``lat``
    (the series of the ellipsoid's radii of curvature; within a centimetre a degree)."""
    p = math.radians(lat)
    return np.array([111412.84 * math.cos(p) - 93.5 * math.cos(3 * p) + 0.118 * math.cos(5 * p),
                     111132.92 - 559.82 * math.cos(2 * p) + 1.175 * math.cos(4 * p) - 0.0023 * math.cos(6 * p)])


def _earth_centred(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(N, 3) Earth-centred positions in metres of points on the WGS 84 ellipsoid."""
    a, e2 = 6378137.0, 6.69437999014e-3
    lo, la = np.radians(lon), np.radians(lat)
    n = a / np.sqrt(1 - e2 * np.sin(la) ** 2)
    return np.stack([n * np.cos(la) * np.cos(lo), n * np.cos(la) * np.sin(lo), n * (1 - e2) * np.sin(la)], axis=1)


def excluded_on(excluded: tuple[Grid, np.ndarray], grid: Grid) -> np.ndarray:
    """``excluded`` = (its grid, bool array) looked up at ``grid``'s pixel centres, nearest; False
    beyond it. Both grids' transforms must map to the same coordinates."""
    eg, arr = excluded
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    to_excluded = ~eg.transform @ grid.transform  # grid px -> the excluded array's px
    c = np.floor(to_excluded.a * cols + to_excluded.b * rows + to_excluded.c).astype(np.int64)
    r = np.floor(to_excluded.d * cols + to_excluded.e * rows + to_excluded.f).astype(np.int64)
    inside = (c >= 0) & (c < arr.shape[1]) & (r >= 0) & (r < arr.shape[0])
    out = np.zeros((grid.height, grid.width), bool)
    out[inside] = arr[r[inside], c[inside]]
    return out


def lon_wrapped(crs: CRS, centre: float) -> CRS:
    """``crs`` (geographic) whose longitudes run from ``centre`` - 180 to ``centre`` + 180 where PROJ
    computes them (``+lon_wrap``): for a raster that crosses the antimeridian, whose longitudes
    run past 180 (or -180). Positions in the plain CRS come out in -180..180, and GDAL's warper
    would read only the part of such a raster on one side of it."""
    wrapped = CRS.from_proj4(f"{crs.to_proj4()} +lon_wrap={centre:.9g}")
    _UNWRAPPED[wrapped.to_wkt()] = crs
    return wrapped


_UNWRAPPED: dict[str, CRS] = {}  # the CRS each wrapped one was made from (PROJ strings lose some of a CRS)


def as_written(crs: CRS | None) -> CRS | None:
    """The CRS a file is written in: ``crs`` without a ``+lon_wrap`` of :func:`lon_wrapped`, as the
    CRS it was made from (the coordinates are the same numbers in both; the plain one is the EPSG
    code QGIS knows)."""
    if crs is None or "+lon_wrap" not in (proj4 := crs.to_proj4()):
        return crs
    if (known := _UNWRAPPED.get(crs.to_wkt())) is not None:
        return known
    plain = CRS.from_proj4(" ".join(w for w in proj4.split() if not w.startswith("+lon_wrap=")))
    epsg = plain.to_epsg()
    return CRS.from_epsg(epsg) if epsg else plain


def across_antimeridian(gcps: list, crs: CRS | None) -> tuple[list, CRS | None]:
    """Ground control points in longitude and latitude that cross 180 degrees (a Sentinel-1 GRD over
    Fiji: 179.9 beside -179.9), their longitudes made continuous (east of 180) and their CRS
    wrapped around their centre (:func:`lon_wrapped`); GDAL's polynomial through the jump had
    placed the scene around the world. Others as they are."""
    if crs is None or not crs.is_geographic or not gcps:
        return gcps, crs
    lons = np.array([g.x for g in gcps], np.float64)
    east = np.where(lons < 0, lons + 360.0, lons)
    # narrower on 0..360 by more than half the world (-179.9 beside 179.9): not a scene wider than 180
    # degrees, nor, by a rounding, a scene wholly west of 0
    if np.ptp(east) + 180.0 < np.ptp(lons):
        gcps = [GroundControlPoint(row=g.row, col=g.col, x=float(x), y=g.y, z=g.z, id=g.id, info=g.info)
                for g, x in zip(gcps, east)]
        lons = east
    west, east = lons.min(), lons.max()
    if west < 180.0 < east or west < -180.0 < east:
        crs = lon_wrapped(crs, (west + east) / 2)
    return gcps, crs


LATTICE_MIN = 16  # GCPs on a full lattice of rows and columns at least: a product's, interpolated by a spline
POLYNOMIAL_TOL_PX = 0.1  # a lattice GDAL's polynomial misses by more (px, at its own points) goes by a spline


def _on_a_lattice(gcps: list) -> bool:
    """Whether ``gcps`` sit on a full lattice of rows and columns (a Sentinel-1 GRD's 10 x 21, an
    ICEYE or Capella product's), as a product's processor computes them from its sensor model;
    points placed by hand are not."""
    if len(gcps) < LATTICE_MIN:
        return False
    rows = {round(g.row, 3) for g in gcps}
    cols = {round(g.col, 3) for g in gcps}
    cells = {(round(g.row, 3), round(g.col, 3)) for g in gcps}
    return len(rows) >= 3 and len(cols) >= 3 and len(rows) * len(cols) == len(cells) == len(gcps)


def _polynomial_misses(gcps: list) -> float:
    """The farthest, in pixels, that GDAL's polynomial through ``gcps`` (the order it takes for
    their number) places one of them from where it is."""
    from rasterio.transform import GCPTransformer

    rc = np.array([[g.col, g.row] for g in gcps], np.float64)
    xy = np.array([[g.x, g.y] for g in gcps], np.float64)
    xs, ys = GCPTransformer(gcps).xy(rc[:, 1], rc[:, 0], offset="ul")
    sol, *_ = np.linalg.lstsq(np.c_[rc, np.ones(len(rc))], xy, rcond=None)  # map units per pixel
    try:
        off = np.linalg.solve(sol[:2].T, (np.c_[xs, ys] - xy).T)
    except np.linalg.LinAlgError:
        return float("inf")
    return float(np.hypot(*off).max())


def placing_points(gcps: list, crs: CRS | None) -> tuple[list, CRS | None, bool]:
    """The GCPs, their CRS and whether by a thin-plate spline, as GDAL's transformer is to take
    ``gcps`` (in ``crs``). A product's lattice (:func:`_on_a_lattice`) that GDAL's polynomial
    (order 2 for many points) misses by more than POLYNOMIAL_TOL_PX at its own points goes by a
    spline, which passes through every point, and, in longitude and latitude, in a stereographic
    plane centred on the points, where the lattice's geometry is smooth: the polynomial through a
    Sentinel-1 GRD's lattice in degrees misplaces a 250 x 170 km scene by 0.7 px at 45 degrees of
    latitude (2.4 px at its edges), 3.4 px at 70 degrees and tens of pixels near a pole; the
    spline in the plane, by 0.01 px. Other points (placed by hand, with errors a spline would
    follow, or a lattice the polynomial fits) by GDAL's polynomial in their own CRS, their
    longitudes continuous across 180 degrees (:func:`across_antimeridian`)."""
    continuous, wrapped = across_antimeridian(gcps, crs)
    if crs is None or not _on_a_lattice(gcps) or _polynomial_misses(continuous) <= POLYNOMIAL_TOL_PX:
        return continuous, wrapped, False
    if not crs.is_geographic:
        return gcps, crs, True
    lon0 = (float(np.mean([g.x for g in continuous])) + 180.0) % 360.0 - 180.0
    lat0 = float(np.mean([g.y for g in continuous]))
    try:
        datum = {k: v for k, v in crs.to_dict().items() if k not in ("proj", "lon_wrap", "no_defs", "type", "units")}
    except Exception:  # a CRS PROJ cannot put in its own terms
        datum = {}
    plane = CRS.from_dict({"proj": "stere", "lat_0": lat0, "lon_0": lon0, "k": 1, "x_0": 0, "y_0": 0,
                           **(datum or {"datum": "WGS84"}), "units": "m"})
    return _taken_to(gcps, crs, plane), plane, True


def _taken_to(gcps, crs: CRS, dst: CRS) -> list:
    """``gcps`` (in ``crs``) with their map positions in ``dst``; the same pixels and heights."""
    xs, ys = crs_transform(crs, dst, [g.x for g in gcps], [g.y for g in gcps])
    return [GroundControlPoint(row=g.row, col=g.col, x=float(x), y=float(y), z=g.z, id=g.id, info=g.info)
            for g, x, y in zip(gcps, xs, ys)]


@dataclass(frozen=True)
class Grid:
    """A raster grid: ``transform`` maps (col, row) to map coordinates of ``crs``."""

    transform: Affine
    width: int
    height: int
    crs: CRS

    @property
    def pixel_size(self) -> float:
        """Mean ground size of a pixel, in CRS units."""
        t = self.transform
        return math.sqrt(abs(t.a * t.e - t.b * t.d))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*[self.transform @ c for c in ((0, 0), (self.width, 0), (0, self.height),
                                                      (self.width, self.height))])
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def ground_pixel_size_m(self) -> float:
        """Mean ground size of a pixel in metres at the grid's centre (see :meth:`_metres_per_unit`:
        a Mercator pixel of 10 map metres is 5 m on the ground at 60 degrees north); NaN without a
        CRS (the pixel frame of rasters without georeferencing: no ground size)."""
        if self.crs is None:
            return float("nan")
        dx, dy = self._ground_steps()
        return math.sqrt(dx * dy)

    @property
    def ground_aspect(self) -> float:
        """How many times taller than wide a pixel is on the ground at the grid's centre (1 for
        square pixels; a geographic CRS's square degrees at 60 degrees north: 2); 1 without a CRS.
        A projected CRS is taken as conformal (UTM, Mercator, Lambert conformal, State Plane: the
        same scale both ways), its pixels as their sides say."""
        if self.crs is None:
            return 1.0
        t = self.transform
        dx, dy = self._ground_steps() if self.crs.is_geographic else (math.hypot(t.a, t.d), math.hypot(t.b, t.e))
        return dy / dx if dx > 0 and dy > 0 else 1.0

    def _ground_steps(self) -> tuple[float, float]:
        """Ground metres of one column step and one row step at the grid's centre."""
        t = self.transform
        mx, my = self._metres_per_unit(*(t @ (self.width / 2, self.height / 2)))
        return math.hypot(t.a, t.d) * mx, math.hypot(t.b, t.e) * my

    @property
    def map_unit(self) -> str:
        """The unit of map coordinates as a report gives it: "m", "degree" (a geographic CRS), the
        CRS's own name of another linear unit ("US survey foot"), "px" without a CRS."""
        if self.crs is None:
            return "px"
        if self.crs.is_geographic:
            return "degree"
        unit = self.crs.linear_units or "map units"
        return "m" if unit.startswith("met") else unit

    def map_offsets_m(self, d: np.ndarray, at: tuple[float, float]) -> np.ndarray | None:
        """(N, 2) offsets in map units (x east, y north) -> ground metres at the pixel position
        ``at``: degrees of a geographic CRS converted at its latitude, a projected CRS's units
        divided by the projection's scale there (Mercator's 1/cos(latitude): 1.2 at 34 degrees, 2
        at 60; UTM's 0.9996-1.001); None without a CRS."""
        if self.crs is None:
            return None
        return np.asarray(d, float) * self._metres_per_unit(*(self.transform @ at))

    def _metres_per_unit(self, x: float, y: float) -> np.ndarray:
        """Ground metres per map unit east and north at the map position (x, y): a geographic CRS's
        degrees by the ellipsoid's metres per degree at latitude y; a projected CRS's units by a
        step of about 100 m each way taken to longitude and latitude and measured on the ellipsoid
        (the projection's scale there), or the CRS's own unit size where that fails."""
        if self.crs.is_geographic:
            return np.maximum(metres_per_degree(y), 1e-6)  # (a pole's longitude: no width)
        try:
            factor = float(self.crs.linear_units_factor[1])
        except Exception:  # a CRS without linear units: take its units as metres
            factor = 1.0
        step = 100.0 / factor
        try:
            lon, lat = crs_transform(self.crs, "EPSG:4326", [x, x + step, x], [y, y, y + step])
            # the straight line through the ellipsoid between the step's ends: a 100 m arc to well
            # under a millimetre, near a pole (where longitudes turn fast) and across 180 degrees too
            xyz = _earth_centred(np.array(lon), np.array(lat))
            out = np.linalg.norm(xyz[1:] - xyz[0], axis=1) / step
            return out if np.isfinite(out).all() and (out > 0).all() else np.array([factor, factor])
        except Exception:  # outside the projection's domain, or a CRS PROJ cannot invert
            return np.array([factor, factor])

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) pixel positions (see :mod:`georeg.coordinates`) -> map positions in ``crs``."""
        from .coordinates import apply_affine

        return apply_affine(self.transform, xy)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) map positions in ``crs`` -> pixel positions; the inverse of :meth:`to_map`."""
        from .coordinates import apply_affine

        return apply_affine(~self.transform, xy)

    def window_grid(self, window: Window) -> Grid:
        return Grid(self.transform @ Affine.translation(window.col_off, window.row_off),
                    int(window.width), int(window.height), self.crs)

    def scaled(self, factor: float | tuple[float, float]) -> Grid:
        """A coarser grid over the same extent (factor > 1 means fewer, larger pixels; (fx, fy):
        each axis by its own)."""
        fx, fy = factor if isinstance(factor, tuple) else (factor, factor)
        w = max(1, int(math.ceil(self.width / fx)))
        h = max(1, int(math.ceil(self.height / fy)))
        sx, sy = self.width / w, self.height / h
        return Grid(self.transform @ Affine.scale(sx, sy), w, h, self.crs)


@dataclass(frozen=True)
class GCPGrid(Grid):
    """The grid of a raster georeferenced by ground control points (a Sentinel-1 GRD, a scanned
    map, a drone frame) or by RPCs (an ICEYE GRD, an optical level-1 product): :meth:`to_map`
    and :meth:`to_pixels` go through GDAL's GCP transformer (the polynomial ``gdalwarp`` uses for
    points placed by hand; a product's lattice by a thin-plate spline, in a plane where it is in
    degrees: :func:`placing_points`) or its RPC transformer at the constant height
    ``rpc_height``, and ``transform`` is the affine
    that fits it best, for bounds and pixel size only. For RPCs, ``gcps`` is a 16 x 16 lattice
    of the RPC model (at that height): the points a corrected raster is written with."""

    gcps: tuple = ()
    rpcs: object = None
    rpc_height: float = 0.0
    # (GCPs, their CRS, by a thin-plate spline) as GDAL's transformer takes them (:func:`placing_points`),
    # where that is not ``gcps`` in ``crs`` by a polynomial
    frame: tuple = ()

    @property
    def _placing(self) -> tuple:
        return self.frame or (self.gcps, self.crs, False)

    @functools.cached_property
    def _transformer(self):
        from rasterio.transform import GCPTransformer, RPCTransformer

        if self.rpcs is not None:
            return RPCTransformer(self.rpcs, RPC_HEIGHT=self.rpc_height)
        points, _, tps = self._placing
        return GCPTransformer(list(points), tps=tps)

    def warp_options(self) -> dict:
        """``rasterio.warp.reproject`` arguments that place the source as this grid does."""
        if self.rpcs is not None:
            return {"rpcs": self.rpcs, "src_crs": self.crs, "RPC_HEIGHT": self.rpc_height}
        points, crs, tps = self._placing
        return {"gcps": list(points), "src_crs": crs, **({"SRC_METHOD": "GCP_TPS"} if tps else {})}

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        if len(xy) == 0:
            return np.zeros((0, 2))
        xs, ys = self._transformer.xy(xy[:, 1], xy[:, 0], offset="ul")
        if self.frame and self.frame[1] != self.crs:
            xs, ys = crs_transform(self.frame[1], self.crs, xs, ys)
        return np.c_[np.asarray(xs, np.float64), np.asarray(ys, np.float64)]

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        if len(xy) == 0:
            return np.zeros((0, 2))
        xs, ys = xy[:, 0], xy[:, 1]
        if self.frame and self.frame[1] != self.crs:
            xs, ys = crs_transform(self.crs, self.frame[1], xs, ys)
        rows, cols = self._transformer.rowcol(xs, ys, op=np.positive)
        return np.c_[np.asarray(cols, np.float64), np.asarray(rows, np.float64)]

    def placed_by(self, gcps) -> GCPGrid:
        """This grid placed by ``gcps`` (in its CRS, on the same pixels) instead, taken the same way
        (an RPC grid's: as its lattice of GCPs is, without the RPCs)."""
        if self.rpcs is not None:
            return GCPGrid.from_gcps(list(gcps), self.crs, self.width, self.height)
        frame = ()
        if self.frame:
            _, plane, tps = self.frame
            frame = (tuple(_taken_to(gcps, self.crs, plane) if plane != self.crs else gcps), plane, tps)
        return replace(self, gcps=tuple(gcps), frame=frame)

    @property
    def taken_by(self) -> str | None:
        """How the GCPs place the pixels between them, for the report (None for RPCs)."""
        if self.rpcs is not None:
            return None
        if not self.frame:
            return "GDAL's polynomial"
        if self.frame[1] != self.crs:
            return "a thin-plate spline in a stereographic plane centred on them"
        return "a thin-plate spline"

    def outline(self, per_edge: int = 50) -> np.ndarray:
        """(4 * per_edge, 2) map positions along the raster's edges, clockwise from the top left."""
        t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
        w, h = self.width, self.height
        px = np.r_[np.c_[t * w, 0 * t], np.c_[w + 0 * t, t * h], np.c_[w - t * w, h + 0 * t], np.c_[0 * t, h - t * h]]
        return self.to_map(px)

    def _fitted(self) -> GCPGrid:
        """This grid with ``transform`` the affine that fits its mapping best."""
        gx, gy = np.meshgrid(np.linspace(0, self.width, 11), np.linspace(0, self.height, 11))
        px = np.c_[gx.ravel(), gy.ravel()]
        sol, *_ = np.linalg.lstsq(np.c_[px, np.ones(len(px))], self.to_map(px), rcond=None)
        t = Affine(sol[0, 0], sol[1, 0], sol[2, 0], sol[0, 1], sol[1, 1], sol[2, 1])
        return replace(self, transform=t)

    @staticmethod
    def from_gcps(gcps, crs: CRS, width: int, height: int) -> GCPGrid:
        points, placing_crs, tps = placing_points(list(gcps), crs)
        # a spline's grid keeps its points' own longitudes, continuous across 180, for its positions
        gcps, crs = across_antimeridian(list(gcps), crs) if tps else (points, placing_crs)
        frame = (tuple(points), placing_crs, tps) if tps else ()
        return GCPGrid(Affine.identity(), width, height, crs, tuple(gcps), frame=frame)._fitted()

    @staticmethod
    def from_rpcs(rpcs, width: int, height: int, lattice: int = 16) -> GCPGrid:
        """RPCs are in EPSG:4326; pixels are placed at the RPCs' own height offset (the scene's
        mean height), since georeg has no elevation model."""
        h = float(rpcs.height_off)
        g = GCPGrid(Affine.identity(), width, height, CRS.from_epsg(4326), (), rpcs, h)
        rows, cols = (v.ravel() for v in np.meshgrid(np.linspace(0, height, lattice), np.linspace(0, width, lattice),
                                                     indexing="ij"))
        xy = g.to_map(np.c_[cols, rows])
        points = tuple(GroundControlPoint(r, c, x, y, h, id=str(i + 1))
                       for i, (r, c, (x, y)) in enumerate(zip(rows, cols, xy)))
        return replace(g, gcps=points)._fitted()


# Where a raster without any georeferencing sits when both inputs have none: x = column, y = -row,
# the placement QGIS gives such a raster, so that the outputs overlay the inputs there.
PIXEL_FRAME = Affine(1, 0, 0, 0, -1, 0)


def mirror(width: int) -> Affine:
    """Pixel (column c, row r) -> (width - c, r): a raster's pixels flipped left to right."""
    return Affine(-1, 0, width, 0, 1, 0)
