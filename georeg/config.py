"""Frozen, self-validating configuration, one dataclass per stage.

The CLI, the Python API, batch and the QGIS plugin all build these same objects, so an option
cannot be wired differently in two places. Every dataclass validates itself on construction and
raises :class:`georeg.errors.ConfigError` with the offending value and the accepted range.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import ConfigError

MODALITIES = ("auto", "optical", "sar", "thermal")
MODELS = ("auto", "translation", "rigid", "similarity", "affine", "homography", "local")
LOCAL_METHODS = ("tps", "polynomial")
DEVICES = ("auto", "cpu", "cuda")
RESAMPLINGS = ("nearest", "bilinear", "cubic")
SEARCHES = ("auto", "shift", "rotation")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# fields that name files: a str or any os.PathLike is accepted and stored as str
_PATH_FIELDS = frozenset({"mask", "tie_points", "report", "quicklook"})
# the side outputs' names beside the corrected raster OUTPUT.tif when asked for with 'auto'
SIDE_SUFFIXES = {"tie_points": "_tiepoints.gpkg", "report": "_report.json", "quicklook": "_quicklook.png"}


def side_output(output: str | os.PathLike, kind: str, value: str | os.PathLike | None,
                missing: str = "none") -> str | None:
    """The path of the side output ``kind`` ('tie_points', 'report', 'quicklook') of the corrected
    raster ``output``: ``value`` as given, beside the raster (OUTPUT_report.json, ...) for
    'auto', none for 'none' (either in any case); a missing value is read as ``missing`` (the
    CLI's default is 'auto', the API's 'none')."""
    value = missing if value is None or not str(value).strip() else str(os.fspath(value))
    if value.lower() == "none":
        return None
    if value.lower() == "auto":
        stem, _ = os.path.splitext(os.fspath(output))
        return stem + SIDE_SUFFIXES[kind]
    return value


# the largest tile search radius: beyond it the tile windows outgrow memory and the matching
# stops being local; larger offsets are the coarse and global stages' job
MAX_SHIFT_PX = 2048.0


def _check_types(obj) -> None:
    """Every field holds a value of its declared type (as annotated: bool, int, float, str, or
    X | None); ints are accepted for floats, numpy scalars and path-likes are normalised. Raises
    ConfigError naming the field, the expected type and what was given."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        allowed = {t.strip() for t in str(f.type).split("|")}
        if value is None and "None" in allowed:
            continue
        kind = next((k for k in _COERCE if k in allowed or (k == "tuple[str" and
                                                             any(t.startswith(k) for t in allowed))), None)
        if kind is None:
            continue
        new, expected = _COERCE[kind](value, f.name)
        if expected:
            raise ConfigError(f"{type(obj).__name__}.{f.name} must be {expected}; "
                              f"got {value!r} ({type(value).__name__})")
        if new is not value:
            object.__setattr__(obj, f.name, new)


def _as_bool(value, name):
    ok = type(value).__name__ in ("bool", "bool_")
    return (bool(value), "") if ok else (value, "True or False")


def _as_int(value, name):
    ok = not isinstance(value, bool) and hasattr(value, "__index__")
    return (int(value), "") if ok else (value, "a whole number")


