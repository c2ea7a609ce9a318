"""Batch augmentation on stored crops (B, 2, C, C) uint8 -> two (B, 1, 64, 64) float patches.

Following the spec (KGL data_aug4 / RRL gen4): per modality, with independent draws, a small
affine (scale 0.95-1.1, translation +-5 %), Gaussian blur (sigma <= 1), gamma 0.5-1.5 and
additive noise (sigma 0.02); jointly, flips and 90-degree rotations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from georeg.features import gaussian_blur


def _affine_crop(x: torch.Tensor, out: int, scale_range, shift_frac: float, p: float, gen,
                 offset_px: torch.Tensor | None = None) -> torch.Tensor:
    b, _, c, _ = x.shape
    apply = torch.rand(b, generator=gen) < p
    s = torch.where(apply, torch.empty(b).uniform_(*scale_range, generator=gen), torch.ones(b))
    t = torch.where(apply[:, None], torch.empty(b, 2).uniform_(-shift_frac, shift_frac, generator=gen) * out / c * 2,
                    torch.zeros(b, 2))
    if offset_px is not None:
        t = t + offset_px * 2 / c
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = out / c / s
    theta[:, 1, 1] = out / c / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, (b, 1, out, out), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _photometric(x: torch.Tensor, p: float, gen) -> torch.Tensor:
    b = x.shape[0]
    blur = torch.rand(b, generator=gen) < p
    if blur.any():
        sig = float(torch.empty(1).uniform_(0.3, 1.0, generator=gen))
        x = torch.where(blur[:, None, None, None], gaussian_blur(x, sig), x)
    gamma = torch.where(torch.rand(b, generator=gen) < p, torch.empty(b).uniform_(0.5, 1.5, generator=gen),
                        torch.ones(b))
    x = x.clamp(0, 1) ** gamma[:, None, None, None]
    noise = torch.rand(b, generator=gen) < p
    x = x + noise[:, None, None, None] * 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def near_offsets(n: int, lo: float, hi: float, gen=None) -> torch.Tensor:
    """(n, 2) pixel offsets at a random angle with length uniform in [lo, hi]."""
    r = torch.empty(n).uniform_(lo, hi, generator=gen)
    a = torch.empty(n).uniform_(0, 2 * torch.pi, generator=gen)
    return torch.stack([r * torch.cos(a), r * torch.sin(a)], 1)


def augment(crops: torch.Tensor, out: int = 64, p: float = 0.35, scale_range=(0.95, 1.1), shift_frac=0.05,
            generator: torch.Generator | None = None, enabled: bool = True,
            near_idx: torch.Tensor | None = None, near_px=(8.0, 14.0)):
    """Returns (opt, other) patches; with ``near_idx`` also a third tensor: the other-modality
    patches of those samples cut ``near_px`` pixels away from the keypoint (same flips, rotation
    and photometric draws family), the near negatives that registration must reject."""
    x = crops.float() / 255.0
    c = x.shape[-1]
    if not enabled:
        o = (c - out) // 2
        x = x[..., o:o + out, o:o + out]
        return x[:, :1].contiguous(), x[:, 1:].contiguous()
    gen = generator
    k = torch.randint(0, 4, (len(x),), generator=gen)
    flip_h = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.stack([torch.rot90(xi, int(ki), dims=(-2, -1)) for xi, ki in zip(x, k, strict=True)])
    a = _photometric(_affine_crop(x[:, :1], out, scale_range, shift_frac, p, gen), p, gen)
    b = _photometric(_affine_crop(x[:, 1:], out, scale_range, shift_frac, p, gen), p, gen)
    if near_idx is None:
        return a, b
    xn = x[near_idx, 1:]
    off = near_offsets(len(xn), *near_px, gen=gen)
    bn = _photometric(_affine_crop(xn, out, scale_range, shift_frac, p, gen, offset_px=off), p, gen)
    return a, b, bn
