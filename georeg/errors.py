"""georeg's error tree.

Every error georeg raises derives from :class:`GeoregError` and also from the builtin it
resembles, so ``except ValueError`` keeps working for callers who do not know georeg.
Messages say what was expected, what was found and what to do.

Exit codes used by the CLI: :class:`InputError` (usage or input) -> 2,
:class:`RegistrationError` (the data were read but could not be registered) -> 1.
"""

from __future__ import annotations


class GeoregError(Exception):
    """Base of all georeg errors."""

    exit_code = 1


class ShapeError(GeoregError, ValueError):
    """An array handed to the Python API has the wrong shape (a programming error, exit code 1)."""


class InputError(GeoregError, ValueError):
    """The inputs or options are not usable as given (exit code 2)."""

    exit_code = 2


class ConfigError(InputError):
    """An option value is out of range or inconsistent."""


class RasterOpenError(InputError, OSError):
    """A path is missing or is not a raster GDAL can open."""


class RemoteReadError(RasterOpenError):
    """A URL or object-store path could not be read (HTTP status, access, timeout)."""


class MissingCRSError(InputError):
    """A raster has no coordinate reference system."""


class NoOverlapError(InputError):
    """Reference and target footprints do not intersect."""


class EmptyOverlapError(InputError):
    """The footprints intersect but no pixel of the overlap is valid in both rasters, or one of them
    is constant there."""


class OutputExistsError(InputError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputWriteError(InputError, OSError):
    """An output folder cannot be written (read-only, missing permission, not enough free space)."""


class OutputLockedError(InputError):
    """Another georeg run is writing the same outputs right now."""


class UnknownMatcherError(InputError, KeyError):
    """A matcher name or weight file is not known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(InputError, OSError):
    """A weight file is missing, unreadable or fails its checksum."""


class RegistrationError(GeoregError, RuntimeError):
    """The rasters were read but no trustworthy transform could be estimated (exit code 1)."""

    exit_code = 1


class TooFewTiePointsError(RegistrationError):
    """Fewer tie points (or inliers) than the transform model needs."""

    def __init__(self, found: int, needed: int, model: str, stage: str = "tie points", hint: str = ""):
        self.found = found
        self.needed = needed
        self.model = model
        self.stage = stage
        self.hint = hint
        advice = ("Try a larger `max_shift`, " + ("" if model == "translation" else "a simpler `model=translation`, ")
                  + "another band, or check that both rasters show the same area.")
        msg = f"too few {stage} for the '{model}' model: found {found}, need at least {needed}. " \
            + (f"{hint} " if hint else "") + advice
        super().__init__(msg)


class GeoregWarning(UserWarning):
    """Base of georeg's warnings; filter them with the warnings module, for example
    ``warnings.simplefilter("error", UncertainResultWarning)`` to make an uncertain verdict raise.
    The CLI prints them as ``warning: ...`` lines."""


class UncertainResultWarning(GeoregWarning):
    """The registration finished, but its verdict is not 'reliable'; the message says why."""


class FallbackWarning(GeoregWarning):
    """A step used a weaker alternative: a refinement pass kept the previous one, a matcher ran
    with the weights of another modality, a batch pair went to a fresh worker pool."""


class WeightsWarning(GeoregWarning):
    """Shipped matcher weights are unusable (a damaged manifest); georeg falls back without them."""


class InputWarning(GeoregWarning):
    """Part of the input was left out (for example STAC items that overlap no reference)."""


class MirroredTargetWarning(GeoregWarning):
    """A georeferenced target registered only as its mirror image: its pixels are stored flipped
    against its geotransform. The corrected raster lies right; the input deserves a look."""


def warn(category: type[GeoregWarning], message: str) -> None:
    """Emit a georeg warning attributed to the caller of the library function that warns."""
    import warnings

    warnings.warn(message, category, stacklevel=3)


class CancelledError(GeoregError):
    """The run was cancelled by the caller (for example a QGIS cancel button); no output was written."""

    exit_code = 130
