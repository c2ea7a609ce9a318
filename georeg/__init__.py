"""georeg: co-register an optical reference with a SAR or thermal target.

    >>> import georeg
    >>> result = georeg.register("optical.tif", "sar.tif", "sar_registered.tif")

Heavy modules (torch, kornia) are imported on first use, so ``import georeg`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["register", "RegistrationResult", "RegistrationConfig", "__version__"]


def __getattr__(name: str):
    if name in ("register", "RegistrationResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "RegistrationConfig":
        from .config import RegistrationConfig

        return RegistrationConfig
    raise AttributeError(f"module 'georeg' has no attribute {name!r}")
