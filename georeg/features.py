"""Dense structural features that survive the optical/SAR/thermal contrast gap.

Channels of oriented gradient magnitude (CFOG-like: Ye et al., "Fast and robust matching for
multimodal remote sensing image registration", TGRS 2019): the unsigned gradient projected on
``n_orient`` directions, smoothed in space and across orientation, then L2-normalised per pixel.
Unsigned orientation makes the feature insensitive to contrast reversal between sensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

OGC_CHUNK = 3  # orientations blurred together on CUDA: a third of the nine's temporaries; the fastest
# with torch's convolution. On the CPU one at a time on a tile (its block blur 1.2x faster than
# three on a 1174 px tile, 116-145 ms against 140-159, and the smallest temporaries), three at a
# time on images up to OGC_CPU_SMALL_PX pixels: the verdict's 384 px windows 15.2 -> 12.9 ms and a
# 256 px image 8.3 -> 6.0 ms (cell sigma 1; one thread), where the blur's Python steps dominate.
# The numbers do not depend on the chunk.
OGC_CPU_SMALL_PX = 512 * 512


def _gauss_kernel(sigma: float, device, dtype) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


BLUR_ROWS, BLUR_COLUMNS = 64, 64  # the CPU blur's blocks: a block's padded copy and temporaries stay
# in the cache (8-64 rows by 32-128 columns within 1.3x of each other on a 1174 px tile's three
# channels, 256 columns 1.5-1.7x slower than the best); no whole-image temporary


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (the edge pixel not repeated;
    replicate padding where the image is narrower than the kernel's radius).

    On the CPU in numpy, block by block (:func:`_blur_lines`): measured on a 1174 px tile's
    oriented-gradient channels (one thread), several times faster than torch's depthwise
    convolution and without oneDNN's workspace for a 13-tap kernel (160-200 MB), and 1.5-2x faster
    than scipy's correlate1d, whose vertical pass walks strided columns; the same numbers as either
    within float32 rounding (3e-7)."""
    if sigma <= 0:
        return x
    k = _gauss_kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    reflect = min(x.shape[-2:]) > r
    if x.device.type == "cpu":
        kn = k.numpy()
        out = _blur_lines(x.detach().numpy(), kn, -1, reflect)  # a new array: x stays as it is
        _blur_lines(out, kn, -2, reflect, out)
        return torch.from_numpy(out)
    c = x.shape[1]
    pad_mode = "reflect" if reflect else "replicate"
    x = F.pad(x, (r, r, 0, 0), mode=pad_mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode=pad_mode)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _span(arr: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """The view of ``arr`` from ``lo`` to ``hi`` along ``axis``."""
    index = [slice(None)] * arr.ndim
    index[axis] = slice(lo, hi)
    return arr[tuple(index)]


def _blur_lines(a: np.ndarray, k: np.ndarray, axis: int, reflect: bool, out: np.ndarray | None = None) -> np.ndarray:
    """Every line of ``a`` along ``axis`` (-1: rows, -2: columns) correlated with the symmetric
    kernel ``k``, padded by reflection (else by repeating the edge), into ``out`` (a new array when
    None; ``a`` itself works). Block by block (BLUR_ROWS rows or BLUR_COLUMNS columns): each is
    copied with its padding and summed as ``k[r] x[j] + sum_i k[i] (x[j - r + i] + x[j + r - i])``,
    the same order for every pixel, so the result does not depend on the blocks."""
    r = len(k) // 2
    out = np.empty_like(a) if out is None else out
    n = a.shape[axis]
    across, step = (-2, BLUR_ROWS) if axis == -1 else (-1, BLUR_COLUMNS)  # the blocks are cut across the lines
    for b0 in range(0, a.shape[across], step):
        block = _span(a, across, b0, b0 + step)
        shape = list(block.shape)
        shape[axis] = n + 2 * r
        p = np.empty(shape, a.dtype)  # the block padded along the axis
        _span(p, axis, r, r + n)[...] = block
        if reflect:  # the edge pixel not repeated
            _span(p, axis, 0, r)[...] = np.flip(_span(block, axis, 1, r + 1), axis)
            _span(p, axis, r + n, n + 2 * r)[...] = np.flip(_span(block, axis, n - 1 - r, n - 1), axis)
        else:
            _span(p, axis, 0, r)[...] = _span(block, axis, 0, 1)
            _span(p, axis, r + n, n + 2 * r)[...] = _span(block, axis, n - 1, n)
        acc = _span(p, axis, r, r + n) * k[r]
        tmp = np.empty_like(acc)
        for i in range(r):
            np.add(_span(p, axis, i, i + n), _span(p, axis, 2 * r - i, 2 * r - i + n), out=tmp)
            tmp *= k[i]
            acc += tmp
        _span(out, across, b0, b0 + step)[...] = acc
    return out


def gradients(img: torch.Tensor, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference gradients of a Gaussian-smoothed (B, 1, H, W) image."""
    x = gaussian_blur(img, sigma)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    del x
    gx = (xp[..., 1:-1, 2:] - xp[..., 1:-1, :-2]).mul_(0.5)  # in place: the same numbers, a temporary less
    gy = (xp[..., 2:, 1:-1] - xp[..., :-2, 1:-1]).mul_(0.5)
    return gx, gy


def oriented_gradient_channels(img: torch.Tensor, n_orient: int = 9, grad_sigma: float = 1.0,
                               cell_sigma: float = 2.0, eps_ratio: float = 0.1,
                               storage: torch.dtype | None = None) -> torch.Tensor:
    """(B, 1, H, W) image in [0, 1] -> (B, n_orient, H, W) per-pixel L2-normalised features.

    Built a few orientations at a time into the output, bit for bit the numbers of whole-tensor
    operations: with torch's convolution blur, all nine channels' temporaries at once raised a
    1160 px tile's peak by 0.36 GB (three at a time 0.23 GB). With the CPU's scipy blur one call
    on a 1174 px tile peaks 205-236 MB above its input, one orientation at a time 168-210 MB in the
    same time; a whole registration showed no difference.

    ``storage`` (e.g. ``torch.float16``): the dtype the channels are kept in, computed in the
    image's dtype one orientation at a time (the tile matcher's features, see
    :class:`georeg.matchers.baseline.BaselineMatcher`); None keeps the image's dtype."""
    if img.ndim != 4 or img.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) image; got {tuple(img.shape)}")
    storage = storage or img.dtype
    narrow = storage != img.dtype
    gx, gy = gradients(img, grad_sigma)
    theta = torch.arange(n_orient, device=img.device, dtype=img.dtype) * (math.pi / n_orient)
    cos, sin = torch.cos(theta).view(1, -1, 1, 1), torch.sin(theta).view(1, -1, 1, 1)
    ch = torch.empty((img.shape[0], n_orient, *img.shape[2:]), device=img.device, dtype=storage)
    # on CUDA narrow storage is for memory: the smallest temporaries
    if img.device.type == "cpu":
        chunk = OGC_CHUNK if img.shape[-2] * img.shape[-1] <= OGC_CPU_SMALL_PX else 1
    else:
        chunk = 1 if narrow else OGC_CHUNK
    for i in range(0, n_orient, chunk):
        j = min(i + chunk, n_orient)
        ch[:, i:j] = gaussian_blur((gx * cos[:, i:j] + gy * sin[:, i:j]).abs_(), cell_sigma)
    del gx, gy
    # smoothing across orientation (circular [1, 2, 1] / 4), in place: each channel needs the
    # original values of its neighbours, so the previous original and the first are kept aside
    if narrow:
        return _smooth_normalise_narrow(ch, img.dtype, eps_ratio)
    first, prev = ch[:, 0].clone(), ch[:, n_orient - 1].clone()
    for i in range(n_orient):
        cur = ch[:, i].clone()
        nxt = first if i == n_orient - 1 else ch[:, i + 1]
        torch.add(torch.add(0.25 * prev, cur, alpha=0.5), 0.25 * nxt, out=ch[:, i])
        prev = cur
    norm = (ch * ch).sum(1, keepdim=True).sqrt_()  # its temporary stays below the blur's peak
    eps = eps_ratio * norm.mean(dim=(1, 2, 3), keepdim=True) + 1e-6
    return ch.div_(norm.add_(eps))


