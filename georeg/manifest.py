"""A batch's pairs: :func:`read_manifest` (a CSV file), :func:`rows_from_globs` (two globs) and
the rows of STAC items (:mod:`georeg.stac`) become :class:`PairTask` objects through
:func:`tasks_from_rows`: the inputs, the outputs' paths inside OUTDIR, the options of the row's
columns over the batch's and the task key that resume compares. A row that cannot run (a bad
value, an output that would replace an input or another row's, more values than the header has
columns) becomes a task with its ``error``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import RegistrationConfig, side_output
from .errors import ConfigError, InputError
from .options import BY_NAME, MANIFEST_COLUMNS


@dataclass(frozen=True)
class PairTask:
    index: int
    reference: str
    target: str
    output: str
    tie_points: str
    report: str
    config: RegistrationConfig
    key: str
    error: str = ""  # set when the row cannot run (bad value, refused output): recorded as failed


def _task_key(reference: str, target: str, cfg: RegistrationConfig) -> str:
    d = cfg.to_dict()
    d["output"] = {k: v for k, v in d["output"].items() if k not in ("tie_points", "report", "quicklook",
                                                                      "overwrite")}
    stat = []
    for p in (reference, target):
        try:
            st = os.stat(p)
            stat.append([st.st_size, int(st.st_mtime)])
        except OSError:
            stat.append(None)
    blob = json.dumps({"reference": reference, "target": target, "files": stat, "config": d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _row_config(base: RegistrationConfig, row: dict, where: str) -> RegistrationConfig:
    changes: dict[str, dict] = {}
    for col, value in row.items():
        if col in ("reference", "target", "output") or value in (None, ""):
            continue
        opt = BY_NAME[col]
        try:
            changes.setdefault(opt.section, {}).update(opt.changes(opt.from_text(value)))
        except ConfigError as exc:
            raise ConfigError(f"{where}: column {col!r}: {exc}") from None
        except ValueError:
            raise ConfigError(f"{where}: column {col!r} has the bad value {value!r}") from None
    try:
        return base.with_options(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _stem(target: str) -> str:
    """A file-name stem for a target: the file's stem, and for a GDAL subdataset name the file's
    stem and the subdataset's (``NETCDF:"scene.nc":VH`` -> ``scene_VH``)."""
    from .paths import split_subdataset

    sub = split_subdataset(target)
    if sub is None:
        return Path(target.split("?")[0]).stem
    return "_".join([Path(sub[1]).stem, *re.findall(r"[A-Za-z0-9]+", sub[2])])


def _default_names(targets: list[str], rows: list[int]) -> list[str]:
    """``<stem>_registered.tif``; where two targets share a stem (``scene_a/target.tif``,
    ``scene_b/target.tif``), the parent folders' names are prefixed, then the row number."""
    plain = [f"{_stem(t)}_registered.tif" for t in targets]
    names = [f"{Path(t).parent.name}_{n}" if plain.count(n) > 1 else n for t, n in zip(targets, plain, strict=True)]
    return [f"{Path(n).stem}_row{r + 1}.tif" if names.count(n) > 1 else n for r, n in zip(rows, names, strict=True)]


