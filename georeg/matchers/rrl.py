"""RRL-Net (Yu et al., arXiv 2403.11751), written from ../shared/docs/matchers_spec.md section 2.

Two unshared ALFE encoders (Conv-BN-LeakyReLU(0.1) blocks with max pooling and MGLA attention,
16-32-64-128-256 channels at 64-32-16-8-4 px), a FIL module per stage (1x1-conv features and
sigmoid gates, cross-gating, private |a*g' - a|) and a per-pair metric stream on the private
features. Training adds decoders (reconstruction) and auxiliary heads (MLPP); they are dropped
for inference. :meth:`RRLNet.encode` gives the cacheable per-patch part (encoder + FIL 1x1s);
:meth:`RRLNet.pair` runs the per-pair stream. Keras defaults are kept: BN eps 1e-3 and momentum
0.99 (0.01 in PyTorch terms), LeakyReLU 0.1, he-normal convs, Glorot dense layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_pair_input, eca_kernel

STAGES = (16, 32, 64, 128, 256)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class CBL(nn.Sequential):
    """Conv3x3 'same' (bias) -> BN -> LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), _bn(cout), nn.LeakyReLU(0.1))


class MGLA(nn.Module):
    """Multi-dimensional global-to-local attention over the C, H and W axes.

    For each axis a: average X over a, softmax the flattened map over the other two axes, pool X
    with those weights to a vector along a, Conv1D (1 filter, ECA-rule kernel, bias) -> sigmoid.
    Output X * g_C * g_H * g_W."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        kc, ks = eca_kernel(channels), eca_kernel(size)
        self.conv_c = nn.Conv1d(1, 1, kc, padding=kc // 2)
        self.conv_h = nn.Conv1d(1, 1, ks, padding=ks // 2)
        self.conv_w = nn.Conv1d(1, 1, ks, padding=ks // 2)

    @staticmethod
    def _gate(x: torch.Tensor, axis: int, conv: nn.Conv1d) -> torch.Tensor:
        b = x.shape[0]
        others = [d for d in (1, 2, 3) if d != axis]
        m = x.mean(dim=axis, keepdim=True)  # map over the other two axes
        w = torch.softmax(m.reshape(b, -1), dim=1).reshape(m.shape)
        v = (x * w).sum(dim=others)  # (B, |axis|)
        return torch.sigmoid(conv(v.unsqueeze(1))).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gc = self._gate(x, 1, self.conv_c)[:, :, None, None]
        gh = self._gate(x, 2, self.conv_h)[:, None, :, None]
        gw = self._gate(x, 3, self.conv_w)[:, None, None, :]
        return x * gc * gh * gw


class Encoder(nn.Module):
    """ALFE encoder: f1 = MGLA(CBL(16)) at 64 px; f_s = MGLA(MaxPool(CBL(c))) for 32..256 ch."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.att = nn.ModuleList()
        cin, s = 1, size
        for i, c in enumerate(STAGES):
            if i > 0:
                s //= 2
            self.blocks.append(CBL(cin, c))
            self.att.append(MGLA(c, s))
            cin = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, (blk, att) in enumerate(zip(self.blocks, self.att, strict=True)):
            x = blk(x)
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = att(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """Training-only reconstruction from f5: [CBL -> bilinear x2 -> MGLA] x4, Conv3x3 -> sigmoid."""

    def __init__(self, size: int = 64):
        super().__init__()
        chans = (128, 64, 32, 16)
        self.blocks = nn.ModuleList()
        self.att = nn.ModuleList()
        cin, s = STAGES[-1], size // 16
        for c in chans:
            s *= 2
            self.blocks.append(CBL(cin, c))
            self.att.append(MGLA(c, s))
            cin = c
        self.out = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, f5: torch.Tensor) -> torch.Tensor:
        x = f5
        for blk, att in zip(self.blocks, self.att, strict=True):
            x = att(F.interpolate(blk(x), scale_factor=2, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.out(x))


class FILBranch(nn.Module):
    """Per-stage 1x1 features a = LReLU(BN(conv)) and gates g = sigmoid(BN(conv)) of one modality."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c), nn.LeakyReLU(0.1))
        self.g = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(f), torch.sigmoid(self.g(f))


def _dense_head(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, 512), nn.ReLU(inplace=True), nn.Linear(512, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 1))


class RRLNet(nn.Module):
    """RRL-Net with its MLPP training parts (decoders, auxiliary heads) as optional modules."""

    def __init__(self, training_parts: bool = True):
        super().__init__()
        self.enc_opt, self.enc_other = Encoder(), Encoder()
        self.fil_opt = nn.ModuleList(FILBranch(c) for c in STAGES)
        self.fil_other = nn.ModuleList(FILBranch(c) for c in STAGES)
        self.main = nn.ModuleList()
        prev = 0
        for i, c in enumerate(STAGES):
            out = 32 if i == 0 else 2 * c
            self.main.append(nn.Sequential(CBL(prev + 2 * c, out), CBL(out, out)))
            prev = out
        self.out_head = _dense_head(512)
        self.training_parts = training_parts
        if training_parts:
            self.dec_opt, self.dec_other = Decoder(), Decoder()
            self.stage_heads = nn.ModuleDict({"3": _dense_head(128), "4": _dense_head(256)})
            self.module_blocks = nn.ModuleDict({str(s): nn.Sequential(CBL(STAGES[s - 1], STAGES[s - 1]),
                                                                     CBL(STAGES[s - 1], STAGES[s - 1]))
                                                for s in (3, 4, 5)})
            self.module_heads = nn.ModuleDict({str(s): _dense_head(STAGES[s - 1]) for s in (3, 4, 5)})
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")  # he_normal
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # glorot
                nn.init.zeros_(m.bias)

    def drop_training_parts(self) -> RRLNet:
        """MLPP pruning: remove decoders and auxiliary heads (no cost at inference)."""
        for name in ("dec_opt", "dec_other", "stage_heads", "module_blocks", "module_heads"):
            if hasattr(self, name):
                delattr(self, name)
        self.training_parts = False
        return self

    def encode(self, x: torch.Tensor, side: str) -> dict[str, list[torch.Tensor]]:
        """Cacheable per-patch part: encoder stages and FIL (a, g) per stage."""
        check_pair_input(x, f"{side} patches")
        enc, fil = (self.enc_opt, self.fil_opt) if side == "opt" else (self.enc_other, self.fil_other)
        feats = enc(x)
        ag = [b(f) for b, f in zip(fil, feats, strict=True)]
        return {"f": feats, "a": [p[0] for p in ag], "g": [p[1] for p in ag]}

    def pair(self, e1: dict, e2: dict, aux: bool = False) -> dict[str, torch.Tensor]:
        """Per-pair stream from two encodings -> {'main': logits (N,)} (+ auxiliary logits)."""
        h = None
        out: dict[str, torch.Tensor] = {}
        shared = []
        for i, block in enumerate(self.main):
            a1, g1, a2, g2 = e1["a"][i], e1["g"][i], e2["a"][i], e2["g"][i]
            s1, s2 = a1 * g2, a2 * g1
            shared.append(s1 + s2)
            p = torch.cat([(s1 - a1).abs(), (s2 - a2).abs()], 1)
            x = p if h is None else torch.cat([F.max_pool2d(h, 2), p], 1)
            h = block(x)
            if aux and i in (2, 3):
                out[f"stage{i + 1}"] = self.stage_heads[str(i + 1)](h.mean(dim=(2, 3))).squeeze(1)
        out["main"] = self.out_head(h.mean(dim=(2, 3))).squeeze(1)
        if aux:
            for s in (3, 4, 5):
                m = self.module_blocks[str(s)](shared[s - 1]).mean(dim=(2, 3))
                out[f"module{s}"] = self.module_heads[str(s)](m).squeeze(1)
        return out

    def forward(self, opt: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) twice -> (N,) match probability."""
        return torch.sigmoid(self.pair(self.encode(opt, "opt"), self.encode(other, "other"))["main"])

    def training_outputs(self, opt: torch.Tensor, other: torch.Tensor) -> dict[str, torch.Tensor]:
        """All eight MLPP outputs: main, stage4, stage3, module5, module4, module3 logits and the
        two reconstructions."""
        e1, e2 = self.encode(opt, "opt"), self.encode(other, "other")
        out = self.pair(e1, e2, aux=True)
        out["recon_opt"] = self.dec_opt(e1["f"][-1])
        out["recon_other"] = self.dec_other(e2["f"][-1])
        return out
