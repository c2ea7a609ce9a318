"""Patch matchers: ``load(name, device)`` returns a :class:`Matcher`.

Names: ``baseline`` (weight-free), ``kgl-opt-sar``, ``kgl-opt-ir``, ``rrl-opt-sar``, ``rrl-opt-ir``
(learned; they need their weights in ``georeg/weights``). The registration options also accept
the families ``kgl`` and ``rrl`` (the modality pair is taken from the target) and ``auto``
(``kgl`` when its weights for the modality are shipped, else ``baseline``).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, FallbackWarning, UnknownMatcherError, warn
from .base import Matcher, MatcherRoles
from .baseline import BaselineMatcher
from .weights import available

LEARNED = ("kgl-opt-sar", "kgl-opt-ir", "rrl-opt-sar", "rrl-opt-ir")
FAMILIES = ("auto", "kgl", "rrl")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu. 'cuda' without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use `device=cpu` or `device=auto`, "
                          "or install a CUDA build of torch (see README)")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda; got {device!r}")
    return torch.device(device)


def names() -> list[str]:
    return ["baseline", *LEARNED]


def resolve_name(name: str, modality: str) -> str:
    """Turn 'auto', 'kgl' or 'rrl' into a concrete matcher name for a target modality."""
    if name not in FAMILIES:
        return name
    pair = "opt-sar" if modality == "sar" else "opt-ir"
    if modality == "optical" and name != "auto":
        warn(FallbackWarning, f"target modality is optical; using the {name}-{pair} weights (give `modality=sar` "
                              "if it is SAR)")
    if name == "auto":
        # the learned matcher becomes the default only for a known modality (SAR or thermal) and
        # where its manifest says it beat the baseline on held-out test pairs (training/export.py)
        if modality not in ("sar", "thermal"):
            return "baseline"
        # "auto_default": false holds a matcher back from auto while end-to-end checks lag FPR95
        man = available().get(f"kgl-{pair}")
        ok = man and man.get("recommended") and man.get("auto_default", True)
        return f"kgl-{pair}" if ok else "baseline"
    return f"{name}-{pair}"


def load(name: str, device: str | torch.device = "auto") -> Matcher:
    """Return the matcher called ``name`` on ``device`` ('auto', 'cpu', 'cuda')."""
    dev = resolve_device(device)
    if name == "baseline":
        return BaselineMatcher(dev)
    if name in LEARNED:
        from .learned import KGLMatcher, RRLMatcher

        cls = KGLMatcher if name.startswith("kgl") else RRLMatcher
        return cls(name, dev)
    raise UnknownMatcherError(
        f"unknown matcher {name!r}; available: {', '.join(names() + list(FAMILIES))} (see 'georeg matchers list')")


def roles_for(matcher: Matcher) -> MatcherRoles:
    """How the pipeline uses ``matcher``: a learned matcher ranks the candidates that the
    weight-free baseline (on the same device) proposes; any other matcher does both."""
    from .learned import LearnedMatcher

    if isinstance(matcher, LearnedMatcher):
        return MatcherRoles(load("baseline", matcher.device), matcher)
    return MatcherRoles(matcher)


__all__ = ["Matcher", "MatcherRoles", "roles_for", "BaselineMatcher", "load", "names", "resolve_device",
           "resolve_name", "available"]
