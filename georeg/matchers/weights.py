"""Shipped matcher weights: versioned files in georeg/weights with a JSON manifest each.

``<name>.pt`` holds a state dict (fp16 storage allowed); ``<name>.json`` names the architecture,
its width, the training data and split, the measured FPR95 values, the command that reproduces
it and the file's sha256, which is verified before ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import UnknownMatcherError, WeightsError, WeightsWarning, warn

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dir(directory: Path | None) -> Path:
    return Path(directory) if directory is not None else WEIGHTS_DIR


def available(directory: Path | None = None) -> dict[str, dict]:
    """Manifests of the shipped weights, by name."""
    directory = _dir(directory)
    out = {}
    for m in sorted(directory.glob("*.json")):
        try:
            man = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            man = None
        if not isinstance(man, dict):
            warn(WeightsWarning, f"the weights manifest {m} is damaged (not a JSON object); {m.stem} is "
                                 "unavailable until georeg is reinstalled")
            continue
        out[m.stem] = man
    return out


def manifest(name: str, directory: Path | None = None) -> dict:
    directory = _dir(directory)
    path = directory / f"{name}.json"
    if not path.exists():
        known = ", ".join(available(directory)) or "none shipped yet"
        raise UnknownMatcherError(f"no weights named {name!r} in {directory} (shipped: {known}); "
                                  "use `matcher=baseline`, or train and export weights (see training/README.md)")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"the weights manifest {path} is damaged ({str(exc).splitlines()[0][:100]}); "
                           "reinstall georeg, or use `matcher=baseline`") from None
    if not isinstance(man, dict):
        raise WeightsError(f"the weights manifest {path} is damaged (not a JSON object); reinstall georeg, "
                           "or use `matcher=baseline`")
    return man


_LOADED: dict[tuple, dict] = {}  # verified state dicts by (file, size, mtime, manifest): one per process


def load_state(name: str, directory: Path | None = None) -> tuple[dict, dict]:
    """(manifest, float32 state dict) after checking the checksum. The state dict is verified and
    read once per process while its file and manifest stay as they are (a batch worker or a
    ``georeg serve`` child registers many pairs): treat its tensors as read-only."""
    directory = _dir(directory)
    man = manifest(name, directory)
    path = directory / man.get("file", f"{name}.pt")
    if not path.exists():
        raise WeightsError(f"weight file missing: {path}; reinstall georeg")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, json.dumps(man, sort_keys=True))
    if key not in _LOADED:
        _LOADED[key] = _verified_state(path, man)
    return man, _LOADED[key]


def _verified_state(path: Path, man: dict) -> dict:
    """The float32 state dict of ``path`` once its sha256 matches the manifest's."""
    digest = sha256(path)
    if digest != man.get("sha256"):
        raise WeightsError(f"weight file {path.name} fails its checksum (expected {man.get('sha256')}, "
                           f"found {digest}); the file is damaged or was replaced: reinstall georeg")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        # torch's text is many lines and advises weights_only=False, which georeg never does
        text = " ".join(str(exc).split())
        reason = ("it holds Python objects besides tensors, which georeg's safe loader refuses"
                  if "weights only" in text.lower() or "weights_only" in text else
                  (text[:160] or type(exc).__name__))
        raise WeightsError(f"weight file {path.name} cannot be loaded safely: {reason}; "
                           "reinstall georeg, or use `matcher=baseline`") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def export(model: torch.nn.Module, name: str, info: dict, directory: Path | None = None, fp16: bool = True) -> Path:
    """Write ``name.pt`` (fp16 storage) and its manifest; returns the weight path."""
    directory = _dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = directory / f"{name}.pt"
    torch.save(state, path)
    man = {"name": name, "file": path.name, "sha256": sha256(path), "size_bytes": path.stat().st_size,
           "storage": "float16" if fp16 else "float32", **info}
    (directory / f"{name}.json").write_text(json.dumps(man, indent=2) + "\n")
    return path