def _as_float(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        return value, "a number"
    new = float(value)
    return (new, "") if math.isfinite(new) else (value, "a finite number")


def _as_strings(value, name):
    ok = not isinstance(value, str) and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return (tuple(value), "") if ok else (value, "a list of strings")


def _as_str(value, name):
    if name in _PATH_FIELDS and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return value, f"a {'path' if name in _PATH_FIELDS else 'string'}"
    return value, ""


# checked in this order: a 'str | None' path field is a str, a 'tuple[str, ...]' a list of strings
_COERCE = {"bool": _as_bool, "int": _as_int, "float": _as_float, "tuple[str": _as_strings, "str": _as_str}


def normalise_creation_options(options) -> list[str]:
    """'name=value' strings as 'NAME=value'; a malformed one raises ConfigError."""
    out = []
    for opt in options:
        m = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=(.*)", str(opt))
        if not m:
            raise ConfigError(f"creation option {opt!r} is not NAME=VALUE; give GDAL creation options such as "
                              "COMPRESS=ZSTD or BLOCKXSIZE=256")
        out.append(f"{m.group(1).upper()}={m.group(2).strip()}")
    return out


def parse_shift(text: str | float | int) -> tuple[float, str]:
    """Parse a max-shift such as ``40``, ``"40px"`` or ``"300m"`` into ``(value, unit)``."""
    if isinstance(text, (int, float)):
        value, unit = float(text), "px"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(px|m)?\s*", str(text))
        if not m:
            raise ConfigError(
                f"max shift must be a number of reference pixels ('40', '40px') or metres ('300m'); "
                f"got {text!r}"
            )
        value, unit = float(m.group(1)), m.group(2) or "px"
    _check(value > 0, f"max shift must be positive; got {value} {unit}")
    return value, unit


@dataclass(frozen=True)
class InputConfig:
    """How one raster is read.

    band: 1-based band index, or None for the default (luminance of bands 1-3 for a raster with
    3 or more bands, of its red, green and blue bands where a raster of more than three says which
    (:func:`georeg.bands.colour_bands`), band 1 otherwise). nodata: overrides the file's nodata value. mask: path of a
    raster whose non-zero pixels are valid, or a product's quality band (:mod:`georeg.masks`).
    modality: 'optical', 'sar', 'thermal' or 'auto'. crs: the CRS of the raster's geotransform (an
    EPSG code such as 'EPSG:32633', WKT or a PROJ string), for a file that has none (a PNG or JPEG
    with a world file but no .prj) or whose own is wrong; None: the file's. GCPs and RPCs are read
    in their own CRS (a different one is refused).
    """

    band: int | None = None
    nodata: float | None = None
    mask: str | None = None
    modality: str = "auto"
    crs: str | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.band is None or (isinstance(self.band, int) and self.band >= 1),
               f"band must be a 1-based band number or None; got {self.band!r}")
        _check(self.modality in MODALITIES,
               f"modality must be one of {', '.join(MODALITIES)}; got {self.modality!r}")
        if self.crs is not None:
            parse_crs(self.crs)


