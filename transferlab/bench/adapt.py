"""Unsupervised domain adaptation fonts → handwritten (chapter "Domain adaptation").

``transferlab bench adapt`` and the chapter both call :func:`adapt_benchmark`.

Protocol: start from the source model pretrained on fonts (cached, one per seed), then train
for a fixed budget of steps on labelled font batches plus, for each method, its loss on
unlabelled handwritten batches (``target.train.x``; its labels are never read).  Weights were
chosen on target-val (:func:`tune`); target-test is read once per run, at the end.
``source_only`` is the pretrained source model itself; ``oracle`` trains a fresh model on the
labelled target train split for the same number of steps.  A method may combine losses with ``+`` (e.g. ``"coral+self_training"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean, pstdev

import torch
from tqdm.auto import tqdm

from transferlab.adapt.losses import METHODS as LOSSES
from transferlab.adapt.losses import make_term
from transferlab.cache import cached, code_version
from transferlab.data import load_domain
from transferlab.models import SmallCNN, pretrained_source
from transferlab.train import Trainer, seed_everything, steps_to_epochs
from transferlab.train.trainer import default_progress

#: loss weights (Adam, lr 3e-3, 200 steps), chosen on target-val (seeds 0, 1) among 2–3 values per method
WEIGHTS = {"mmd": 3.0, "coral": 300.0, "dann": 0.3, "self_training": 1.0, "entropy": 0.3}
METHODS = ("source_only", "dann", "mmd", "coral", "entropy", "self_training", "mmd+entropy", "oracle")
STEPS = 200
BATCH = 64
LR = 3e-3


def _parts(method: str) -> list[str]:
    parts = method.split("+")
    unknown = [p for p in parts if p not in LOSSES]
    if unknown:
        raise ValueError(
            f"unknown adaptation method {method!r}: choose from source_only, oracle, or "
            f"{', '.join(LOSSES)} (combined with '+')"
        )
    return parts


def train_adapted(method: str, seed: int, steps: int = STEPS, weights: dict[str, float] | None = None):
    """Train one model with ``method``; returns it (on the Trainer's device)."""
    weights = {**WEIGHTS, **(weights or {})}
    target = load_domain("handwritten")
    if method == "source_only":  # the pretrained source model as it is
        return pretrained_source(seed=seed)
    if method == "oracle":
        seed_everything(seed)
        model = SmallCNN(num_classes=target.num_classes)
        Trainer(model, lr=LR, seed=seed, progress=False).fit(
            target.train, epochs=steps_to_epochs(steps, len(target.train), BATCH))
        return model
    parts = _parts(method)
    source = load_domain("fonts", seed=seed)
    model = pretrained_source(seed=seed)
    seed_everything(seed)
    terms = [make_term(p, target.train.x, model.feature_dim, weights[p]) for p in parts]
    Trainer(model, lr=LR, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False).fit(
        source.train, epochs=steps_to_epochs(steps, len(source.train), BATCH))
    return model


def run_one(method: str, seed: int, split: str = "test", steps: int = STEPS, weights: dict | None = None) -> float:
    """Target accuracy of one adapted model on ``split`` (``"val"`` for tuning)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    model = train_adapted(method, seed, steps, weights)
    return Trainer(model, progress=False).evaluate(getattr(load_domain("handwritten"), split))["acc"]


def tune(method: str, grid: Sequence[float], seeds: Sequence[int] = (0, 1, 2)) -> dict[float, float]:
    """Mean target-**val** accuracy for each weight in ``grid`` (single-loss methods)."""
    _parts(method)
    return {w: mean(run_one(method, s, "val", weights={method: w}) for s in seeds) for w in grid}


def adapt_benchmark(
    methods: Sequence[str] = METHODS, seeds: Sequence[int] = (0, 1, 2), progress: bool | None = None
) -> dict:
    """Every method over every seed, on target-test.

    Returns:
        a dict with ``seeds``, ``runs`` (``runs[method]``: accuracy per seed) and ``summary``
        (``summary[method]``: ``mean``, ``std`` and, when both baselines are among ``methods``,
        ``gap_closed`` = (mean − source_only) / (oracle − source_only)).  The result is cached
        on disk, keyed by the arguments, the settings and the package's code.
    """
    params = {"methods": list(methods), "seeds": list(seeds), "steps": STEPS, "lr": LR, "weights": WEIGHTS,
              "code": code_version()}
    show = default_progress() if progress is None else progress

    def build() -> dict[str, torch.Tensor]:
        jobs = [(m, s) for s in seeds for m in methods]
        accs = {m: [] for m in methods}
        for m, s in tqdm(jobs, desc="adaptation benchmark", disable=not show):
            accs[m].append(run_one(m, s))
        return {m: torch.tensor(v, dtype=torch.float64) for m, v in accs.items()}

    # cached on disk: the tests, the chapter and the command share one computation per code version
    runs = {m: t.tolist() for m, t in cached("bench-adapt", params, build).items()}
    summary = {m: {"mean": mean(v), "std": pstdev(v)} for m, v in runs.items()}
    if "source_only" in summary and "oracle" in summary:
        lo, hi = summary["source_only"]["mean"], summary["oracle"]["mean"]
        for m in summary:
            summary[m]["gap_closed"] = (summary[m]["mean"] - lo) / (hi - lo)
    return {"seeds": list(seeds), "steps": STEPS, "weights": dict(WEIGHTS), "runs": runs, "summary": summary}


def format_table(result: dict) -> str:
    """Method, accuracy mean ± std (%), share of the source-only → oracle gap closed."""
    lines = [f"{'method':<22}{'target test acc (%)':>22}{'gap closed':>12}", "-" * 56]
    for m, s in result["summary"].items():
        gap = f"{100 * s['gap_closed']:>10.0f} %" if "gap_closed" in s else ""
        lines.append(f"{m:<22}{100 * s['mean']:>14.1f} ± {100 * s['std']:<5.1f}{gap}")
    return "\n".join(lines)
