"""``load_domain``: one entry point for every domain of the course, offline and online."""

from __future__ import annotations

from pathlib import Path

import torch

from transferlab.cache import cached
from transferlab.data import fonts, handwritten
from transferlab.data.splits import Domain, TensorSplit

OFFLINE_DOMAINS = ("fonts", "letters", "handwritten")
#: Bump when the rendering recipe changes: cached renderings then count as stale.
RENDER_VERSION = 1


def _rendered(name: str, chars: str, seed: int, sizes: tuple[int, int, int]) -> Domain:
    params = {
        "chars": chars,
        "seed": seed,
        "sizes": list(sizes),
        "fonts": [p.name for p in fonts.font_files()],
    }

    def build() -> dict[str, torch.Tensor]:
        out = {}
        for i, (split, n) in enumerate(zip(("train", "val", "test"), sizes)):
            x, y, font = fonts.render(n, seed=seed * 1000 + i, chars=chars)
            out.update({f"{split}.x": x, f"{split}.y": y, f"{split}.font": font})
        return out

    t = cached(name, params, build, version=RENDER_VERSION)
    splits = {
        s: TensorSplit(t[f"{s}.x"], t[f"{s}.y"], {"font": t[f"{s}.font"]})
        for s in ("train", "val", "test")
    }
    return Domain(name, classes=list(chars), **splits)


def load_domain(
    name: str,
    *,
    seed: int = 0,
    sizes: tuple[int, int, int] = (10_000, 1_000, 1_000),
    root: str | Path | None = None,
    download: bool = False,
    transform=None,
) -> Domain:
    """Load a domain by name, with fixed, seeded train / val / test splits.

    Offline (no network needed): ``"fonts"``, digits 0–9 rendered from matplotlib's fonts
    (source; ``groups["font"]`` holds the font index, a second task); ``"letters"``, A–Z
    rendered the same way (a less related source); ``"handwritten"``, scikit-learn's
    ``load_digits`` (target).

    Online (torchvision, explicit opt-in): ``"mnist"``, ``"usps"``, ``"svhn"``, ``"cifar10"``;
    see :func:`transferlab.data.online.load_online`.

    Args:
        name: the domain.
        seed: rendering seed of ``fonts`` / ``letters``; the same seed gives identical tensors.
        sizes: number of rendered train / val / test images (``fonts`` / ``letters``).
        root, download: where torchvision data lives and whether to fetch it (online domains).
        transform: per-image preprocessing of an online domain (e.g. a pretrained backbone's
            ``transforms()``); its splits are then
            :class:`~transferlab.data.splits.TransformedSplit` s.  A folder of your own images:
            :func:`transferlab.data.folder.load_folder`.

    Returns:
        a :class:`~transferlab.data.splits.Domain` whose images are ``(N, C, H, W)`` in [0, 1]
        (without ``transform``).
    """
    key = name.lower()
    if key == "fonts":
        return _rendered("fonts", fonts.DIGITS, seed, sizes)
    if key == "letters":
        return _rendered("letters", fonts.LETTERS, seed, sizes)
    if key == "handwritten":
        x, y = handwritten.load()
        parts = handwritten.split_indices(y)
        splits = {s: TensorSplit(x[i], y[i]) for s, i in parts.items()}
        return Domain("handwritten", classes=list(fonts.DIGITS), **splits)
    from transferlab.data import online

    if transform is not None and key not in online.ONLINE_DOMAINS:
        raise ValueError(
            f"transform= applies to the online domains ({', '.join(online.ONLINE_DOMAINS)}); "
            f"{name!r} is an in-memory 8×8 digit domain"
        )
    if key in online.ONLINE_DOMAINS:
        return online.load_online(key, root=root, download=download, transform=transform)
    raise ValueError(
        f"unknown domain {name!r}: choose one of {', '.join(OFFLINE_DOMAINS)} (offline) "
        f"or {', '.join(online.ONLINE_DOMAINS)} (torchvision, download=True)"
    )
