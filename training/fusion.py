"""Fit the logistic fusion of a learned matcher's logit with the weight-free structural score.

The structural score (georeg's baseline: NCC of oriented-gradient channels) and the learned
networks fail on different pairs, so a two-weight logistic regression over (network logit,
structural score), fitted on the validation split only, is stored in the manifest and used by
the shipped matcher (see :mod:`georeg.matchers.learned`). The test split is never touched here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .data import PatchSet, balanced_subset, eval_pairs


def fit(matcher, data_dir: Path, pair: str, max_pairs: int = 8000, seed: int = 0) -> dict:
    """``matcher``: a georeg LearnedMatcher (without fusion). Returns the manifest's fusion entry."""
    from georeg.matchers import load

    ps = PatchSet.load(Path(data_dir) / f"{pair}_val.npz")
    opt, other, y = eval_pairs(ps, seed=seed)
    y, opt, other = balanced_subset(max_pairs, seed, y, opt, other)
    a, b = torch.from_numpy(opt), torch.from_numpy(other)
    logit = matcher.network_logits(a, b).double()
    structural = load("baseline", "cpu").score(a, b).double()
    x = torch.stack([logit, structural], 1)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sd
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    target = torch.from_numpy(y).double()
    opt_ = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt_.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w[:2] + w[2], target)
        loss = loss + 1e-4 * (w[:2] ** 2).sum()
        loss.backward()
        return loss

    opt_.step(closure)
    wn = w.detach()
    learned, structural_w = (wn[:2] / sd).tolist()
    bias = float(wn[2] - (wn[:2] * mu / sd).sum())
    return {"learned": round(learned, 6), "structural": round(structural_w, 6), "bias": round(bias, 6),
            "fitted_on": f"{pair} validation split, {len(y)} pairs (logistic regression)"}
