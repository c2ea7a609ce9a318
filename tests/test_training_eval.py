import numpy as np
import pytest
import torch

from training.evaluate import fpr95, fpr95_distance, roc_curve
from training.losses import descriptor_distances, hnsm_bce, hynet_triplet, info_nce, mine_hardest


def test_roc_matches_a_direct_count():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y * 1.5
    fpr, tpr = roc_curve(y, s)
    thr = np.sort(np.unique(s))[::-1][10]
    assert np.isclose(tpr[11], ((s >= thr) & (y == 1)).sum() / (y == 1).sum())
    assert np.isclose(fpr[11], ((s >= thr) & (y == 0)).sum() / (y == 0).sum())


def test_fpr95_perfect_random_and_known():
    y = np.r_[np.ones(100), np.zeros(100)]
    assert fpr95(y, np.r_[np.ones(100), np.zeros(100)]) == 0.0
    # positives 0..99, negatives 50..149 shifted: TPR 0.95 at score 5 -> negatives >= 5 among 100 negatives
    s = np.r_[np.arange(100), np.arange(100) - 50.0]
    assert abs(fpr95(y, s) - 45.0) < 1.5
    assert fpr95(y, -s) > 90
    d = -s
    assert abs(fpr95_distance(y, d) - 46.0) < 1.5


def test_losses_behave():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    good = info_nce(a, a)
    bad = info_nce(a, torch.nn.functional.normalize(torch.randn(32, 16), dim=1))
    assert good < bad
    assert descriptor_distances(a, a).diagonal().max() < 0.01
    idx = mine_hardest(a, a)
    assert (idx["lr_row"] != torch.arange(32)).all()  # the diagonal is never the hardest negative
    a = torch.nn.functional.normalize(torch.randn(32, 3), dim=1)  # crowded: negatives inside the margin
    loss, hard = hynet_triplet(a, a, a * 3, a * 3)
    # the same sum written out: d_pos = 0 (sqrt(1e-6)); the hardest negative is the nearest other
    # descriptor (all four in-batch candidates coincide when left == right); h(d) = d + d^2
    d = torch.cdist(a.double(), a.double()) + torch.eye(32, dtype=torch.float64) * 9
    h_neg = d.min(1).values + d.min(1).values ** 2
    h_pos = 1e-3 + 1e-6
    assert loss.item() == pytest.approx(torch.relu(1.2 + h_pos - h_neg).sum().item(), rel=1e-3)
    assert loss.item() > 1.0  # 32 directions in 3-D: nearest neighbours well inside the 1.2 margin
    assert (hard == d.argmin(1)).all()
    # the norm term: 0.1 * sum (|raw_l| - |raw_r|)^2 = 0.1 * 32 * (3 - 1)^2
    loss_norm, _ = hynet_triplet(a, a, a * 3, a)
    assert loss_norm.item() - loss.item() == pytest.approx(12.8, rel=1e-3)
    head = lambda x, y: -(x - y).abs().sum(1)  # noqa: E731
    assert hnsm_bce(head, a, a, hard).item() > 0


def test_compare_remade_weights_flags_differences_beyond_noise(tmp_path):
    import json
    import shutil

    from georeg.matchers import available
    from georeg.matchers.weights import WEIGHTS_DIR
    from training.reproduce import compare, noise_pp

    name = sorted(available())[0]
    shutil.copy(WEIGHTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    same = compare(name, tmp_path)
    assert same["bit_identical"] and all(r["diff"] == 0 and r["within_noise"] in (True, None)
                                         for r in same["rows"].values())
    man = json.loads((tmp_path / f"{name}.json").read_text())
    n = man["test_pairs"]["negatives"]
    bound = noise_pp(man["test_fpr95"], n)
    assert 0 < bound < 5
    for shift, expected in ((0.5 * bound, True), (1.5 * bound, False)):
        man2 = {**man, "sha256": "0" * 64, "test_fpr95": man["test_fpr95"] + shift}
        (tmp_path / f"{name}.json").write_text(json.dumps(man2))
        res = compare(name, tmp_path)
        assert not res["bit_identical"]
        assert res["rows"]["test_fpr95"]["within_noise"] is expected
    assert noise_pp(50.0, 10000) == pytest.approx(1.0)