def _smooth_normalise_narrow(ch: torch.Tensor, wide: torch.dtype, eps_ratio: float) -> torch.Tensor:
    """The orientation smoothing and normalisation of :func:`oriented_gradient_channels` on
    channels stored narrower than ``wide``, computed in ``wide`` one channel at a time: a mixed-dtype
    operation on the whole stack (``ch.div_(norm)``) converts all of it at once, 90 MB on a 1174 px
    tile, more than the storage saves."""
    n = ch.shape[1]
    first, prev = ch[:, 0].to(wide), ch[:, n - 1].to(wide)
    for i in range(n):
        cur = ch[:, i].to(wide)
        acc = first if i == n - 1 else ch[:, i + 1].to(wide)
        ch[:, i] = acc.add_(prev).mul_(0.25).add_(cur, alpha=0.5)
        prev = cur
    norm = torch.zeros_like(ch[:, :1], dtype=wide)
    for i in range(n):
        c = ch[:, i:i + 1].to(wide)
        norm.addcmul_(c, c)
    norm.sqrt_()
    norm.add_(eps_ratio * norm.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
    for i in range(n):
        ch[:, i:i + 1] = ch[:, i:i + 1].to(wide).div_(norm)
    return ch


def box_integral(mask: np.ndarray, k: int) -> np.ndarray:
    """The int32 integral image of a bool (H, W) mask padded by k // 2 zeros on every side, with a
    leading zero row and column: :func:`box_count` and :func:`box_count_at` read k x k counts from it
    (exact, a quarter of the memory of a float64 box mean)."""
    r = k // 2
    c = np.zeros((mask.shape[0] + 2 * r + 1, mask.shape[1] + 2 * r + 1), np.int32)
    c[r + 1:r + 1 + mask.shape[0], r + 1:r + 1 + mask.shape[1]] = mask
    np.cumsum(c, axis=0, out=c)
    np.cumsum(c, axis=1, out=c)
    return c


def box_count(mask: np.ndarray, k: int) -> np.ndarray:
    """Number of True pixels in the centred k x k window (k odd) of every pixel, outside counting
    as False: (H, W) int32."""
    c = box_integral(mask, k)
    out = c[k:, k:] - c[:-k, k:]
    out -= c[k:, :-k]
    out += c[:-k, :-k]
    return out


def box_count_at(mask: np.ndarray, k: int, xy: np.ndarray) -> np.ndarray:
    """:func:`box_count` at integer (x, y) positions ``xy`` (N, 2) only."""
    c = box_integral(mask, k)
    x, y = xy[:, 0], xy[:, 1]
    return c[y + k, x + k] - c[y, x + k] - c[y + k, x] + c[y, x]


def max_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """Separable k x k maximum filter of (B, C, H, W), same size (outside counts as -inf). On the
    CPU through scipy's running maximum, whose cost does not grow with k: 4x faster than torch's
    max_pool2d for the 17 px keypoint suppression of a 1160 px tile, the same numbers."""
    r = k // 2
    if x.device.type == "cpu":
        from scipy.ndimage import maximum_filter1d

        a = maximum_filter1d(x.detach().numpy(), k, axis=-1, mode="constant", cval=-np.inf)
        return torch.from_numpy(maximum_filter1d(a, k, axis=-2, mode="constant", cval=-np.inf))
    x = F.max_pool2d(x, (1, k), stride=1, padding=(0, r))
    return F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))


