"""A short training run of both matchers on real patches: the loop, checkpoints, resume,
validation FPR95 and export all work (a few steps, so the numbers themselves mean nothing)."""

import json

import numpy as np
import pytest
import torch

from training.data import extract, s1s2_pairs
from training.train import TrainConfig, train

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def tiny_data(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("td")
    pairs = [p for p in s1s2_pairs(shared_data) if p.name in ("003", "019", "156", "163")]
    assert len(pairs) == 4
    for split, chosen in (("train", pairs[:2]), ("val", pairs[2:3]), ("test", pairs[3:])):
        for p in chosen:
            p.opt, p.other, p.valid = p.opt[:384, :384], p.other[:384, :384], p.valid[:384, :384]
        extract(chosen, per_megapixel=600).save(d / f"opt-sar_{split}.npz")
    return d


def test_kgl_train_resume_export(tiny_data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = TrainConfig(model="kgl", pair="opt-sar", width=0.25, steps=6, batch=16, warmup_steps=3, val_every=3,
                      val_pairs=200, data_dir=str(tiny_data), out_dir=str(tmp_path / "runs"))
    best = train(cfg, log=lambda m: None)
    ck = torch.load(best, weights_only=False)
    assert ck["val"]["step"] in (3, 6) and 0 <= ck["val"]["fpr95_metric"] <= 100
    last = torch.load(tmp_path / "runs" / cfg.run_name / "last.pt", weights_only=False)
    assert last["state"]["step"] == 6 and len(last["state"]["history"]) == 2
    # resume continues from step 6 to 9
    cfg9 = TrainConfig(**{**cfg.__dict__, "steps": 9})
    logs = []
    train(cfg9, log=logs.append)
    assert any("resumed" in m and "step 6" in m for m in logs)
    # export into a temporary weights folder, then load it through the public API
    import georeg.matchers.weights as W
    from training.export import export_checkpoint

    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path / "weights")
    path = export_checkpoint(best, "kgl-opt-sar", tiny_data)
    man = json.loads(path.with_suffix(".json").read_text())
    assert man["width"] == 0.25 and man["test_fpr95"] is not None and man["sha256"] == W.sha256(path)
    from georeg.matchers import load

    m = load("kgl-opt-sar", "cpu")
    assert m.score(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)).shape == (2,)


def test_rrl_train_steps(tiny_data, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(model="rrl", pair="opt-sar", steps=2, batch=8, val_every=2, val_pairs=100,
                      data_dir=str(tiny_data), out_dir=str(tmp_path / "runs"))
    best = train(cfg, log=lambda m: None)
    assert np.isfinite(torch.load(best, weights_only=False)["val"]["fpr95_metric"])