def tasks_from_rows(rows: Iterable[dict], outdir: str | os.PathLike, config: RegistrationConfig,
                    base_dir: str | os.PathLike = ".", where: str = "manifest") -> list[PairTask]:
    """One task per row. A row whose values are unusable (a bad option value, an output outside
    OUTDIR, equal to an input or to another row's output) becomes a task that carries its error
    and is recorded as failed; the other rows run. Columns georeg does not know, or a missing
    reference or target, are mistakes of the whole manifest and refuse it."""
    out_dir = Path(outdir)
    rows = list(rows)
    # a CSV row with more values than the header has columns (csv.DictReader keeps them under None):
    # most often a path with the delimiter in it, unquoted, which shifts every later value
    surplus = [sum(1 for v in row.get(None) or [] if str(v).strip()) for row in rows]
    rows = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k} for row in rows]
    _check_columns(rows, where)
    from .paths import split_subdataset
    from .remote import is_remote

    def locate(p: str) -> str:
        if is_remote(p):
            return p
        sub = split_subdataset(p, base_dir)
        if sub and not is_remote(sub[1]):  # NETCDF:"scene.nc":VH: the file in the name is relative to the manifest
            return f"{sub[0]}{(Path(base_dir) / sub[1]).resolve()}{sub[2]}"
        return str((Path(base_dir) / p).resolve())

    refs = [locate(r["reference"]) for r in rows]
    tgts = [locate(r["target"]) for r in rows]
    inputs = {Path(p) for p in refs + tgts if not is_remote(p)}
    inputs |= {(Path(base_dir) / r[col]).resolve() for r in rows for col in ("ref_mask", "target_mask") if r.get(col)}
    free = [i for i, r in enumerate(rows) if not r.get("output")]
    defaults = dict(zip(free, _default_names([tgts[i] for i in free], free), strict=True))
    tasks, owner = [], {}
    for i, row in enumerate(rows):
        line = f"{where} row {i + 1}"
        output, error = _row_output(row.get("output") or defaults[i], out_dir, line, i)
        planned = [output, *(Path(side_output(output, kind, "auto")) for kind in ("tie_points", "report"))]
        error = error or _output_clash(planned, inputs, owner, line, i)
        if surplus[i]:
            error = (f"{line} has {surplus[i]} more value{'s' if surplus[i] > 1 else ''} than the manifest has "
                     "columns; put a value that holds the delimiter (a comma in a path) in double quotes")
        cfg = config
        if not error:
            try:
                cfg = _row_config(config, row, line)
            except ConfigError as exc:
                error = str(exc)
        cfg = cfg.with_options(output={"tie_points": str(planned[1]), "report": str(planned[2]),
                                       "quicklook": None, "overwrite": True})
        tasks.append(PairTask(i, refs[i], tgts[i], str(output), cfg.output.tie_points, cfg.output.report, cfg,
                              _task_key(refs[i], tgts[i], cfg), error))
    return tasks


def _check_columns(rows: list[dict], where: str) -> None:
    """Columns georeg does not know, or a missing reference or target, refuse the whole manifest."""
    for i, row in enumerate(rows):
        if not row.get("reference") or not row.get("target"):
            raise InputError(f"{where} row {i + 1}: 'reference' and 'target' are required")
        unknown = [c for c in row if c not in ("reference", "target", "output") and c not in MANIFEST_COLUMNS]
        whole_run = [c for c in unknown if c in BY_NAME]
        if whole_run:  # an option with one value for every pair
            opt = BY_NAME[whole_run[0]]
            raise ConfigError(f"{where}: column {opt.name!r} cannot vary from pair to pair; drop the column and "
                              f"give {opt.flag} to 'georeg batch' for the whole run")
        if unknown:
            raise ConfigError(f"{where}: unknown manifest column {unknown[0]!r}; known: reference, target, output, "
                              f"{', '.join(MANIFEST_COLUMNS)}")


def _row_output(name: str, out_dir: Path, line: str, i: int) -> tuple[Path, str]:
    """The row's output path and, for a name outside OUTDIR, the error and a harmless placeholder."""
    output = out_dir / name
    if Path(name).is_absolute() or not _inside(output, out_dir):
        return out_dir / f".refused_row{i + 1}.tif", (
            f"{line}: output {name!r} is outside the output folder {out_dir}; give a file name "
            "(or a path relative to the output folder)")
    return output, ""


def _output_clash(planned: list[Path], inputs: set[Path], owner: dict, line: str, i: int) -> str:
    """An output that would replace an input or another row's output; else claims the outputs."""
    clash = next((p for p in planned if p.resolve() in inputs), None)
    if clash is not None:
        return f"{line}: output {clash.name} would replace an input of this manifest; choose another output name"
    first = next((owner[p.resolve()] for p in planned if p.resolve() in owner), None)
    if first is not None:
        return (f"{line}: output {planned[0].name} is already the output of row {first}; give the rows "
                "distinct 'output' names")
    owner.update({p.resolve(): i + 1 for p in planned})
    return ""


