"""The registration options that users set, each declared once.

An :class:`Option` names a field of :mod:`georeg.config` and carries what every front end needs:
the help text, the choices and the kind of value. The default is not restated: it is read from
the config dataclass. From this table come the CLI options of ``register`` and ``batch``
(:func:`georeg.cli_support.registration_options`), the batch manifest columns (:data:`MANIFEST_COLUMNS`),
and the config built from either (:func:`config_from_options`); the QGIS plugin's choices are
checked against it (tests/test_options.py). To add an option: add the config field, then one
:class:`Option` here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .config import (
    DEVICES,
    LOCAL_METHODS,
    MODALITIES,
    MODELS,
    RESAMPLINGS,
    SEARCHES,
    RegistrationConfig,
    parse_shift,
)
from .errors import ConfigError

KINDS = ("choice", "int", "float", "text", "path", "flag", "switch", "list", "shift")


@dataclass(frozen=True)
class Option:
    """One user-facing option: ``name`` is the Python keyword and manifest column, ``--name``
    (dashes for underscores) the CLI flag unless ``cli`` says otherwise.

    kind: choice, int, float, text, path, flag (off unless given), switch (--x/--no-x), list
    (repeatable) or shift (a distance in pixels or metres, two config fields)."""

    name: str
    section: str
    field: str
    kind: str
    help: str
    choices: tuple[str, ...] | None = None
    manifest: bool = True  # a per-pair column of batch manifests (False: one value for the whole run)
    cli: str | None = None
    metavar: str | None = None
    envvar: str | None = None  # the CLI's default comes from this environment variable when it is set

    @property
    def flag(self) -> str:
        return self.cli or "--" + self.name.replace("_", "-")

    @property
    def default(self):
        """The config's default, as the front ends show it (a shift as text: '40', '400m')."""
        section = getattr(_defaults(), self.section)
        value = getattr(section, self.field)
        if self.kind == "shift":
            unit = getattr(section, self.field + "_unit")
            return f"{value:g}" + ("" if unit == "px" else unit)
        return value

    def changes(self, value) -> dict:
        """The config fields this option's value sets: {field: value}."""
        if self.kind == "shift":
            v, unit = parse_shift(value)
            return {self.field: v, self.field + "_unit": unit}
        if self.kind == "list":
            return {self.field: tuple(value)}
        return {self.field: value}

    def from_text(self, text: str):
        """A value as written in a manifest cell; ValueError when it is not one."""
        if self.kind == "int":
            return int(text)
        if self.kind == "float":
            return float(text)
        if self.kind in ("flag", "switch"):
            low = text.strip().lower()
            if low not in _BOOL_TEXT:
                raise ValueError(text)
            return _BOOL_TEXT[low]
        if self.kind == "list":
            return tuple(p.strip() for p in text.split(";") if p.strip())
        return text


@functools.lru_cache(maxsize=1)
def _defaults() -> RegistrationConfig:
    """The default config, built once (front ends read every option's default at start-up)."""
    return RegistrationConfig()


_BOOL_TEXT = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}

