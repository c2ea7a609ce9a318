"""Export a training checkpoint as shipped georeg weights: fp16 state dict plus a manifest with
the training data, split, steps, validation and test FPR95, sha256 and the reproducing command."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from georeg.matchers.kgl import KGLNet
from georeg.matchers.rrl import RRLNet
from georeg.matchers.weights import export

from .benchmark import evaluate

DATA = {
    "opt-sar": "s1s2_volkov (PNG, extra_gray and GeoTIFF pairs; with build-data --align, each SAR image is first "
               "resampled onto its optical image by georeg's own affine fit, see patches.s1s2_alignment) and "
               "3mos_previews pairs flagged aligned",
    "opt-ir": "srif_multimodal Optical-Infrared and nir_vis_rs (warped by their ground truth), "
              "landsat8_oli_tirs B4/B10 (cloud-masked)",
}
SPLIT = {
    "opt-sar": "s1s2 by Sentinel-2 tile: train T11SLT, validation T11SMT, test T14RNT; 3mos by source mosaic",
    "opt-ir": "by image (hash of the pair id), 80/10/10; the Landsat scene is training only",
}


def export_checkpoint(checkpoint: Path, name: str, data_dir: Path, command: str = "", fusion: bool = True,
                      directory: Path | None = None) -> Path:
    """Write the weights and manifest; with ``fusion``, fit the structural-score fusion on the
    validation split (:mod:`training.fusion`). Test FPR95 is measured after, on the shipped matcher
    and on the network alone."""
    from georeg.matchers.learned import KGLMatcher, RRLMatcher
    from georeg.matchers.weights import _dir

    from .fusion import fit
    from .train import TrainConfig

    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    if cfg["model"] == "kgl":
        net = KGLNet(cfg["width"])
        net.load_state_dict(ck["model"])
        arch, cls = "KGL-Net", KGLMatcher
    else:
        net = RRLNet(training_parts=True)
        net.load_state_dict(ck["model"])
        net.drop_training_parts()
        arch, cls = "RRL-Net (MLPP-pruned)", RRLMatcher
    net.eval()
    info_path = data_dir / f"{cfg['pair']}_info.json"
    info = {
        "architecture": arch, "width": cfg.get("width", 1.0) if cfg["model"] == "kgl" else 1.0,
        "pair": cfg["pair"], "training_data": DATA[cfg["pair"]], "split": SPLIT[cfg["pair"]],
        "patches": json.loads(info_path.read_text()) if info_path.exists() else None,
        "steps": ck["val"]["step"] if "val" in ck else cfg["steps"], "batch": cfg["batch"],
        "val_fpr95": round(ck["val"]["fpr95_metric"], 2) if "val" in ck else None,
        "training_options": {k: cfg[k] for k in ("near_fraction", "shift_frac", "seed", "lr_features", "lr_head",
                                                  "lr_rrl") if k in cfg},
        "command": command or TrainConfig.from_dict(cfg).command(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = export(net, name, info, directory)
    man_path = _dir(directory) / f"{name}.json"

    def update(fields: dict) -> None:
        man = json.loads(man_path.read_text())
        man.update(fields)
        man_path.write_text(json.dumps(man, indent=2) + "\n")

    if fusion:
        update({"fusion": fit(cls(name, "cpu", directory=directory), data_dir, cfg["pair"])})
    m = cls(name, "cpu", directory=directory)
    test = evaluate(data_dir, cfg["pair"], "test", {"m": m})
    net_only = test.get("m (network only)", test["m"])
    update({
        "test_fpr95": round(test["m"]["fpr95"], 2),
        "test_fpr95_near_negatives": round(test["m"]["fpr95_near_negatives"], 2),
        "test_fpr95_random_negatives": round(test["m"]["fpr95_random_negatives"], 2),
        "test_fpr95_network_only": round(net_only["fpr95"], 2),
        "baseline_test_fpr95": round(test["georeg baseline"]["fpr95"], 2),
        "recommended": bool(test["m"]["fpr95"] < test["georeg baseline"]["fpr95"]),
        "test_pairs": test["_pairs"],
    })
    return path
