"""KGL-Net (Yu et al., arXiv 2412.11161), written from ../shared/docs/matchers_spec.md section 1.

Four paths. Low level L1-L4 is modality specific (``low_opt`` for the optical patch,
``low_other`` for SAR/IR). The descriptor path shares its high level L5-L8 and the 8x8 conv L9
between modalities; the metric path has its own high level per modality (``dif_opt``,
``dif_other``). The metric head scores |F_dif(opt) - F_dif(other)|.

Inference split: :meth:`KGLNet.encode` runs once per patch and returns the 128-d descriptor and
the 256x8x8 metric feature (cacheable); :meth:`KGLNet.head` scores pairs of cached features.
``width`` scales every channel count (1.0 = the published network, 6,409,713 parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import CBT, ECA, FRN, TLU, check_pair_input, kaiming_init, l2_normalise, mlp_head


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class LowLevel(nn.Sequential):
    """L1-L4: FRN+TLU on the raw patch, CBT(1->32), CBT(32->32)+ECA, CBT(32->64,s2), CBT(64->64)+ECA."""

    def __init__(self, width: float = 1.0):
        c1, c2 = _ch(32, width), _ch(64, width)
        super().__init__(FRN(1), TLU(1), CBT(1, c1), CBT(c1, c1), ECA(c1), CBT(c1, c2, 2), CBT(c2, c2), ECA(c2))


class HighLevel(nn.Sequential):
    """L5-L8: CBT(64->128,s2), CBT(128->128)+ECA, CBT(128->256,s2), CBT(256->256)+ECA."""

    def __init__(self, width: float = 1.0):
        c2, c3, c4 = _ch(64, width), _ch(128, width), _ch(256, width)
        super().__init__(CBT(c2, c3, 2), CBT(c3, c3), ECA(c3), CBT(c3, c4, 2), CBT(c4, c4), ECA(c4))


class DescriptorHead(nn.Module):
    """L9: 8x8 valid conv 256->128 (bias) -> BatchNorm -> flatten -> L2 normalisation."""

    def __init__(self, width: float = 1.0, dim: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(_ch(256, width), dim, 8, bias=True)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.bn(self.conv(x)).flatten(1)
        return l2_normalise(raw), raw


class MetricHead(nn.Module):
    """|F_a - F_b| -> Conv3x3 256->256 + FRN + TLU -> GAP -> MLP 512-256-1 (logit)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c4 = _ch(256, width)
        self.conv = CBT(c4, c4)
        self.mlp = mlp_head(c4, (_ch(512, width), _ch(256, width)))

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        d = self.conv((fa - fb).abs()).mean(dim=(2, 3))
        return self.mlp(d).squeeze(1)


class KGLNet(nn.Module):
    """KGL-Net. Patch 1 is the optical (reference) patch, patch 2 the SAR/IR one; order matters."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.width = width
        self.low_opt = LowLevel(width)
        self.low_other = LowLevel(width)
        self.high_com = HighLevel(width)
        self.desc = DescriptorHead(width)
        self.dif_opt = HighLevel(width)
        self.dif_other = HighLevel(width)
        self.metric = MetricHead(width)
        kaiming_init(self)

    def encode(self, x: torch.Tensor, side: str, with_com: bool = False) -> dict[str, torch.Tensor]:
        """Per-patch features. x: (N, 1, 64, 64) in [0, 1]; side 'opt' or 'other'.

        Returns desc (N, 128) L2-normalised, desc_raw (N, 128), f_dif (N, 256, 8, 8) and, when
        ``with_com``, f_com (N, 256, 8, 8) (training only)."""
        low = self.low(x, side)
        f_com = self.high_com(low)
        desc, raw = self.desc(f_com)
        out = {"desc": desc, "desc_raw": raw, "f_dif": self.difference_features(low, side)}
        if with_com:
            out["f_com"] = f_com
        return out

    # the parts of :meth:`encode`, for callers that need the descriptor or the metric features of
    # only some patches (inference pre-ranks candidates by descriptor, then heads the best few)
    def low(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """(N, 1, 64, 64) -> (N, 64, 16, 16) low-level features of ``side``."""
        check_pair_input(x, f"{side} patches")
        return (self.low_opt if side == "opt" else self.low_other)(x)

    def describe(self, low: torch.Tensor) -> torch.Tensor:
        """Low-level features -> (N, 128) L2-normalised descriptors."""
        return self.desc(self.high_com(low))[0]

    def difference_features(self, low: torch.Tensor, side: str) -> torch.Tensor:
        """Low-level features -> (N, 256, 8, 8) features of the metric head."""
        return (self.dif_opt if side == "opt" else self.dif_other)(low)

    def head(self, f_dif_opt: torch.Tensor, f_dif_other: torch.Tensor) -> torch.Tensor:
        """(N, 256, 8, 8) twice -> (N,) match logits."""
        return self.metric(f_dif_opt, f_dif_other)

    def forward(self, opt: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) twice -> (N,) match probability."""
        return torch.sigmoid(self.head(self.encode(opt, "opt")["f_dif"], self.encode(other, "other")["f_dif"]))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
