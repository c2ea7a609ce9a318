"""Three 8-bit colour bands that hold one band rendered through a colour ramp: a thermal or SAR band
saved as it was shown (QGIS's "save as rendered image", a web map's tiles, a thermal camera's
quick-look in "jet", "hot" or "ironbow"). Their luminance is no measure of the band (jet's is
brightest in the middle of its range) and their three bands say "optical"; the band itself is
the position of each pixel's colour along the ramp.

A ramp is found when the colours of a central sample lie on one curve through colour space: few
enough distinct colours for a rendering of one band, chained by small steps along the longest
path of their minimum spanning tree, and nearly no colour off that path but a few apart from it
(a background, labels). A natural colour image fills a volume of colour space (thousands of
colours, or a tree with many branches), a class map jumps between a few colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RAMP_COLOURS = (32, 1536)  # distinct colours in the sample: a ramp of 8-bit channels has about 256-1024
RAMP_STEP = 16.0  # largest step between neighbours along the ramp (levels, Euclidean in RGB)
RAMP_LENGTH = 96.0  # the ramp's length through colour space, at least (levels)
RAMP_NEAR = 3.5  # a colour this close to the ramp lies on it (rounding between the ramp's stops)
RAMP_OFF_COLOURS = 0.25  # of the distinct colours, at most this share off the ramp's path
RAMP_ON_SHARE = 0.98  # of the sample's pixels, at least this share on or near the ramp
RAMP_CHROMA = 24  # some colour of the ramp has channels this far apart: not grey
RAMP_FAR = 12.0  # a colour farther than this from the ramp is no value of the band (a label, a legend)
# colours apart from the ramp (more than RAMP_STEP from it): a background and a few colours of labels
# or a legend (at most this many, covering less than half the sample), or any, on this share at most
RAMP_ELSE = (8, 0.02)


@dataclass(frozen=True)
class ColourRamp:
    """The ramp's colours in order from its darker end (``nodes``, (N, 3)) and their positions
    along it (0 to 1, by distance through colour space)."""

    nodes: np.ndarray
    position: np.ndarray

    def values(self, rgb: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(3, H, W) colours -> (H, W) uint16 positions along the ramp (1 to 65535) and their validity:
        ``valid`` less the colours farther than RAMP_FAR from the ramp."""
        from scipy.spatial import cKDTree

        keys = _keys(rgb)
        uniq, inverse = np.unique(keys, return_inverse=True)
        dist, idx = cKDTree(self.nodes).query(_colours(uniq))
        value = (1 + np.round(self.position[idx] * 65534)).astype(np.uint16)
        inverse = inverse.reshape(keys.shape)
        return value[inverse], valid & (dist <= RAMP_FAR)[inverse]

    def describe(self) -> str:
        return f"one band through a colour ramp ({len(self.nodes)} colours along one curve)"


def find_ramp(rgb: np.ndarray, valid: np.ndarray) -> ColourRamp | None:
    """The colour ramp that a (3, H, W) uint8 sample's colours lie on (see the module), or None."""
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree, shortest_path
    from scipy.spatial import cKDTree

    if rgb.dtype != np.uint8 or valid.sum() < 4096:
        return None
    uniq, counts = np.unique(_keys(rgb)[valid], return_counts=True)
    if not RAMP_COLOURS[0] <= len(uniq) <= RAMP_COLOURS[1]:
        return None
    colours = _colours(uniq)
    if (colours.max(axis=1) - colours.min(axis=1)).max() < RAMP_CHROMA:
        return None  # shades of grey: read as grey (or as colour), not as a ramp
    dist = np.sqrt(((colours[:, None, :] - colours[None, :, :]) ** 2).sum(-1))
    tree = minimum_spanning_tree(dist).tocsr()
    tree.data[tree.data > RAMP_STEP] = 0.0  # cut at the long steps: the ramp is the piece holding most pixels
    tree.eliminate_zeros()
    _, piece = connected_components(tree, directed=False)
    main = piece == np.argmax(np.bincount(piece, weights=counts))
    outside = counts[~main].sum()
    if outside > RAMP_ELSE[1] * counts.sum() and ((~main).sum() > RAMP_ELSE[0] or outside > 0.5 * counts.sum()):
        return None
    # the piece's longest path: the farthest node from any of its nodes is one end, the farthest from it the other
    far = shortest_path(tree, directed=False, indices=int(np.flatnonzero(main)[0]))
    end = int(np.argmax(np.where(np.isfinite(far), far, -1)))
    along, pred = shortest_path(tree, directed=False, indices=end, return_predecessors=True)
    other = int(np.argmax(np.where(np.isfinite(along), along, -1)))
    path = [other]
    while path[-1] != end:
        path.append(int(pred[path[-1]]))
    path = np.array(path)
    nodes = colours[path]
    steps = np.sqrt((np.diff(nodes, axis=0) ** 2).sum(1))
    if steps.size == 0 or steps.sum() < RAMP_LENGTH:
        return None
    off = main.copy()
    off[path] = False
    if off.sum() > RAMP_OFF_COLOURS * main.sum():
        return None
    near = main.copy()
    if off.any():
        near[off] = cKDTree(nodes).query(colours[off])[0] <= RAMP_NEAR
    if counts[near].sum() < RAMP_ON_SHARE * counts[main].sum():
        return None
    luminance = nodes @ np.array([0.299, 0.587, 0.114])
    position = np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum()
    if luminance[-1] < luminance[0]:  # from the darker end: cold or weak at 0
        nodes, position = nodes[::-1], 1.0 - position[::-1]
    return ColourRamp(nodes.astype(np.float32), position.astype(np.float64))


def _keys(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) uint8 colours -> one int32 key per colour."""
    return (rgb[0].astype(np.int32) << 16) | (rgb[1].astype(np.int32) << 8) | rgb[2].astype(np.int32)


def _colours(keys: np.ndarray) -> np.ndarray:
    """Keys of :func:`_keys` -> (N, 3) float64 colours."""
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.float64)
