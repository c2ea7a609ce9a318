"""Rasters that are not local files: ``https://`` and ``http://`` URLs, ``s3://bucket/key``
(credentials and endpoint from the usual AWS environment variables) and GDAL's ``/vsi...`` paths.

GDAL reads them by ranges (``/vsicurl/``, ``/vsis3/``), so georeg fetches only the windows it
works on, and a Cloud-Optimised GeoTIFF's overviews serve the coarse reads. Outputs are always
local files.
"""

from __future__ import annotations

import os
import re

from .runtime import load_deferred

REMOTE_SCHEMES = ("http://", "https://", "s3://", "gs://", "az://")

# GDAL's network settings unless the user set them: fail in seconds, retry a transient error
GDAL_NETWORK_DEFAULTS = {
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # do not list a bucket or web folder per file
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt,.jp2,.img,.nc,.ovr,.msk",
}

_HTTP_STATUS = {400: "bad request", 401: "not authorised", 403: "access denied", 404: "not found",
                408: "timeout", 429: "too many requests", 500: "server error", 502: "bad gateway",
                503: "service unavailable", 504: "gateway timeout"}


# what GDAL passes on from an object store's error body, or says itself for a missing object
_S3_ERRORS = (
    (("specified key does not exist", "nosuchkey"), "no such object (HTTP 404); check the bucket and key"),
    (("specified bucket does not exist", "nosuchbucket"), "no such bucket (HTTP 404); check the bucket name"),
    (("access denied", "accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden"),
     "access denied (HTTP 403); check the credentials (AWS_* variables) and the bucket's permissions"),
    (("does not exist in the file system",),
     "no such object (HTTP 404, or an access denied that hides it); check the URL and the credentials"),
)


def is_remote(path: str | os.PathLike | None) -> bool:
    if path is None:
        return False
    p = str(path)
    return p.lower().startswith(REMOTE_SCHEMES) or p.startswith("/vsi")


def configure_network() -> None:
    """GDAL's network settings (unless the user set them), and boto3 imported if the CLI deferred
    it (:func:`georeg.runtime.defer_boto3`): a remote raster is about to be opened."""
    for key, value in GDAL_NETWORK_DEFAULTS.items():
        os.environ.setdefault(key, value)
    load_deferred()


def explain(path: str, exc: Exception) -> str:
    """One line for a failed remote read: the URL, the HTTP status when GDAL reports one, what to do."""
    text = " ".join(str(exc).split())
    m = re.search(r"HTTP (?:response )?code:? ?(\d{3})", text) or re.search(r"\b(4\d\d|5\d\d)\b", text)
    if m:
        code = int(m.group(1))
        what = _HTTP_STATUS.get(code, "error")
        hint = {403: "check the credentials (AWS_* variables) or the URL's signature",
                401: "check the credentials", 404: "check the URL"}.get(code, "try again later or check the URL")
        return f"could not read {path}: HTTP {code} ({what}); {hint}"
    low = text.lower()
    for phrases, what in _S3_ERRORS:
        if any(p in low for p in phrases):
            return f"could not read {path}: {what}"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"could not read {path}: the server did not answer in time; check the network and try again"
    if "resolve host" in text.lower() or "connect" in text.lower():
        return f"could not read {path}: the server cannot be reached ({text[:120]}); check the URL and the network"
    return f"could not read {path}: {text[:160]}; check the URL"
