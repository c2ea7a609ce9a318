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

from .base import Matcher, as_unit_float, check_patches
from .kgl import KGLNet
from .rrl import RRLNet
from .weights import load_state


class LearnedMatcher(Matcher):
    learned = True
    patch_size = 64
    min_probability = 0.5

    def __init__(self, name: str, device: str | torch.device = "cpu", directory=None):
        super().__init__(device)
        self.name = name
        self.manifest, state = load_state(name, directory)
        self.net = self._build(self.manifest)
        self.net.load_state_dict(state)
        self.net.eval().to(self.device)
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

    def network_logits(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) each -> (N,) logits of the network alone (no fusion)."""
        check_patches(reference_patches, target_patches, self.patch_size)
        out = []
        with torch.inference_mode(), self._autocast():
            for i in range(0, len(reference_patches), 1024):
                a = as_unit_float(reference_patches[i:i + 1024]).to(self.device)
                b = as_unit_float(target_patches[i:i + 1024]).to(self.device)
                out.append(self._pair_logit(a, b).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def network_score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N,) match probabilities of the network alone."""
        return torch.sigmoid(self.network_logits(reference_patches, target_patches))

    def fuse(self, logits: torch.Tensor, structural: torch.Tensor) -> torch.Tensor:
        """The manifest's fusion of network logits with structural scores -> probabilities."""
        f = self.fusion
        return torch.sigmoid(f["learned"] * logits + f["structural"] * structural + f["bias"])

    def _fused(self, logits: torch.Tensor, pairs) -> torch.Tensor:
        """Probabilities from ``logits``; ``pairs()`` gives the (reference, target) patches of the
        structural score and is only called when the manifest has a fusion."""
        if not self.fusion:
            return torch.sigmoid(logits)
        return self.fuse(logits, self._structural.score(*pairs()))

    def score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) each, [0, 1] floats or uint8 -> (N,) match probabilities."""
        return self._fused(self.network_logits(reference_patches, target_patches),
                           lambda: (reference_patches, target_patches))

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """reference (N, 1, 64, 64), candidates (N, K, 1, 64, 64) -> (N, K) probabilities."""
        n, k = candidates.shape[:2]
        return self.score(_repeat_each(reference_patches, k), candidates.reshape(n * k, 1, 64, 64)).view(n, k)


def _repeat_each(patches: torch.Tensor, k: int) -> torch.Tensor:
    """(N, 1, H, W) -> (N * K, 1, H, W), each patch repeated K times in a row."""
    return patches.unsqueeze(1).expand(len(patches), k, *patches.shape[1:]).reshape(-1, *patches.shape[1:])


class KGLMatcher(LearnedMatcher):
    keep = 3  # candidates that reach the metric head after the descriptor pre-ranking

    def _build(self, manifest: dict) -> torch.nn.Module:
        return KGLNet(width=float(manifest.get("width", 1.0)))

    def _pair_logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.encode(a, "opt")["f_dif"], self.net.encode(b, "other")["f_dif"])

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Encode each patch once; pre-rank by descriptor distance; metric head on the best ``keep``."""
        n, k = candidates.shape[:2]
        with torch.inference_mode(), self._autocast():
            ea = self.net.encode(as_unit_float(reference_patches).to(self.device), "opt")
            eb = self.net.encode(as_unit_float(candidates.reshape(n * k, 1, 64, 64)).to(self.device), "other")
            desc_b = eb["desc"].view(n, k, -1)
            dist = (desc_b - ea["desc"].unsqueeze(1)).norm(dim=-1)
            keep = min(self.keep, k)
            top = dist.topk(keep, dim=1, largest=False).indices  # (N, keep)
            fb = eb["f_dif"].view(n, k, *eb["f_dif"].shape[1:])
            sel = fb[torch.arange(n, device=fb.device)[:, None], top]  # (N, keep, C, 8, 8)
            fa = ea["f_dif"].unsqueeze(1).expand_as(sel)
            logit = self.net.head(fa.reshape(-1, *fa.shape[2:]), sel.reshape(-1, *sel.shape[2:])).float().cpu()
        top = top.cpu()
        prob = self._fused(logit, lambda: (_repeat_each(reference_patches, keep),
                                           candidates[torch.arange(n)[:, None], top].reshape(n * keep, 1, 64, 64)))
        out = torch.zeros(n, k)
        out.scatter_(1, top, prob.view(n, keep))
        return out


class RRLMatcher(LearnedMatcher):
    def _build(self, manifest: dict) -> torch.nn.Module:
        return RRLNet(training_parts=False)

    def _pair_logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net.pair(self.net.encode(a, "opt"), self.net.encode(b, "other"))["main"]
