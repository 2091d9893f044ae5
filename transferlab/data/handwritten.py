"""The offline *target* domain: scikit-learn's ``load_digits`` (1,797 real handwritten digits).

The images are the UCI optdigits 8×8 block counts (17 grey levels, 0–16); here they are scaled
to ``[0, 1]`` as ``(N, 1, 8, 8)`` float32, the same format as :mod:`transferlab.data.fonts`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

#: Fixed split seed: the target splits never change with an experiment's seed.
SPLIT_SEED = 0
VAL_FRACTION = 0.15
TEST_FRACTION = 0.30


def load() -> tuple[Tensor, Tensor]:
    """All 1,797 images ``(N, 1, 8, 8)`` in [0, 1] and labels ``(N,)`` (fresh tensors each call)."""
    x, y = _load()
    return x.clone(), y.clone()


@lru_cache(maxsize=1)
def _load() -> tuple[Tensor, Tensor]:
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(digits.target.astype(np.int64))


def split_indices(y: Tensor) -> dict[str, Tensor]:
    """Stratified, fixed train / val / test positions (about 55 / 15 / 30 %)."""
    idx = np.arange(len(y))
    rest, test = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=y.numpy(), random_state=SPLIT_SEED
    )
    train, val = train_test_split(
        rest,
        test_size=VAL_FRACTION / (1 - TEST_FRACTION),
        stratify=y.numpy()[rest],
        random_state=SPLIT_SEED,
    )
    return {
        name: torch.from_numpy(np.sort(part))
        for name, part in (("train", train), ("val", val), ("test", test))
    }