OPTIONS: tuple[Option, ...] = (
    Option("model", "estimation", "model", "choice",
           "Transform model. 'auto' takes the simplest of translation, similarity, affine and homography that the "
           "tie points support: a richer model must predict held-out parts of the scene better, rest on enough "
           "tie points, depart from the simpler one by more than its own uncertainty and improve the images' "
           "structural agreement; 'local' warps through a dense tie-point grid.", MODELS),
    Option("matcher", "matching", "matcher", "text",
           "Patch matcher: auto (KGL-Net for SAR and thermal targets where its shipped weights beat the baseline, "
           "else baseline), baseline (weight-free), kgl, rrl, or a full name such as kgl-opt-sar ('georeg "
           "matchers list')."),
    Option("max_shift", "matching", "max_shift", "shift",
           "Largest expected misregistration after the coarse pass: reference pixels ('40', '40px') or metres "
           "on the ground ('400m'; Mercator's map metres are not)."),
    Option("modality", "target", "modality", "choice",
           "Target modality; 'auto' decides from the metadata (band descriptions, units, wavelengths) and the "
           "pixels (value range, speckle statistics), with file-name words only as a tie-breaker.", MODALITIES),
    Option("ref_band", "reference", "band", "int",
           "Reference band (1-based). Default: luminance of bands 1-3 (of the red, green and blue bands where a "
           "raster of more than three names them), or band 1."),
    Option("target_band", "target", "band", "int", "Target band (1-based). Default as --ref-band."),
    Option("ref_nodata", "reference", "nodata", "float", "Override the reference's nodata value."),
    Option("target_nodata", "target", "nodata", "float", "Override the target's nodata value."),
    Option("ref_crs", "reference", "crs", "text",
           "CRS of the reference's georeferencing (EPSG:32633, WKT or a PROJ string), for a file that has none (a "
           "PNG or JPEG with a world file but no .prj) or a wrong one. Default: the file's."),
    Option("target_crs", "target", "crs", "text", "CRS of the target's georeferencing, as --ref-crs."),
    Option("ref_mask", "reference", "mask", "path",
           "Raster whose non-zero pixels are valid in the reference, or the scene's quality band as its product "
           "names it (Sentinel-2 SCL, MSK_CLDPRB or QA60, Landsat QA_PIXEL or BQA, HLS Fmask): clouds, their "
           "shadows and fill masked."),
    Option("target_mask", "target", "mask", "path",
           "Raster whose non-zero pixels are valid in the target, or its quality band (as --ref-mask)."),
    Option("threshold", "estimation", "threshold_px", "float", "RANSAC inlier threshold, reference pixels."),
    Option("tile_size", "matching", "tile_size_px", "int", "Matching tile size, pixels."),
    Option("patch_size", "matching", "patch_size_px", "int", "Patch size, pixels."),
    Option("keypoints", "matching", "keypoints_per_tile", "int", "Keypoints per tile and image."),
    Option("max_tiles", "matching", "max_tiles", "int",
           "Tiles matched by the refinement pass on a large scene, spread evenly over the overlap (the first "
           "pass matches at most 16), each in its central part when more than 8 whole tiles would be matched; "
           "the rest are matched only when those give too little evidence. 0: every tile, whole. The 'local' "
           "model refines on every tile, whole."),
    Option("coarse", "matching", "coarse", "switch",
           "Coarse pass at reduced resolution for shifts beyond --max-shift."),
    Option("refine", "matching", "refine", "switch",
           "Second matching pass through the first model, with a small search radius."),
    Option("polish", "estimation", "polish", "switch",
           "Move the final model by the residual shift (at most 1.5 px) at which the oriented-gradient "
           "structure of the whole overlap agrees best; tie points alone carry a bias of a few tenths of a pixel. "
           "A rigid or similarity model also has its rotation and scale corrected by the same measure made in "
           "3x3 windows, when the whole overlap then agrees better."),
    Option("local_method", "estimation", "local_method", "choice",
           "Warp of the 'local' model: thin-plate spline or polynomial.", LOCAL_METHODS),
    Option("align_grids", "output", "align_grids", "flag", "Resample the target onto the reference grid."),
    Option("cog", "output", "cog", "flag", "Write a Cloud-Optimised GeoTIFF."),
    Option("creation_options", "output", "creation_options", "list",
           "GDAL creation option of the corrected raster (repeatable), e.g. --co COMPRESS=ZSTD --co BLOCKXSIZE=256; "
           "with --cog, those of the COG driver. In a manifest: NAME=VALUE items separated by ';'.",
           cli="--co", metavar="NAME=VALUE"),
    Option("resampling", "output", "resampling", "choice", "Resampling when the output must be resampled.",
           RESAMPLINGS),
    Option("device", "matching", "device", "choice", "Where the matcher runs.", DEVICES, manifest=False),
    Option("threads", "matching", "threads", "int",
           "torch's CPU threads for a registration (batch: for each worker). One keeps a registration as fast "
           "when anything else runs on the machine; more threads make one registration up to 1.35x faster on an "
           "otherwise idle machine and several times slower when something else runs. 0: torch's setting as it "
           "is (in a process of its own, one thread per core). With one, a tile's two matching directions run "
           "side by side on two cores where the machine has them (not in a batch's parallel workers). The "
           "default can also be set with GEOREG_THREADS.",
           manifest=False, envvar="GEOREG_THREADS"),
    Option("search", "matching", "search", "choice",
           "Global geometry: 'auto' searches rotation (full circle) and scale (0.5-2x) when the georeferenced "
           "search finds no clear model; 'rotation' always; 'shift' never.", SEARCHES),
    Option("accept_uncertain", "output", "accept_uncertain", "flag",
           "Exit 0 for a result whose verdict is 'uncertain' (outputs are written either way)."),
    Option("overwrite", "output", "overwrite", "flag", "Replace existing outputs.", manifest=False),
)

BY_NAME = {o.name: o for o in OPTIONS}
# the config fields that one option sets (not 'band' or 'nodata': a reference's and a target's)
_FIELDS = [o.field for o in OPTIONS]
BY_FIELD = {o.field: o for o in OPTIONS if _FIELDS.count(o.field) == 1}
MANIFEST_COLUMNS = tuple(o.name for o in OPTIONS if o.manifest)


def specs() -> list[dict]:
    """The option table as plain data (``georeg options --json``), for front ends that cannot
    import georeg, such as the QGIS plugin running in QGIS's own Python."""
    return [{"name": o.name, "flag": o.flag, "kind": o.kind, "help": o.help,
             "choices": list(o.choices) if o.choices else None, "default": _plain(o.default),
             "manifest": o.manifest, "section": o.section, "field": o.field} for o in OPTIONS]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def config_from_options(values: dict, base: RegistrationConfig | None = None) -> RegistrationConfig:
    """``base`` (default: the defaults) with the options of ``values`` ({name: value}, names of
    :data:`OPTIONS`; None means 'not given') applied and validated. Front ends (the CLI, batch
    rows, a QGIS algorithm, a notebook) use this one mapping from their names to the config."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; known: {', '.join(BY_NAME)}")
    changes: dict[str, dict] = {}
    for name, value in values.items():
        if value is None:
            continue
        opt = BY_NAME[name]
        changes.setdefault(opt.section, {}).update(opt.changes(value))
    return (base or RegistrationConfig()).with_options(**changes)


_NAMED = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`\s]+))?`")


def cli_words(message: str) -> str:
    """A library message for CLI users: the option names it gives as `name` or `name=value`
    (the Python keywords, which is what API callers set) or as the config field an option sets
    (`tile_size_px`) become ``--name`` and ``--name value`` (``--name`` alone for True)."""
    def flag(m) -> str:
        opt = BY_NAME.get(m.group(1)) or BY_FIELD.get(m.group(1))
        name = opt.flag if opt is not None else "--" + m.group(1).replace("_", "-")
        value = m.group(2)
        return name if value in (None, "True") else f"{name} {value}"

    return _NAMED.sub(flag, message)