def parse_crs(text: str):
    """A rasterio CRS from what a user writes ('EPSG:32633', '32633', WKT, a PROJ string);
    ConfigError when it names none."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    value = text.strip()
    if value.isdigit():
        value = f"EPSG:{value}"
    try:
        with rasterio.Env(CPL_LOG_ERRORS=False):  # the message below says it, not PROJ's line on stderr
            crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise ConfigError(f"--ref-crs or --target-crs (InputConfig.crs) must name a coordinate reference system "
                          f"(an EPSG code such as 'EPSG:32633', WKT or a PROJ string); got {text!r} "
                          f"({str(exc).splitlines()[0][:120]})") from None
    if not (crs.is_projected or crs.is_geographic):
        raise ConfigError(f"--ref-crs or --target-crs (InputConfig.crs) must be a projected or geographic CRS "
                          f"that places a raster on the ground; got {text!r}, which is neither")
    return crs


@dataclass(frozen=True)
class MatchingConfig:
    """Keypoints, patches, candidate search and matcher choice."""

    matcher: str = "auto"
    max_shift: float = 40.0
    max_shift_unit: str = "px"
    patch_size_px: int = 64
    tile_size_px: int = 1024
    keypoints_per_tile: int = 192
    max_tiles: int = 36
    coarse: bool = True
    coarse_size_px: int = 512
    refine: bool = True
    refine_radius_px: int = 6
    bidirectional: bool = True
    min_score: float = 0.55
    min_peak_ratio: float = 1.02
    batch_size: int = 32  # keypoints per search batch: 64 peaked 140 MB higher on a 1024 px tile, same results
    # structural peaks per keypoint that the learned matcher ranks: 3 instead of 6 cut the learned
    # first pass by 30% (each candidate is a patch the network encodes) with the same success on
    # every learned set of benchmarks/run.py (--limit 8) and medians equal or within 0.1 px
    candidates: int = 3
    rank_refinement: bool = True
    # each first pass (one per prior tried) on the structural matcher alone, again with the
    # learned ranker only where its model is weak; True: the learned ranker in every first pass.
    # The first pass only has to bring the model within the refinement radius, and the refinement
    # pass, ranked by the network, makes the result. benchmarks/run.py --held-out --limit 8,
    # auto, against true in the same session: success the same on all 17 sets, medians within
    # 0.07 px either way, 6-50% less time per pair on 15 sets and 11-12% more on the two 3MOS
    # SAR sets (weak first passes matched twice)
    rank_first_pass: bool = False
    # a coarse shift found on a grid at most 2x coarser than the working grid (scenes up to twice
    # coarse_size_px across) and accepted is the prior of a first pass at the refinement radius
    # instead of max_shift, which can stand in for the refinement pass; a weak result falls back
    # to the first pass at max_shift (see first_pass.stage_first_pass)
    near_pass: bool = True
    device: str = "auto"
    search: str = "auto"
    # torch's CPU threads while the registration runs (the caller's setting is restored after); 0:
    # leave the process's setting (torch's default: one per core). One, because two threads
    # collapse when anything else runs: `benchmarks/threads_under_load.py`, the 1024 px S1/S2 pair
    # on this project's 2-core machine, 5.35 s with two threads and 6.11 s with one when nothing
    # else ran, 22.17 s against 6.41 s beside one busy process (medians of three). With one, a
    # tile's two matching directions run side by side (:func:`georeg.runtime.directions_side_by_side`)
    threads: int = 1

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.max_shift > 0, f"max_shift must be > 0; got {self.max_shift}")
        _check(self.max_shift_unit in ("px", "m"),
               f"max_shift_unit must be 'px' or 'm'; got {self.max_shift_unit!r}")
        _check(isinstance(self.patch_size_px, int) and 16 <= self.patch_size_px <= 256 and self.patch_size_px % 2 == 0,
               f"`patch_size_px` must be an even integer in [16, 256]; got {self.patch_size_px!r}")
        _check(self.tile_size_px >= 4 * self.patch_size_px,
               f"`tile_size_px` must be at least 4x `patch_size_px` ({4 * self.patch_size_px}); "
               f"got {self.tile_size_px}: give a larger tile or a smaller patch")
        _check(self.keypoints_per_tile >= 4, f"`keypoints_per_tile` must be >= 4; got {self.keypoints_per_tile}")
        _check(isinstance(self.max_tiles, int) and self.max_tiles >= 0,
               f"`max_tiles` must be 0 (every tile) or a positive number of tiles; got {self.max_tiles!r}")
        _check(self.coarse_size_px >= 64, f"coarse_size_px must be >= 64; got {self.coarse_size_px}")
        _check(1 <= self.refine_radius_px <= 64, f"refine_radius_px must be in [1, 64]; got {self.refine_radius_px}")
        _check(0.0 <= self.min_score < 1.0, f"min_score must be in [0, 1); got {self.min_score}")
        _check(self.min_peak_ratio >= 1.0, f"min_peak_ratio must be >= 1; got {self.min_peak_ratio}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1; got {self.batch_size}")
        _check(1 <= self.candidates <= 64, f"candidates must be in [1, 64]; got {self.candidates}")
        _check(self.device in DEVICES, f"`device` must be one of {', '.join(DEVICES)}; got {self.device!r}")
        _check(self.search in SEARCHES, f"`search` must be one of {', '.join(SEARCHES)}; got {self.search!r}")
        _check(self.threads >= 0, f"`threads` must be 0 (the process's own setting) or a number of threads; "
                                  f"got {self.threads}")

    def max_shift_px(self, pixel_size_m: float) -> float:
        """Max shift in reference pixels, given the reference pixel's ground size in metres (for a
        geographic CRS, convert degrees first: see :attr:`georeg.grid.Grid.ground_pixel_size_m`).
        Refuses a radius over :data:`MAX_SHIFT_PX` with the largest value it accepts."""
        if self.max_shift_unit == "m" and not math.isfinite(pixel_size_m):
            raise ConfigError(f"`max_shift` {self.max_shift:g}m needs georeferenced inputs; these have no "
                              "georeferencing and are registered in pixel coordinates: give it in px "
                              "(max_shift_unit=px, the default)")
        px = float(self.max_shift) if self.max_shift_unit == "px" else float(self.max_shift) / float(pixel_size_m)
        if px > MAX_SHIFT_PX:
            largest = f"{MAX_SHIFT_PX:.0f} px" + ("" if self.max_shift_unit == "px"
                                                  else f" ({MAX_SHIFT_PX * pixel_size_m:.0f} m here)")
            raise ConfigError(f"`max_shift` {self.max_shift:g}{self.max_shift_unit} is a search radius of "
                              f"{px:.0f} reference pixels; the largest georeg searches tile by tile is {largest}. "
                              "Give a target that is roughly in place (within that radius); rotation, scale and "
                              "larger offsets are found by the global search (`search=rotation`)")
        return px


@dataclass(frozen=True)
class EstimationConfig:
    """Transform model and robust estimation."""

    model: str = "auto"
    threshold_px: float = 3.0
    ransac_iterations: int = 2000
    confidence: float = 0.999
    min_inliers: int = 0  # 0: use the model's own minimum (see estimation.MIN_INLIERS)
    local_method: str = "tps"
    polynomial_order: int = 2
    local_smoothing: float = 1.0
    seed: int = 0
    polish: bool = True  # move the final model by the residual shift the overlap's structure asks for (and
    # correct a rigid or similarity model's shape by that shift measured in windows)

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.model in MODELS, f"`model` must be one of {', '.join(MODELS)}; got {self.model!r}")
        _check(self.threshold_px > 0, f"`threshold_px` must be > 0; got {self.threshold_px}")
        _check(self.ransac_iterations >= 10, f"ransac_iterations must be >= 10; got {self.ransac_iterations}")
        _check(0.5 < self.confidence < 1.0, f"confidence must be in (0.5, 1); got {self.confidence}")
        _check(self.min_inliers >= 0, f"min_inliers must be >= 0; got {self.min_inliers}")
        _check(self.local_method in LOCAL_METHODS,
               f"`local_method` must be one of {', '.join(LOCAL_METHODS)}; got {self.local_method!r}")
        _check(self.polynomial_order in (1, 2, 3), f"polynomial_order must be 1, 2 or 3; got {self.polynomial_order}")
        _check(self.local_smoothing >= 0, f"local_smoothing must be >= 0; got {self.local_smoothing}")


@dataclass(frozen=True)
class OutputConfig:
    """Which outputs are written and how. Paths may be None to skip an output."""

    tie_points: str | None = None
    report: str | None = None
    quicklook: str | None = None
    align_grids: bool = False
    cog: bool = False
    overwrite: bool = False
    resampling: str = "bilinear"
    compress: str = "deflate"
    accept_uncertain: bool = False  # the CLI and batch count an 'uncertain' verdict as success
    # GDAL creation options of the corrected raster, 'NAME=VALUE' (those of the COG driver with cog);
    # they override georeg's own (compress, 512 px tiles)
    creation_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "creation_options", tuple(normalise_creation_options(self.creation_options)))
        _check(self.resampling in RESAMPLINGS,
               f"`resampling` must be one of {', '.join(RESAMPLINGS)}; got {self.resampling!r}")
        _check(self.compress in ("deflate", "lzw", "zstd", "none"),
               f"compress must be deflate, lzw, zstd or none; got {self.compress!r}")


@dataclass(frozen=True)
class RegistrationConfig:
    """Everything one registration needs, composed from the per-stage configs."""

    reference: InputConfig = field(default_factory=InputConfig)
    target: InputConfig = field(default_factory=InputConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    estimation: EstimationConfig = field(default_factory=EstimationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RegistrationConfig:
        """Build from a (possibly partial) nested dict, such as a report's 'config' entry."""
        known = {"reference": InputConfig, "target": InputConfig, "matching": MatchingConfig,
                 "estimation": EstimationConfig, "output": OutputConfig}
        kwargs = {}
        for key, value in (data or {}).items():
            if key not in known:
                raise ConfigError(f"unknown config section {key!r}; expected one of {', '.join(known)}")
            sub = known[key]
            names = sub.__dataclass_fields__
            bad = [k for k in value if k not in names]
            if bad:
                raise ConfigError(f"unknown option(s) {bad} in section {key!r}; expected some of {list(names)}")
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a mapping of options; got {value!r}")
            kwargs[key] = sub(**value)
        return cls(**kwargs)

    def with_options(self, **sections) -> RegistrationConfig:
        """Return a copy with some fields of some sections replaced: ``with_options(matching={'max_shift': 60})``."""
        out = self
        for key, changes in sections.items():
            if key not in self.__dataclass_fields__:
                raise ConfigError(f"unknown config section {key!r}; expected one of "
                                  f"{', '.join(self.__dataclass_fields__)}")
            section = getattr(out, key)
            bad = [k for k in changes if k not in section.__dataclass_fields__]
            if bad:
                raise ConfigError(f"unknown option(s) {bad} in section {key!r}; expected some of "
                                  f"{list(section.__dataclass_fields__)}")
            out = replace(out, **{key: replace(section, **changes)})
        return out
