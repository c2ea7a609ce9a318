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
        ra, rb = _check_repeats(reference_patches, target_patches, repeat_reference, repeat_target)
        check_patches(reference_patches[:1], target_patches[:1], self.patch_size)
        out = []
        step = max(1, 1024 // max(ra, rb))  # patches of the repeated side per batch
        ns = len(reference_patches) if ra > 1 else len(target_patches)
        with torch.inference_mode(), self._autocast():
            for i in range(0, ns, step):
                sa = slice(i, i + step) if rb == 1 else slice(i * rb, (i + step) * rb)
                sb = slice(i, i + step) if ra == 1 else slice(i * ra, (i + step) * ra)
                a = _to_net(reference_patches[sa], self.device)
                b = _to_net(target_patches[sb], self.device)
                out.append(self._pair_logit(a, b, ra, rb).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def network_score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N,) match probabilities of the network alone."""
        return torch.sigmoid(self.network_logits(reference_patches, target_patches))

    def fuse(self, logits: torch.Tensor, structural: torch.Tensor) -> torch.Tensor:
        """The manifest's fusion of network logits with structural scores -> probabilities."""
        f = self.fusion
        return torch.sigmoid(f["learned"] * logits + f["structural"] * structural + f["bias"])

    def _fused(self, logits: torch.Tensor, pairs) -> torch.Tensor:
        """Probabilities from ``logits``; ``pairs()`` gives the (reference, target, repeat_reference,
        repeat_target) patches of the structural score and is only called when the manifest has a fusion."""
        if not self.fusion:
            return torch.sigmoid(logits)
        return self.fuse(logits, self._structural.score_repeated(*pairs()))

    def score(self, reference_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) each, [0, 1] floats or uint8 -> (N,) match probabilities."""
        return self.score_repeated(reference_patches, target_patches)

    def score_repeated(self, reference_patches: torch.Tensor, target_patches: torch.Tensor,
                       repeat_reference: int = 1, repeat_target: int = 1) -> torch.Tensor:
        """:meth:`score` where each patch of one side meets k consecutive patches of the other
        (see :meth:`network_logits`); the same numbers as repeating the patches, at less cost."""
        return self._fused(self.network_logits(reference_patches, target_patches, repeat_reference, repeat_target),
                           lambda: (reference_patches, target_patches, repeat_reference, repeat_target))

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """reference (N, 1, 64, 64), candidates (N, K, 1, 64, 64) -> (N, K) probabilities."""
        n, k = candidates.shape[:2]
        return self.score_repeated(reference_patches, candidates.reshape(n * k, 1, 64, 64), k, 1).view(n, k)

    def rank_reverse(self, target_patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """target (N, 1, 64, 64), reference candidates (N, K, 1, 64, 64) -> (N, K) probabilities."""
        n, k = candidates.shape[:2]
        return self.score_repeated(candidates.reshape(n * k, 1, 64, 64), target_patches, 1, k).view(n, k)


def _to_net(patches: torch.Tensor, device: torch.device) -> torch.Tensor:
    return as_unit_float(patches).to(device).contiguous(memory_format=torch.channels_last)


def _check_repeats(a: torch.Tensor, b: torch.Tensor, ra: int, rb: int) -> tuple[int, int]:
    if ra < 1 or rb < 1 or (ra > 1 and rb > 1):
        raise ValueError(f"repeat only one side, by 1 or more; got repeat_reference={ra}, repeat_target={rb}")
    if len(a) * ra != len(b) * rb:
        raise ValueError(f"{len(a)} reference patches x {ra} do not pair with {len(b)} target patches x {rb}")
    return ra, rb


def _rep(x, k: int):
    """Each item of a tensor (or of the tensors of a dict or list) repeated k times in a row."""
    if k == 1:
        return x
    if isinstance(x, dict):
        return {key: _rep(v, k) for key, v in x.items()}
    if isinstance(x, list):
        return [_rep(v, k) for v in x]
    return x.repeat_interleave(k, 0)


class KGLMatcher(LearnedMatcher):
    keep = 3  # candidates that reach the metric head after the descriptor pre-ranking

    def _build(self, manifest: dict) -> torch.nn.Module:
        return KGLNet(width=float(manifest.get("width", 1.0)))

    def _pair_logit(self, a: torch.Tensor, b: torch.Tensor, ra: int = 1, rb: int = 1) -> torch.Tensor:
        return self.net.head(_rep(self.net.encode(a, "opt")["f_dif"], ra),
                             _rep(self.net.encode(b, "other")["f_dif"], rb))

    def rank(self, reference_patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Encode each patch once; pre-rank by descriptor distance; metric head on the best ``keep``."""
        n, k = candidates.shape[:2]
        with torch.inference_mode(), self._autocast():
            ea = self.net.encode(_to_net(reference_patches, self.device), "opt")
            eb = self.net.encode(_to_net(candidates.reshape(n * k, 1, 64, 64), self.device), "other")
            desc_b = eb["desc"].view(n, k, -1)
            dist = (desc_b - ea["desc"].unsqueeze(1)).norm(dim=-1)
            keep = min(self.keep, k)
            top = dist.topk(keep, dim=1, largest=False).indices  # (N, keep)
            fb = eb["f_dif"].view(n, k, *eb["f_dif"].shape[1:])
            sel = fb[torch.arange(n, device=fb.device)[:, None], top]  # (N, keep, C, 8, 8)
            fa = ea["f_dif"].unsqueeze(1).expand_as(sel)
            logit = self.net.head(fa.reshape(-1, *fa.shape[2:]), sel.reshape(-1, *sel.shape[2:])).float().cpu()
        top = top.cpu()
        prob = self._fused(logit, lambda: (reference_patches,
                                           candidates[torch.arange(n)[:, None], top].reshape(n * keep, 1, 64, 64),
                                           keep, 1))
        out = torch.zeros(n, k)
        out.scatter_(1, top, prob.view(n, keep))
        return out


class RRLMatcher(LearnedMatcher):
    def _build(self, manifest: dict) -> torch.nn.Module:
        return RRLNet(training_parts=False)

    def _pair_logit(self, a: torch.Tensor, b: torch.Tensor, ra: int = 1, rb: int = 1) -> torch.Tensor:
        return self.net.pair(_rep(self.net.encode(a, "opt"), ra), _rep(self.net.encode(b, "other"), rb))["main"]
