"""What a registration checks before any work, without the heavy modules (torch, the matchers):
the arguments, the planned outputs and the inputs' paths. :func:`georeg.pipeline.register` runs
:func:`preflight` first; the command line runs it before it imports the pipeline, so that a typo
in a path or an existing output is answered in a fraction of a second instead of after torch's
import (1.3 s on the 2-core machine of the benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

from .config import RegistrationConfig, side_output
from .errors import InputError, InputWarning, OutputExistsError, OutputWriteError, warn

OUTPUT_SUFFIXES = {"raster": ("a GeoTIFF", (".tif", ".tiff")), "tie_points": ("a GeoPackage", (".gpkg",)),
                   "report": ("JSON", (".json",)),
                   "quicklook": ("a PNG picture", (".png",))}


def preflight(reference, target, output, cfg: RegistrationConfig, warn_same: bool = True) -> dict[str, str]:
    """Check a registration's arguments, outputs, input paths and GDAL creation options; returns the planned outputs'
    paths by kind (see :func:`planned_outputs`). Raises georeg's errors; warns when the reference
    and the target are one file (unless ``warn_same`` is False: a caller that runs the
    registration next, which warns)."""
    from .paths import check_mask_path, check_raster_path

    for name, value in (("reference", reference), ("target", target), ("output", output)):
        if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)).strip():
            raise InputError(f"register(): {name} must be a file path (str or os.PathLike); got {value!r}")
    if warn_same and same_local_file(reference, target):
        warn(InputWarning, f"the reference and the target are the same file ({os.fspath(target)}): there is nothing "
                           "to correct and the result is the identity; give the scene to correct as the target")
    outputs = planned_outputs(output, cfg)
    check_outputs(outputs, [str(reference), str(target), cfg.reference.mask, cfg.target.mask],
                  cfg.output.overwrite)
    for role, path, mask in (("reference", reference, cfg.reference.mask), ("target", target, cfg.target.mask)):
        check_raster_path(os.fspath(path), role)
        if mask:
            check_mask_path(mask, role)
    check_creation_options(cfg.output.creation_options, cfg.output.cog)
    return outputs


def planned_outputs(output: str | os.PathLike, cfg: RegistrationConfig) -> dict[str, str]:
    """The outputs' paths by kind; a side output given as 'auto' goes beside the raster and one
    given as 'none' (or None, the API's default) is not written, as on the command line."""
    out = {"raster": str(output)}
    for key in ("tie_points", "report", "quicklook"):
        value = side_output(output, key, getattr(cfg.output, key))
        if value:
            out[key] = value
    return out


def check_outputs(outputs: dict[str, str], inputs: list[str], overwrite: bool) -> None:
    """Refuse existing outputs (without overwrite), outputs that are inputs, and missing folders."""
    from .paths import check_utf8_name
    from .remote import is_remote

    resolved_inputs = {Path(p).resolve() for p in inputs if p and not is_remote(p)}
    seen = set()
    for kind, path in outputs.items():
        if is_remote(path):
            raise InputError(f"the {kind} output {path} is a URL; georeg writes local files: give a local path "
                             "(and upload the results afterwards)")
        check_utf8_name(path, f"{kind} output")
        p = Path(path)
        if kind in OUTPUT_SUFFIXES and p.suffix.lower() not in OUTPUT_SUFFIXES[kind][1]:
            fmt, suffixes = OUTPUT_SUFFIXES[kind]
            raise InputError(f"the {kind} output {path} is written as {fmt}: give it a {' or '.join(suffixes)} name "
                             "(QGIS and other programs go by the extension)")
        if p.resolve() in resolved_inputs:
            raise InputError(f"the {kind} output {path} is also an input; choose another output path")
        if p.resolve() in seen:
            raise InputError(f"two outputs share the path {path}; give each output its own path")
        seen.add(p.resolve())
        if p.exists() and not overwrite:
            raise OutputExistsError(f"output exists: {path}; use `overwrite=True` to replace it or choose another path")
        if p.is_dir():
            raise InputError(f"the {kind} output {path} is a folder; give a file path")
        if not p.parent.exists():
            raise InputError(f"the folder of the {kind} output does not exist: {p.parent}; create it first")
        if p.parent.is_file():
            raise InputError(f"the {kind} output {path} is under a file, not a folder; choose another path")
    for folder in {Path(p).parent for p in outputs.values()}:
        check_writable(folder)


def check_writable(folder: Path) -> None:
    """Create and delete a probe file: permissions, read-only mounts and immutable folders are found
    before any matching, not after it."""
    import tempfile

    from .interrupts import signals_held

    try:
        with signals_held(), tempfile.NamedTemporaryFile(dir=folder, prefix=".georeg-probe-"):
            pass
    except OSError as exc:
        raise OutputWriteError(f"cannot write to the output folder {folder}: {exc.strerror or exc}; "
                               "choose a folder you can write to") from None


def same_local_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two inputs are one local file (a copy-paste slip in a manifest)."""
    from .remote import is_remote

    a, b = os.fspath(a), os.fspath(b)
    if is_remote(a) or is_remote(b) or not (os.path.isfile(a) and os.path.isfile(b)):
        return False
    return os.path.samefile(a, b)


def creation_options_dict(creation_options) -> dict:
    """NAME=VALUE strings -> {NAME: VALUE}."""
    return dict(o.split("=", 1) for o in creation_options or ())


def check_creation_options(creation_options, cog: bool) -> None:
    """Write a 16 px raster to memory with the options: an option the driver does not know, or a
    value it refuses, raises ConfigError before any work (GDAL would only warn and ignore it)."""
    import logging

    import numpy as np
    import rasterio
    import rasterio.shutil
    from affine import Affine

    if not creation_options:
        return
    driver = "COG" if cog else "GTiff"
    problems = []

    class _Collect(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if "creation option" in msg or "not recognised" in msg or "unexpected value" in msg:
                problems.append(msg.split(" in ", 1)[-1] if " in " in msg[:30] else msg)

    handler = _Collect(level=logging.WARNING)
    log = logging.getLogger("rasterio._env")
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False  # collected here, not printed as well
    tmp = f"/vsimem/georeg-co-check-{os.getpid()}.tif"
    prof = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8",
            "crs": "EPSG:4326", "transform": Affine(0.1, 0, 0, 0, -0.1, 0)}
    try:
        opts = creation_options_dict(creation_options)
        with rasterio.Env(CPL_LOG_ERRORS=False):
            if cog:
                with rasterio.open(tmp, "w", **prof) as d:
                    d.write(np.zeros((1, 16, 16), np.uint8))
                rasterio.shutil.copy(tmp, tmp + ".cog", driver="COG", **opts)
            else:
                with rasterio.open(tmp, "w", **prof, **opts) as d:
                    d.write(np.zeros((1, 16, 16), np.uint8))
    except rasterio.errors.RasterioError as exc:
        problems.append(str(exc))
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
        for path in (tmp, tmp + ".cog"):
            try:
                rasterio.shutil.delete(path)
            except rasterio.errors.RasterioError:
                pass
    if problems:
        from .errors import ConfigError

        raise ConfigError(f"GDAL's {driver} driver refused the creation options {' '.join(creation_options)}: "
                          f"{'; '.join(dict.fromkeys(problems))}. See https://gdal.org/drivers/raster/"
                          f"{driver.lower()}.html for the options it takes")
