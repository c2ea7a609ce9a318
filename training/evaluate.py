"""FPR95 exactly as the published protocol defines it (matchers_spec.md section 3)."""

from __future__ import annotations

import numpy as np


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score threshold, highest first, starting at
    (0, 0), as sklearn.metrics.roc_curve(drop_intermediate=False) computes them."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (1 + distinct) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr


def fpr95(labels: np.ndarray, scores: np.ndarray) -> float:
    """FPR (%) at TPR 0.95 by linear interpolation of the ROC (interp1d(tpr, fpr)(0.95)); higher
    scores mean 'match'."""
    fpr, tpr = roc_curve(labels, scores)
    i = int(np.searchsorted(tpr, 0.95, side="left"))
    if i == 0:
        return float(fpr[0] * 100)
    t0, t1, f0, f1 = tpr[i - 1], tpr[i], fpr[i - 1], fpr[i]
    return float(100 * (f0 + (f1 - f0) * (0.95 - t0) / (t1 - t0 + 1e-300)))


def fpr95_distance(labels: np.ndarray, distances: np.ndarray) -> float:
    """KGL's descriptor protocol: threshold = sorted positive distances at index ceil(0.95 n_pos)
    (0-based); FPR = share of negatives with distance <= threshold, in %."""
    labels = np.asarray(labels).astype(bool)
    d = np.asarray(distances, np.float64)
    pos = np.sort(d[labels])
    k = min(int(np.ceil(0.95 * len(pos))), len(pos) - 1)
    return float(100 * (d[~labels] <= pos[k]).mean())
