"""Learning curves of page ``book/finetune.md``: target accuracy against labelled target
examples per class, for training from scratch, a linear probe, full fine-tuning and fine-tuning
with L2-SP.  ``transferlab bench finetune`` and the chapter both call :func:`finetune_curve`.

Protocol: source = ``fonts`` (a model pretrained per seed, cached); target = ``handwritten``.
Source and target share their label set (digits 0–9), so the transfer methods keep the source's
head, except ``finetune_new_head``, which re-initialises it as one must when the label sets differ;
k labelled target images per class drawn with the seed; a fixed budget of optimiser steps
(no early stopping, so the test split is never used for selection).  Every run records its
accuracy on target-val and on target-test; hyper-parameters were chosen on target-val only.
Spread: mean ± sample standard deviation over seeds (:mod:`transferlab.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from transferlab.bench.common import RunResult, k_label, one_thread, parse_k, run_grid, seed_range
from transferlab.bench.results import BenchResult, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.data import load_domain
from transferlab.finetune import L2SP, linear_probe
from transferlab.models import SmallCNN, new_head
from transferlab.train import Trainer, seed_everything

METHODS = ("scratch", "linear_probe", "finetune", "finetune_new_head", "finetune_l2sp")
KS: tuple[int | None, ...] = (1, 3, 10, 30, None)  # None: every labelled target image
#: the chapter's seeds: ten, because at k = 1 the spread over seeds is about 7 points (a run of
#: scratch training can be lucky, a fine-tuning run unlucky), and five seeds barely resolve the gain
SEEDS = seed_range(10)
#: learning rate of each method (Adam), chosen on target-val (3 seeds, k = 1, 3, 30)
LR = {
    "scratch": 1e-3,
    "linear_probe": 1e-2,
    "finetune": 1e-3,
    "finetune_new_head": 1e-3,
    "finetune_l2sp": 1e-3,
}
L2SP_ALPHA = 1e-3
#: the comparisons the chapter reports, a − b paired over seeds
VERSUS = (
    ("finetune", "scratch"),
    ("finetune", "finetune_new_head"),
    ("finetune", "linear_probe"),
    ("finetune_l2sp", "finetune"),
)
STEPS = 100
BATCH = 64


@one_thread()
def run(
    method: str, k: int | None, seed: int, steps: int = STEPS, l2sp_alpha: float = L2SP_ALPHA
) -> RunResult:
    """One run: ``{"val": acc, "test": acc}`` on the handwritten target after training ``method``
    on ``k`` labelled images per class (``None``: all) drawn with ``seed``.  Runs on one CPU
    thread, so the result does not depend on ``OMP_NUM_THREADS``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    target = load_domain("handwritten")
    train = target.train.few_shot(k, seed=seed)
    seed_everything(seed)
    terms = []
    if method == "scratch":
        model = SmallCNN(num_classes=target.num_classes)
    else:
        model = pretrained_source(seed=seed)  # a cache miss does not disturb the RNG
        if method == "finetune_new_head":
            model = new_head(model, target.num_classes)
        elif method == "linear_probe":
            linear_probe(model)
        elif method == "finetune_l2sp":
            terms.append(L2SP(model, alpha=l2sp_alpha))
    params = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(
        model,
        cpu_amp=True,
        lr=LR[method],
        params=params,
        loss_terms=terms,
        batch_size=BATCH,
        seed=seed,
        progress=False,
    )
    trainer.fit(train, max_steps=steps)
    return {split: trainer.evaluate(getattr(target, split))["acc"] for split in ("val", "test")}


def few_shot_accuracy(
    method: str,
    k: int | None,
    seed: int,
    split: str = "test",
    steps: int = STEPS,
    l2sp_alpha: float = L2SP_ALPHA,
) -> float:
    """Target accuracy on ``split`` (``"val"`` for tuning, ``"test"`` to report) of one model
    trained with ``method`` on ``k`` labelled images per class (:func:`run`)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    return run(method, k, seed, steps, l2sp_alpha)[split]


class Run(NamedTuple):
    """One run of the curve."""

    method: str
    k: str
    seed: int


class AlphaRun(NamedTuple):
    """One run of the L2-SP strength sweep."""

    alpha: float
    k: str
    seed: int


def _job(method: str, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed)


def _source(seed: int) -> None:
    pretrained_source(seed=seed)


def finetune_curve(
    ks: Sequence[int | None] = KS,
    seeds: Sequence[int] = SEEDS,
    methods: Sequence[str] = METHODS,
    progress: bool | None = None,
) -> BenchResult:
    """Run every (method, k, seed), recording target-val and target-test; cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records have ``k`` as a string
        (``"all"`` for every label), accuracies in [0, 1]; its ``versus`` holds the comparisons
        the chapter reports (fine-tuning against scratch, the new head, the linear probe, and
        L2-SP against fine-tuning); ``info`` the settings (steps, learning rates, batch, α).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    jobs = [Run(m, k_label(k), s) for s in seeds for k in ks for m in methods]
    params = {"steps": STEPS, "lr": LR, "batch": BATCH, "l2sp_alpha": L2SP_ALPHA}
    grid = run_grid(
        "bench-finetune", params, jobs, _job, "fine-tune curve", progress, prepare=_source
    )
    return BenchResult(
        "finetune",
        records_from_grid(grid, ("method", "k", "seed")),
        versus=list(VERSUS),
        info=params,
    )


def _alpha_job(alpha: float, k: str, seed: int) -> RunResult:
    return run("finetune_l2sp", parse_k(k), seed, l2sp_alpha=alpha)


def l2sp_alpha_sweep(
    alphas: Sequence[float] = (1e-3, 1e-1),
    k: int | None = 1,
    seeds: Sequence[int] = SEEDS,
    progress: bool | None = None,
) -> dict[float, list[float]]:
    """Target-**val** accuracy of ``finetune_l2sp`` for each L2-SP weight α, per seed (in
    ``seeds`` order): how the chapter checks its choice of α without the test split.  Cached
    like :func:`finetune_curve`."""
    jobs = [AlphaRun(float(a), k_label(k), s) for s in seeds for a in alphas]
    params = {"steps": STEPS, "lr": LR["finetune_l2sp"], "batch": BATCH}
    grid = run_grid(
        "bench-finetune-alpha", params, jobs, _alpha_job, "L2-SP alpha", progress, prepare=_source
    )
    return {float(a): [grid[(float(a), k_label(k), s)]["val"] for s in seeds] for a in alphas}
