"""Multi-task models of page ``book/multitask.md``: hard parameter sharing and a hierarchy.

Both follow the course's model contract (``transferlab.models.protocol``): a feature
extractor ``features`` (the shared h) and a ``ModuleDict`` ``head`` with one head per task
(g_t), so that ``Trainer`` trains head ``t`` on the batch's group label
``t`` (``"y"``: the split's main labels) and scores each task as ``{t}_acc``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from transferlab.models.cnn import SmallCNN


class HardSharing(nn.Module):
    """Hard parameter sharing: one trunk h shared by every task, one head g_t per task.

    .. math::  f_t(x) = g_t(h(x)), \\qquad
               \\mathcal L(\\psi, \\phi_1..\\phi_T)
               = \\sum_t w_t \\, \\mathcal L_t(g_{\\phi_t}(h_\\psi(x)), y_t)

    (``w_t = 1`` by default; ``transferlab.multitask.weighting`` sets them otherwise).

    Args:
        trunk: the shared h, ``(N, C, H, W) → (N, D)``.
        heads: ``{task: g_t}``, each ``(N, D) → (N, C_t)``; the main task is named ``"y"``.

    Shapes:
        ``forward(x)``: ``(N, C, H, W)`` → ``{task: (N, C_t)}``.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("a multi-task model needs at least one head")
        self.features = trunk
        self.head = nn.ModuleDict(dict(heads))

    @property
    def tasks(self) -> list[str]:
        return list(self.head.keys())

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.features(x)
        return {task: g(z) for task, g in self.head.items()}


def hard_sharing(
    num_classes: Mapping[str, int],
    hidden: int = 128,
    width: int = 32,
    trunk_from: SmallCNN | None = None,
) -> HardSharing:
    """A ``HardSharing`` model whose trunk is ``SmallCNN``'s
    ``features`` (conv32 → conv64 → pool → fc(hidden)) and whose heads are linear.

    Args:
        num_classes: ``{task: C_t}``, e.g. ``{"y": 10, "fonts": 10}``.
        trunk_from: copy the trunk's weights from this (e.g. pretrained) model.
    """
    cnn = SmallCNN(num_classes=1, width=width, hidden=hidden)
    if trunk_from is not None:
        cnn.features.load_state_dict(trunk_from.features.state_dict())
    return HardSharing(cnn.features, {t: nn.Linear(hidden, c) for t, c in num_classes.items()})


class _Levels(nn.Module):
    """h(x) = [h_low(x), h_high(h_low(x))]: the features of both levels, concatenated."""

    def __init__(self, stem: nn.Module, upper: nn.Module):
        super().__init__()
        self.stem, self.upper = stem, upper

    def forward(self, x: Tensor) -> Tensor:
        low = self.stem(x)
        return torch.cat([low, self.upper(low)], dim=1)


class _Tap(nn.Module):
    """A head that reads one slice ``[start, stop)`` of the concatenated features."""

    def __init__(self, start: int, stop: int, head: nn.Module):
        super().__init__()
        self.start, self.stop, self.head = start, stop, head

    def forward(self, z: Tensor) -> Tensor:
        return self.head(z[:, self.start : self.stop])


class Hierarchical(nn.Module):
    """A hierarchy of tasks (Søgaard & Goldberg 2016): *lower* tasks are supervised at a lower
    layer, the *higher* tasks on top of it.

    .. math::  z_1 = h_1(x), \\quad z_2 = h_2(z_1), \\quad
               f_t(x) = g_t(z_1)\\ (t \\text{ lower}), \\quad
               f_t(x) = g_t(z_2)\\ (t \\text{ higher}),

    .. math::  \\mathcal L = \\sum_{t\\ \\mathrm{lower}} w_t \\mathcal L_t(g_t(h_1(x)), y_t)
                         + \\sum_{t\\ \\mathrm{higher}} w_t \\mathcal L_t(g_t(h_2(h_1(x))), y_t):

    the lower tasks' gradients reach only h_1, the higher tasks' reach h_2 and h_1.  ``features``
    returns ``[z_1, z_2]`` concatenated (so the Trainer's contract f = g ∘ h holds) and each head
    reads its level's slice.

    Args:
        stem: h_1, ``(N, C, H, W) → (N, D_1)``; upper: h_2, ``(N, D_1) → (N, D_2)``.
        lower, higher: ``{task: g_t}`` for each level (``(N, D_1) → (N, C_t)`` and
            ``(N, D_2) → (N, C_t)``).
        dims: ``(D_1, D_2)``.

    Shapes:
        ``features(x)``: ``(N, D_1 + D_2)``; ``forward(x)``: ``{task: (N, C_t)}``.
    """

    def __init__(
        self,
        stem: nn.Module,
        upper: nn.Module,
        lower: Mapping[str, nn.Module],
        higher: Mapping[str, nn.Module],
        dims: tuple[int, int],
    ):
        super().__init__()
        if both := set(lower) & set(higher):
            raise ValueError(
                f"task(s) {sorted(both)} are both lower and higher: give each task one level"
            )
        d1, d2 = dims
        self.features = _Levels(stem, upper)
        heads = {t: _Tap(0, d1, g) for t, g in lower.items()}
        heads.update({t: _Tap(d1, d1 + d2, g) for t, g in higher.items()})
        self.head = nn.ModuleDict(heads)
        self.lower, self.higher = list(lower), list(higher)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.features(x)
        return {task: g(z) for task, g in self.head.items()}


def hierarchical(
    lower: Mapping[str, int],
    higher: Mapping[str, int],
    hidden: int = 128,
    width: int = 32,
    trunk_from: SmallCNN | None = None,
) -> Hierarchical:
    """A ``Hierarchical`` model cut from ``SmallCNN``: the lower
    tasks read the pooled convolutional features (h_1: conv32 → conv64 → pool, D_1 = 1024), the
    higher tasks the fully connected layer on top (h_2: fc(hidden), D_2 = hidden).

    Args:
        lower, higher: ``{task: C_t}`` for each level, e.g. ``{"parity": 2}`` and ``{"y": 10}``.
        trunk_from: copy h_1 and h_2 from this (e.g. pretrained) model.
    """
    cnn = SmallCNN(num_classes=1, width=width, hidden=hidden)
    if trunk_from is not None:
        cnn.features.load_state_dict(trunk_from.features.state_dict())
    layers = list(cnn.features)
    stem, upper = nn.Sequential(*layers[:6]), nn.Sequential(*layers[6:])
    d1 = layers[6].in_features
    return Hierarchical(
        stem,
        upper,
        {t: nn.Linear(d1, c) for t, c in lower.items()},
        {t: nn.Linear(hidden, c) for t, c in higher.items()},
        (d1, hidden),
    )
