"""KGL-Net and RRL-Net as specified: shapes, parameter counts, gradients, cached == full forward."""

import pytest
import torch

from georeg.matchers.kgl import KGLNet, count_parameters
from georeg.matchers.layers import ECA, eca_kernel
from georeg.matchers.rrl import MGLA, RRLNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_eca_kernel_rule():
    assert [eca_kernel(c) for c in (16, 32, 64, 128, 256)] == [3, 3, 3, 5, 5]
    assert sum(p.numel() for p in ECA(256).parameters()) == 5


def test_kgl_inference_in_place_gives_the_same_numbers():
    """In inference mode CBT normalises its convolution's output in place and ECA scales in place:
    bit for bit what the autograd path gives, and the caller's input is left alone."""
    m = KGLNet(width=0.5).eval()
    for p in m.parameters():  # trained-looking affine parameters, not the 1/0/-1 initialisation
        if p.ndim == 4 and p.shape[2:] == (1, 1):
            p.data.uniform_(-0.5, 1.5)
    x = torch.rand(6, 1, 64, 64)
    kept = x.clone()
    with torch.no_grad():
        low = m.low(x, "other")
        expected = m.head(m.difference_features(low, "other"), m.difference_features(m.low(x.flip(-1), "opt"), "opt"))
        desc = m.describe(low)
    with torch.inference_mode():
        low = m.low(x, "other")
        got = m.head(m.difference_features(low, "other"), m.difference_features(m.low(x.flip(-1), "opt"), "opt"))
        assert torch.equal(got, expected)
        assert torch.equal(m.describe(low), desc)
    assert torch.equal(x, kept)
    # under autocast (CUDA's float16 in the matchers; the CPU's bfloat16 here) the convolutions
    # give half precision and the in-place path stands aside: FRN's float32 result is not rounded
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = m.difference_features(m.low(x, "opt"), "opt")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.difference_features(m.low(x, "opt"), "opt")
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_kgl_parameter_counts():
    m = KGLNet()
    assert count_parameters(m) == 6_409_713
    assert count_parameters(m.low_opt) == count_parameters(m.low_other) == 65_577
    assert count_parameters(m.dif_opt) == count_parameters(m.high_com) == 1_109_002
    assert count_parameters(m.desc) == 2_097_536
    assert count_parameters(m.metric) == 854_017


def test_kgl_shapes_and_tlu_init():
    m = KGLNet().eval()
    x = torch.rand(5, 1, 64, 64)
    e = m.encode(x, "opt", with_com=True)
    assert e["desc"].shape == (5, 128) and e["f_dif"].shape == (5, 256, 8, 8) and e["f_com"].shape == (5, 256, 8, 8)
    assert torch.allclose(e["desc"].norm(dim=1), torch.ones(5), atol=1e-4)
    assert m(x, x).shape == (5,)
    assert m.encode(x[:1], "other")["desc"].shape == (1, 128)  # batch of one works in eval
    taus = [p for n, p in m.named_parameters() if n.endswith("tau")]
    assert taus and all(torch.all(t == -1) for t in taus)


def test_kgl_gradients_flow_everywhere():
    m = KGLNet(width=0.25)
    a, b = torch.rand(4, 1, 64, 64), torch.rand(4, 1, 64, 64)
    ea, eb = m.encode(a, "opt", with_com=True), m.encode(b, "other", with_com=True)
    loss = m.head(ea["f_dif"], eb["f_dif"]).sum() + (ea["desc"] * eb["desc"]).sum() + ea["f_com"].mean() \
        + eb["f_com"].mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_kgl_cached_features_equal_full_forward():
    m = KGLNet().eval()
    a, b = torch.rand(6, 1, 64, 64), torch.rand(6, 1, 64, 64)
    with torch.no_grad():
        full = m(a, b)
        fa = m.encode(a, "opt")["f_dif"]
        fb = m.encode(b, "other")["f_dif"]
        # every reference against every target from the cache, then the diagonal
        idx_a, idx_b = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
        cached = torch.sigmoid(m.head(fa[idx_a.reshape(-1)], fb[idx_b.reshape(-1)])).view(6, 6)
    assert torch.allclose(cached.diagonal(), full, atol=1e-5)


def test_rrl_parameter_counts_and_mgla():
    m = RRLNet()
    assert abs(count_parameters(m) - 12.8e6) < 0.05e6
    m.drop_training_parts()
    assert abs(count_parameters(m) - 9.39e6) < 0.02e6
    assert 10 <= sum(p.numel() for p in MGLA(16, 64).parameters()) <= 14
    assert 10 <= sum(p.numel() for p in MGLA(256, 4).parameters()) <= 14


def test_rrl_training_outputs_and_gradients():
    m = RRLNet()
    a, b = torch.rand(3, 1, 64, 64), torch.rand(3, 1, 64, 64)
    out = m.training_outputs(a, b)
    assert set(out) == {"main", "stage3", "stage4", "module3", "module4", "module5", "recon_opt", "recon_other"}
    assert out["recon_opt"].shape == (3, 1, 64, 64)
    sum(v.float().mean() for v in out.values()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == []


def test_rrl_cached_encoders_equal_full_forward():
    m = RRLNet().drop_training_parts().eval()
    a, b = torch.rand(4, 1, 64, 64), torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        full = m(a, b)
        ea, eb = m.encode(a, "opt"), m.encode(b, "other")
        cached = torch.sigmoid(m.pair(ea, eb)["main"])
    assert torch.allclose(cached, full, atol=1e-6)
