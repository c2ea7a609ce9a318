"""Raster access: opening and checking inputs, band choice, masks, footprints and overlap; the
reads onto a common grid are :mod:`georeg.reads`'s, which :class:`RasterSource` mixes in. With
:mod:`georeg.reads` and :mod:`georeg.writers` it is the only place that opens paths.
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
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape

from .bands import colour_bands, palette_luminance
from .config import InputConfig, parse_crs
from .errors import ConfigError, InputError, MissingCRSError, NoOverlapError, RasterOpenError, RemoteReadError
from .fill import Collar, black_edges, constant_collar, declares_none, zero_border
from .grid import PIXEL_FRAME, GCPGrid, Grid, as_written, lon_wrapped, mirror
from .paths import check_mask_path, check_raster_path, check_utf8_name, subdataset_file
from .reads import GridReads, written_quietly
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
GREY_TOLERANCE = 2  # DN: grey stored as colour and decoded from JPEG differs by a unit or two


def _crs_flag(role: str) -> str:
    """The option that assigns a CRS to the ``role`` raster (the API's InputConfig.crs)."""
    return {"reference": "--ref-crs", "target": "--target-crs", "raster": "--crs"}.get(role, "the crs option")


class RasterSource(GridReads):
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
        self.ramp = self._colour_ramp()
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
        with written_quietly(self._fill_file, dict(width=w, height=h, **profile)) as out:
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

    def _colour_ramp(self):
        """The colour ramp that three 8-bit colour bands render one band through
        (:mod:`georeg.ramps`), found in a window at the raster's centre; None otherwise."""
        if len(self.bands) != 3 or any(self.ds.dtypes[b - 1] != "uint8" for b in self.bands):
            return None
        from .ramps import find_ramp

        try:
            return find_ramp(*self._central_colours(tuple(self.bands)))
        except rasterio.errors.RasterioError as exc:
            self.ds.close()
            raise self._unreadable(exc) from None

    def _central_colours(self, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``bands`` and the first one's validity in a window at the raster's centre, read once for
        both questions asked of them (grey stored as colour, a colour ramp)."""
        from .modality import central_window

        held = self.__dict__.get("_central")
        if held is None or held[0] != bands:
            win = central_window(self.ds)
            held = self._central = (bands, self.ds.read(list(bands), window=win),
                                    self.ds.read_masks(bands[0], window=win) > 0)
        return held[1], held[2]

    @functools.cached_property
    def grey_as_colour(self) -> bool:
        """Whether bands 1-3 are one grey image stored three times (JPEG and PNG exports of
        infrared, SAR or panchromatic images often are): the same values, up to JPEG's rounding,
        in a window at the raster's centre. Such a raster is read as its first band, and its
        modality is decided from its pixels, not from its band count."""
        if self.ds.count < 3:
            return False
        rgb = self._central_colours((1, 2, 3))[0].astype(np.int16)
        return bool(np.abs(np.diff(rgb, axis=0)).max(initial=0) <= GREY_TOLERANCE)

    @functools.cached_property
    def unscale(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(scales, offsets) of the chosen bands, (B, 1, 1) each, when GDAL's metadata turns their
        samples into physical values (integers stored for dB or kelvin by rioxarray, MODIS and
        other product writers); None when every scale is 1 and offset 0, or for a colour table."""
        from .modality import scaled

        if self.palette is not None or self.ramp is not None or not any(scaled(self.ds, b) for b in self.bands):
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
            return f"band {self.bands[0]} (colour table" + (
                " in a colour ramp's colours, as positions along it)" if self.palette[2] else ", as luminance)")
        if self.ramp is not None:
            return f"bands {','.join(map(str, self.bands))} as {self.ramp.describe()}"
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
                                   self.assigned_crs, self.fill_value,
                                   rendered=self._pixels[0] if self.ramp is not None else None, palette=self.palette)
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
        if "_pixels" in self.__dict__ and (self.palette is not None or self.ramp is not None):  # the copy
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
