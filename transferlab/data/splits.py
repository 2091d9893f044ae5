"""Tensor splits and domains: the containers every loader in :mod:`transferlab.data` returns.

A *domain* (page ``book/concepts.md``: D = (X, P(X)) with a task T = (Y, P(Y|X))) is held here
as three fixed, seeded splits of in-memory tensors: ``train``, ``val`` and ``test``.  Small image
sets fit in memory, and batching tensors that already live on the device is far faster than a
DataLoader (see :mod:`transferlab.train.trainer`).  Larger images (a pretrained backbone's
224×224 inputs, a folder of photos) are read per sample instead: :class:`TransformedSplit` and
:class:`transferlab.data.folder.FolderSplit` are ``Dataset`` s the Trainer batches with a
``DataLoader``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TensorSplit:
    """One split of a domain.

    Attributes:
        x: images, ``(N, C, H, W)`` float32 in ``[0, 1]``.
        y: class labels, ``(N,)`` int64 in ``[0, num_classes)``.
        groups: extra per-sample labels, each ``(N,)`` int64 (e.g. ``"font"`` for the fonts
            domain, a second task for multi-task learning; floating point for a regression
            target of a multi-task model).
    """

    x: Tensor
    y: Tensor
    groups: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}: "
                "they must have the same first dimension"
            )
        for name, g in self.groups.items():
            if g.shape[0] != self.x.shape[0]:
                raise ValueError(
                    f"group label {name!r} has {g.shape[0]} rows, x has {self.x.shape[0]}"
                )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> TensorSplit:
        """The samples at ``index`` (a LongTensor of positions or a boolean mask)."""
        return TensorSplit(
            self.x[index], self.y[index], {k: v[index] for k, v in self.groups.items()}
        )

    def few_shot(self, k: int | None, seed: int = 0) -> TensorSplit:
        """``k`` labelled samples per class, drawn with ``seed`` (``None``: every sample).

        Raises:
            ValueError: if a class has fewer than ``k`` samples.
        """
        if k is None:
            return self
        return self.subset(few_shot_index(self.y, k, seed))

    def to(self, device: torch.device | str) -> TensorSplit:
        """A copy with every tensor on ``device``."""
        return TensorSplit(
            self.x.to(device), self.y.to(device), {k: v.to(device) for k, v in self.groups.items()}
        )


class TransformedSplit(torch.utils.data.Dataset):
    """A :class:`TensorSplit` whose images pass through ``transform`` when read (e.g. a pretrained
    backbone's resize and ImageNet normalisation, too large to hold in memory for every image).

    Items are ``(transform(x_i), y_i)``, or ``(transform(x_i), y_i, groups_i)`` when the split has
    group labels; a grey image ``(1, H, W)`` is repeated to 3 channels first when
    ``channels=3``.  Train on it with ``Trainer(..., num_workers=...)``: a ``DataLoader`` then
    applies the transform in worker processes.

    Attributes:
        split: the underlying in-memory split (images in [0, 1]).
        y: its labels ``(N,)``.
    """

    def __init__(self, split: TensorSplit, transform, channels: int | None = None):
        self.split, self.transform, self.channels = split, transform, channels

    @property
    def y(self) -> Tensor:
        return self.split.y

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        x = self.split.x[i]
        if self.channels is not None and x.shape[0] != self.channels:
            x = x.expand(self.channels, *x.shape[1:])
        x = self.transform(x)
        if self.split.groups:
            return x, self.split.y[i], {k: v[i] for k, v in self.split.groups.items()}
        return x, self.split.y[i]

    def few_shot(self, k: int | None, seed: int = 0) -> TransformedSplit:
        """:meth:`~transferlab.data.TensorSplit.few_shot` of the underlying split, with the same
        transform."""
        return TransformedSplit(self.split.few_shot(k, seed), self.transform, self.channels)


Split = TensorSplit | torch.utils.data.Dataset


@dataclass
class Domain:
    """A labelled image domain with fixed train / val / test splits.

    Select models and hyper-parameters on ``val``; report ``test`` once, at the end.
    The ``train`` split of a target domain doubles as its unlabelled data for domain adaptation
    (ignore ``train.y`` there).
    """

    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one image (as the model receives it)."""
        if isinstance(self.train, TensorSplit):
            return tuple(self.train.x.shape[1:])
        return tuple(self.train[0][0].shape)

    def __repr__(self) -> str:
        return (
            f"Domain({self.name!r}, classes={self.num_classes}, image={self.input_shape}, "
            f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"
        )


def few_shot_index(y: Tensor, k: int, seed: int) -> Tensor:
    """Positions of ``k`` samples of each class of the labels ``y`` ``(N,)``, drawn with ``seed``
    and shuffled: ``(k · classes,)`` int64.

    Raises:
        ValueError: ``k < 1``, or a class with fewer than ``k`` samples.
    """
    if k < 1:
        raise ValueError(f"k must be a positive number of samples per class, got {k}")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(y).tolist():
        pos = torch.nonzero(y == c).flatten()
        if len(pos) < k:
            raise ValueError(f"class {c} has only {len(pos)} samples, fewer than k={k}")
        picks.append(pos[torch.randperm(len(pos), generator=g)[:k]])
    index = torch.cat(picks)
    return index[torch.randperm(len(index), generator=g)]
