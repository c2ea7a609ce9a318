"""Input paths before anything is opened: a local file that exists and is not a folder (a SAFE
product's folder names its image files), a UTF-8 name as GDAL needs, and the file behind a GDAL
subdataset name (``NETCDF:"scene.nc":VH``)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import RasterOpenError
from .remote import is_remote


def check_utf8_name(path: str, what: str) -> None:
    """GDAL takes file names as UTF-8; a name with other bytes (Latin-1 from an old archive) cannot
    be opened or written through it."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "backslashreplace").decode()
        raise RasterOpenError(f"the {what} name {shown} is not valid UTF-8, which GDAL needs; rename the file "
                              "(for example with 'convmv -f latin1 -t utf8')") from None


_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")


def split_subdataset(path: str, base: str | Path = ".") -> tuple[str, str, str] | None:
    """(head, file, tail) of a GDAL subdataset name, ``head + file + tail == path``: the file it
    reads (relative to ``base`` when not absolute) and what stands around it, quotes included
    (``NETCDF:"scene.nc":VH``, ``HDF5:"f.h5"://grp/var``, ``SENTINEL2_L2A:/d/MTD_MSIL2A.xml:10m:EPSG_32611``,
    ``SENTINEL1_CALIB:SIGMA0:/d/S1.SAFE/manifest.safe:IW_VH``); None for a plain path (a drive
    letter, ``C:``, is one letter, not a driver name)."""
    if is_remote(path) or not _DRIVER_PREFIX.match(path) or (Path(base) / path).exists():
        return None
    if '"' in path:  # the quoted part is the file
        head, file, tail = path.split('"', 2) if path.count('"') >= 2 else (path, "", "")
        return (head + '"', file, '"' + tail) if file else None
    parts = path.split(":")
    # the longest run of ':'-separated parts after the driver that names an existing file
    runs = [(i, j) for i in range(1, len(parts)) for j in range(len(parts), i, -1)]
    i, j = next(((i, j) for i, j in runs if (Path(base) / ":".join(parts[i:j])).exists()), (1, 2))
    return ":".join(parts[:i]) + ":", ":".join(parts[i:j]), "".join(":" + q for q in parts[j:])


def check_raster_path(path: str, role: str) -> None:
    """A local raster's file exists and is not a folder (the path, or the file of a GDAL subdataset
    name), and its name is UTF-8. A URL is not checked here (reading it tells)."""
    p, sub = Path(path), subdataset_file(path)
    what = role if role == "raster" else f"{role} raster"  # 'georeg apply' names its input 'raster'
    if not is_remote(sub or path):
        if sub is not None:
            if not Path(sub).exists():
                raise RasterOpenError(f"{what} not found: {sub} (in {path}); check the path")
        elif not p.exists():
            raise RasterOpenError(f"{what} not found: {path}; check the path")
        elif p.is_dir():
            raise RasterOpenError(f"{role} path is a folder, expected a raster file: {path}{_inside_product(p)}")
    check_utf8_name(path, f"{role} raster")


def check_mask_path(path: str, role: str) -> None:
    """A local mask file exists (see :func:`check_raster_path`)."""
    if not is_remote(path) and not Path(subdataset_file(path) or path).exists():
        raise RasterOpenError(f"{role} mask not found: {path}; check the path")


def subdataset_file(path: str) -> str | None:
    """The file behind a GDAL subdataset name (see :func:`split_subdataset`), or None."""
    parts = split_subdataset(path)
    return parts[1] if parts else None


def _inside_product(folder: Path) -> str:
    """For a Sentinel-1/2 SAFE folder (or another with image files inside): '; give one of its
    image files, such as ...' naming up to three, or nothing."""
    patterns = ("measurement/*.tif*", "GRANULE/*/IMG_DATA/*.jp2", "GRANULE/*/IMG_DATA/*/*.jp2", "*.tif", "*.tiff")
    found = sorted({str(f.relative_to(folder)) for pat in patterns for f in folder.glob(pat)})
    if not found:
        return ""
    return f"; give one of its image files, such as {', '.join(found[:3])}" + (
        f" ({len(found)} in all)" if len(found) > 3 else "")
