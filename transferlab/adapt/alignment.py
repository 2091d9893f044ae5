"""Distribution alignment losses: MMD (Gretton et al. 2012; multi-kernel as in Long et al. 2015)
and CORAL (Sun & Saenko 2016).  Chapter "The math of transfer" derives them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"expected features (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def gaussian_kernel(x: Tensor, y: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Sum of Gaussian kernels ``Σ_σ exp(-‖x_i - y_j‖² / (2σ²))``: ``(N, D), (M, D) → (N, M)``."""
    d2 = torch.cdist(x, y).pow(2)
    return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)


def mmd2(
    x: Tensor, y: Tensor, bandwidths: Sequence[float] = (1.0,), unbiased: bool = False
) -> Tensor:
    r"""Squared maximum mean discrepancy between samples ``x`` ``(N, D)`` and ``y`` ``(M, D)``.

    .. math::
        \mathrm{MMD}^2 = \mathbb{E}\,k(x, x') + \mathbb{E}\,k(y, y') - 2\,\mathbb{E}\,k(x, y)

    The biased (V-statistic) estimator averages every pair, diagonal included, and is ≥ 0; the
    unbiased (U-statistic) estimator leaves out the ``i = j`` terms of the within-sample means,
    so its expectation is exactly MMD² (it can be slightly negative).

    Args:
        bandwidths: σ of the Gaussian kernels that are summed (one σ: a single kernel).
        unbiased: use the U-statistic (needs N, M ≥ 2).
    Returns:
        a scalar tensor.
    """
    _check_pair(x, y)
    kxx, kyy, kxy = (
        gaussian_kernel(x, x, bandwidths),
        gaussian_kernel(y, y, bandwidths),
        gaussian_kernel(x, y, bandwidths),
    )
    n, m = len(x), len(y)
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased MMD estimator needs at least 2 samples on each side")
        exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        exx, eyy = kxx.mean(), kyy.mean()
    return exx + eyy - 2 * kxy.mean()


def mmd_loss(x: Tensor, y: Tensor, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> Tensor:
    """Multi-kernel MMD² (biased) with bandwidths ``scales`` times the median pairwise distance
    of the pooled sample (a common, scale-free choice). ``(N, D), (M, D) →`` scalar."""
    _check_pair(x, y)
    with torch.no_grad():
        pooled = torch.cat([x, y])
        median = torch.cdist(pooled, pooled).median().clamp_min(1e-6)
    return mmd2(x, y, [float(median) * s for s in scales])


def coral_loss(x: Tensor, y: Tensor) -> Tensor:
    r"""Deep CORAL: ``‖C_x − C_y‖_F² / (4 d²)`` with ``C`` the ``(D, D)`` feature covariances
    (unbiased, ``1/(N−1)``) of ``x`` ``(N, D)`` and ``y`` ``(M, D)``. Returns a scalar."""
    _check_pair(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("CORAL needs at least 2 samples on each side to estimate a covariance")
    d = x.shape[1]
    cx, cy = torch.cov(x.T), torch.cov(y.T)
    return (cx - cy).pow(2).sum() / (4 * d * d)
