"""Matching inside one tile: sample the target through the current prior, detect keypoints in
both images, cut patches, let the matcher score every placement inside the search radius, keep
the best placement with sub-pixel refinement.

Positions are reference-grid pixels in the convention of :mod:`georeg.coordinates`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from .config import MatchingConfig
from .features import box_count_at
from .grid import Grid
from .keypoints import detect
from .matchers.base import DenseMatcher, MatcherRoles, Ranker
from .preprocess import preprocess
from .raster import RasterSource
from .runtime import at_once, directions_side_by_side, in_order
from .tiling import expand
from .warp import dense_coords

FORWARD, BACKWARD = 0, 1


@dataclass
class TiePoints:
    """Tie points as parallel arrays, both positions (N, 2) in reference-grid pixels: ``xy_r`` is
    where the reference shows the feature, ``xy_t_on_ref`` where the target shows it once read
    onto the reference grid through its georeferencing as given (not the target's own pixel
    indices). A model maps ``xy_t_on_ref`` to ``xy_r``."""

    xy_r: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    xy_t_on_ref: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    peak_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    direction: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    tile: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    searched: int = 0  # keypoints searched (both directions) for these tie points, kept or not

    def __len__(self) -> int:
        return len(self.xy_r)

    @staticmethod
    def concat(items: list[TiePoints]) -> TiePoints:
        searched = sum(t.searched for t in items)
        items = [t for t in items if len(t)]
        if not items:
            return TiePoints(searched=searched)
        return TiePoints(*[np.concatenate([getattr(t, f) for t in items])
                           for f in ("xy_r", "xy_t_on_ref", "score", "peak_ratio", "direction", "tile")],
                         searched=searched)

    def subset(self, keep: np.ndarray) -> TiePoints:
        return TiePoints(self.xy_r[keep], self.xy_t_on_ref[keep], self.score[keep], self.peak_ratio[keep],
                         self.direction[keep], self.tile[keep], self.searched)


# a model that spreads a window over more than this many times its area (a scale of 8 along each
# side; the models georeg searches scale by 0.5-2) is degenerate there: the target is not read
# through it. A first pass on the mirror image of a 10 m S1 scene under its S2 reference averaged
# to 100 m, on a grid refined 7.7x (working_grid.MIN_WORKING_PX set to 768 in
# benchmarks/coarse_targets.py), asked for a read of 415343 x 510868 px (a MemoryError)
MAX_READ_AREA = 64.0


def sample_through(source: RasterSource, grid: Grid, window: Window,
                   inverse: Callable[[np.ndarray], np.ndarray] | None,
                   fill_gaps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The target as it appears on ``window`` of the reference ``grid`` once corrected by a model.

    ``inverse`` maps reference-grid pixels to target positions (reference-grid pixels as currently
    georeferenced); None means the identity. Returns (H, W) float32 data and bool validity, all
    invalid where the model is degenerate on the window (:data:`MAX_READ_AREA`, or points it
    cannot map). ``fill_gaps``: as :meth:`RasterSource.read_on_grid`'s.
    """
    h, w = int(window.height), int(window.width)
    if inverse is None:
        return source.read_on_grid(grid, window, fill_gaps=fill_gaps)
    full = dense_coords(inverse, int(window.col_off), int(window.row_off), w, h)  # (H, W, 2)
    c0, r0 = np.floor(full[..., 0].min()) - 2, np.floor(full[..., 1].min()) - 2
    c1, r1 = np.ceil(full[..., 0].max()) + 2, np.ceil(full[..., 1].max()) + 2
    if not np.isfinite([c0, r0, c1, r1]).all() or (c1 - c0) * (r1 - r0) > MAX_READ_AREA * max(w * h, 64 * 64):
        return np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    read = Window(int(c0), int(r0), int(c1 - c0), int(r1 - r0))
    data, valid = source.read_on_grid(grid, read, fill_gaps=fill_gaps)
    # array index of each sample: continuous px - read offset - 0.5; normalise for align_corners=True
    # (in place, one float32 grid: a 1174 px tile's float64 copies cost 70 MB)
    full[..., 0] -= read.col_off + 0.5
    full[..., 1] -= read.row_off + 0.5
    full /= np.array([max(read.width - 1, 1), max(read.height - 1, 1)], np.float64) / 2
    full -= 1
    g = torch.from_numpy(full.astype(np.float32))[None]
    del full
    inp = torch.from_numpy(np.stack([data, valid.astype(np.float32)]))[None]
    out = F.grid_sample(inp, g, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    v = out[1].numpy() > 0.999
    return np.where(v, out[0].numpy(), 0.0).astype(np.float32), v


def peak_analysis(maps: torch.Tensor, exclude: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, K, K) score maps -> sub-pixel peak (N, 2) as (u, v), best score, peak ratio, interior flag."""
    n, k, _ = maps.shape
    flat = maps.reshape(n, -1)
    best, idx = flat.max(1)
    v, u = idx // k, idx % k
    interior = (u > 0) & (u < k - 1) & (v > 0) & (v < k - 1)
    uc, vc = u.clamp(1, k - 2), v.clamp(1, k - 2)
    ar = torch.arange(n)
    c = maps[ar, vc, uc]
    lx, rx = maps[ar, vc, uc - 1], maps[ar, vc, uc + 1]
    ty, by = maps[ar, vc - 1, uc], maps[ar, vc + 1, uc]
    dx = torch.clamp((lx - rx) / (2 * (lx - 2 * c + rx) - 1e-9), -0.5, 0.5)
    dy = torch.clamp((ty - by) / (2 * (ty - 2 * c + by) - 1e-9), -0.5, 0.5)
    dx = torch.where(interior, dx, torch.zeros_like(dx))
    dy = torch.where(interior, dy, torch.zeros_like(dy))
    yy = torch.arange(k).view(1, k, 1)
    xx = torch.arange(k).view(1, 1, k)
    near = ((yy - v.view(n, 1, 1)).abs() <= exclude) & ((xx - u.view(n, 1, 1)).abs() <= exclude)
    second = torch.where(near, torch.full_like(maps, -1.0), maps).reshape(n, -1).max(1).values
    ratio = best / second.clamp(min=1e-3)
    uv = torch.stack([u.double() + dx.double(), v.double() + dy.double()], 1)
    return uv.numpy(), best.numpy(), ratio.numpy(), interior.numpy()


def crops(feat: torch.Tensor, xy: np.ndarray, size: int) -> torch.Tensor:
    """(1, C, H, W) map, (N, 2) integer (x, y) centres -> (N, C, size, size) windows centred there
    (the centre is at ``size // 2``); image patches are crops of ``image[None, None]``."""
    half = size // 2
    return torch.stack([feat[0, :, y - half:y - half + size, x - half:x - half + size] for x, y in xy])


def _search(matcher: DenseMatcher, f_tmpl: torch.Tensor, f_win: torch.Tensor, xy: np.ndarray, p: int,
            radius: int, batches: tuple[int, int], rerank=None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``batches`` = (batch, part): ``batch`` keypoints at a time, the dense search ``part`` of them
    at a time (its buffers are what a batch costs; each keypoint's map is its own, so the numbers do
    not change). The re-ranking takes whole batches: its network's sums depend on how many patches
    go through at once (half batches moved the learned scores in their last bits)."""
    outs = []
    batch, part = batches
    for i in range(0, len(xy), batch):
        sl = xy[i:i + batch]
        maps = torch.cat([matcher.search(crops(f_tmpl, sl[j:j + part], p),
                                         crops(f_win, sl[j:j + part], p + 2 * radius)).float().cpu()
                          for j in range(0, len(sl), part)])
        outs.append(peak_analysis(maps) if rerank is None else rerank(sl, maps))
    uv, best, ratio, interior = (np.concatenate(a) for a in zip(*outs))
    return uv - radius, best, ratio, interior


def local_maxima(maps: torch.Tensor, k: int, radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, K) -> (N, k) flat indices of the k strongest local maxima, and (N, k) whether each is
    one: where a map has fewer than k maxima, the rest of the k places are filler, not candidates."""
    from .features import max_filter

    peak = maps == max_filter(maps.unsqueeze(1), 2 * radius + 1).squeeze(1)
    vals = torch.where(peak, maps, torch.full_like(maps, -2.0)).flatten(1)
    idx = vals.topk(min(k, vals.shape[1]), dim=1).indices
    return idx, peak.flatten(1).gather(1, idx)


MERGE_PX = 3  # candidates this close (each axis) to the learned pick count as the same basin


def learned_rerank(learned: Ranker, img_a: np.ndarray, img_b: np.ndarray, a_is_opt: bool, radius: int, k: int,
                   template_px: int):
    """A re-ranking step for :func:`_search`: take the ``k`` strongest structural peaks per keypoint,
    cut 64x64 image patches there and let the learned matcher choose; the sub-pixel position comes
    from the structural surface around the chosen peak."""
    ta, tb = torch.from_numpy(img_a)[None, None], torch.from_numpy(img_b)[None, None]
    p = learned.patch_size

    def rerank(xy: np.ndarray, maps: torch.Tensor):
        n, kk, _ = maps.shape
        # (N, k); in a small search window (the refinement pass) most keypoints have 2-3 maxima only
        idx, is_peak = local_maxima(maps, k)
        kk_k = idx.shape[1]
        v, u = idx // kk, idx % kk
        cx = xy[:, 0:1] + (u.numpy() - radius)
        cy = xy[:, 1:2] + (v.numpy() - radius)
        cand = crops(tb, np.stack([cx.ravel(), cy.ravel()], 1), p).view(n, kk_k, 1, p, p)
        own = crops(ta, xy, p)
        struct = maps.flatten(1).gather(1, idx)
        # the dense search already scored these pairs structurally when its template is the patch
        given = struct if template_px == p else None
        prob = (learned.rank if a_is_opt else learned.rank_reverse)(own, cand, is_peak, given)
        ar = torch.arange(n)
        best_j = prob.argmax(dim=1)
        best = prob[ar, best_j]
        # The learned score picks the basin; within MERGE_PX of its pick the structural surface,
        # which is sharper at the pixel level, picks the peak. The ratio compares the pick with the
        # best candidate outside its basin.
        du, dv = u - u[ar, best_j][:, None], v - v[ar, best_j][:, None]
        same = (du.abs() <= MERGE_PX) & (dv.abs() <= MERGE_PX) & is_peak
        chosen = idx[ar, torch.where(same, struct, torch.full_like(struct, -9.0)).argmax(1)]
        second = torch.where(same, torch.zeros_like(prob), prob).max(1).values if kk_k > 1 else torch.zeros(n)
        # sub-pixel around the chosen peak of the structural surface
        sub = maps.clone().flatten(1)
        mask = torch.zeros_like(sub, dtype=torch.bool)
        cv, cu = chosen // kk, chosen % kk
        for dv in (-1, 0, 1):
            for du in (-1, 0, 1):
                vv, uu = (cv + dv).clamp(0, kk - 1), (cu + du).clamp(0, kk - 1)
                mask[ar, vv * kk + uu] = True
        sub = torch.where(mask, sub, torch.full_like(sub, -1.0)).view(n, kk, kk)
        sub.view(n, -1)[ar, chosen] += 1e-6  # the chosen peak stays the maximum of its neighbourhood
        uv, _, _, interior = peak_analysis(sub)
        ratio = (best / second.clamp(min=1e-3)).numpy()
        return uv, best.numpy(), ratio, interior

    return rerank


MIN_KEYPOINTS = 48  # per tile and direction: small scenes need enough tie points for a similarity or affine


def keypoints_for(tile: Window, cfg: MatchingConfig) -> int:
    """Keypoints per direction in ``tile``: ``keypoints_per_tile`` scaled by the tile's area
    (edge tiles are smaller), at least MIN_KEYPOINTS."""
    area = tile.width * tile.height / cfg.tile_size_px ** 2
    return max(MIN_KEYPOINTS, int(round(cfg.keypoints_per_tile * min(1.0, area))))


@dataclass
class _Side:
    """One image's part of a tile: validity, preprocessed image, the dense matcher's features
    (zero where invalid) and, once detected, its keypoints."""

    valid: np.ndarray
    image: np.ndarray | None = None
    features: torch.Tensor | None = None
    keypoints: np.ndarray | None = None


def _prepared(side: _Side, source: RasterSource, data: np.ndarray, matcher: DenseMatcher) -> _Side:
    if side.features is None:
        side.image = preprocess(data, side.valid, source.modality, source.float_values)
        _add_features(side, matcher)
    return side


def _add_features(side: _Side, matcher: DenseMatcher) -> None:
    """The dense matcher's features of a preprocessed side, zero where it is not valid."""
    dev = matcher.device
    with torch.inference_mode():
        f = matcher.prepare(torch.from_numpy(side.image)[None, None].to(dev))
        f.mul_(torch.from_numpy(side.valid)[None, None].to(dev))  # in place: a tile's features are 48 MB
    side.features = f


@dataclass
class Sources:
    """The two rasters of a registration on its working grid. ``reuse``: a dict the caller holds
    between passes over the same tile, or None. The reference's side of a tile (its read,
    preprocessing, features and keypoints) depends only on the window, the dense matcher and the
    keypoint count, so a later pass with the same ones takes it from there: a one-tile scene's
    near pass and refinement pass search the same radius."""

    ref: RasterSource
    tgt: RasterSource
    grid: Grid
    reuse: dict | None = None


@dataclass
class TileRead:
    """What :func:`read_tile` read of a tile: the window around it, the key of its reference side
    (see :class:`Sources`), the reference's side (kept from an earlier pass) or its pixels, and
    the target's pixels seen through the prior."""

    win: Window
    margin: int  # px around the tile: half a patch, the search radius and 2
    n_keypoints: int
    key: tuple
    r_side: _Side | None
    r_img: np.ndarray | None
    r_valid: np.ndarray | None
    t_img: np.ndarray
    t_valid: np.ndarray


def read_tile(sources: Sources, tile: Window, inverse: Callable[[np.ndarray], np.ndarray] | None, radius: int,
              matcher: DenseMatcher, cfg: MatchingConfig) -> TileRead:
    """The reads of :func:`match_tile` (a raster is read from one thread at a time: a pass reads
    the next tile in a thread of its own while this one is matched, :func:`georeg.passes.match_pass`)."""
    p, n_keypoints = cfg.patch_size_px, keypoints_for(tile, cfg)
    margin = p // 2 + radius + 2
    win = expand(tile, margin)
    key = (int(win.col_off), int(win.row_off), int(win.width), int(win.height), margin, id(matcher), n_keypoints, p)
    r_side = (sources.reuse or {}).get(key)
    r_img = r_valid = None
    if r_side is None:
        r_img, r_valid = sources.ref.read_on_grid(sources.grid, win)
    t_img, t_valid = sample_through(sources.tgt, sources.grid, win, inverse)
    return TileRead(win, margin, n_keypoints, key, r_side, r_img, r_valid, t_img, t_valid)


def match_tile(sources: Sources, tile: Window, inverse: Callable[[np.ndarray], np.ndarray] | None, radius: int,
               roles: MatcherRoles, cfg: MatchingConfig, read: TileRead | None = None) -> TiePoints:
    """Tie points of one tile (reference-grid pixels), searching ``radius`` px around the prior
    (their ``tile`` field is 0; the caller numbers the tiles). ``read``: what :func:`read_tile`
    read of it with the same arguments, or None to read it here.

    ``roles.dense`` scores every placement; ``roles.ranker``, when set, chooses among its peaks."""
    matcher, learned = roles.dense, roles.ranker
    p = cfg.patch_size_px
    read = read or read_tile(sources, tile, inverse, radius, matcher, cfg)
    win = read.win
    r_side = read.r_side or _Side(read.r_valid)
    if (r_side.valid & read.t_valid).sum() < p * p:
        return TiePoints()

    def keypoints(side: _Side) -> np.ndarray:
        return detect(side.image, side.valid, read.n_keypoints, border=read.margin, patch_size=p)[0]

    # the two sides' features at the same time where the directions run side by side (the reads
    # are done: a raster is read from one thread); each side's keypoints in its direction's thread
    two = directions_side_by_side(cfg.threads)
    r_side, t_side = _both_sides(sources, read, r_side, matcher, two, keypoints)
    if sources.reuse is not None:
        sources.reuse.clear()  # one tile's reference side at a time
        sources.reuse[read.key] = r_side

    def one_direction(direction: int, own: _Side, other: _Side, part: int) -> TiePoints | None:
        """The tie points of ``own``'s keypoints searched in ``other`` (their ``searched`` set), the
        dense search ``part`` keypoints at a time (see :func:`_search`)."""
        with torch.inference_mode():  # per thread: a direction may run in a thread of its own
            if own.keypoints is None:  # each direction its own side's, side by side with the other
                own.keypoints = keypoints(own)
            kp = own.keypoints
            if len(kp) == 0:
                return None
            # more than half of the patch valid on the other side
            kp = kp[2 * box_count_at(other.valid, p + 1, kp) > (p + 1) ** 2]
            if len(kp) == 0:
                return None
            searched = len(kp)
            rerank = None
            if learned is not None:
                rerank = learned_rerank(learned, own.image, other.image, direction == FORWARD, radius,
                                        cfg.candidates, p)
            d, best, ratio, interior = _search(matcher, own.features, other.features, kp, p, radius,
                                               (cfg.batch_size, part), rerank)
            if learned is None:
                keep = interior & (best >= cfg.min_score) & (ratio >= cfg.min_peak_ratio)
            else:
                keep = interior & (best >= learned.min_probability)
            kp, d, best, ratio = kp[keep], d[keep], best[keep], ratio[keep]
            base = kp.astype(np.float64) + [win.col_off, win.row_off]
            if direction == FORWARD:
                xy_r, xy_q = base, base + d
            else:
                xy_r, xy_q = base + d, base
            xy_t = inverse(xy_q) if inverse is not None else xy_q
            return TiePoints(xy_r, xy_t, best, ratio, np.full(len(kp), direction, np.int8),
                             np.zeros(len(kp), np.int32), searched)

    directions = [(FORWARD, r_side, t_side)]
    if cfg.bidirectional:
        directions.append((BACKWARD, t_side, r_side))
    found = _each(one_direction, directions, two, cfg.batch_size)
    return TiePoints.concat([r for r in found if r is not None])


def _both_sides(sources: Sources, read: TileRead, r_side: _Side, matcher: DenseMatcher, two: bool,
                keypoints: Callable[[_Side], np.ndarray]) -> tuple[_Side, _Side]:
    """A tile's two sides with their features: the reference's (kept from an earlier pass when it
    has them) and the target's. With ``two`` the two sides at the same time; where the reference
    side was kept, the target's ``keypoints`` are detected beside its features instead (both need
    only its preprocessed image; the 1024 px pair's refinement pass left a core idle for the
    detection's 0.11 s otherwise). Elsewhere each side's keypoints are detected in the direction
    that searches from it, the two directions side by side."""
    tgt = sources.tgt
    if not (two and r_side.features is not None):
        sides = [(r_side, sources.ref, read.r_img), (_Side(read.t_valid), tgt, read.t_img)]
        r_side, t_side = in_order(lambda side: _prepared(*side, matcher), sides, two)
        return r_side, t_side
    t_side = _Side(read.t_valid, preprocess(read.t_img, read.t_valid, tgt.modality, tgt.float_values))

    def detect_target():  # keypoints.detect runs under inference mode itself
        t_side.keypoints = keypoints(t_side)

    at_once(lambda: _add_features(t_side, matcher), detect_target, True)
    return r_side, t_side


def _each(run: Callable, directions: list[tuple], two: bool, batch: int) -> list:
    """``run(*d, part)`` for each of a tile's directions, in order: with ``two`` (what
    :func:`georeg.runtime.directions_side_by_side` said), the two at the same time in threads of
    their own, each searching half a ``batch`` at a time, so that the two dense searches' buffers
    together take what one took; one after the other, whole batches."""
    if len(directions) == 2 and two:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2, thread_name_prefix="georeg-direction") as pool:
            return list(pool.map(lambda d: run(*d, max(1, batch // 2)), directions))
    return [run(*d, batch) for d in directions]
