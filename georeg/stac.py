"""Batch rows from STAC items: ``georeg batch --stac ITEMS.json --reference-asset B04 --target-asset vh``.

The JSON files hold STAC Items, ItemCollections (a FeatureCollection of items) or lists of items.
An item with the reference asset is a reference candidate, one with the target asset a target.
Each target is paired with the reference whose footprint overlaps it most, the nearer date
breaking ties, and a target that overlaps no reference is reported, not guessed. Asset hrefs may
be URLs (read by ranges; see :mod:`georeg.remote`) or paths relative to the JSON file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from .errors import InputError, InputWarning, warn


def load_items(paths: list[str]) -> list[tuple[dict, Path]]:
    """(item, folder its relative hrefs are relative to) for every item in ``paths``."""
    out = []
    for p in paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"could not read the STAC file {p}: {str(exc).splitlines()[0][:120]}; give STAC Item "
                             "or ItemCollection JSON") from None
        items = data if isinstance(data, list) else data.get("features") if isinstance(data, dict) and \
            data.get("type") == "FeatureCollection" else [data]
        for item in items or []:
            if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
                raise InputError(f"{p} holds something that is not a STAC Item (type 'Feature' with 'assets')")
            out.append((item, path.resolve().parent))
    if not out:
        raise InputError(f"no STAC items in {', '.join(paths)}")
    return out


def _asset_href(item: dict, base: Path, name: str) -> str | None:
    """The href of the asset called ``name``: by key, else by band name or common name (eo:bands)."""
    assets = item["assets"]
    key = name if name in assets else next(
        (k for k, a in assets.items() for b in a.get("eo:bands", []) + a.get("bands", [])
         if name.lower() in (str(b.get("name", "")).lower(), str(b.get("common_name", "")).lower())), None)
    if key is None:
        key = next((k for k in assets if k.lower() == name.lower()), None)
    if key is None:
        return None
    href = assets[key].get("href", "")
    if "://" in href or href.startswith("/"):
        return href
    return str((base / href).resolve())


def _when(item: dict) -> datetime | None:
    props = item.get("properties", {})
    text = props.get("datetime") or props.get("start_datetime")
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def pair_rows(items: list[tuple[dict, Path]], reference_asset: str, target_asset: str) -> list[dict]:
    """Manifest rows: each target item with its best reference item (largest footprint overlap,
    then nearest date)."""
    from shapely.geometry import shape

    refs, tgts = [], []
    for item, base in items:
        geom = shape(item["geometry"]) if item.get("geometry") else None
        r, t = _asset_href(item, base, reference_asset), _asset_href(item, base, target_asset)
        if r:
            refs.append((item, r, geom))
        if t:
            tgts.append((item, t, geom))
    if not refs or not tgts:
        raise InputError(f"the STAC items have {len(refs)} with a '{reference_asset}' asset and {len(tgts)} with a "
                         f"'{target_asset}' asset; both are needed (asset keys or eo:bands names)")
    rows, lonely = [], []
    for item, href, geom in tgts:
        best = _best_reference(item, geom, refs)
        if best is None:
            lonely.append(item.get("id", href))
        else:
            rows.append({"reference": best, "target": href})
    if not rows:
        raise InputError(f"no target item overlaps a reference item ({len(lonely)} targets alone); check the items")
    if lonely:
        warn(InputWarning, f"{len(lonely)} target item(s) overlap no reference item and are left out: "
                           f"{', '.join(map(str, lonely[:10]))}")
    return rows


def _best_reference(item: dict, geom, refs: list) -> str | None:
    """The href of the reference whose footprint covers most of ``geom`` (to 0.1 %), then the
    nearest in date; None when none overlaps."""
    best = None
    for ritem, rhref, rgeom in refs:
        if ritem is item or geom is None or rgeom is None:
            continue
        overlap = geom.intersection(rgeom).area / max(geom.area, 1e-12)
        if overlap <= 0:
            continue
        a, b = _when(item), _when(ritem)
        gap = abs((a - b).total_seconds()) if a and b else float("inf")
        if best is None or (round(overlap, 3), -gap) > best[0]:
            best = ((round(overlap, 3), -gap), rhref)
    return None if best is None else best[1]
