"""Plots used by the chapters: image grids, learning curves against labelled examples, bars of
a benchmark's methods, transfer-gain curves, embeddings and confusion matrices.

The benchmark plots take a :class:`~transferlab.bench.results.BenchResult` (what the chapter's
benchmark function returns, or ``BenchResult.load`` of a ``--json`` file).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from torch import Tensor

from transferlab.bench.results import BenchResult


def image_grid(
    x: Tensor,
    labels: Tensor | None = None,
    classes: list[str] | None = None,
    ncols: int = 10,
    title: str | None = None,
    ax_size: float = 0.9,
):
    """Show images ``(N, C, H, W)`` in [0, 1] in a grid, each titled with its label.

    Returns the matplotlib ``Figure``.
    """
    n = len(x)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * ax_size, nrows * ax_size * 1.15), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = x[i].detach().cpu()
        ax.imshow(
            img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray_r", vmin=0, vmax=1
        )
        if labels is not None:
            lab = int(labels[i])
            ax.set_title(classes[lab] if classes else str(lab), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curve(result: BenchResult, ax: Axes | None = None, percent: bool = True) -> Axes:
    """Target-test accuracy against labelled examples per class, mean ± sample standard deviation
    over seeds, one line per method (page ``book/finetune.md``).

    Args:
        result: e.g. :func:`transferlab.bench.finetune.finetune_curve`'s.
    Returns the matplotlib ``Axes``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    ks = result.ks
    xs = np.arange(len(ks))
    scale = 100 if percent else 1
    summary = result.summary("test")
    for method in result.methods:
        mean = np.array([summary[(method, k)]["mean"] for k in ks]) * scale
        std = np.array([summary[(method, k)]["std"] for k in ks]) * scale
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=method.replace("_", " "))
    ax.set_xticks(xs, ks)
    ax.set_xlabel("labelled target examples per class (k)")
    ax.set_ylabel(f"target test accuracy{' (%)' if percent else ''}")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_bars(
    result: BenchResult,
    reference: str | None = None,
    reference_label: str | None = None,
    k: str | None = None,
    ylim: tuple[float, float] = (50, 100),
    ax: Axes | None = None,
) -> Axes:
    """Target-test accuracy (%) of every method as a bar, mean ± sample standard deviation over
    seeds (page ``book/adapt.md``).

    The baselines of ``result.gap`` (low, high) are grey, with a dashed line at the low one and a
    dotted line where half of the gap is closed; the method chosen on target-val
    (``result.chosen``) is orange; ``reference`` is drawn as a line, not a bar.

    Args:
        result: e.g. :func:`transferlab.bench.adapt.adapt_benchmark`'s.
        reference: a method shown as a horizontal line (e.g. one that is not a candidate).
        reference_label: its legend entry (default: ``"reference: <method>"``).
        k: the labelled examples per class of the runs to show (``None`` where k does not apply).
    Returns the matplotlib ``Axes``.
    """
    summary = result.summary("test")
    names = [m for m in result.methods if m != reference and (m, k) in summary]
    means = np.array([100 * summary[(m, k)]["mean"] for m in names])
    stds = np.array([100 * summary[(m, k)]["std"] for m in names])
    baselines = result.gap or ()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    colors = [
        "tab:gray" if m in baselines else "tab:orange" if m == result.chosen else "tab:blue"
        for m in names
    ]
    ax.bar(names, means, yerr=stds, capsize=4, color=colors)
    if result.gap is not None:
        low, high = (100 * summary[(m, k)]["mean"] for m in result.gap)
        ax.axhline(low, color="tab:gray", ls="--", lw=1)
        ax.axhline((low + high) / 2, color="tab:red", ls=":", lw=1, label="half of the gap closed")
    if reference is not None:
        ax.axhline(
            100 * summary[(reference, k)]["mean"],
            color="tab:green",
            ls="-.",
            lw=1,
            label=reference_label or f"reference: {reference.replace('_', ' ')}",
        )
    ax.set_ylim(*ylim)
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title(f"mean ± sample std over {len(result.seeds)} seeds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def plot_gains(
    result: BenchResult, pairs: Sequence[Sequence[str]] | None = None, ax: Axes | None = None
) -> Axes:
    """Transfer gain against labelled examples per class: for each pair ``(a, b)``, the effect
    a − b on target-test in points, paired over seeds, mean and 95 % confidence interval
    (page ``book/negative.md``; the negative-transfer gap is its opposite).

    Args:
        result: e.g. :func:`transferlab.bench.negative.negative_benchmark`'s.
        pairs: ``(transfer method, its scratch baseline)`` pairs (default: ``result.versus``).
    Returns the matplotlib ``Axes``.
    """
    pairs = list(result.versus if pairs is None else pairs)
    summary = result.summary("test")
    ks = [k for k in result.ks if all((m, k) in summary for pair in pairs for m in pair)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.8, 4))
    for i, (a, b) in enumerate(pairs):
        effects = [result.effect(a, b, k) for k in ks]
        gain = np.array([100 * e["mean"] for e in effects])
        err = np.array([100 * e["ci95"] for e in effects])
        x = np.arange(len(ks)) + 0.06 * (
            i - (len(pairs) - 1) / 2
        )  # side by side: the intervals stay readable
        ax.errorbar(
            x, gain, yerr=err, marker="o", capsize=3, label=f"{a} (vs {b})".replace("_", " ")
        )
    ax.axhline(0, color="black", lw=1)
    ax.set_xticks(range(len(ks)), ks)
    ax.set_xlabel("labelled target examples per class (k)")
    ax.set_ylabel("transfer gain over scratch (points)")
    ax.set_title(
        f"gain = acc(fine-tuned) − acc(scratch), mean and 95 % CI, {len(result.seeds)} seeds"
    )
    ax.legend(fontsize=8)
    return ax


def plot_embedding(
    features: dict[str, Tensor], method: str = "pca", ax=None, seed: int = 0, max_points: int = 500
):
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
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(
            stacked
        )
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


def confusion_matrix(
    y_true: Tensor | np.ndarray,
    y_pred: Tensor | np.ndarray,
    classes: list[str] | None = None,
    ax=None,
    title: str | None = None,
) -> np.ndarray:
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
                ax.text(
                    j,
                    i,
                    f"{100 * m[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > 0.5 else "black",
                )
    if title:
        ax.set_title(title)
    return m


__all__ = [
    "confusion_matrix",
    "image_grid",
    "plot_bars",
    "plot_curve",
    "plot_embedding",
    "plot_gains",
]
