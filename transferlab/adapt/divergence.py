"""How far apart two domains are: the proxy A-distance (Ben-David et al. 2010)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import Tensor


def proxy_a_distance(
    source: Tensor | np.ndarray, target: Tensor | np.ndarray, seed: int = 0
) -> float:
    r"""Proxy A-distance ``2 (1 − 2ε)`` between two samples of features ``(N, D)`` and ``(M, D)``.

    ε is the test error of a linear classifier trained to tell the domains apart (on a seeded
    half of each sample, tested on the other half). 0: indistinguishable; 2: perfectly separable.
    """
    xs = source.detach().cpu().numpy() if isinstance(source, Tensor) else np.asarray(source)
    xt = target.detach().cpu().numpy() if isinstance(target, Tensor) else np.asarray(target)
    x = np.concatenate([xs.reshape(len(xs), -1), xt.reshape(len(xt), -1)])
    d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    xa, xb, da, db = train_test_split(x, d, test_size=0.5, stratify=d, random_state=seed)
    clf = LogisticRegression(max_iter=2000).fit(xa, da)
    err = 1.0 - clf.score(xb, db)
    return float(2 * (1 - 2 * min(err, 0.5)))