MANIFEST_DELIMITERS = (",", ";", "\t")
_DECIMAL_COMMA = re.compile(r"^\s*(-?\d+),(\d+\s*(?:px|m)?)\s*$")  # a whole cell: '2,5', '40,5m'


def _delimiter(text: str) -> str:
    """The manifest's delimiter: the first of comma, semicolon (spreadsheets saved as CSV where the
    comma is the decimal separator) and tab whose header row names both 'reference' and 'target';
    a comma when none does (the caller's error then shows the header as read)."""
    header = next(iter(text.splitlines()), "")
    for d in MANIFEST_DELIMITERS:
        try:
            names = {c.strip() for c in next(csv.reader([header], delimiter=d), [])}
        except csv.Error:
            continue
        if {"reference", "target"} <= names:
            return d
    return ","


def _decimal_point(column, value):
    """A number option's cell with a decimal comma ('2,5', '40,5m') with a point instead; any other
    cell (paths, lists, text) as it is."""
    opt = BY_NAME.get(column.strip()) if isinstance(column, str) else None
    if opt is None or opt.kind not in ("float", "shift") or not isinstance(value, str):
        return value
    return _DECIMAL_COMMA.sub(r"\1.\2", value)


def read_manifest(path: str | os.PathLike, outdir, config: RegistrationConfig) -> list[PairTask]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"manifest not found: {path}")
    if not p.is_file():
        raise InputError(f"manifest {path} is a folder, not a CSV file; give the manifest's file path")
    try:
        raw = p.read_bytes()
        # UTF-8 (with or without a BOM); UTF-16 with its BOM is what a spreadsheet's "Unicode text" is
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start:exc.start + 1]
        raise InputError(f"manifest {path} is not UTF-8 text (byte {exc.start} is {bad!r}); "
                         "save it as a UTF-8 CSV with the columns 'reference,target'") from None
    except OSError as exc:
        raise InputError(f"could not read the manifest {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise InputError(f"manifest {path} is a binary file, not a CSV; give a CSV with the columns 'reference,target'")
    try:
        delimiter = _delimiter(text)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if not reader.fieldnames or not {"reference", "target"} <= {c.strip() for c in reader.fieldnames if c}:
            raise InputError(f"manifest {path} must be a CSV with the columns 'reference,target' "
                             f"(found {reader.fieldnames})")
        names = [c.strip() for c in reader.fieldnames if c and c.strip()]
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:  # csv.DictReader would keep the last one's values
            raise InputError(f"manifest {path} names the column {twice[0]!r} more than once (columns: "
                             f"{', '.join(names)}); keep one column of each name")
        rows = list(reader)
        if delimiter == ";":  # where a spreadsheet separates by semicolons, its numbers have decimal commas
            rows = [{k: _decimal_point(k, v) for k, v in row.items()} for row in rows]
    except csv.Error as exc:
        raise InputError(f"manifest {path} is not a readable CSV ({exc}); give a CSV with the columns "
                         "'reference,target'") from None
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    return tasks_from_rows(rows, outdir, config, p.parent, str(p.name))


def rows_from_globs(ref_glob: str, target_glob: str) -> list[dict]:
    """Pair the files of two globs in sorted order."""
    refs, tgts = sorted(glob.glob(ref_glob)), sorted(glob.glob(target_glob))
    if not refs or not tgts:
        raise InputError(f"the globs matched {len(refs)} reference and {len(tgts)} target files; check the globs")
    if len(refs) != len(tgts):
        raise InputError(f"the globs matched {len(refs)} reference but {len(tgts)} target files; "
                         "they are paired in sorted order, so the counts must agree")
    return [{"reference": r, "target": t} for r, t in zip(refs, tgts, strict=True)]