def _box_sum(x: torch.Tensor, p: int) -> torch.Tensor:
    """Sums over every p x p window of (N, H, W) -> (N, H - p + 1, W - p + 1)."""
    c = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return c[:, p:, p:] - c[:, :-p, p:] - c[:, p:, :-p] + c[:, :-p, :-p]


def fft_size(n: int) -> int:
    """The smallest multiple of 4 at least ``n`` with no prime factor above 5. The FFT's cost
    follows the size's factors, not its magnitude: one thread, 32 maps, 76 px 1.74 ms against
    0.43 ms at 80 (the refinement pass's 64 px patch and 6 px radius), 146 px 7.6 ms against
    1.5 ms at 144; over every size from 64 to 199, 3.7x less time in all. Not scipy's
    ``next_fast_len``: it also gives odd sizes (81, 135), which torch's CPU FFT ran 1.3-2.9x slower
    than its pick (81 px 0.80 ms against 0.64 ms at 96, 135 px 4.4 ms against 1.5 ms
    at 144), and even ones such as 150 (1.85 ms against 1.44 ms at 160)."""
    m = max(4, n + (-n) % 4)
    while True:
        k = m
        for q in (2, 3, 5):
            while k % q == 0:
                k //= q
        if k == 1:
            return m
        m += 4


def ncc_search(templates: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Zero-normalised cross-correlation of each template over its window, all channels together.

    templates (N, C, P, P), windows (N, C, S, S) with S >= P -> (N, S - P + 1, S - P + 1) in [-1, 1].
    Entry [n, v, u] compares the template with the window crop whose top-left corner is (u, v).
    """
    if templates.ndim != 4 or windows.ndim != 4 or templates.shape[:2] != windows.shape[:2]:
        raise ValueError(f"expected (N, C, P, P) and (N, C, S, S); got {tuple(templates.shape)} "
                         f"and {tuple(windows.shape)}")
    n, c, p, _ = templates.shape
    s = windows.shape[-1]
    if s < p:
        raise ValueError(f"window size {s} is smaller than template size {p}")
    t = templates.float()
    w = windows.float()
    t0 = t - t.mean(dim=(1, 2, 3), keepdim=True)
    t_norm = torch.sqrt((t0 * t0).sum(dim=(1, 2, 3)))
    # the cross-power spectrum summed over channels one channel at a time (all channels' spectra at
    # once were most of a search batch's memory), on a fast transform size: the valid placements
    # do not wrap round for any size >= s
    f = fft_size(s)
    spec = None
    for ci in range(c):
        part = torch.fft.rfft2(w[:, ci], s=(f, f)).mul_(torch.fft.rfft2(t0[:, ci], s=(f, f)).conj())
        spec = part if spec is None else spec.add_(part)
    corr = torch.fft.irfft2(spec, s=(f, f))[:, : s - p + 1, : s - p + 1]
    m = c * p * p
    wsum = _box_sum(w.sum(1), p)
    sq = w[:, 0] * w[:, 0]
    for ci in range(1, c):
        sq.addcmul_(w[:, ci], w[:, ci])
    wsq = _box_sum(sq, p)
    w_var = torch.clamp(wsq - wsum * wsum / m, min=0.0)
    den = t_norm.view(n, 1, 1) * torch.sqrt(w_var) + 1e-6
    return torch.clamp(corr / den, -1.0, 1.0)
