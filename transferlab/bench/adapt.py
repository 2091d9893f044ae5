"""Unsupervised domain adaptation fonts → handwritten (chapter "Domain adaptation").

``transferlab bench adapt`` and the chapter both call :func:`adapt_benchmark`.

Protocol: start from the source model pretrained on fonts (cached, one per seed), then train
for a fixed budget of steps on labelled font batches plus, for each method, its loss on
unlabelled handwritten batches (``target.train.x``; its labels are never read).  Every run
records its accuracy on target-val and on target-test; weights were chosen on target-val
(:func:`tune`), the best method is chosen on target-val (:func:`best_on_val`), and target-test
is only reported.  ``source_only`` is the pretrained source model itself; ``oracle`` trains a
fresh model on the labelled target train split for the same number of steps.  A method may
combine losses with ``+`` (e.g. ``"coral+self_training"``).

``val_labels_finetune`` is a *reference*, not a candidate: model selection uses the 270
labelled target-val images, so a reader will ask what plain fine-tuning on those same labels
gives.  It trains on target-val, so it has no validation accuracy and cannot be chosen on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import mean

from transferlab.adapt.losses import METHODS as LOSSES
from transferlab.adapt.losses import make_term
from transferlab.bench.common import one_thread, run_grid, seed_range
from transferlab.bench.results import BenchResult, Record, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, seed_everything

#: loss weights (Adam, lr 3e-3, two epochs of fonts = 312 steps), chosen on target-val (seeds 0, 1) among 2–3 values per method
WEIGHTS = {"mmd": 3.0, "coral": 300.0, "dann": 0.3, "self_training": 1.0, "entropy": 0.3}
BASELINES = ("source_only", "oracle")
REFERENCE = "val_labels_finetune"
METHODS = ("source_only", "dann", "mmd", "coral", "entropy", "self_training", "mmd+entropy", "oracle", REFERENCE)
SEEDS = seed_range(5)
STEPS = 300
BATCH = 64
LR = 3e-3
#: fine-tuning on the labelled val images: the recipe of chapter "Pretrain and fine-tune"
FINETUNE_LR = 1e-3


def _parts(method: str) -> list[str]:
    parts = method.split("+")
    unknown = [p for p in parts if p not in LOSSES]
    if unknown:
        raise ValueError(
            f"unknown adaptation method {method!r}: choose from source_only, oracle, {REFERENCE}, or "
            f"{', '.join(LOSSES)} (combined with '+')"
        )
    return parts


@one_thread()
def train_adapted(method: str, seed: int, steps: int = STEPS, weights: dict[str, float] | None = None):
    """Train one model with ``method``, on one CPU thread; returns it (on the Trainer's device)."""
    weights = {**WEIGHTS, **(weights or {})}
    target = load_domain("handwritten")
    if method == "source_only":  # the pretrained source model as it is
        return pretrained_source(seed=seed)
    if method in ("oracle", REFERENCE):
        seed_everything(seed)
        if method == "oracle":
            model, labelled, lr = SmallCNN(num_classes=target.num_classes), target.train, LR
        else:
            model, labelled, lr = pretrained_source(seed=seed), target.val, FINETUNE_LR
        Trainer(model, lr=lr, batch_size=BATCH, seed=seed, progress=False).fit(labelled, max_steps=steps)
        return model
    parts = _parts(method)
    source = load_domain("fonts", seed=seed)
    model = pretrained_source(seed=seed)
    seed_everything(seed)
    terms = [make_term(p, model.feature_dim, weights[p]) for p in parts]
    Trainer(model, lr=LR, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False).fit(
        source.train, unlabelled=target.train, max_steps=steps)
    return model


def run(method: str, seed: int, steps: int = STEPS, weights: dict | None = None) -> dict[str, float]:
    """``{"val": acc, "test": acc}`` of one adapted model (``val`` is NaN for the reference that
    trains on target-val)."""
    model = train_adapted(method, seed, steps, weights)
    target, ev = load_domain("handwritten"), Trainer(model, progress=False)
    val = math.nan if method == REFERENCE else ev.evaluate(target.val)["acc"]
    return {"val": val, "test": ev.evaluate(target.test)["acc"]}


def adapted_accuracy(method: str, seed: int, split: str = "test", steps: int = STEPS, weights: dict | None = None) -> float:
    """Target accuracy on ``split`` (``"val"`` for tuning) of one model trained with ``method``
    (:func:`train_adapted`)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if method not in BASELINES + (REFERENCE,):
        _parts(method)
    return run(method, seed, steps, weights)[split]


def tune(method: str, grid: Sequence[float], seeds: Sequence[int] = (0, 1, 2)) -> dict[float, float]:
    """Mean target-**val** accuracy for each weight in ``grid`` (single-loss methods)."""
    _parts(method)
    return {w: mean(adapted_accuracy(method, s, "val", weights={method: w}) for s in seeds) for w in grid}


def _prepare(seed: int) -> None:
    pretrained_source(seed=seed)
    load_domain("fonts", seed=seed)


def adapt_benchmark(
    methods: Sequence[str] = METHODS, seeds: Sequence[int] = SEEDS, progress: bool | None = None
) -> BenchResult:
    """Every method over every seed, recording target-val and target-test; cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records have ``k = None`` (no
        target label is used by the adaptation methods); ``gap`` is (source_only, oracle) when
        both baselines are among ``methods``; ``chosen`` the candidate with the best target-val
        accuracy (:func:`best_on_val`); ``versus`` every other method against source_only;
        ``info`` the settings (steps, learning rates, batch, loss weights).
    """
    for m in methods:
        if m not in BASELINES + (REFERENCE,):
            _parts(m)
    jobs = [(m, s) for s in seeds for m in methods]
    params = {"steps": STEPS, "lr": LR, "finetune_lr": FINETUNE_LR, "batch": BATCH, "weights": WEIGHTS}
    grid = run_grid("bench-adapt", params, jobs, run, "adaptation benchmark", progress, prepare=_prepare)
    records = records_from_grid(grid, ("method", "seed"), k=None)
    candidates = [m for m in methods if m not in BASELINES + (REFERENCE,)]
    return BenchResult(
        "adapt", records,
        versus=[(m, "source_only") for m in methods if m != "source_only"] if "source_only" in methods else [],
        gap=BASELINES if all(b in methods for b in BASELINES) else None,
        chosen=best_on_val(records) if candidates else None,
        splits=("val", "test"),
        info={**params, "weights": dict(WEIGHTS)},
    )


def best_on_val(records: Iterable[Record]) -> str:
    """The adaptation method with the highest mean **target-val** accuracy (never target-test);
    the baselines and the reference that trains on target-val are not candidates."""
    val: dict[str, list[float]] = {}
    for r in records:
        if r["split"] == "val" and r["method"] not in BASELINES + (REFERENCE,):
            val.setdefault(r["method"], []).append(r["acc"])
    if not val:
        raise ValueError("no adaptation method among the results to choose from")
    return max(val, key=lambda m: mean(val[m]))
