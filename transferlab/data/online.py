"""Online domains: the same :class:`~transferlab.data.splits.Domain` API over torchvision data sets.

These need the internet once (``download=True``); afterwards they load from ``root``.  Offline,
they fail at once with a message that names the offline domains (``fonts``, ``handwritten``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from transferlab.data.splits import Domain, TensorSplit, TransformedSplit

ONLINE_DOMAINS = ("mnist", "usps", "svhn", "cifar10")
VAL_FRACTION = 0.1
SPLIT_SEED = 0
_DOWNLOAD_TIMEOUT_S = 15


class DataUnavailableError(RuntimeError):
    """A data set is neither on disk nor downloadable."""


def default_root() -> Path:
    """``$TRANSFERLAB_DATA`` or ``~/.cache/transferlab/data``."""
    return Path(
        os.environ.get("TRANSFERLAB_DATA") or Path.home() / ".cache" / "transferlab" / "data"
    )


def _open(name: str, train: bool, root: Path, download: bool):
    from torchvision import datasets

    if name == "svhn":
        return datasets.SVHN(str(root), split="train" if train else "test", download=download)
    cls = {"mnist": datasets.MNIST, "usps": datasets.USPS, "cifar10": datasets.CIFAR10}[name]
    return cls(str(root), train=train, download=download)


def to_tensors(ds) -> tuple[Tensor, Tensor]:
    """A torchvision data set's raw arrays as ``(N, C, H, W)`` float32 in [0, 1] and ``(N,)``
    int64."""
    data = ds.data.numpy() if isinstance(ds.data, Tensor) else np.asarray(ds.data)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels  # SVHN
    if data.ndim == 3:  # (N, H, W) grey
        data = data[:, None]
    elif data.shape[-1] == 3:  # (N, H, W, 3) as CIFAR
        data = data.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(data)).float() / 255.0
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return x, y


def load_online(
    name: str, root: str | Path | None = None, download: bool = False, transform=None
) -> Domain:
    """Load a torchvision data set as a :class:`~transferlab.data.splits.Domain` (train split of
    it split into train / val).

    With ``transform`` (e.g. a pretrained backbone's
    :meth:`~transferlab.models.backbones.Backbone.transforms`: resize to 224 and ImageNet
    mean/std), each split is a :class:`~transferlab.data.splits.TransformedSplit` that applies it
    per image when read (grey images are repeated to 3 channels), instead of in-memory tensors in
    [0, 1].

    Raises:
        DataUnavailableError: the files are not in ``root`` and ``download`` is False, or the
            download failed (no network); the message names the offline alternatives.
    """
    root = Path(root) if root is not None else default_root()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # fail fast when offline
    try:
        train_ds, test_ds = _open(name, True, root, download), _open(name, False, root, download)
    except Exception as exc:
        how = (
            "the download failed (is this machine offline?)"
            if download
            else "it is not on disk; pass download=True to fetch it (needs internet)"
        )
        raise DataUnavailableError(
            f"cannot load {name!r} from {root}: {how}. Offline, use load_domain('fonts') (source) "
            f"and load_domain('handwritten') (target). Cause: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    x, y = to_tensors(train_ds)
    xt, yt = to_tensors(test_ds)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(VAL_FRACTION * len(y)))
    val, tr = perm[:n_val], perm[n_val:]
    classes = list(getattr(train_ds, "classes", None) or [str(c) for c in range(int(y.max()) + 1)])
    splits = [TensorSplit(x[tr], y[tr]), TensorSplit(x[val], y[val]), TensorSplit(xt, yt)]
    if transform is not None:
        splits = [TransformedSplit(s, transform, channels=3) for s in splits]
    return Domain(name, *splits, classes)
