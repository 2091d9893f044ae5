"""The batch contract: what every data path hands the training step.

A :class:`Batch` holds labelled images ``x``, their labels ``y``, any extra per-sample labels
``groups`` (a second task, a domain, a font) and, when the Trainer was given unlabelled data,
an unlabelled batch ``unlabelled`` of the same size.  :func:`batches` makes them from a
:class:`~transferlab.data.splits.TensorSplit`, an ``(x, y)`` pair of tensors or any ``Dataset``
whose items are ``(x, y)`` or ``(x, y, groups)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from transferlab.data.splits import TensorSplit

Data = TensorSplit | tuple[Tensor, Tensor] | torch.utils.data.Dataset

#: The missing-label value: a sample whose label (``y`` or a group label) is ``MISSING`` has no
#: label for that task, and the Trainer leaves it out of that task's loss and accuracy, so that one
#: batch can mix samples of several tasks (page ``book/multitask.md``).
MISSING = -1


def known_labels(y: Tensor) -> Tensor:
    """``(N,)`` bool: which labels are present. Class labels (int64) are missing where equal to
    ``MISSING``; regression targets (floating point, for a head with one output) where NaN."""
    return ~torch.isnan(y) if y.is_floating_point() else y != MISSING


@dataclass
class Batch:
    """One training batch.

    Attributes:
        x: images ``(B, C, H, W)``; y: labels ``(B,)`` int64.
        groups: extra per-sample labels, each ``(B,)`` (from ``TensorSplit.groups``); a label
            equal to ``MISSING`` (-1) means "no label for this task" (NaN for a floating-point
            regression target, :func:`known_labels`).
        unlabelled: unlabelled images ``(B', C, H, W)`` (e.g. target-domain images for domain
            adaptation or a distillation transfer set), or ``None``.
    """

    x: Tensor
    y: Tensor
    groups: dict[str, Tensor] = field(default_factory=dict)
    unlabelled: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: t.to(device, non_blocking=True)
        return Batch(
            move(self.x),
            move(self.y),
            {k: move(v) for k, v in self.groups.items()},
            None if self.unlabelled is None else move(self.unlabelled),
        )


def as_split(data: Data) -> TensorSplit | None:
    """In-memory data as a :class:`TensorSplit` (an ``(x, y)`` pair included), else ``None``."""
    if isinstance(data, TensorSplit):
        return data
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return TensorSplit(*data)
    return None


def num_samples(data: Data | Tensor) -> int:
    return len(data) if not isinstance(data, tuple) else len(data[0])


def sample_shape(data: Data | Tensor) -> tuple[int, ...]:
    """``(C, H, W)`` of one image of ``data`` (labelled data or a tensor of unlabelled images)."""
    if isinstance(data, Tensor):
        return tuple(data.shape[1:])
    split = as_split(data)
    if split is not None:
        return tuple(split.x.shape[1:])
    item = data[0]
    return tuple(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item).shape)


def _from_item(item) -> Batch:
    if isinstance(item, dict):
        item = (item["x"], item["y"], {k: v for k, v in item.items() if k not in ("x", "y")})
    x, y, *rest = item
    return Batch(x, y, dict(rest[0]) if rest else {})


def batches(
    data: Data,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """One epoch of :class:`Batch` es (on the data's device; the Trainer moves them).

    With ``shuffle``, the order is a permutation drawn from ``generator`` and the last partial
    batch is dropped when the data holds at least one full batch.  With ``world > 1`` processes,
    every process draws the same permutation and takes its ``rank``-th slice of each global
    batch of ``batch_size × world`` samples, so that the global batches equal those of one
    process with a batch of ``batch_size × world``.

    A ``Dataset`` that is not in memory (images read from disk) is batched by a ``DataLoader``
    with ``num_workers`` worker processes and, on CUDA, pinned memory (for fast
    ``non_blocking`` copies to the GPU).
    """
    split = as_split(data)
    if split is None:  # a general Dataset: a DataLoader batches it
        sampler = None
        if world > 1:
            sampler = torch.utils.data.DistributedSampler(
                data,
                world,
                rank,
                shuffle=shuffle,
                drop_last=True,
                seed=int(torch.randint(2**31, (), generator=generator)),
            )
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            generator=generator if sampler is None else None,
            drop_last=shuffle and len(data) >= batch_size * world,
            pin_memory=torch.cuda.is_available(),
            num_workers=num_workers,
            persistent_workers=False,
        )
        yield from (_from_item(item) for item in loader)
        return
    n, step = len(split), batch_size * world
    order = torch.randperm(n, generator=generator).to(split.x.device) if shuffle else None
    stop = n - n % step if shuffle and n >= step else n
    for start in range(0, stop, step):
        lo = start + rank * batch_size if world > 1 else start
        hi = min(lo + batch_size, stop)
        idx = order[lo:hi] if order is not None else slice(lo, hi)
        yield Batch(split.x[idx], split.y[idx], {k: v[idx] for k, v in split.groups.items()})


def num_batches(data: Data, batch_size: int, world: int = 1) -> int:
    """Optimiser steps in one shuffled epoch of :func:`batches`."""
    n, step = num_samples(data), batch_size * world
    return n // step if n >= step else 1


class UnlabelledStream:
    """Endless batches of unlabelled images: shuffled passes over ``x`` drawn from a generator of
    its own, so that adding unlabelled data never changes the order of the labelled batches.

    With ``world > 1`` processes (``torchrun``), every process draws the same permutations and
    takes its ``rank``-th slice of each global batch of ``size × world`` images, as
    :func:`batches` does for the labelled data: the processes see different images, and together
    the global batch of one process with a batch of ``size × world``.

    Args:
        x: unlabelled images ``(M, C, H, W)`` (a ``TensorSplit``'s labels are ignored).
        seed: seeds the stream's generator (the same on every process).
        rank, world: this process's rank and the number of processes.
    """

    def __init__(self, x: Tensor | TensorSplit, seed: int, rank: int = 0, world: int = 1):
        self.x = x.x if isinstance(x, TensorSplit) else x
        if len(self.x) == 0:
            raise ValueError("the unlabelled data is empty (0 samples)")
        if not 0 <= rank < world:
            raise ValueError(f"rank must lie in [0, world), got rank={rank}, world={world}")
        if len(self.x) < world:
            raise ValueError(
                f"{len(self.x)} unlabelled image(s) cannot be shared by {world} processes: "
                f"pass at least one per process"
            )
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)
        self._order: Tensor = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def to(self, device: torch.device) -> UnlabelledStream:
        self.x = self.x.to(device, non_blocking=True)
        return self

    def next(self, size: int) -> Tensor:
        """This process's next ``size`` images (the global batch of ``size × world`` is capped at
        the number of images, and this process's share of it with it)."""
        total = min(size * self.world, len(self.x))
        size = total // self.world
        if self._pos + total > len(self._order):
            self._order, self._pos = torch.randperm(len(self.x), generator=self.generator), 0
        lo = self._pos + self.rank * size
        idx = self._order[lo : lo + size].to(self.x.device)
        self._pos += total
        return self.x[idx]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order, self._pos = state["order"], int(state["pos"])
