"""Training losses of KGL-Net and RRL-Net (../shared/docs/matchers_spec.md sections 1.6 and 2.4),
plus the InfoNCE warm-up that section 9 found necessary on this data."""

from __future__ import annotations

import torch
import torch.nn.functional as F

FALSE_NEGATIVE_DIST = 0.008


def descriptor_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d(x, y) = sqrt(|2 (1 - x.y)| + 1e-6) for L2-normalised (N, D) descriptors -> (N, N)."""
    return torch.sqrt((2.0 * (1.0 - x @ y.t())).abs() + 1e-6)


def mine_hardest(desc_l: torch.Tensor, desc_r: torch.Tensor) -> dict[str, torch.Tensor]:
    """HyNet-style mining on detached distances: +2 on the diagonal and on entries <= 0.008."""
    with torch.no_grad():
        ll, rr, lr = (descriptor_distances(desc_l, desc_l), descriptor_distances(desc_r, desc_r),
                      descriptor_distances(desc_l, desc_r))
        eye = torch.eye(len(desc_l), device=desc_l.device, dtype=torch.bool)
        for m in (ll, rr, lr):
            m += 2.0 * (eye | (m <= FALSE_NEGATIVE_DIST)).float()
        return {
            "ll_row": ll.argmin(1), "rr_col": rr.argmin(0),
            "lr_row": lr.argmin(1), "lr_col": lr.argmin(0),
        }


def hynet_triplet(desc_l, desc_r, raw_l, raw_r, margin: float = 1.2, alpha: float = 2.0,
                  norm_weight: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """HyNet triplet with the hardest of four in-batch negatives (summed over the batch) plus the
    descriptor-norm term 0.1 * sum (|raw_L| - |raw_R|)^2. Returns (loss, LR-row hardest index)."""
    idx = mine_hardest(desc_l, desc_r)
    n = torch.arange(len(desc_l), device=desc_l.device)
    ll = descriptor_distances(desc_l, desc_l)
    rr = descriptor_distances(desc_r, desc_r)
    lr = descriptor_distances(desc_l, desc_r)
    d_neg = torch.stack([ll[n, idx["ll_row"]], rr[idx["rr_col"], n], lr[n, idx["lr_row"]], lr[idx["lr_col"], n]],
                        1).min(1).values
    d_pos = lr[n, n]

    def h(d):
        return d + alpha / 2 * d * d

    trip = F.relu(margin + h(d_pos) - h(d_neg)).sum()
    nl = torch.sqrt((raw_l * raw_l).sum(1) + 1e-6)
    nr = torch.sqrt((raw_r * raw_r).sum(1) + 1e-6)
    return trip + norm_weight * ((nl - nr) ** 2).sum(), idx["lr_row"]


def info_nce(desc_l: torch.Tensor, desc_r: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (the warm-up loss of section 9)."""
    logits = desc_l @ desc_r.t() / temperature
    target = torch.arange(len(desc_l), device=desc_l.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def hnsm_bce(head, f_l: torch.Tensor, f_r: torch.Tensor, hard_idx: torch.Tensor,
             random_negatives: bool = True) -> torch.Tensor:
    """HNSM-M: BCE (mean) on positives (L_i, R_i) and hard negatives (L_i, R_j*(i)); with
    ``random_negatives`` also (L_i, R_perm(i)), which section 9 found the head needs early on."""
    n = len(f_l)
    pos = head(f_l, f_r)
    neg = [head(f_l, f_r[hard_idx])]
    if random_negatives:
        perm = (torch.arange(n, device=f_l.device) + torch.randint(1, n, (1,), device=f_l.device)) % n
        neg.append(head(f_l, f_r[perm]))
    logits = torch.cat([pos, *neg])
    labels = torch.cat([torch.ones_like(pos)] + [torch.zeros_like(x) for x in neg])
    return F.binary_cross_entropy_with_logits(logits, labels)


def feature_guided_mse(com_l, dif_l, com_r, dif_r) -> torch.Tensor:
    """MSE(F_com(L), F_dif(L)) + MSE(F_com(R), F_dif(R)), gradients both ways."""
    return F.mse_loss(com_l, dif_l) + F.mse_loss(com_r, dif_r)


def rrl_reconstruction(x: torch.Tensor, x_hat: torch.Tensor, pixel_weight: float = 0.1,
                       structural_weight: float = 1.0) -> torch.Tensor:
    """0.1 * pixel MSE + a weight-free structural term (1 - SSIM, 11 px window) standing in for the
    ImageNet VGG19 block5_conv4 feature MSE, which cannot be downloaded here (spec section 8)."""
    from kornia.losses import ssim_loss

    return pixel_weight * F.mse_loss(x_hat, x) + structural_weight * 2.0 * ssim_loss(x_hat, x, window_size=11)


def rrl_mlpp(outputs: dict, labels: torch.Tensor, opt: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """MLPP: BCE on main, stage3, stage4, module3-5 (weight 1 each) + the two reconstructions."""
    bce = sum(F.binary_cross_entropy_with_logits(outputs[k], labels.float())
              for k in ("main", "stage3", "stage4", "module3", "module4", "module5"))
    return bce + rrl_reconstruction(opt, outputs["recon_opt"]) + rrl_reconstruction(other, outputs["recon_other"])
