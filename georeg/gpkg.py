"""The tie points as a GeoPackage 1.2 point layer, written with Python's own sqlite3.

Writing through geopandas and pyogrio loaded pandas and a second copy of GDAL (pyogrio's wheel
bundles its own) into every registration only to write one small table at the end: about 0.3 s
and 180 MB of peak memory, a third of a 1024 px pair's memory. This module writes the same layer
(table, column types and metadata as GDAL writes them, checked by reading the file back with
GDAL in the tests) without either; the Python API still hands out a GeoDataFrame
(:meth:`TiePointTable.to_geodataframe`), built only when asked for.

What GDAL would add and this leaves out: the R-tree spatial index (an optional extension; QGIS
offers to build one, and a layer of at most tens of thousands of points draws without it) and
the empty tile-matrix tables of raster GeoPackages.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass

import numpy as np

from .errors import OutputWriteError

LAYER = "tie_points"
APPLICATION_ID = 0x47504B47  # "GPKG"
USER_VERSION = 10200  # GeoPackage 1.2: QGIS 3.22 (GDAL 3.6) warns about 1.4 files
CUSTOM_SRS_ID = 100000  # GDAL's first id for a CRS without an authority code
UNDEFINED_SRS_ID = 99999  # GDAL's id for "no CRS" (the pixel frame of pictures)

_SQL_TYPE = {"i": "MEDIUMINT", "u": "MEDIUMINT", "f": "REAL", "b": "BOOLEAN", "U": "TEXT", "O": "TEXT"}

_SCHEMA = (
    "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL,srs_id INTEGER NOT NULL PRIMARY KEY,"
    "organization TEXT NOT NULL,organization_coordsys_id INTEGER NOT NULL,definition  TEXT NOT NULL,"
    "description TEXT)",
    "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,data_type TEXT NOT NULL,"
    "identifier TEXT UNIQUE,description TEXT DEFAULT '',last_change DATETIME NOT NULL DEFAULT "
    "(strftime('%Y-%m-%dT%H:%M:%fZ','now')),min_x DOUBLE, min_y DOUBLE,max_x DOUBLE, max_y DOUBLE,"
    "srs_id INTEGER,CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))",
    "CREATE TABLE gpkg_ogr_contents(table_name TEXT NOT NULL PRIMARY KEY,feature_count INTEGER DEFAULT NULL)",
    "CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL,column_name TEXT NOT NULL,"
    "geometry_type_name TEXT NOT NULL,srs_id INTEGER NOT NULL,z TINYINT NOT NULL,m TINYINT NOT NULL,"
    "CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),CONSTRAINT uk_gc_table_name UNIQUE "
    "(table_name),CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),"
    "CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))",
)


@dataclass
class TiePointTable:
    """The tie points' attribute columns (name -> 1-D array, in order), their point geometry
    (map coordinates of the reference side) and the CRS (None in the pixel frame of pictures)."""

    columns: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    crs: object  # rasterio CRS or None

    def __len__(self) -> int:
        return len(self.x)

    def to_geodataframe(self):
        """The table as a GeoDataFrame (imports geopandas)."""
        import geopandas as gpd

        return gpd.GeoDataFrame(dict(self.columns), geometry=gpd.points_from_xy(self.x, self.y),
                                crs=self.crs.to_wkt() if self.crs else None)


def _srs_rows(crs) -> tuple[list[tuple], int]:
    """The rows of gpkg_spatial_ref_sys (the three the standard requires, and the layer's CRS)
    and the layer's srs_id: its EPSG code when it has one."""
    from rasterio.crs import CRS

    wgs84 = CRS.from_epsg(4326)
    rows = [("Undefined Cartesian SRS", -1, "NONE", -1, "undefined", "undefined Cartesian coordinate reference system"),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
            ("WGS 84 geodetic", 4326, "EPSG", 4326, wgs84.to_wkt(),
             "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid")]
    if crs is None:  # GDAL's own entry for a layer without a CRS, which it reads back as none
        rows.append(("Undefined SRS", UNDEFINED_SRS_ID, "GDAL", UNDEFINED_SRS_ID,
                     'LOCAL_CS["Undefined SRS",LOCAL_DATUM["unknown",32767],UNIT["unknown",0],'
                     'AXIS["Easting",EAST],AXIS["Northing",NORTH]]', "Custom undefined coordinate reference system"))
        return rows, UNDEFINED_SRS_ID
    epsg = crs.to_epsg()
    if epsg == 4326:
        return rows, 4326
    wkt = crs.to_wkt()
    name = _wkt_name(wkt) or "unnamed"
    if epsg is not None:
        rows.append((name, int(epsg), "EPSG", int(epsg), wkt, None))
        return rows, int(epsg)
    rows.append((name, CUSTOM_SRS_ID, "NONE", CUSTOM_SRS_ID, wkt, None))
    return rows, CUSTOM_SRS_ID


def _wkt_name(wkt: str) -> str | None:
    """The CRS's name: the first quoted string of its WKT."""
    start = wkt.find('"')
    end = wkt.find('"', start + 1)
    return wkt[start + 1:end] if 0 <= start < end else None


def _points(x: np.ndarray, y: np.ndarray, srs_id: int) -> list[bytes]:
    """GeoPackage geometry blobs: the 'GP' header (version 0, little-endian, no envelope, the
    srs_id) followed by a little-endian WKB point."""
    head = b"GP\x00\x01" + struct.pack("<i", srs_id) + b"\x01" + struct.pack("<I", 1)
    xy = np.empty((len(x), 2), "<f8")
    xy[:, 0], xy[:, 1] = x, y
    return [head + row.tobytes() for row in xy]


def write_gpkg(table: TiePointTable, path: str, timestamp: str | None = None) -> None:
    """Write ``table`` as the layer 'tie_points' of a new GeoPackage at ``path`` (which must not
    exist). ``timestamp`` (ISO 8601, UTC) is the layer's last change; fixing it makes the same
    inputs give a byte-identical file."""
    for name in table.columns:
        if not name.isidentifier():
            raise ValueError(f"tie-point column {name!r} is not a plain name")
    srs_rows, srs_id = _srs_rows(table.crs)
    n = len(table)
    kinds = {name: _SQL_TYPE.get(np.asarray(a).dtype.kind, "TEXT") for name, a in table.columns.items()}
    cols = ", ".join(f'"{name}" {kind}' for name, kind in kinds.items())
    bbox = (float(np.min(table.x)), float(np.min(table.y)), float(np.max(table.x)), float(np.max(table.y))) \
        if n else (None, None, None, None)
    values = [np.asarray(a).tolist() for a in table.columns.values()]  # sqlite3 stores booleans as 0/1
    try:  # any step can meet a full disk or a folder that is not writable
        con = sqlite3.connect(path, isolation_level=None)
        try:
            # no rollback journal: the file is a staged temporary that a failed write discards
            # whole, and a journal would be one more file that an interrupted run leaves beside it
            con.execute("PRAGMA journal_mode = OFF")
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {USER_VERSION}")
            con.execute("BEGIN")
            for sql in _SCHEMA:
                con.execute(sql)
            con.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs_rows)
            con.execute(f'CREATE TABLE "{LAYER}" ( "fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
                        f'"geom" POINT, {cols})')
            con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change, "
                        "min_x, min_y, max_x, max_y, srs_id) VALUES (?, 'features', ?, '', "
                        "COALESCE(?, strftime('%Y-%m-%dT%H:%M:%fZ','now')), ?, ?, ?, ?, ?)",
                        (LAYER, LAYER, timestamp, *bbox, srs_id))
            con.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POINT', ?, 0, 0)", (LAYER, srs_id))
            con.execute("INSERT INTO gpkg_ogr_contents VALUES (?, ?)", (LAYER, n))
            marks = ", ".join("?" * (len(values) + 2))
            con.executemany(f'INSERT INTO "{LAYER}" VALUES ({marks})',
                            zip(range(1, n + 1), _points(table.x, table.y, srs_id), *values))
            con.execute("COMMIT")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise OutputWriteError(f"could not write the tie-point GeoPackage {path} ({exc}); check the folder's "
                               "permissions and free space") from None
