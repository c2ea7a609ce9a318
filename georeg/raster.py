"""Raster access: opening and checking inputs, band choice, masks, footprints, overlap, and
reading windows onto a common grid. With :mod:`georeg.writers` it is the only place that opens paths.
Paths are checked before opening in :mod:`georeg.paths`; what the bands say about themselves
(colours, colour tables, alpha, undeclared fill values) is read in :mod:`georeg.bands`.

A :class:`~georeg.grid.Grid` is a transform, a size and a CRS; pixel positions follow
:mod:`georeg.coordinates` (centres at half-integers).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape

from .bands import FILL_HUGE, alpha_band, colour_bands, palette_lookup, palette_luminance
from .config import InputConfig, parse_crs
from .errors import ConfigError, InputError, MissingCRSError, NoOverlapError, RasterOpenError, RemoteReadError
from .fill import Collar, black_edges, constant_collar, declares_none, zero_border
from .grid import PIXEL_FRAME, GCPGrid, Grid, as_written, excluded_on, lon_wrapped, mirror
from .missing import MAX_GAP_PX, MAX_GAP_UPSAMPLING, fill_missing
from .paths import check_mask_path, check_raster_path, check_utf8_name, subdataset_file
from .remote import configure_network, explain, is_remote

log = logging.getLogger(__name__)

@contextlib.contextmanager
def _gdal_warnings_to_debug():
    """GDAL's warnings while a file is opened (tags it could not read, ...) go to the debug log:
    what matters reaches the user as one georeg message."""
    logger = logging.getLogger("rasterio._env")

    class Demote(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno == logging.WARNING:
                log.debug("GDAL: %s", record.getMessage())
                return False
            return True

    f = Demote()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


GCP_MIN = 3  # ground control points an affine needs; GDAL's transformer takes a higher order from more
OVERVIEW_MIN_PX = 4096 * 4096  # a coarse warped read decoding more of the raster than this reads an overview
GREY_TOLERANCE = 2  # DN: grey stored as colour and decoded from JPEG differs by a unit or two


@contextlib.contextmanager
def _written_quietly(mem, profile: dict):
    """``mem`` opened for writing, without rasterio's warning about a raster placed by GCPs, RPCs
    or the pixel frame (its georeferencing is written as it is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with mem.open(**profile) as out:
            yield out


def _crs_flag(role: str) -> str:
    """The option that assigns a CRS to the ``role`` raster (the API's InputConfig.crs)."""
    return {"reference": "--ref-crs", "target": "--target-crs", "raster": "--crs"}.get(role, "the crs option")


class RasterSource:
    """An opened input raster with its band choice, nodata and mask settings.

    Use as a context manager. ``read_on_grid`` returns float32 data and a boolean validity mask
    resampled onto any :class:`Grid`; reads outside the raster come back invalid.
    """

    def __init__(self, path: str | Path, cfg: InputConfig, role: str, pixel_frame_ok: bool = False,
                 mirrored: bool = False, decide_modality: bool = True):
        """``pixel_frame_ok``: a raster with no georeferencing at all (no CRS, geotransform or GCPs,
        such as a plain PNG or JPEG) is placed on :data:`PIXEL_FRAME` instead of refused;
        ``pixel_frame`` says so and :meth:`require_georeferencing` refuses it later, for a caller
        that accepts it only when both inputs are such. ``mirrored``: the raster is placed on its
        mirror image, its pixels flipped left to right under its placement (:func:`mirror`; for
        a picture, :data:`PIXEL_FRAME` composed with it): pixel (c, r) of the file is where its placement
        puts (width - c, r). A raster placed by GCPs or RPCs ignores it. ``decide_modality=False``:
        the sensor is not read from a sample of the pixels (``modality`` and ``modality_decision``
        stay None), for a raster that is only warped (:func:`georeg.apply.apply_report`)."""
        self.path = str(path)
        self.cfg = cfg
        self.role = role
        self.pixel_frame = False
        self.gcps: tuple | None = None  # (ground control points, their CRS) when they georeference the raster
        self.rpcs = None  # rational polynomial coefficients when they do
        self._unreferenced: str | None = None
        self.assigned_crs = parse_crs(cfg.crs) if cfg.crs else None  # the user's, over the file's
        self._subdataset_file = subdataset_file(self.path)  # NETCDF:"scene.nc":VH -> scene.nc
        self.remote = is_remote(self.local_file)  # a URL, or a subdataset of one (NETCDF:"/vsicurl/...":VH)
        self._check_path()
        if cfg.mask:
            check_utf8_name(cfg.mask, f"{role} mask")
        try:
            with warnings.catch_warnings(), _gdal_warnings_to_debug():
                # a raster without georeferencing gets georeg's own message below, not rasterio's warning
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self.ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            if self.remote:
                raise RemoteReadError(f"{role} raster: {explain(self.path, exc)}") from None
            raise RasterOpenError(
                f"{role} file is not a raster GDAL can read: {self.path} ({_short(exc)}); "
                "give a GeoTIFF or another GDAL raster format") from None
        try:
            with _gdal_warnings_to_debug():
                self._check(pixel_frame_ok)
        except Exception:
            self.ds.close()
            raise
        self.mirrored = mirrored and not self.placed_by_points
        self.longitude_shift = self._longitude_shift()  # degrees added to the file's longitudes (0, -360, 360)
        self.grid = self._own_grid()
        self.bands, self.colour_source = self._bands()
        self.palette = palette_luminance(self.ds, self.bands[0]) if len(self.bands) == 1 else None
        self._mask_ds = None
        self.mask_rule = None  # how the mask the user gave is read (:mod:`georeg.masks`)
        # [(grid, bool array on it)]: pixels left out of every read besides the user's mask, placed
        # by each grid in the coordinates reads are asked in (the pipeline's clouds: :func:`excluded_on`)
        self.excluded: list[tuple[Grid, np.ndarray]] = []
        if cfg.mask:
            try:
                check_mask_path(cfg.mask, role)
            except RasterOpenError:
                self.ds.close()
                raise
            try:
                self._mask_ds = rasterio.open(cfg.mask)
            except rasterio.errors.RasterioIOError as exc:
                self.ds.close()
                raise RasterOpenError(f"{role} mask is not a raster: {cfg.mask} ({_short(exc)})") from None
            from .masks import mask_rule

            try:
                self.mask_rule = mask_rule(self._mask_ds, cfg.mask, role)
            except rasterio.errors.RasterioError as exc:
                self.close()
                raise RasterOpenError(f"could not read the {role} mask {cfg.mask}: {_short(exc)}; the file may be "
                                      "truncated or damaged") from None
        self.fill_share = 0.0
        self.fill_value: float | None = None  # the undeclared fill value of a collar, when one was masked
        self.fill_inside_share = 0.0  # of the raster, at the fill value inside the footprint: scan-line gaps
        try:
            if self._mask_ds is None:
                self._mask_fill()
            elif not self.placed_by_points and not self.pixel_frame and self._may_hold_fill():
                # the user's mask is obeyed and stays the mask; an undeclared fill value (a collar, a
                # Landsat 7 band's scan-line gaps) is missing all the same, by its value
                found = self._found(constant_collar(self.ds, self.bands[0], self.remote))
                self.fill_share = float(found.fill.mean()) if found is not None else 0.0
            self.modality_decision = None
            # after the fill: its pixels are no sample of the sensor
            self.modality = self._modality() if decide_modality else None
        except rasterio.errors.RasterioError as exc:
            self.close()
            raise self._unreadable(exc) from None

    @property
    def crs(self):
        """The CRS of the raster's georeferencing: the one the user assigned (``InputConfig.crs``),
        else the file's (None for a picture without one)."""
        return self.assigned_crs or self.ds.crs

    @property
    def placed_by_points(self) -> bool:
        """Whether GCPs or RPCs place the raster, not a geotransform (see :class:`GCPGrid`)."""
        return self.gcps is not None or self.rpcs is not None

    def _longitude_shift(self) -> float:
        """-360 for a raster in longitude and latitude that lies wholly east of 180 degrees (a
        product on 0-360 longitudes, as climate and ocean grids often are), +360 for one wholly
        west of -180, else 0: GDAL's warper places such a raster off the map of any projected or
        -180..180 grid, where PROJ's footprints wrap it back onto the other raster."""
        crs = self.crs
        if self.pixel_frame or self.placed_by_points or crs is None or not crs.is_geographic:
            return 0.0
        west, _, east, _ = Grid(self.ds.transform, self.ds.width, self.ds.height, crs).bounds
        return -360.0 if west >= 180.0 else 360.0 if east <= -180.0 else 0.0

    def file_transform(self, transform: Affine) -> Affine:
        """A geotransform on this raster's grid as the file writes its longitudes (see
        :attr:`longitude_shift`): what a copy of its pixels is written with."""
        return Affine.translation(-self.longitude_shift, 0) @ transform if self.longitude_shift else transform

    def _own_grid(self) -> Grid:
        if self.placed_by_points:
            what = "ground control points" if self.gcps is not None else "RPCs"
            try:
                with rasterio.Env(CPL_LOG_ERRORS=False):
                    if self.gcps is not None:
                        return GCPGrid.from_gcps(*self.gcps, self.ds.width, self.ds.height)
                    return GCPGrid.from_rpcs(self.rpcs, self.ds.width, self.ds.height)
            except Exception as exc:  # GDAL cannot solve them (collinear or repeated points, bad RPCs)
                self.ds.close()
                raise MissingCRSError(
                    f"{self.role} raster {self.path} is georeferenced by {what} that GDAL cannot turn into a "
                    f"transformation ({_short(exc)}): they may be collinear or repeated; fix them in QGIS's "
                    "georeferencer or give a raster with a geotransform") from None
        # a raster without georeferencing sits on the pixel frame; a mirrored one on its mirror image
        transform = PIXEL_FRAME if self.pixel_frame else self.ds.transform
        if self.mirrored:
            transform = transform @ mirror(self.ds.width)
        if self.longitude_shift:
            transform = Affine.translation(self.longitude_shift, 0) @ transform
        grid = Grid(transform, self.ds.width, self.ds.height, self.crs)
        if self.crs is not None and self.crs.is_geographic and not self.pixel_frame:
            west, _, east, _ = grid.bounds
            if west < 180.0 < east or west < -180.0 < east:  # across the antimeridian
                grid = replace(grid, crs=lon_wrapped(self.crs, (west + east) / 2))
        return grid

    def _mask_fill(self) -> None:
        """A raster without nodata or mask that holds fill at its edges gets that fill as its mask:
        tie points on the fill's rim would be outliers, and the verdict would count the fill as
        overlap. A picture (the pixel frame) is searched for black fill (a rotated or warped export,
        :func:`georeg.modality.border_fill`); a raster placed by GCPs or RPCs for the zero border of a
        SAR product (a Sentinel-1 GRD declares no nodata), on a read decimated to FILL_SEARCH_PX; a
        raster placed by a geotransform for a collar of one fill value (:mod:`georeg.fill`)."""
        from rasterio.io import MemoryFile

        ds = self.ds
        if not self._may_hold_fill():
            return
        profile = {"driver": "GTiff", "count": 1, "dtype": "uint8"}
        if self.placed_by_points:
            fill, _ = zero_border(ds, self.bands[0])
            h, w = fill.shape
            sx, sy = w / ds.width, h / ds.height
            gcps = [GroundControlPoint(g.row * sy, g.col * sx, g.x, g.y, g.z) for g in self.grid.gcps]
        elif not self.pixel_frame:
            found = self._found(constant_collar(ds, self.bands[0], self.remote))
            if found is None:
                return
            fill, (w, h) = found.fill, found.size
            profile.update(crs=self.crs, transform=self.grid.transform @ Affine.scale(ds.width / w, ds.height / h))
        else:
            fill = black_edges(ds, self.bands[0])
            if fill is None:
                return
            h, w = fill.shape
            profile["transform"] = self.grid.transform
        self.fill_share = float(fill.mean())
        if not fill.any():
            return
        self._fill_file = MemoryFile()
        with _written_quietly(self._fill_file, dict(width=w, height=h, **profile)) as out:
            out.write((~fill).astype(np.uint8)[None])
            if self.placed_by_points:
                out.gcps = (gcps, as_written(self.grid.crs))
        self._mask_ds = self._fill_file.open()

    def _may_hold_fill(self) -> bool:
        """Whether an undeclared fill is looked for: the raster declares neither nodata nor a mask."""
        return declares_none(self.ds, self.bands, self.nodata)

    def _found(self, collar: Collar | None) -> Collar | None:
        """Keep what the collar search found: its value as the raster's fill, the gaps' share."""
        if collar is not None:
            self.fill_value, self.fill_inside_share = collar.value, collar.inside_share
        return collar

    @property
    def local_file(self) -> str:
        """The file that holds the raster: the path, or the file of a GDAL subdataset name
        (``NETCDF:"scene.nc":VH`` -> ``scene.nc``)."""
        return self._subdataset_file or self.path

    def _check_path(self) -> None:
        if self.remote:
            configure_network()
        check_raster_path(self.path, self.role)

    def _check(self, pixel_frame_ok: bool) -> None:
        ds = self.ds
        if ds.count == 0:
            subs = list(ds.subdatasets)
            if not subs:
                raise RasterOpenError(f"{self.role} file {self.path} holds no raster bands; give a raster file")
            shown = ", ".join(f"'{sub}'" for sub in subs[:6]) + (f" and {len(subs) - 6} more" if len(subs) > 6 else "")
            raise RasterOpenError(
                f"{self.role} file {self.path} is a container of {len(subs)} subdatasets, not one raster (a NetCDF "
                f"or HDF file, a SAFE product's metadata file): give the one to register as the path, in quotes as "
                f"shown: {shown}")
        if any(t.startswith("complex") for t in ds.dtypes):
            name = Path(self.path).name
            raise InputError(
                f"{self.role} raster {self.path} holds complex samples ({ds.dtypes[0]}), as a SAR single-look complex "
                "(SLC) or an interferometric product does; georeg registers detected images (amplitude, intensity "
                f"or dB): make the amplitude first, for example 'gdal_calc.py -A {name} --calc \"abs(A)\" --type "
                "Float32 --outfile amplitude.tif' (an SLC in radar geometry also needs terrain correction, such as "
                "SNAP's Range-Doppler, before it can be registered to a map)")
        if self.crs is None or ds.transform == Affine.identity():
            self._placement(pixel_frame_ok)
        if self.cfg.band is not None and self.cfg.band > ds.count:
            raise RasterOpenError(
                f"{self.role} band {self.cfg.band} does not exist: {self.path} has {ds.count} band(s)")

    def _placement(self, pixel_frame_ok: bool) -> None:
        """How a raster without a geotransform in a CRS is placed: its GCPs or RPCs, or the pixel
        frame (``pixel_frame_ok``); refused otherwise."""
        ds = self.ds
        self._check_readable()
        gcps, gcp_crs = ds.gcps
        if self.assigned_crs is not None and (gcps or ds.rpcs is not None) and self.assigned_crs != gcp_crs:
            # GDAL's warper reads a file's GCPs in their own CRS, and RPCs are in WGS 84 by definition
            raise ConfigError(
                f"{self.role} raster {self.path} is georeferenced by "
                f"{'ground control points' if gcps else 'rational polynomial coefficients (RPCs)'}, not a "
                f"geotransform; {_crs_flag(self.role)} applies to a geotransform only: leave it out"
                + (f", and give the GCPs their CRS in the file (gdal_translate -a_srs EPSG:XXXX "
                   f"{Path(self.path).name} fixed.tif)" if gcps and gcp_crs is None else ""))
        if gcps:
            if gcp_crs is None or len(gcps) < GCP_MIN or self.role == "reference":
                raise MissingCRSError(
                    f"{self.role} raster {self.path} is georeferenced by {len(gcps)} ground control points"
                    f"{_gcp_problem(self.role, gcps, gcp_crs)}: warp it first, for example "
                    f"'rio warp {Path(self.path).name} warped.tif --dst-crs "
                    f"{gcp_crs.to_string() if gcp_crs else 'EPSG:XXXX'}'")
            self.gcps = (gcps, gcp_crs)
        elif ds.rpcs is not None:
            if self.role == "reference":
                raise MissingCRSError(
                    f"reference raster {self.path} is georeferenced by rational polynomial coefficients (RPCs), "
                    "and georeg takes the reference as the grid it works on, which needs a geotransform (an "
                    "RPC-georeferenced target is fine): orthorectify it first, for example 'gdalwarp -rpc -to "
                    f"RPC_DEM=dem.tif -t_srs EPSG:XXXX {Path(self.path).name} ortho.tif'")
            self.rpcs = ds.rpcs
        elif self.crs is None and ds.transform == Affine.identity() and pixel_frame_ok:
            self.pixel_frame = True
            self._unreferenced = (
                f"{self.role} raster has no georeferencing: {self.path}; two rasters without any are "
                "registered in pixel coordinates, but the other input is georeferenced: georeference this "
                "one too (for example: rio edit-info --crs EPSG:XXXX --transform '[x0, dx, 0, y0, 0, -dy]' "
                "FILE, or gdal_translate -a_srs/-a_ullr into a GeoTIFF)")
        elif self.crs is None:
            raise MissingCRSError(
                f"{'raster' if self.role == 'raster' else self.role + ' raster'} has a geotransform but no CRS: "
                f"{self.path} (as a PNG or JPEG with a world file but no .prj has); say which with "
                f"{_crs_flag(self.role)} EPSG:XXXX, or assign one to the file (rio edit-info --crs EPSG:XXXX FILE)")
        else:
            raise MissingCRSError(f"{self.role} raster has no geotransform: {self.path}; georeference it first "
                                  "(for example: rio edit-info --transform '[x0, dx, 0, y0, 0, -dy]' FILE)")

    def require_georeferencing(self) -> None:
        """Refuse a raster placed on the pixel frame (see ``pixel_frame_ok``)."""
        if self._unreferenced:
            raise MissingCRSError(self._unreferenced)

    def _check_readable(self) -> None:
        """A file cut short often loses its georeferencing tags first: say it is damaged, not
        that it lacks a CRS. Reads the last pixel, which lives at the end of a complete file."""
        ds = self.ds
        try:
            with rasterio.Env(CPL_LOG_ERRORS=False):
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
        except rasterio.errors.RasterioError:
            raise RasterOpenError(f"{self.role} raster {self.path} is truncated or damaged (its last pixels cannot "
                                  "be read); copy or download it again") from None

    def _bands(self) -> tuple[list[int], str | None]:
        """The bands read, and how a stack's red, green and blue bands were found (None: not
        looked for, or bands 1-3)."""
        if self.cfg.band is not None:
            return [self.cfg.band], None
        if self.ds.count >= 3:
            if self.grey_as_colour:
                return [1], None
            return colour_bands(self.ds) or ([1, 2, 3], None)
        return [1], None

    @functools.cached_property
    def grey_as_colour(self) -> bool:
        """Whether bands 1-3 are one grey image stored three times (JPEG and PNG exports of
        infrared, SAR or panchromatic images often are): the same values, up to JPEG's rounding,
        in a window at the raster's centre. Such a raster is read as its first band, and its
        modality is decided from its pixels, not from its band count."""
        if self.ds.count < 3:
            return False
        from .modality import central_window

        rgb = self.ds.read([1, 2, 3], window=central_window(self.ds)).astype(np.int16)
        return bool(np.abs(np.diff(rgb, axis=0)).max(initial=0) <= GREY_TOLERANCE)

    @functools.cached_property
    def unscale(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(scales, offsets) of the chosen bands, (B, 1, 1) each, when GDAL's metadata turns their
        samples into physical values (integers stored for dB or kelvin by rioxarray, MODIS and
        other product writers); None when every scale is 1 and offset 0, or for a colour table."""
        from .modality import scaled

        if self.palette is not None or not any(scaled(self.ds, b) for b in self.bands):
            return None
        sc = np.array([self.ds.scales[b - 1] for b in self.bands], np.float32).reshape(-1, 1, 1)
        of = np.array([self.ds.offsets[b - 1] for b in self.bands], np.float32).reshape(-1, 1, 1)
        return sc, of

    @property
    def float_values(self) -> bool:
        """Whether the chosen bands hold real numbers: float samples, or integers that GDAL's scale
        and offset turn into them (linear SAR power among them, which goes to dB)."""
        return self.ds.dtypes[self.bands[0] - 1].startswith("float") or self.unscale is not None

    @property
    def band_label(self) -> str:
        if self.palette is not None:
            return f"band {self.bands[0]} (colour table, as luminance)"
        if len(self.bands) == 3:
            if self.colour_source:
                return f"luminance({','.join(map(str, self.bands))}: red, green, blue by {self.colour_source})"
            return "luminance(1,2,3)"
        return "band 1 (bands 1-3 identical)" if self.grey_as_colour and self.cfg.band is None \
            else f"band {self.bands[0]}"

    def _modality(self) -> str:
        from .modality import ModalityDecision

        if self.cfg.modality != "auto":
            self.modality_decision = ModalityDecision(self.cfg.modality, "option")
        elif self.role == "reference":
            self.modality_decision = ModalityDecision(
                "optical", "role", {"note": "taken as optical by its role (the learned matchers take the optical image "
                                            "as the reference); not read from its pixels"})
        else:
            self.modality_decision = self.modality_from_pixels()
        return self.modality_decision.modality

    def modality_from_pixels(self):
        """The modality its pixels and metadata say (:func:`georeg.modality.detect_modality`),
        whatever the role: a reference is taken as optical, but the verdict's cloud check asks
        what a reference handed over in the target's place (a thermal band) really is."""
        from .modality import detect_modality

        try:
            return detect_modality(self.ds, self.bands, self.path, self.cfg.band is None and self.grey_as_colour,
                                   self.assigned_crs, self.fill_value)
        except rasterio.errors.RasterioError as exc:
            self.ds.close()
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> RasterOpenError:
        return RasterOpenError(f"could not read the {self.role} raster {self.path}: {_short(exc)}; the file may be "
                               "truncated or damaged")

    @property
    def nodata(self) -> float | None:
        return self.cfg.nodata if self.cfg.nodata is not None else self.ds.nodata

    def footprint(self, crs: CRS):
        """Footprint polygon of the raster in ``crs`` (densified when reprojected)."""
        if isinstance(self.grid, GCPGrid):  # the edges through the GCPs, densified
            from shapely.geometry import Polygon

            geom = Polygon(self.grid.outline())
            if not geom.is_valid:
                geom = geom.buffer(0)
        else:
            geom = box(*self.grid.bounds)
        if self.grid.crs == crs:
            return geom
        return shape(transform_geom(self.grid.crs, crs, mapping(geom), precision=-1,
                                    antimeridian_cutting=False, densify_pts=50)) \
            if _supports_densify() else shape(transform_geom(self.grid.crs, crs, mapping(geom)))

    def _combine(self, arr: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W) data and GDAL masks -> (H, W) float32 and bool validity."""
        floats = arr.dtype.kind == "f"
        arr = arr.astype(np.float32, copy=False)
        valid = np.all(masks > 0, axis=0)
        nd = self.cfg.nodata
        if nd is not None:
            valid &= np.all(arr != nd, axis=0) if not math.isnan(nd) else np.all(~np.isnan(arr), axis=0)
        if floats:  # integer samples are finite and small
            # NaN, infinities and float fill values (|v| >= FILL_HUGE: -3.4e38 specks, or a fill that
            # resampling blended into its neighbours) are never data, declared or not
            valid &= np.all(np.abs(arr) < FILL_HUGE, axis=0)
        if self.fill_value is not None and self.palette is None:
            # the undeclared fill, as nodata where every band holds it (GDAL's rule for a shared
            # nodata): it was found in the first band, and a colour with one channel at 0 is data
            valid &= ~np.all(arr == self.fill_value, axis=0)
        if self.unscale is not None and len(arr) == len(self.bands):  # not a colour table's luminance
            arr = arr * self.unscale[0] + self.unscale[1]
        if arr.shape[0] == 3:
            data = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]
        else:
            data = arr[0]
        data = np.where(valid, data, 0.0).astype(np.float32)
        return data, valid

    def read_on_grid(self, grid: Grid, window: Window | None = None,
                     resampling: Resampling = Resampling.bilinear,
                     fill_gaps: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Read the chosen band(s) onto ``grid`` (restricted to ``window`` of it). Missing specks
        are filled (:func:`georeg.missing.fill_missing`), and thin gaps unless ``fill_gaps`` is
        False (the quicklook shows them as they are).

        Returns ``(data (H, W) float32, valid (H, W) bool)``.
        """
        try:
            return self._read_on_grid(grid, window, resampling, fill_gaps)
        except rasterio.errors.RasterioError as exc:
            raise self._unreadable(exc) from None

    def _read_on_grid(self, grid: Grid, window: Window | None, resampling: Resampling,
                      fill_gaps: bool) -> tuple[np.ndarray, np.ndarray]:
        if window is None:
            window = Window(0, 0, grid.width, grid.height)
        sub = grid.window_grid(window)
        off = None if self.placed_by_points else _integer_offset(self.grid, sub)
        if self.placed_by_points:
            data, masks = self._warp_through_points(sub, resampling)
        elif off is not None:
            data, masks = self._read_native(Window(off[0], off[1], sub.width, sub.height))
        else:
            # a raster on the pixel frame is warped from that frame, not from GDAL's identity, and
            # a mirrored raster from its mirror image, not from its own geotransform
            own = self.pixel_frame or self.mirrored or bool(self.longitude_shift)
            placed = {"src_transform": self.grid.transform} if own else {}
            if self.assigned_crs is not None or self.grid.crs != self.crs:
                # the file's own CRS (or none) is not the one to read it in: the user's, or one whose
                # longitudes run past 180 as the raster's do (across the antimeridian)
                placed["src_crs"] = self.grid.crs
            ds, bands = self._pixels
            src_nodata = self._src_nodata(ds)
            if ds is self.ds and not own:
                ds = self._overview_for(sub)
            # GDAL warps a raster's own alpha band (an RGBA orthophoto, a QGIS export) as the
            # alpha, and refuses to add another
            alpha = alpha_band(ds)
            with WarpedVRT(ds, crs=sub.crs, transform=sub.transform, width=sub.width,
                           height=sub.height, resampling=resampling, add_alpha=alpha is None,
                           src_nodata=src_nodata, **placed) as vrt:
                # one read of the data and alpha bands: each read call warps again (a 10980 px
                # raster's decimated read took 9.0 s in two calls, 4.1 s in one)
                both = vrt.read([*bands, alpha or vrt.count])
                arr, alpha = both[:-1], both[-1]
            masks = np.repeat(alpha[None], len(bands), axis=0)
            data = arr
        out, valid = self._combine(data, masks)
        if not valid.all():  # the read with nothing missing (the common one) sizes no gap
            out, valid = fill_missing(out, valid, max_gap=self._max_gap(sub) if fill_gaps else 0.0)
        if self._mask_ds is not None:  # a mask the user gives is obeyed to the pixel
            valid &= self._read_external_mask(sub)
        for left_out in self.excluded:
            valid &= ~excluded_on(left_out, sub)
        return out, valid

    def _max_gap(self, sub: Grid) -> float:
        """The widest thin gap a read onto ``sub`` fills, in ``sub``'s pixels: MAX_GAP_PX of the
        raster's own pixels; none on a grid more than MAX_GAP_UPSAMPLING times finer than the
        raster, where the filled strips, resampled twice, misled the learned matcher (S1/S2 pair
        050's S1 scene averaged to 30 m with gaps, matched on a 20 m grid: a `reliable` affine 10.6
        px from the same scene's without gaps; `uncertain` unfilled)."""
        ratio = self.grid.ground_pixel_size_m / sub.ground_pixel_size_m
        if not (math.isfinite(ratio) and ratio > 0):
            return float(MAX_GAP_PX)
        return MAX_GAP_PX * ratio if ratio <= MAX_GAP_UPSAMPLING else 0.0

    def _overview_for(self, sub: Grid):
        """The dataset a warped read onto ``sub`` reads from: the raster, or, for a read at least
        twice as coarse that would otherwise decode more than OVERVIEW_MIN_PX of it, its finest
        overview no coarser than ``sub`` (a COG's or a .ovr file's, a JPEG 2000's resolution levels).
        GDAL's warper averages over every source pixel it is given (a 10980 px JPEG 2000 read at
        1024 px: 13 s from full resolution, under 1 s from its level 8)."""
        ratio = sub.ground_pixel_size_m / self.grid.ground_pixel_size_m
        if not ratio >= 2 or sub.width * sub.height * ratio * ratio < OVERVIEW_MIN_PX:
            return self.ds
        factors = self.ds.overviews(self.bands[0])
        usable = [i for i, f in enumerate(factors) if f <= ratio * 1.001]
        if not usable:
            return self.ds
        level = usable[-1]
        opened = self.__dict__.setdefault("_overview_ds", {})
        if level not in opened:
            opened[level] = rasterio.open(self.path, overview_level=level)
        return opened[level]

    def _src_nodata(self, ds) -> float | None:
        """The nodata value GDAL's warper is told for ``ds`` (the raster, or its luminance copy):
        :attr:`file_nodata` for the raster, which resampling must not blend into the data (a -3.4e38
        fill averaged into a coarse read's pixels made them -1e37); the copy's own otherwise."""
        return self.file_nodata if ds is self.ds and self.palette is None else ds.nodata

    def _warp_through_points(self, sub: Grid, resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """The chosen bands warped onto ``sub`` through the GCPs or RPCs (GDAL's warper with its GCP
        or RPC transformer, as gdalwarp does), and masks: 0 outside the raster and on nodata."""
        from rasterio.warp import reproject

        ds, bands = self._pixels
        src_nodata = self._src_nodata(ds)
        ds, bands, _ = self._placed_as_grid(ds, bands)
        data = np.full((len(bands), sub.height, sub.width), np.nan, np.float32)
        for i, b in enumerate(bands):
            reproject(rasterio.band(ds, b), data[i], dst_crs=sub.crs, dst_transform=sub.transform,
                      resampling=resampling, src_nodata=src_nodata, dst_nodata=np.nan, init_dest_nodata=True,
                      **self.grid.warp_options())
        masks = np.isfinite(data).astype(np.uint8) * 255
        return np.nan_to_num(data, nan=0.0), masks

    def _placed_as_grid(self, ds, bands: list[int]) -> tuple:
        """(dataset, bands, reproject arguments that place it) for ``ds`` placed by its GCPs as
        georeg's grids take them (:func:`georeg.grid.placing_points`): ``ds`` itself, or, for GCPs
        taken in another CRS (a lattice in longitude and latitude: in a stereographic plane; GCPs
        across the antimeridian: their longitudes continuous in a wrapped CRS), a VRT over its bands
        carrying them so. GDAL's warper takes a dataset's own GCPs and leaves the ones it is given
        aside (half a Sentinel-1 GRD over 180 degrees was read). The arguments are None for a
        dataset without GCPs."""
        from xml.sax.saxutils import escape, quoteattr

        from .grid import placing_points

        opened = self.__dict__.setdefault("_points_vrts", {})  # (decided once a dataset: a read a tile)
        key = (ds.name, tuple(bands))
        if key not in opened:
            points, crs = ds.gcps
            if not points:
                opened[key] = (ds, bands, None)
                return opened[key]
            gcps, placing_crs, tps = placing_points(list(points), crs)
            options = {"gcps": gcps, "src_crs": placing_crs, **({"SRC_METHOD": "GCP_TPS"} if tps else {})}
            if placing_crs == crs:
                opened[key] = (ds, bands, options)
                return opened[key]
            lattice = "".join(f'<GCP Id="{i}" Pixel="{g.col!r}" Line="{g.row!r}" X="{g.x!r}" Y="{g.y!r}" '
                              f'Z="{float(g.z or 0.0)!r}"/>' for i, g in enumerate(gcps))
            types = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                     "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}
            vrt_bands = "".join(
                f'<VRTRasterBand dataType="{types[ds.dtypes[b - 1]]}" band="{i + 1}"><SimpleSource><SourceFilename '
                f'relativeToVRT="0">{escape(ds.name)}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
                f'</VRTRasterBand>' for i, b in enumerate(bands))
            vrt = rasterio.open(
                f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><GCPList Projection='
                f'{quoteattr(placing_crs.to_wkt())}>{lattice}</GCPList>{vrt_bands}</VRTDataset>')
            self.__dict__.setdefault("_vrts_opened", []).append(vrt)
            opened[key] = (vrt, list(range(1, len(bands) + 1)), options)
        return opened[key]

    def valid_on(self, grid: Grid, max_size: int = 1024) -> np.ndarray:
        """Where this raster holds data, sampled at the centres of ``grid``'s pixels (a coarse grid):
        the dataset mask read decimated on the raster's own grid (block by block through GDAL's
        cache, so memory stays small whatever the raster's size), then looked up by position. For
        deciding where to work, not for matching: an external mask is not applied."""
        ds = self.ds
        f = max(1.0, max(ds.width, ds.height) / max_size)
        h, w = max(1, int(round(ds.height / f))), max(1, int(round(ds.width / f)))
        with rasterio.Env(CPL_LOG_ERRORS=False):
            m = ds.read_masks(self.bands[0], out_shape=(h, w), resampling=Resampling.nearest) > 0
        out = np.zeros((grid.height, grid.width), bool)
        t = grid.transform
        cols = np.arange(grid.width) + 0.5
        step = max(1, (1 << 18) // max(grid.width, 1))  # rows at a time: a few MB of coordinates, not 0.25 GB
        reproject = grid.crs != self.grid.crs
        if reproject:
            from rasterio.warp import transform as warp_points
        for r0 in range(0, grid.height, step):
            rows = np.arange(r0, min(r0 + step, grid.height))[:, None] + 0.5
            xs = (t.a * cols + t.b * rows + t.c).ravel()
            ys = (t.d * cols + t.e * rows + t.f).ravel()
            if reproject:
                xs, ys = (np.asarray(v) for v in warp_points(grid.crs, self.grid.crs, xs, ys))
            px = self.grid.to_pixels(np.c_[xs, ys])  # the raster's own pixels, then the decimated read's
            c = np.floor(px[:, 0] * (w / ds.width)).astype(np.int64).reshape(len(rows), grid.width)
            r = np.floor(px[:, 1] * (h / ds.height)).astype(np.int64).reshape(len(rows), grid.width)
            inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            block = out[r0:r0 + len(rows)]
            block[inside] = m[r[inside], c[inside]]
        return out

    @functools.cached_property
    def _pixels(self) -> tuple:
        """(dataset, bands) that pixels are read from: the raster and its chosen bands, or, for
        colour-table indices, an in-memory copy holding each pixel's luminance (uint8, transparent
        colours masked) with the raster's georeferencing, so that resampling blends colours, not
        indices (nearest-neighbour reads of the indices would round every offset to whole pixels)."""
        if self.palette is None:
            return self.ds, self.bands
        from rasterio.io import MemoryFile

        mem = MemoryFile()
        placed = {"crs": self.crs, "transform": self.grid.transform} if not self.placed_by_points else {}
        with _written_quietly(mem, dict(driver="GTiff", width=self.ds.width, height=self.ds.height, count=1,
                                        dtype="uint8", tiled=True, **placed)) as out:
            for r0 in range(0, self.ds.height, 512):  # in strips: a large scanned map is not read whole
                win = Window(0, r0, self.ds.width, min(512, self.ds.height - r0))
                grey, opaque = palette_lookup(self.palette, self.ds.read(self.bands[0], window=win))
                mask = opaque & (self.ds.read_masks(self.bands[0], window=win) > 0)
                out.write(grey, 1, window=win)
                out.write_mask(mask.astype(np.uint8) * 255, window=win)
            if self.gcps:
                out.gcps = self.gcps
            if self.rpcs is not None:
                out.rpcs = self.rpcs
        self._memfile = mem  # kept open while the copy is read
        return mem.open(), [1]

    def _read_native(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Boundless read of the chosen bands on the native grid: outside pixels have mask 0."""
        ds, bands = self._pixels
        return self._boundless(bands, win, 0, all_masks=True, ds=ds)

    def _boundless(self, idx: list[int], win: Window, fill, all_masks: bool, ds=None) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``idx`` of ``ds`` (default: the raster) over ``win`` (which may reach outside the
        raster), ``fill`` outside; masks of every band (``all_masks``) or of the first, 0 outside."""
        ds = self.ds if ds is None else ds
        h, w = int(win.height), int(win.width)
        c0, r0 = int(win.col_off), int(win.row_off)
        data = np.full((len(idx), h, w), fill, dtype=ds.dtypes[idx[0] - 1])
        masks = np.zeros((len(idx) if all_masks else 1, h, w), dtype=np.uint8)
        cc0, rr0 = max(c0, 0), max(r0, 0)
        cc1, rr1 = min(c0 + w, ds.width), min(r0 + h, ds.height)
        if cc1 > cc0 and rr1 > rr0:
            inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            data[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = ds.read(idx, window=inner)
            masks[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = ds.read_masks(
                idx if all_masks else idx[:1], window=inner)
        return data, masks

    def _read_external_mask(self, grid: Grid) -> np.ndarray:
        """Where the mask the user gave marks ``grid``'s pixels usable (:mod:`georeg.masks`: non-zero,
        or a quality band's rules with its clouds widened). A mask with the raster's own size is
        taken pixel for pixel (it shares the raster's pixel grid, whatever its georeferencing says);
        otherwise it is placed by its georeferencing."""
        from .masks import MaskRule, margin_px, widen

        rule = self.mask_rule or MaskRule()  # None: the mask of a masked collar (:meth:`_mask_fill`)
        pad = margin_px(grid.ground_pixel_size_m) if rule.widens_clouds else 0
        if pad:  # read a margin around the window, so that a cloud just outside it widens into it
            grid = Grid(grid.transform @ Affine.translation(-pad, -pad), grid.width + 2 * pad,
                        grid.height + 2 * pad, grid.crs)
        usable, cloud = rule.usable(self._read_mask_band(grid, rule.band, rule.outside))
        if pad:
            usable = (usable & ~widen(cloud, pad))[pad:-pad, pad:-pad]
        return usable

    def _read_mask_band(self, grid: Grid, band: int, outside: int) -> np.ndarray:
        """Band ``band`` of the user's mask on ``grid``, by nearest neighbour, ``outside`` beyond it."""
        m = self._mask_ds
        same_pixels = (m.width, m.height) == (self.ds.width, self.ds.height)
        kwargs = {"src_crs": self.grid.crs, "src_transform": self.grid.transform} if same_pixels else {}
        if not same_pixels and m.crs is not None and m.crs == self.crs and self.grid.crs != self.crs:
            kwargs = {"src_crs": self.grid.crs}  # in the raster's CRS: its longitudes wrapped as the raster's
        placed, (b,), placed_by = self._placed_as_grid(m, [band])  # the mask's own GCPs, taken as the raster's
        if same_pixels and self.placed_by_points:
            placed_by = self.grid.warp_options()
        if not same_pixels and m.crs is None and placed_by is None:
            raise RasterOpenError(
                f"{self.role} mask {self.cfg.mask} is {m.width}x{m.height} px, not the raster's "
                f"{self.ds.width}x{self.ds.height}, and has no CRS to place it; give a mask on the raster's grid")
        if placed_by is not None:  # through ground control points: the raster's own, or the mask's
            from rasterio.warp import reproject

            out = np.full((grid.height, grid.width), outside, m.dtypes[band - 1])
            reproject(rasterio.band(placed, b), out, dst_crs=grid.crs, dst_transform=grid.transform,
                      resampling=Resampling.nearest, dst_nodata=outside, **placed_by)
            return out
        with WarpedVRT(m, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, nodata=outside, **kwargs) as vrt:
            return vrt.read(band)

    def read_native_window(self, window: Window, indexes=None) -> tuple[np.ndarray, np.ndarray]:
        """Raw read of all (or the given) bands on the native grid, boundless: returns the data
        (nodata or 0 outside; the undeclared fill of a masked collar, :attr:`fill_value`, when there is
        one) and the first band's GDAL mask (0 outside, and on that fill)."""
        idx = list(indexes) if indexes is not None else list(range(1, self.ds.count + 1))
        fill = self.output_nodata
        data, mask = self._boundless(idx, window, fill, all_masks=False)
        if self.fill_value is not None:  # only ever found where the file declares no nodata
            mask[0][np.all(data == self.fill_value, axis=0)] = 0
        return data, mask[0]

    @property
    def file_nodata(self) -> float | None:
        """The file's declared nodata, else the undeclared fill of a masked collar, else None."""
        return self.ds.nodata if self.ds.nodata is not None else self.fill_value

    @property
    def output_nodata(self) -> float:
        """The value a resampled copy of this raster takes where it has no data: :attr:`file_nodata`,
        else 0."""
        return self.file_nodata if self.file_nodata is not None else 0

    def close(self) -> None:
        self.ds.close()
        self.__dict__.pop("_points_vrts", None)
        for ds in [*self.__dict__.pop("_overview_ds", {}).values(), *self.__dict__.pop("_vrts_opened", [])]:
            if ds is not None:
                ds.close()
        if self._mask_ds is not None:
            self._mask_ds.close()
        if getattr(self, "_fill_file", None) is not None:
            self._fill_file.close()
        if "_pixels" in self.__dict__ and self.palette is not None:  # the luminance copy
            self._pixels[0].close()
            self._memfile.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _gcp_problem(role: str, gcps, gcp_crs) -> str:
    """Why ground control points cannot be used as they are, as the end of a sentence."""
    if role == "reference":
        return (" and georeg takes the reference as the grid it works on, which needs a geotransform "
                "(a GCP-georeferenced target is fine)")
    if gcp_crs is None:
        return ", but they have no CRS"
    return f", fewer than the {GCP_MIN} an affine needs"


def _short(exc: Exception) -> str:
    """GDAL's own reason, first line: rasterio's 'Read failed. See previous exception' wraps it."""
    if str(exc).startswith("Read failed") and (exc.__cause__ or exc.__context__):
        exc = exc.__cause__ or exc.__context__
    return str(exc).split("\n")[0][:200]


def _supports_densify() -> bool:
    import inspect
    return "densify_pts" in inspect.signature(transform_geom).parameters


def _integer_offset(native: Grid, sub: Grid) -> tuple[int, int] | None:
    """(col, row) offset if ``sub`` is ``native`` shifted by whole pixels, else None."""
    if native.crs != sub.crs:
        return None
    a, b = native.transform, sub.transform
    if not all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in
               zip((a.a, a.b, a.d, a.e), (b.a, b.b, b.d, b.e))):
        return None
    col, row = ~a @ (b.c, b.f)
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


def placed_in_own_crs(path: str) -> bool | None:
    """Whether the raster at ``path`` places itself in a CRS of its own (a CRS tag, or GCPs or RPCs,
    whose CRS is theirs); None when GDAL cannot open it."""
    try:
        with rasterio.open(path) as ds:
            return ds.crs is not None or bool(ds.gcps[0]) or ds.rpcs is not None
    except rasterio.errors.RasterioIOError:
        return None


def check_related_crs(reference: RasterSource, target: RasterSource) -> None:
    """Refuse two rasters in different CRSs of which one is a local (engineering) CRS, such as a
    drone survey's or a CAD drawing's: no coordinate operation relates it to the other."""
    a, b = reference.grid.crs, target.grid.crs
    if a is None or b is None or a == b:
        return
    for src, crs, other, other_crs in ((reference, a, "target", b), (target, b, "reference", a)):
        if not (crs.is_projected or crs.is_geographic):
            wkt = crs.to_wkt()
            name = wkt.split('"')[1] if wkt.count('"') >= 2 else "unnamed"
            raise MissingCRSError(
                f"the {src.role} raster {src.path} is in a local (engineering) CRS ({name!r}), which no coordinate "
                f"operation relates to the {other}'s {other_crs.to_string() or 'CRS'}: give both rasters in the same "
                f"local CRS, or name the {src.role}'s map CRS with {_crs_flag(src.role)} EPSG:XXXX")


def overlap_window(reference: RasterSource, target: RasterSource, grid: Grid | None = None) -> tuple[Window, object]:
    """Window of ``grid`` (default: the reference grid; the pipeline passes its working grid, which
    may be the reference grid coarsened) covering the footprint overlap, and the overlap polygon.

    Raises :class:`NoOverlapError` when the footprints do not intersect.
    """
    import shapely

    crs = reference.grid.crs
    # (a footprint whose edges cross, as a GCP raster's warped outline can, made valid first)
    ref_fp, tgt_fp = (fp if fp.is_valid else shapely.make_valid(fp)
                      for fp in (reference.footprint(crs), target.footprint(crs)))
    inter = ref_fp.intersection(tgt_fp)
    if inter.is_empty or inter.area <= 0:
        rb = tuple(round(v, 2) for v in ref_fp.bounds)
        tb = tuple(round(v, 2) for v in tgt_fp.bounds)
        raise NoOverlapError(
            f"reference and target do not overlap (reference bounds {rb}, target bounds {tb} "
            f"in {crs.to_string()}); check that both CRSs are right (a file's wrong one is overridden with "
            "--ref-crs or --target-crs) and that the scenes cover the same area")
    grid = grid or reference.grid
    inv = ~grid.transform
    cols, rows = zip(*[inv @ tuple(xy) for xy in shapely.get_coordinates(inter)])  # (one part or several)
    c0 = max(0, int(math.floor(min(cols))))
    r0 = max(0, int(math.floor(min(rows))))
    c1 = min(grid.width, int(math.ceil(max(cols))))
    r1 = min(grid.height, int(math.ceil(max(rows))))
    if c1 - c0 < 1 or r1 - r0 < 1:
        raise NoOverlapError(f"reference and target overlap by less than one pixel of the grid they are matched on "
                             f"in {crs.to_string()}")
    return Window(c0, r0, c1 - c0, r1 - r0), inter
