"""A user's own images as a :class:`~transferlab.data.splits.Domain` (page
``book/pretrained.md``).

The folder has torchvision's ``ImageFolder`` layout, one sub-folder per class::

    root/cat/0001.jpg
    root/cat/0002.png
    root/dog/0001.jpg

:func:`load_folder` splits it into fixed, seeded train / val / test parts (stratified: each class
is split in the same proportions).  A small set is decoded once into memory (a
:class:`~transferlab.data.splits.TensorSplit`, the fast path); a large one streams from disk as a
:class:`FolderSplit` that the Trainer reads through a ``DataLoader`` (``num_workers``, pinned
memory on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from transferlab.data.splits import Domain, TensorSplit, few_shot_index

#: Images larger than this in total (after ``transform``, as float32) stream from disk.
MAX_IN_MEMORY_BYTES = 2**30


class FolderSplit(torch.utils.data.Dataset):
    """Some images of an ``ImageFolder``, read from disk and transformed per item.

    Items are ``(transform(image), label)``; ``y`` holds every label ``(N,)`` without reading an
    image.
    """

    def __init__(self, files: Sequence[str], y: Tensor, transform: Callable | None):
        self.files, self.y, self.transform = list(files), y, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import default_loader

        image = default_loader(self.files[i])  # a PIL image in RGB
        return (self.transform(image) if self.transform is not None else _to_tensor(image)), self.y[
            i
        ]

    def few_shot(self, k: int | None, seed: int = 0) -> FolderSplit:
        """``k`` images per class drawn with ``seed`` (as
        :meth:`~transferlab.data.TensorSplit.few_shot`)."""
        if k is None:
            return self
        order = few_shot_index(self.y, k, seed)
        return FolderSplit([self.files[i] for i in order.tolist()], self.y[order], self.transform)


def _to_tensor(image) -> Tensor:
    from torchvision.transforms import v2

    return v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)


def split_indices(y: Tensor, fractions: tuple[float, float, float], seed: int) -> dict[str, Tensor]:
    """Stratified, seeded positions of the train / val / test parts: each class is shuffled with
    ``seed`` and cut in ``fractions`` (val and test get at least one image of a class that has
    three or more)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for c in torch.unique(y).tolist():
        pos = torch.nonzero(y == c).flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        n = len(pos)
        n_val = max(round(fractions[1] * n), 1 if n >= 3 and fractions[1] > 0 else 0)
        n_test = max(round(fractions[2] * n), 1 if n >= 3 and fractions[2] > 0 else 0)
        parts["val"].append(pos[:n_val])
        parts["test"].append(pos[n_val : n_val + n_test])
        parts["train"].append(pos[n_val + n_test :])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def load_folder(
    root: str | Path,
    transform: Callable | None = None,
    *,
    train_transform: Callable | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    in_memory: bool | None = None,
) -> Domain:
    """A folder of images in ``ImageFolder`` layout as a :class:`~transferlab.data.splits.Domain`.

    Args:
        root: the folder; each sub-folder is a class (sorted names give the labels 0, 1, ...).
        transform: applied to each image (a PIL image); e.g. a pretrained backbone's
            :meth:`~transferlab.models.backbones.Backbone.transforms`.  Without one, images
            become float tensors in [0, 1] and must all have the same size.
        train_transform: used for the train part instead of ``transform`` (augmentation); the
            data then streams from disk, so that each epoch draws new augmentations.
        fractions: train / val / test shares of each class.
        seed: seeds the split; the same seed gives the same split.
        in_memory: hold the decoded images in memory (``TensorSplit`` s) or stream them from
            disk (:class:`FolderSplit` s); default: in memory when they take at most
            :data:`MAX_IN_MEMORY_BYTES`.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no class folder with an image.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no folder {root}: expected one sub-folder of images per class (ImageFolder layout)"
        )
    try:
        folder = ImageFolder(str(root))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{root}: {exc} (expected root/<class>/<image>, as torchvision's ImageFolder)"
        ) from exc
    files = [path for path, _ in folder.samples]
    y = torch.as_tensor(folder.targets, dtype=torch.int64)
    parts = split_indices(y, fractions, seed)
    splits = {
        name: FolderSplit(
            [files[i] for i in idx.tolist()],
            y[idx],
            train_transform if name == "train" and train_transform is not None else transform,
        )
        for name, idx in parts.items()
    }
    if in_memory is None:
        x0 = splits["val"][0][0] if len(splits["val"]) else splits["train"][0][0]
        in_memory = train_transform is None and len(files) * x0.numel() * 4 <= MAX_IN_MEMORY_BYTES
    if in_memory:
        splits = {name: _decode(s) for name, s in splits.items()}
    return Domain(root.name, splits["train"], splits["val"], splits["test"], list(folder.classes))


def write_demo_folder(root: str | Path, per_class: int = 8, size: int = 48, seed: int = 0) -> Path:
    """Write a tiny ImageFolder of synthetic RGB images (PNG files) to ``root`` and return it:
    two classes, ``cold`` (bluish noise) and ``warm`` (reddish noise), ``per_class`` images of
    ``size × size`` each; for trying the folder path without data of your own."""
    from PIL import Image

    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    for c, name in enumerate(("cold", "warm")):
        (root / name).mkdir(parents=True, exist_ok=True)
        tint = torch.tensor([0.2, 0.3, 0.8] if c == 0 else [0.8, 0.3, 0.2]).view(3, 1, 1)
        for i in range(per_class):
            x = (tint + 0.25 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
            Image.fromarray((x.permute(1, 2, 0) * 255).to(torch.uint8).numpy()).save(
                root / name / f"{i:03d}.png"
            )
    return root


def _decode(split: FolderSplit) -> TensorSplit:
    if len(split) == 0:
        return TensorSplit(torch.zeros(0, 3, 1, 1), torch.zeros(0, dtype=torch.int64))
    return TensorSplit(torch.stack([split[i][0] for i in range(len(split))]), split.y.clone())
