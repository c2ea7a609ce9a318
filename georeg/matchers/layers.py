"""Building blocks shared by the learned matchers (written from ../shared/docs/matchers_spec.md)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def eca_kernel(channels: int) -> int:
    """ECA kernel size: int(|(log2 C + 1) / 2|), bumped to the next odd number if even."""
    k = int(abs((math.log2(channels) + 1) / 2))
    return k if k % 2 else k + 1


class FRN(nn.Module):
    """Filter Response Normalisation: x / sqrt(mean_HW(x^2) + |eps|), then a per-channel affine.
    Batch-independent; eps is a fixed buffer (1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("eps", torch.tensor(eps))

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``out=x`` overwrites x (inference on a tensor nobody else holds: a convolution's output)."""
        nu2 = (x * x).mean(dim=(2, 3), keepdim=True)
        # one pass over x: beta + x * (gamma / sqrt(nu2 + eps)), the scale being per sample and channel
        return torch.addcmul(self.beta, x, self.gamma * torch.rsqrt(nu2 + self.eps.abs()), out=out)


class TLU(nn.Module):
    """Thresholded linear unit max(x, tau), tau learnable per channel, initialised to -1."""

    def __init__(self, channels: int, init: float = -1.0):
        super().__init__()
        self.tau = nn.Parameter(torch.full((1, channels, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled():  # in place: TLU always follows an FRN, whose output is its own
            return torch.maximum(x, self.tau, out=x)
        return torch.maximum(x, self.tau)


class ECA(nn.Module):
    """Efficient channel attention: GAP -> 1-D conv across channels (no bias) -> sigmoid -> scale."""

    def __init__(self, channels: int):
        super().__init__()
        k = eca_kernel(channels)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        w = torch.sigmoid(self.conv(w)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
        if torch.is_inference_mode_enabled():  # in place: ECA always follows a CBT, whose output is its own
            return x.mul_(w)
        return x * w


class CBT(nn.Sequential):
    """Conv3x3 (bias) -> FRN -> TLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True), FRN(cout), TLU(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, frn, tlu = self
        y = conv(x)
        # in inference the normalisation overwrites the convolution's output instead of writing a
        # second tensor as large: the same numbers, 5-8% less time for a KGL-Net patch on the CPU.
        # Not under autocast, whose half-precision convolution output would round what FRN gives
        # in float32 (and the ECA and layers after it) to half precision
        if torch.is_inference_mode_enabled() and y.dtype == frn.gamma.dtype:
            return tlu(frn(y, out=y))
        return tlu(frn(y))


def l2_normalise(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(1, keepdim=True) + eps)


def kaiming_init(module: nn.Module) -> None:
    """Conv/Linear kaiming-normal (fan_out, gain sqrt 2), bias 0; BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mlp_head(cin: int, hidden: tuple[int, int]) -> nn.Sequential:
    """Linear cin -> h1 -> ReLU -> h2 -> ReLU -> 1 (logit; the sigmoid is applied by the caller)."""
    return nn.Sequential(nn.Linear(cin, hidden[0]), nn.ReLU(inplace=True), nn.Linear(hidden[0], hidden[1]),
                         nn.ReLU(inplace=True), nn.Linear(hidden[1], 1))


def check_pair_input(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be (N, 1, H, W) patches in [0, 1]; got {tuple(x.shape)}")


__all__ = ["FRN", "TLU", "ECA", "CBT", "l2_normalise", "kaiming_init", "mlp_head", "eca_kernel", "F"]
