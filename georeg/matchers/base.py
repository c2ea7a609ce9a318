"""The matcher interface shared by the pipeline, batch, the QGIS plugin and users.

A matcher compares a reference patch (optical) with a target patch (SAR or thermal):

- ``score(reference_patches, target_patches)``: (N, 1, P, P) each, float in [0, 1] or uint8
  -> (N,) match scores in [0, 1], higher meaning more likely the same place. Patches are cut
  from images preprocessed by :func:`georeg.preprocess.preprocess` (see :meth:`Matcher.score`).
- ``prepare(image)``: (1, 1, H, W) -> (1, C, H, W) per-pixel representation of a whole tile,
  computed once per tile; the pipeline crops templates and search windows from it.
- ``search(templates, windows)``: (N, C, P, P) and (N, C, S, S) crops of prepared tiles ->
  (N, S-P+1, S-P+1) scores of every integer placement of each template in its window.
  The default slides ``score`` over the window; subclasses override it with something faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import ShapeError


def as_unit_float(patches: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1]; floats pass through as float32."""
    if patches.dtype == torch.uint8:
        return patches.float() / 255.0
    return patches.float()


def check_patches(a: torch.Tensor, b: torch.Tensor, patch_size: int | None = None) -> None:
    if a.ndim != 4 or a.shape[1] != 1 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"reference patches must be (N, 1, P, P); got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ShapeError(f"target patches must have the reference patches' shape {tuple(a.shape)}; "
                         f"got {tuple(b.shape)}")
    if patch_size is not None and a.shape[-1] != patch_size:
        raise ShapeError(f"this matcher takes {patch_size}x{patch_size} patches; got {a.shape[-1]}")


def repeat_index(na: int, nb: int, ra: int, rb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair indices for 'each of the na patches of one side meets ra (or rb) consecutive patches
    of the other'."""
    if ra < 1 or rb < 1 or (ra > 1 and rb > 1) or na * ra != nb * rb:
        raise ShapeError(f"{na} reference patches x {ra} do not pair with {nb} target patches x {rb}; "
                         "repeat one side only")
    return torch.arange(na).repeat_interleave(ra), torch.arange(nb).repeat_interleave(rb)


def pair_batches(ia: torch.Tensor, ib: torch.Tensor, device, size: int = 1024):
    """Batches of ``size`` pairs: (patches of each side the batch needs, once each, and where each
    pair finds them), so that a patch in many pairs is prepared or encoded once per batch."""
    for i in range(0, len(ia), size):
        ua, inv_a = torch.unique(ia[i:i + size], return_inverse=True)
        ub, inv_b = torch.unique(ib[i:i + size], return_inverse=True)
        yield ua, inv_a.to(device), ub, inv_b.to(device)


class Matcher:
    """Base class; see the module docstring for the contract."""

    name: str = "matcher"
    patch_size: int | None = None  # None: any size
    description: str = ""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    # -- public API -------------------------------------------------------
    def score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, P, P) each -> (N,) scores in [0, 1]. Patches are expected as the pipeline makes
        them: each side's image preprocessed for its modality with
        :func:`georeg.preprocess.preprocess` (percentile stretch; SAR: dB and speckle filter;
        thermal: denoising), then cut. The learned weights were trained on such patches; raw
        [0, 1] patches are accepted but score markedly worse."""
        check_patches(reference_patches, target_patches, self.patch_size)
        with torch.inference_mode():
            a = self.prepare(as_unit_float(reference_patches).to(self.device))
            b = self.prepare(as_unit_float(target_patches).to(self.device))
            return self.search(a, b).reshape(-1).cpu()

    def score_repeated(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                       repeat_reference: int = 1, repeat_target: int = 1) -> torch.Tensor:
        """:meth:`score` where each patch of one side meets ``repeat_*`` consecutive patches of the
        other: the same numbers as repeating the patches, each patch prepared once."""
        return self.score_indexed(reference_patches, target_patches,
                                  *repeat_index(len(reference_patches), len(target_patches),
                                                repeat_reference, repeat_target))

    def score_indexed(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                      ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
        """Scores of the pairs (reference_patches[ia[j]], target_patches[ib[j]]), each patch
        prepared once per batch of pairs."""
        check_patches(reference_patches[:1], target_patches[:1], self.patch_size)
        out = []
        with torch.inference_mode():
            # 256 pairs at a time: the prepared patches (9 channels each for the baseline) of 1024
            # pairs took 0.45 GB
            for ua, inv_a, ub, inv_b in pair_batches(ia, ib, self.device, 256):
                a = self.prepare(as_unit_float(reference_patches[ua]).to(self.device))
                b = self.prepare(as_unit_float(target_patches[ub]).to(self.device))
                out.append(self.search(a[inv_a], b[inv_b]).reshape(-1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def search(self, templates: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        n, c, p, _ = templates.shape
        s = windows.shape[-1]
        k = s - p + 1
        crops = windows.unfold(2, p, 1).unfold(3, p, 1)  # (N, C, k, k, P, P)
        crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(n * k * k, c, p, p)
        tmpl = templates.unsqueeze(1).expand(n, k * k, c, p, p).reshape(n * k * k, c, p, p)
        out = torch.cat([self._score_prepared(tmpl[i:i + 4096], crops[i:i + 4096])
                         for i in range(0, n * k * k, 4096)])
        return out.view(n, k, k)

    def _score_prepared(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def info(self) -> dict:
        return {"name": self.name, "description": self.description, "device": str(self.device),
                "weights": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"


class DenseMatcher(Protocol):
    """The role that scores every placement of a template in a search window (any
    :class:`Matcher`; the pipeline uses the weight-free ``baseline``)."""

    device: torch.device

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) preprocessed tile -> (1, C, H, W) per-pixel representation."""

    def search(self, templates: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, P, P) and (N, C, S, S) crops -> (N, S-P+1, S-P+1) scores of every placement."""


class Ranker(Protocol):
    """The role that chooses among candidate placements (a learned matcher). Patches are
    ``patch_size`` square, preprocessed as :func:`georeg.preprocess.preprocess` does, which is
    how the shipped weights were trained; raw [0, 1] patches score worse."""

    patch_size: int
    min_probability: float  # a tie point whose chosen candidate scores below this is dropped

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor,
             valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """reference (N, 1, P, P), target candidates (N, K, 1, P, P), (N, K) mask -> (N, K) probabilities.
        ``structural``: (N, K) scores the dense matcher gave the same placements, when it had them."""

    def rank_reverse(self, target_patches: torch.Tensor, candidates: torch.Tensor,
                     valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`rank` with the sides swapped: target (N, 1, P, P), reference candidates."""


@dataclass(frozen=True)
class MatcherRoles:
    """The matchers of tile matching, by role: ``dense`` proposes (every placement scored),
    ``ranker`` (None for a weight-free run) chooses among the dense matcher's strongest peaks."""

    dense: DenseMatcher
    ranker: Ranker | None = None
