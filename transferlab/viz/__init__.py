"""Plots used by the chapters: image grids, learning curves against labelled examples,
embeddings and confusion matrices."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor


def image_grid(x: Tensor, labels: Tensor | None = None, classes: list[str] | None = None, ncols: int = 10,
               title: str | None = None, ax_size: float = 0.9):
    """Show images ``(N, C, H, W)`` in [0, 1] in a grid, each titled with its label.

    Returns the matplotlib ``Figure``.
    """
    n = len(x)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * ax_size, nrows * ax_size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = x[i].detach().cpu()
        ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray_r", vmin=0, vmax=1)
        if labels is not None:
            lab = int(labels[i])
            ax.set_title(classes[lab] if classes else str(lab), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curve(result: dict, ax=None, percent: bool = True):
    """Accuracy against labelled examples per class, mean ± sample standard deviation over seeds, one line per method.

    Args:
        result: the dict returned by :func:`transferlab.bench.finetune.finetune_curve`.
    Returns the matplotlib ``Axes``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    ks = result["ks"]
    xs = np.arange(len(ks))
    scale = 100 if percent else 1
    for method, per_k in result["summary"].items():
        mean = np.array([per_k[k]["mean"] for k in ks]) * scale
        std = np.array([per_k[k]["std"] for k in ks]) * scale
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=method.replace("_", " "))
    ax.set_xticks(xs, ks)
    ax.set_xlabel("labelled target examples per class (k)")
    ax.set_ylabel(f"target test accuracy{' (%)' if percent else ''}")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_embedding(features: dict[str, Tensor], method: str = "pca", ax=None, seed: int = 0, max_points: int = 500):
    """2-D embedding of several feature sets (e.g. source and target) in one scatter plot.

    Args:
        features: ``{label: (N, D) tensor}``; each set is subsampled to ``max_points``.
        method: ``"pca"`` (fast, linear) or ``"tsne"`` (slower, keeps neighbourhoods).
    Returns the matplotlib ``Axes``.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for name, f in features.items():
        arr = f.detach().cpu().reshape(len(f), -1).numpy()
        parts.append((name, arr[rng.permutation(len(arr))[:max_points]]))
    stacked = np.concatenate([a for _, a in parts])
    if method == "pca":
        emb = PCA(n_components=2, random_state=seed).fit_transform(stacked)
    else:
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(stacked)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    start = 0
    for name, arr in parts:
        ax.scatter(*emb[start : start + len(arr)].T, s=6, alpha=0.6, label=name)
        start += len(arr)
    ax.set_title(f"{method.upper()} of the features")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3)
    return ax


def confusion_matrix(y_true: Tensor | np.ndarray, y_pred: Tensor | np.ndarray, classes: list[str] | None = None,
                     ax=None, title: str | None = None) -> np.ndarray:
    """Draw the row-normalised confusion matrix ``M[i, j]`` = share of class ``i`` predicted as
    ``j`` (rows sum to 1), with its values printed in the cells, and return it.

    Args:
        y_true, y_pred: integer labels ``(N,)``.
        classes: class names (default ``0 … C−1``).
    Returns:
        ``M`` as a ``(C, C)`` NumPy array.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    t = np.asarray(y_true.cpu() if isinstance(y_true, Tensor) else y_true)
    p = np.asarray(y_pred.cpu() if isinstance(y_pred, Tensor) else y_pred)
    n = len(classes) if classes else int(max(t.max(), p.max())) + 1
    m = sk_confusion(t, p, labels=np.arange(n), normalize="true")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    names = classes or [str(i) for i in range(n)]
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if m[i, j] >= 0.005:
                ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return m


__all__ = ["image_grid", "plot_curve", "plot_embedding", "confusion_matrix"]
