"""The weight-free baseline matcher: normalised cross-correlation of oriented-gradient channels.

It needs no training, so the pipeline works before any learned weights exist, and it is the
reference that the learned matchers must beat.
"""

from __future__ import annotations

import torch

from ..features import ncc_search, oriented_gradient_channels
from .base import Matcher


class BaselineMatcher(Matcher):
    name = "baseline"
    patch_size = None
    description = ("weight-free: zero-normalised cross-correlation of 9 oriented-gradient channels "
                   "(CFOG-like), score = (NCC + 1) / 2")

    def __init__(self, device: str | torch.device = "cpu", n_orient: int = 9,
                 storage: torch.dtype = torch.float16):
        super().__init__(device)
        self.n_orient = n_orient
        # the channels are computed in float32 and kept in ``storage``; the search reads them back
        # in float32. float16 halves a tile's two feature maps (2 x 50 MB at 1174 px) and the
        # channel computation's peak; the channels are unit vectors, so its 11-bit mantissa moves
        # an NCC score by about 1e-4
        self.storage = storage

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, n_orient, H, W), stored as ``self.storage``."""
        return oriented_gradient_channels(image.to(self.device).float(), self.n_orient, storage=self.storage)

    def search(self, templates: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, P, P), (N, C, S, S) -> (N, S-P+1, S-P+1) scores in [0, 1]."""
        return 0.5 * (ncc_search(templates, windows) + 1.0)
