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
    pairs = [p for p in s1s2_pairs(shared_data, names={"003", "019", "156", "163"})]
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


def test_near_negatives_are_the_other_patch_moved_away():
    """With augmentation switched to geometry only (p=0), each near negative is the other-modality
    patch cut 8-14 px from the keypoint, after the same flip and rotation as its positive."""
    from training.augment import augment

    g = torch.Generator().manual_seed(3)
    crops = torch.randint(0, 256, (6, 2, 96, 96), dtype=torch.uint8, generator=g)
    a, b, bn = augment(crops, p=0.0, generator=g, near_idx=torch.tensor([1, 4]))
    assert a.shape == b.shape == (6, 1, 64, 64) and bn.shape == (2, 1, 64, 64)
    for row, i in enumerate((1, 4)):
        # find the shift that maps b[i] onto bn[row]: a pure translation of 8-14 px, bilinear
        # resampled, so the best integer-shift correlation sits at distance 7-15
        best, where = -1.0, None
        for dy in range(-16, 17):
            for dx in range(-16, 17):
                x0, y0 = max(dx, 0), max(dy, 0)
                x1, y1 = 64 + min(dx, 0), 64 + min(dy, 0)
                u = b[i, 0, y0:y1, x0:x1].flatten()
                v = bn[row, 0, y0 - dy:y1 - dy, x0 - dx:x1 - dx].flatten()
                c = float(torch.corrcoef(torch.stack([u, v]))[0, 1])
                if c > best:
                    best, where = c, (dx, dy)
        assert best > 0.5 and 7 <= np.hypot(*where) <= 15, (best, where)


@pytest.mark.slow
def test_alignment_removes_the_s1s2_residual(shared_data):
    """Aligning a Sentinel-1/2 pair with georeg's own fit leaves under half a pixel to re-find."""
    import rasterio

    from training.data import align_to_optical

    g = shared_data / "s1s2_volkov" / "geotiff"
    with rasterio.open(g / "050_S2_RGB.tif") as d:
        opt = d.read().astype(np.float32).mean(0)
    with rasterio.open(g / "050_S1_VH.tif") as d:
        sar = d.read(1).astype(np.float32)
    aligned, inside, info = align_to_optical(opt, sar, "translation")
    assert abs(info["shift_at_centre_px"][0]) > 2  # pair 050 is one of the worst (README)
    assert inside.mean() > 0.98
    again, _, info2 = align_to_optical(opt, aligned, "translation")
    assert np.hypot(*info2["shift_at_centre_px"]) < 0.5, info2


