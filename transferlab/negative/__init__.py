"""Measuring and predicting transfer (page ``book/negative.md``).

- :func:`negative_transfer_gap`: accuracy without transfer minus accuracy with it (Wang et al.
  2019); positive means the source *hurt*.
- :func:`logme` (You et al. 2021) and :func:`leep` (Nguyen et al. 2020): transferability scores
  computed from a source model's features or predictions on the labelled target data, before
  any fine-tuning.
- :func:`transfer_gate`: keep the transferred model only if target-val says it helps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import mean, stdev

import numpy as np
import torch
from torch import Tensor


def negative_transfer_gap(
    acc_target_only: Sequence[float], acc_transfer: Sequence[float]
) -> tuple[float, float]:
    """Negative-transfer gap of Wang et al. (2019), over paired seeds.

    ``gap = acc(target only) − acc(with transfer)``: positive when transfer hurts.

    Returns:
        ``(mean gap, standard error of the mean)`` (the error is 0 for a single seed).
    """
    if len(acc_target_only) != len(acc_transfer) or not acc_transfer:
        raise ValueError("give one accuracy per seed for both models (same, non-zero length)")
    gaps = [a - b for a, b in zip(acc_target_only, acc_transfer)]
    err = stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
    return mean(gaps), err


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy()
        if isinstance(x, Tensor)
        else np.asarray(x, dtype=np.float64)
    )


def logme(
    features: Tensor | np.ndarray, labels: Tensor | np.ndarray, iterations: int = 20
) -> float:
    r"""LogME: the average, over classes, of the maximised log evidence per sample of a Bayesian
    linear regression from ``features`` ``(N, D)`` to each one-hot label column ``labels``
    ``(N,)`` (You et al. 2021).  Higher means the features fit the labels better.

    With :math:`F = U S V^\top`, :math:`\sigma_i = s_i^2`, the evidence is maximised over the
    prior precision α and the noise precision β by MacKay's fixed-point updates
    :math:`\alpha = \gamma / m^\top m`, :math:`\beta = (N - \gamma) / \lVert y - Fm\rVert^2`,
    :math:`\gamma = \sum_i \beta\sigma_i / (\alpha + \beta\sigma_i)`.
    """
    f, y = _np(features), _np(labels).astype(int)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    evidences = []
    for c in np.unique(y):
        yc = (y == c).astype(np.float64)
        x = u.T @ yc
        x2 = x**2
        res_x2 = float(yc @ yc - x2.sum())
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum() + res_x2)
            alpha, beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
            if abs(alpha / beta - t) / t < 1e-3:
                break
        t = alpha / beta
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum() + res_x2)
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * math.log(alpha)
        evidence = (
            d / 2 * math.log(alpha)
            + n / 2 * math.log(beta)
            - 0.5 * log_det
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * math.log(2 * math.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def leep(source_probs: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    r"""LEEP (Nguyen et al. 2020) of a source model on labelled target data.

    With :math:`\theta(x_i)` the source model's softmax over its own classes ``z`` (``(N, Z)``),
    the empirical joint :math:`\hat P(y, z) = \frac1N\sum_i \theta(x_i)_z [y_i = y]` gives
    :math:`\hat P(y \mid z) = \hat P(y, z) / \hat P(z)`, and

    .. math:: \mathrm{LEEP} = \frac1N \sum_i \log \sum_z \hat P(y_i \mid z)\, \theta(x_i)_z .

    It is the average log-likelihood of the "expected empirical predictor"; higher is better,
    at most 0.
    """
    p, y = _np(source_probs), _np(labels).astype(int)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(
            f"expected source probabilities (N, Z) and labels (N,), got {p.shape} and {y.shape}"
        )
    classes = int(y.max()) + 1
    joint = np.zeros((classes, p.shape[1]))
    np.add.at(joint, y, p)
    joint /= len(y)
    conditional = joint / joint.sum(0, keepdims=True).clip(1e-12)  # P(y | z)
    eep = p @ conditional.T  # (N, Y): predicted distribution over target labels
    return float(np.mean(np.log(eep[np.arange(len(y)), y].clip(1e-12))))


def transfer_gate(val_transfer: float, val_scratch: float, margin: float = 0.0) -> str:
    """``"transfer"`` if the transferred model is at least ``margin`` better on target-val than
    the model trained from scratch, else ``"scratch"`` (fall back when transfer hurts)."""
    return "transfer" if val_transfer - val_scratch >= margin else "scratch"


def source_predictions(
    model: torch.nn.Module, x: Tensor, batch: int = 1024
) -> tuple[Tensor, Tensor]:
    """The features ``(N, D)`` and softmax outputs ``(N, Z)`` of a source model on images ``x``."""
    model = model.eval()
    feats, probs = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            f = model.features(x[i : i + batch])
            feats.append(f)
            probs.append(model.head(f).softmax(1))
    return torch.cat(feats), torch.cat(probs)


__all__ = ["leep", "logme", "negative_transfer_gap", "source_predictions", "transfer_gate"]
