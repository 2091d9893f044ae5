"""transferlab.adapt: the gradient reversal layer, MMD, CORAL, MCC, CDAN, the DANN schedule and
the proxy A-distance, against hand and NumPy computations."""

import numpy as np
import pytest
import torch

from transferlab.adapt import (
    GradientReversal,
    coral_loss,
    grad_reverse,
    mmd2,
    mmd_loss,
    proxy_a_distance,
)
from transferlab.adapt.losses import CDANLoss, MCCLoss, dann_lambda, discriminator


def _np_mmd2(x, y, sigma, unbiased):
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if unbiased:
        return (
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("lambd", [0.0, 0.5, 2.0])
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward(lambd):
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -lambd * upstream)
    assert "lambd=0.3" in repr(GradientReversal(0.3))


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_matches_numpy(unbiased):
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(20, 4, generator=g, dtype=torch.float64),
        torch.randn(15, 4, generator=g, dtype=torch.float64) + 0.5,
    )
    got = mmd2(x, y, [1.5], unbiased=unbiased).item()
    assert got == pytest.approx(_np_mmd2(x.numpy(), y.numpy(), 1.5, unbiased), rel=1e-10)


def test_mmd_is_near_zero_for_one_distribution_and_large_for_shifted_ones():
    g = torch.Generator().manual_seed(1)
    same = [
        mmd_loss(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g)).item()
        for _ in range(5)
    ]
    shifted = [
        mmd_loss(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g) + 1.0).item()
        for _ in range(5)
    ]
    assert max(same) < 0.1 and min(shifted) > 0.4  # biased: about 5 kernels x 1/N above 0
    unbiased = [
        mmd2(
            torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g), [4.0], unbiased=True
        ).item()
        for _ in range(5)
    ]
    assert max(abs(u) for u in unbiased) < 0.01


def test_coral_matches_numpy_and_is_zero_for_equal_covariances():
    g = torch.Generator().manual_seed(2)
    x, y = (
        torch.randn(30, 5, generator=g, dtype=torch.float64),
        2 * torch.randn(40, 5, generator=g, dtype=torch.float64),
    )
    cx, cy = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    assert coral_loss(x, y).item() == pytest.approx(((cx - cy) ** 2).sum() / (4 * 25), rel=1e-10)
    assert coral_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        coral_loss(x, y[:, :3])


def _np_mcc(z, t):
    """Minimum class confusion written out with loops, from the formulas of Jin et al. (2020)."""
    b, c = z.shape
    e = np.exp(z / t - (z / t).max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    h = np.array([-sum(q * np.log(q + 1e-5) for q in row) for row in p])
    w = b * (1 + np.exp(-h)) / (1 + np.exp(-h)).sum()
    m = np.zeros((c, c))
    for i in range(b):
        m += w[i] * np.outer(p[i], p[i])
    m = m / m.sum(1, keepdims=True)
    return sum(m[j, k] for j in range(c) for k in range(c) if j != k) / c


def test_mcc_matches_the_formula_and_is_zero_without_confusion():
    g = torch.Generator().manual_seed(3)
    z = 3 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    loss = MCCLoss(temperature=2.5)
    assert loss(z, z).item() == pytest.approx(
        _np_mcc(z.numpy(), 2.5), rel=1e-6
    )  # computed in float32
    one_hot = 200.0 * torch.eye(5, dtype=torch.float64).repeat(3, 1)  # confident, every class used
    assert loss(None, one_hot).item() == pytest.approx(0.0, abs=1e-9)
    uniform = torch.zeros(8, 5)  # every class confused with every other
    assert loss(None, uniform).item() == pytest.approx(4 / 5, rel=1e-6)
    zz = z.clone().requires_grad_(True)
    loss(None, zz).backward()
    assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="temperature"):
        MCCLoss(temperature=0)


def test_cdan_conditions_the_discriminator_on_the_outer_product_and_weights_by_entropy():
    torch.manual_seed(0)
    loss = CDANLoss(4, num_classes=3, hidden=8, layers=1)
    seen = []
    loss.discriminator.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    fs, ft, zs, zt = torch.randn(5, 4), torch.randn(6, 4), torch.randn(5, 3), torch.randn(6, 3)
    value, extra = loss((fs, zs), (ft, zt))
    f, p = torch.cat([fs, ft]), torch.cat([zs, zt]).softmax(1)
    expected = torch.stack(
        [torch.outer(p[i], f[i]).flatten() for i in range(11)]
    )  # T = softmax(g) ⊗ h
    assert torch.allclose(seen[0], expected, atol=1e-6) and 0 <= extra["disc_acc"] <= 1
    d = loss.discriminator(expected).squeeze(1)
    y = torch.cat([torch.zeros(5), torch.ones(6)])
    assert value.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(d, y).item(), rel=1e-5
    )
    weighted = CDANLoss(4, num_classes=3, hidden=8, layers=1, entropy=True)
    weighted.load_state_dict(loss.state_dict())
    w = 1 + torch.exp((p * torch.log(p + 1e-5)).sum(1))
    w = torch.cat([w[:5] / w[:5].sum(), w[5:] / w[5:].sum()]) * 11 / 2
    ref = torch.nn.functional.binary_cross_entropy_with_logits(d, y, weight=w).item()
    assert weighted((fs, zs), (ft, zt))[0].item() == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="3 classes"):
        loss((fs, torch.randn(5, 4)), (ft, torch.randn(6, 4)))


def test_dann_lambda_and_the_discriminator_shape():
    assert dann_lambda(0.0) == 0.0 and dann_lambda(1.0, 0.3) == pytest.approx(
        0.3 * 0.99991, rel=1e-4
    )
    widths = [m.out_features for m in discriminator(128, 256, 2) if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 1]


def test_proxy_a_distance_separates_far_domains_from_near_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    assert proxy_a_distance(a, b) < 0.5 and proxy_a_distance(a, b + 3.0) > 1.5