def test_training_is_deterministic(tiny_data, tmp_path):
    """The same command twice gives bit-identical weights (one thread, fixed seed), which is what
    lets a manifest's command reproduce shipped weights."""
    torch.set_num_threads(1)
    states = []
    for run in ("a", "b"):
        cfg = TrainConfig(model="kgl", pair="opt-sar", width=0.25, steps=4, batch=16, warmup_steps=2, val_every=4,
                          val_pairs=100, threads=1, data_dir=str(tiny_data), out_dir=str(tmp_path / run))
        train(cfg, log=lambda m: None)
        states.append(torch.load(tmp_path / run / cfg.run_name / "last.pt", weights_only=False)["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cosine_decay_schedule_is_a_function_of_the_step():
    from training.train import lr_scale

    const = TrainConfig(steps=100)
    assert all(lr_scale(s, const) == 1.0 for s in (0, 50, 99))
    cfg = TrainConfig(steps=100, decay_from=60, decay_floor=0.1)
    assert lr_scale(59, cfg) == 1.0 and lr_scale(60, cfg) == 1.0
    assert lr_scale(80, cfg) == pytest.approx(0.55)  # half way down the half cosine
    assert lr_scale(100, cfg) == pytest.approx(0.1)
    scales = [lr_scale(s, cfg) for s in range(60, 101)]
    assert all(a >= b for a, b in zip(scales, scales[1:]))


def test_decay_rate_after_resume_follows_the_schedule(tiny_data, tmp_path):
    """A run resumed under --decay-from takes the schedule's rates, not the ones saved in the
    optimiser state of the checkpoint it resumed from."""
    from training.train import lr_scale

    torch.set_num_threads(1)
    common = dict(model="kgl", pair="opt-sar", width=0.25, batch=16, warmup_steps=1, val_every=2, val_pairs=100,
                  threads=1, data_dir=str(tiny_data), decay_from=2, decay_floor=0.1)
    train(TrainConfig(steps=2, out_dir=str(tmp_path / "r"), **common), log=lambda m: None)
    train(TrainConfig(steps=4, out_dir=str(tmp_path / "r"), **common), log=lambda m: None)
    name = TrainConfig(**common).run_name
    ck = torch.load(tmp_path / "r" / name / "last.pt", weights_only=False)
    lrs = [g["lr"] for g in ck["optimizer"]["param_groups"]]
    cfg = TrainConfig(steps=4, **common)
    assert lr_scale(3, cfg) < 1.0
    assert lrs == pytest.approx([cfg.lr_features * lr_scale(3, cfg), cfg.lr_head * lr_scale(3, cfg)])


def test_held_out_sensor_leaves_train_val_and_test(shared_data):
    """build-data --hold-out: a 3MOS sensor's aligned pairs leave every training split and become
    their own split, so a network can be scored on a SAR sensor it never saw."""
    from training.data import threemos_pairs

    pairs = threemos_pairs(shared_data, hold_out=("ALOS", "GF3"))
    held = {p.name for p in pairs if p.split.startswith("holdout-")}
    assert held and all(n.split("_")[0] in ("ALOS", "GF3") for n in held)
    assert {p.split for p in pairs if p.name in held} == {"holdout-ALOS", "holdout-GF3"}
    assert not [p for p in pairs if p.name.split("_")[0] in ("ALOS", "GF3") and p.name not in held]
    assert {p.split for p in pairs if p.name not in held} <= {"train", "val", "test"}


def test_held_out_sensor_must_be_a_3mos_sensor(tmp_path, capsys):
    from training.__main__ import main

    assert main(["build-data", "--pair", "opt-sar", "--hold-out", "Sentinel9", "--out", str(tmp_path)]) == 2
    assert "ALOS, GF3, RCM, Redarsat, SEN" in capsys.readouterr().err
    assert main(["build-data", "--pair", "opt-ir", "--hold-out", "ALOS", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_evaluate_names_a_missing_patch_set_or_weights(tiny_data, tmp_path, capsys):
    from training.__main__ import main

    assert main(["evaluate", "--pair", "opt-sar", "--split", "holdout-ALOS", "--data-dir", str(tiny_data)]) == 2
    assert "build-data" in capsys.readouterr().err
    assert main(["evaluate", "--pair", "opt-sar", "--split", "test", "--data-dir", str(tiny_data),
                 "--exported", f"x={tmp_path / 'nothing.json'}"]) == 2
    assert "LABEL=PATH" in capsys.readouterr().err


@pytest.mark.slow
def test_texture_model_is_reproduced_by_its_training_command(shared_data, tmp_path):
    """`python -m training.modality` on the shared data fits the texture model that georeg ships
    (the same coefficients to float precision, the same held-out accuracies)."""
    from pathlib import Path

    from training.modality import main

    out = tmp_path / "modality_model.json"
    assert main(["--data", str(shared_data), "--out", str(out)]) == 0
    fitted = json.loads(out.read_text())
    shipped = json.loads((Path(__file__).resolve().parents[1] / "georeg" / "modality_model.json").read_text())
    assert fitted["terms"] == shipped["terms"] and fitted["features"] == shipped["features"]
    for key in ("mean", "std", "term_mean", "term_std", "weights", "bias"):
        assert np.allclose(fitted[key], shipped[key], rtol=1e-4, atol=1e-6), key
    for part in ("held_out_native", "held_out_coarser", "held_out_gapped"):
        assert fitted["training"][part]["confusion_rows_true_cols_pred"] == \
            shipped["training"][part]["confusion_rows_true_cols_pred"], part
