"""Learned matchers built on shipped weights: KGL-Net and RRL-Net.

They score *candidates* rather than every placement: the registration pipeline finds the
strongest local maxima of the weight-free structural correlation inside the search window, cuts
64x64 patches there, and asks the learned matcher which candidate is the true match
(:meth:`LearnedMatcher.rank`). KGL-Net encodes each patch once (descriptor and metric features),
pre-ranks the candidates by descriptor distance and scores the best few with its metric head;
RRL-Net runs its per-pair stream on the few candidates it is given.
On CUDA the networks run under autocast (float16); on the CPU in float32.

A manifest may carry a ``fusion`` entry: a logistic combination, fitted on the validation split,
of the network's logit and the weight-free structural score of the same two patches (the
baseline matcher's oriented-gradient NCC). The shipped matcher then returns
``sigmoid(learned * logit + structural * ncc_score + bias)``; :meth:`LearnedMatcher.network_score`
gives the network alone.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import ShapeError
from .base import Matcher, as_unit_float, check_patches, pair_batches, repeat_index
from .kgl import KGLNet
from .rrl import RRLNet
from .weights import load_state


class LearnedMatcher(Matcher):
    patch_size = 64
    min_probability = 0.5

    def __init__(self, name: str, device: str | torch.device = "cpu", directory=None):
        super().__init__(device)
        self.name = name
        self.manifest, state = load_state(name, directory)
        # not built on torch's "meta" device to skip the initialisation the weights replace: its
        # random init there goes through torch._dynamo, 1.7 s of imports in a fresh process
        self.net = self._build(self.manifest)
        self.net.load_state_dict(state)  # copies: the process's verified state dict stays as it is
        # channels-last convolutions: 1.2-1.5x faster on the CPU (oneDNN), and what tensor cores want
        self.net.eval().to(self.device, memory_format=torch.channels_last)
        self.fusion = self.manifest.get("fusion")
        self._structural = None
        if self.fusion:
            from .baseline import BaselineMatcher

            self._structural = BaselineMatcher(self.device)
        self.description = (f"{self.manifest.get('architecture', '?')} for {self.manifest.get('pair', '?')}"
                            + (" + structural score" if self.fusion else "")
                            + f", test FPR95 {self.manifest.get('test_fpr95', '?')}")

    def _build(self, manifest: dict) -> torch.nn.Module:
        raise NotImplementedError

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def info(self) -> dict:
        return {"name": self.name, "description": self.description, "device": str(self.device),
                "weights": self.manifest.get("file")}

    def network_logits(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                       repeat_reference: int = 1, repeat_target: int = 1) -> torch.Tensor:
        """(N, 1, 64, 64) each -> (N,) logits of the network alone (no fusion).

        With ``repeat_reference=k`` (or ``repeat_target=k``) that side holds N/k patches, each paired
        with k consecutive patches of the other side; each patch is encoded once."""
        return self.network_logits_indexed(reference_patches, target_patches,
                                           *repeat_index(len(reference_patches), len(target_patches),
                                                         repeat_reference, repeat_target))

    def network_logits_indexed(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                               ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
        """Logits of the pairs (reference_patches[ia[j]], target_patches[ib[j]]); each patch is
        encoded once per batch of 1024 pairs however many pairs it is in."""
        check_patches(reference_patches[:1], target_patches[:1], self.patch_size)
        out = []
        with torch.inference_mode(), self._autocast():
            for ua, inv_a, ub, inv_b in pair_batches(ia, ib, self.device):
                ea = self._encode(_to_net(reference_patches[ua], self.device), "opt")
                eb = self._encode(_to_net(target_patches[ub], self.device), "other")
                out.append(self._head(_take(ea, inv_a), _take(eb, inv_b)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def network_score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N,) match probabilities of the network alone."""
        return torch.sigmoid(self.network_logits(reference_patches, target_patches))

    def fuse(self, logits: torch.Tensor, structural: torch.Tensor) -> torch.Tensor:
        """The manifest's fusion of network logits with structural scores -> probabilities."""
        f = self.fusion
        return torch.sigmoid(f["learned"] * logits + f["structural"] * structural + f["bias"])

    def _fused(self, logits: torch.Tensor, pairs, structural: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities from ``logits``. The fusion's structural scores are ``structural`` when the
        caller has them (the dense search scored the same placements), else computed from the
        patches ``pairs()`` gives (reference, target, ia, ib); neither is used without a fusion."""
        if not self.fusion:
            return torch.sigmoid(logits)
        if structural is None:
            structural = self._structural.score_indexed(*pairs())
        return self.fuse(logits, structural)

    def score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) each, [0, 1] floats or uint8 -> (N,) match probabilities. Patches must be
        preprocessed as the pipeline does (see :meth:`Matcher.score`)."""
        return self.score_repeated(reference_patches, target_patches)

    def score_indexed(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                      ia: torch.Tensor, ib: torch.Tensor, structural: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities of the pairs (reference_patches[ia[j]], target_patches[ib[j]]); ``structural``:
        their structural scores when the caller has them (see :meth:`_fused`)."""
        return self._fused(self.network_logits_indexed(reference_patches, target_patches, ia, ib),
                           lambda: (reference_patches, target_patches, ia, ib), structural)

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor,
             valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """reference (N, 1, 64, 64), candidates (N, K, 1, 64, 64) -> (N, K) probabilities; candidates
        where the (N, K) mask ``valid`` is False are not scored (probability 0). ``structural``:
        the (N, K) structural scores of the same pairs when the caller has them (see :meth:`_fused`)."""
        n, k = self._check_candidates(reference_patches, candidates, valid, structural)
        rows, cols = _pairs(n, k, valid)
        flat = candidates.reshape(n * k, *candidates.shape[2:])
        given = structural[rows, cols] if structural is not None else None
        prob = self.score_indexed(reference_patches, flat, rows, rows * k + cols, given)
        return _scatter(prob, rows, cols, n, k)

    def rank_reverse(self, target_patches: torch.Tensor, candidates: torch.Tensor,
                     valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """target (N, 1, 64, 64), reference candidates (N, K, 1, 64, 64) -> (N, K) probabilities, as
        :meth:`rank` with the roles of the two sides swapped."""
        n, k = self._check_candidates(target_patches, candidates, valid, structural)
        rows, cols = _pairs(n, k, valid)
        flat = candidates.reshape(n * k, *candidates.shape[2:])
        given = structural[rows, cols] if structural is not None else None
        prob = self.score_indexed(flat, target_patches, rows * k + cols, rows, given)
        return _scatter(prob, rows, cols, n, k)

    def _check_candidates(self, own: torch.Tensor, candidates: torch.Tensor, valid,
                          structural=None) -> tuple[int, int]:
        """(N, K) after checking the shapes against each other and the network's patch size."""
        if candidates.ndim != 5 or candidates.shape[0] != own.shape[0]:
            raise ShapeError(f"candidates must be (N, K, 1, P, P) with N = {own.shape[0]} patches; got "
                             f"{tuple(candidates.shape)}")
        check_patches(own, candidates[:, 0], self.patch_size)
        n, k = candidates.shape[:2]
        for name, mask in (("valid", valid), ("structural", structural)):
            if mask is not None and tuple(mask.shape) != (n, k):
                raise ShapeError(f"{name} must be an (N, K) = ({n}, {k}) array; got {tuple(mask.shape)}")
        return n, k


def _to_net(patches: torch.Tensor, device: torch.device) -> torch.Tensor:
    return as_unit_float(patches).to(device).contiguous(memory_format=torch.channels_last)


def _pairs(n: int, k: int, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of the candidates to score, row by row."""
    if valid is None:
        return torch.arange(n).repeat_interleave(k), torch.arange(k).repeat(n)
    rows, cols = torch.nonzero(valid.reshape(n, k), as_tuple=True)
    return rows, cols


def _scatter(prob: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n: int, k: int) -> torch.Tensor:
    out = torch.zeros(n, k)
    out[rows, cols] = prob
    return out


def _take(x, idx: torch.Tensor):
    """Items ``idx`` of a tensor, or of the tensors of a dict or list (an encoding), along dim 0."""
    if isinstance(x, dict):
        return {key: _take(v, idx) for key, v in x.items()}
    if isinstance(x, list):
        return [_take(v, idx) for v in x]
    return x[idx]


ENCODE_CHUNK = 16  # patches per call of the full-resolution layers: the two matching directions' ranking
# chunks are the last rise of a 1024 px pair's peak. 32 against 16, eight fresh `georeg register` runs
# each, alternating (2026-12-05): 590-612 against 582-615 MiB (medians 606 and 592), the same seconds
# (4.06-4.56 against 4.10-4.56 s; warm 2.73-2.83 against 2.75-2.81 s); 64 peaked 35 MB higher than 32;
# 128 took 0.2 GB more at 10980 px


class KGLMatcher(LearnedMatcher):
    keep = 3  # candidates that reach the metric head after the descriptor pre-ranking (used when
    # the pipeline hands over more than 3: `matching.candidates` above its default)

    def _build(self, manifest: dict) -> torch.nn.Module:
        return KGLNet(width=float(manifest.get("width", 1.0)))

    def _encode(self, x: torch.Tensor, side: str) -> torch.Tensor:
        return self.net.difference_features(self._low(x, side), side)

    def _low(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """Low-level features, ENCODE_CHUNK patches at a time: their 64x64 activations are most of
        the memory a ranking takes (a 1024 px tile's pass peaked at 1.6 GB in one piece)."""
        return torch.cat([self.net.low(x[i:i + ENCODE_CHUNK], side) for i in range(0, len(x), ENCODE_CHUNK)])

    def _head(self, f_opt: torch.Tensor, f_other: torch.Tensor) -> torch.Tensor:
        return self.net.head(f_opt, f_other)

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor,
             valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """Encode each patch once; pre-rank the valid candidates by descriptor distance; metric head
        on the best ``keep`` of each row."""
        return self._rank(reference_patches, candidates, valid, structural, "opt")

    def rank_reverse(self, target_patches: torch.Tensor, candidates: torch.Tensor,
                     valid: torch.Tensor | None = None, structural: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`rank` with the sides swapped (the same descriptor pre-ranking)."""
        return self._rank(target_patches, candidates, valid, structural, "other")

    def _rank(self, own: torch.Tensor, candidates: torch.Tensor, valid, structural, side: str) -> torch.Tensor:
        n, k = self._check_candidates(own, candidates, valid, structural)
        rows, cols = _pairs(n, k, valid)
        if len(rows) == 0:
            return torch.zeros(n, k)
        other = "other" if side == "opt" else "opt"
        flat = candidates.reshape(n * k, *candidates.shape[2:])
        with torch.inference_mode(), self._autocast():
            low_own = self._low(_to_net(own, self.device), side)
            low_cand = self._low(_to_net(flat[rows * k + cols], self.device), other)
            keep = min(self.keep, k)
            # descriptors only where a row has more valid candidates than reach the head (in a
            # refinement pass, where most rows have 1-3, that is under half of them)
            dist = torch.full((n, k), float("inf"), device=self.device)
            crowded = torch.bincount(rows, minlength=n) > keep
            pick = crowded[rows]
            dist[rows[~pick].to(self.device), cols[~pick].to(self.device)] = 0.0
            if pick.any():
                need = torch.nonzero(crowded).squeeze(1)
                at = torch.full((n,), -1, dtype=torch.long)
                at[need] = torch.arange(len(need))  # a crowded row's place among the described ones
                d_own = self.net.describe(low_own[need.to(self.device)])
                d_cand = self.net.describe(low_cand[torch.nonzero(pick).squeeze(1).to(self.device)])
                diff = d_cand - d_own[at[rows[pick]].to(self.device)]
                dist[rows[pick].to(self.device), cols[pick].to(self.device)] = diff.norm(dim=-1).float()
            top = dist.topk(keep, dim=1, largest=False).indices.cpu()  # (N, keep)
            slot = torch.full((n, k), -1, dtype=torch.long)
            slot[rows, cols] = torch.arange(len(rows))
            j = slot.gather(1, top)  # the candidate's place among the encoded ones; -1: not valid
            ok = j >= 0
            r_ok, c_ok = torch.arange(n)[:, None].expand(n, keep)[ok], top[ok]
            # metric features of the patches that reach the head only (each once)
            u_own, i_own = torch.unique(r_ok, return_inverse=True)
            u_cand, i_cand = torch.unique(j[ok], return_inverse=True)
            f_own = self.net.difference_features(low_own[u_own.to(self.device)], side)[i_own.to(self.device)]
            f_cand = self.net.difference_features(low_cand[u_cand.to(self.device)], other)[i_cand.to(self.device)]
            f_opt, f_other = (f_own, f_cand) if side == "opt" else (f_cand, f_own)
            logit = self.net.head(f_opt, f_other).float().cpu()
        flat_ok = r_ok * k + c_ok
        pairs = ((lambda: (own, flat, r_ok, flat_ok)) if side == "opt"
                 else (lambda: (flat, own, flat_ok, r_ok)))
        prob = self._fused(logit, pairs, structural[r_ok, c_ok] if structural is not None else None)
        out = torch.zeros(n, k)
        out[r_ok, c_ok] = prob
        return out


class RRLMatcher(LearnedMatcher):
    def _build(self, manifest: dict) -> torch.nn.Module:
        return RRLNet(training_parts=False)

    def _encode(self, x: torch.Tensor, side: str) -> dict:
        return self.net.encode(x, side)

    def _head(self, e_opt: dict, e_other: dict) -> torch.Tensor:
        return self.net.pair(e_opt, e_other)["main"]
