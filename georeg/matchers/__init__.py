"""Patch matchers: ``load(name, device)`` returns a :class:`Matcher`.

Names: ``baseline`` (weight-free). Learned matchers (KGL-Net, RRL-Net) register here when
their weights ship in ``georeg/weights``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError, UnknownMatcherError
from .base import Matcher
from .baseline import BaselineMatcher

_FACTORIES: dict[str, Callable[[torch.device], Matcher]] = {
    "baseline": lambda device: BaselineMatcher(device),
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu. 'cuda' without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto, "
                          "or install a CUDA build of torch (see README)")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda; got {device!r}")
    return torch.device(device)


def names() -> list[str]:
    return sorted(_FACTORIES)


def load(name: str, device: str | torch.device = "auto") -> Matcher:
    """Return the matcher called ``name`` on ``device`` ('auto', 'cpu', 'cuda')."""
    if name not in _FACTORIES:
        raise UnknownMatcherError(
            f"unknown matcher {name!r}; available: {', '.join(names())} (see 'georeg info')")
    return _FACTORIES[name](resolve_device(device))


__all__ = ["Matcher", "BaselineMatcher", "load", "names", "resolve_device"]
