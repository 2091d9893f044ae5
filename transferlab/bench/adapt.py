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
from collections.abc import Sequence
from statistics import mean

from transferlab.adapt.losses import METHODS as LOSSES
from transferlab.adapt.losses import make_term
from transferlab.bench.common import one_thread, records, run_grid, seed_range
from transferlab.data import load_domain
from transferlab.models import SmallCNN, pretrained_source
from transferlab.stats import summarize
from transferlab.train import Trainer, seed_everything, steps_to_epochs

#: loss weights (Adam, lr 3e-3, 200 steps), chosen on target-val (seeds 0, 1) among 2–3 values per method
WEIGHTS = {"mmd": 3.0, "coral": 300.0, "dann": 0.3, "self_training": 1.0, "entropy": 0.3}
BASELINES = ("source_only", "oracle")
REFERENCE = "val_labels_finetune"
METHODS = ("source_only", "dann", "mmd", "coral", "entropy", "self_training", "mmd+entropy", "oracle", REFERENCE)
SEEDS = seed_range(5)
STEPS = 200
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
        Trainer(model, lr=lr, batch_size=BATCH, seed=seed, progress=False).fit(
            labelled, epochs=steps_to_epochs(steps, len(labelled), BATCH))
        return model
    parts = _parts(method)
    source = load_domain("fonts", seed=seed)
    model = pretrained_source(seed=seed)
    seed_everything(seed)
    terms = [make_term(p, target.train.x, model.feature_dim, weights[p]) for p in parts]
    Trainer(model, lr=LR, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False).fit(
        source.train, epochs=steps_to_epochs(steps, len(source.train), BATCH))
    return model


def run(method: str, seed: int, steps: int = STEPS, weights: dict | None = None) -> dict[str, float]:
    """``{"val": acc, "test": acc}`` of one adapted model (``val`` is NaN for the reference that
    trains on target-val)."""
    model = train_adapted(method, seed, steps, weights)
    target, ev = load_domain("handwritten"), Trainer(model, progress=False)
    val = math.nan if method == REFERENCE else ev.evaluate(target.val)["acc"]
    return {"val": val, "test": ev.evaluate(target.test)["acc"]}


def run_one(method: str, seed: int, split: str = "test", steps: int = STEPS, weights: dict | None = None) -> float:
    """Target accuracy of one adapted model on ``split`` (``"val"`` for tuning)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if method not in BASELINES + (REFERENCE,):
        _parts(method)
    return run(method, seed, steps, weights)[split]


def tune(method: str, grid: Sequence[float], seeds: Sequence[int] = (0, 1, 2)) -> dict[float, float]:
    """Mean target-**val** accuracy for each weight in ``grid`` (single-loss methods)."""
    _parts(method)
    return {w: mean(run_one(method, s, "val", weights={method: w}) for s in seeds) for w in grid}


def _prepare(seed: int) -> None:
    pretrained_source(seed=seed)
    load_domain("fonts", seed=seed)


def adapt_benchmark(
    methods: Sequence[str] = METHODS, seeds: Sequence[int] = SEEDS, progress: bool | None = None
) -> dict:
    """Every method over every seed, recording target-val and target-test; cached on disk.

    Returns:
        a dict with ``seeds``, ``runs[method]`` (target-test accuracy per seed), ``val_runs``
        (the same on target-val), ``summary[method]`` (:func:`~transferlab.stats.summarize` of
        the test accuracies and, when both baselines are among ``methods``, ``gap_closed`` =
        (mean − source_only) / (oracle − source_only)), ``val_summary`` (mean target-val
        accuracy), ``best`` (the candidate chosen on target-val, :func:`best_on_val`) and
        ``records`` (one dict per run and split).
    """
    for m in methods:
        if m not in BASELINES + (REFERENCE,):
            _parts(m)
    jobs = [(m, s) for s in seeds for m in methods]
    params = {"steps": STEPS, "lr": LR, "finetune_lr": FINETUNE_LR, "batch": BATCH, "weights": WEIGHTS}
    grid = run_grid("bench-adapt", params, jobs, run, "adaptation benchmark", progress, prepare=_prepare)
    runs = {split: {m: [grid[(m, s)][split] for s in seeds] for m in methods} for split in ("val", "test")}
    summary = {m: summarize(v) for m, v in runs["test"].items()}
    if all(b in summary for b in BASELINES):
        lo, hi = summary["source_only"]["mean"], summary["oracle"]["mean"]
        for s in summary.values():
            s["gap_closed"] = (s["mean"] - lo) / (hi - lo)
    val_summary = {m: mean(v) for m, v in runs["val"].items() if m != REFERENCE}
    result = {"seeds": list(seeds), "steps": STEPS, "weights": dict(WEIGHTS), "runs": runs["test"],
              "val_runs": runs["val"], "summary": summary, "val_summary": val_summary,
              "records": records(grid, ("method", "seed"))}
    candidates = [m for m in methods if m not in BASELINES + (REFERENCE,)]
    result["best"] = best_on_val(result) if candidates else None
    return result


def best_on_val(result: dict) -> str:
    """The adaptation method with the highest mean **target-val** accuracy (never target-test);
    the baselines and the reference that trains on target-val are not candidates."""
    candidates = {m: v for m, v in result["val_summary"].items() if m not in BASELINES}
    if not candidates:
        raise ValueError("no adaptation method among the results to choose from")
    return max(candidates, key=candidates.get)


def format_table(result: dict) -> str:
    """Method, target-val mean, target-test mean ± sample std (%), share of the gap closed; the
    method chosen on target-val is marked with ``*``."""
    lines = [f"{'method':<22}{'val acc (%)':>12}{'test acc (%)':>18}{'gap closed':>12}", "-" * 64]
    for m, s in result["summary"].items():
        gap = f"{100 * s['gap_closed']:>10.0f} %" if "gap_closed" in s else ""
        val = result["val_summary"].get(m)
        val_text = f"{100 * val:>12.1f}" if val is not None else f"{'—':>12}"
        mark = " *" if m == result.get("best") else ""
        lines.append(f"{m + mark:<22}{val_text}{100 * s['mean']:>11.1f} ± {100 * s['std']:<5.1f}{gap}")
    n = len(result["seeds"])
    lines.append(f"(mean ± sample std over {n} seeds; * = chosen on target-val; {REFERENCE} is a reference, "
                 "not a candidate)")
    return "\n".join(lines)
