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

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import NamedTuple

import torch

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
#: the learning rates compared on target-val for every method (Adam), the same candidates for all
LR_CANDIDATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
#: the labelled examples per class and the seeds of that comparison
LR_KS: tuple[int, ...] = (1, 3, 30)
LR_SEEDS = (0, 1, 2)
#: the recorded comparison: ``record_lr_sweep()`` writes it, :data:`LR` is read from it
LR_FILE = Path(__file__).with_name("records") / "finetune_lr.json"
RECORD_LR_COMMAND = (
    "python -c 'from transferlab.bench.finetune import record_lr_sweep; record_lr_sweep()'"
)
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


def recorded_lr_sweep(path: str | Path = LR_FILE) -> dict[str, dict[str, float]]:
    """The recorded learning-rate comparison ``{method: {lr as text: mean target-val acc in %}}``.

    Raises:
        ValueError: the file is missing or holds other methods, candidates, ks or seeds than
            ``METHODS``, ``LR_CANDIDATES``, ``LR_KS`` and ``LR_SEEDS`` (run
            :func:`record_lr_sweep`).
    """
    path = Path(path)
    fix = f"re-record it with: {RECORD_LR_COMMAND}"
    if not path.exists():
        raise ValueError(f"no recorded learning-rate sweep at {path}; {fix}")
    data = json.loads(path.read_text())
    same = (
        data.get("ks") == list(LR_KS)
        and data.get("seeds") == list(LR_SEEDS)
        and data.get("steps") == STEPS
        and {m: sorted(t) for m, t in data.get("val", {}).items()}
        == {m: sorted(f"{lr:g}" for lr in LR_CANDIDATES) for m in METHODS}
    )
    if not same:
        raise ValueError(f"{path} was recorded for other settings than LR_CANDIDATES; {fix}")
    return data["val"]


def _chosen_lr() -> tuple[dict[str, float], dict[str, dict[str, float]], str | None]:
    try:
        table = recorded_lr_sweep()
    except ValueError as err:  # until the sweep is recorded; finetune_curve refuses to run
        return {m: 1e-3 for m in METHODS}, {}, str(err)
    return {m: float(max(t, key=t.get)) for m, t in table.items()}, table, None


_LR, _LR_TUNED, LR_ERROR = _chosen_lr()
#: The learning rate of each method (Adam), the candidate of ``LR_CANDIDATES`` with the best
#: mean target-val accuracy over ``LR_KS`` and ``LR_SEEDS`` in the recorded sweep.
LR: dict[str, float] = _LR
#: The recorded sweep, ``{method: {learning rate as text: mean target-val accuracy in %}}``.
LR_TUNED: dict[str, dict[str, float]] = _LR_TUNED


@one_thread()
def run(
    method: str,
    k: int | None,
    seed: int,
    steps: int = STEPS,
    l2sp_alpha: float = L2SP_ALPHA,
    lr: float | None = None,
    optimizer: str = "adam",
    measure: bool = False,
) -> RunResult:
    """One run: ``{"val": acc, "test": acc}`` on the handwritten target after training ``method``
    on ``k`` labelled images per class (``None``: all) drawn with ``seed``.  Runs on one CPU
    thread, so the result does not depend on ``OMP_NUM_THREADS``.

    Args:
        lr: the learning rate (default: the method's :data:`LR`).
        optimizer: ``"adam"``, or ``"sgd"`` with momentum 0.9 (the optimiser of Li et al. 2018).
        measure: also return ``"source"``, the accuracy on the *source* test split (fonts: what
            fine-tuning forgets), and ``"dist"``, the relative distance
            ``‖θ_S − θ_S⁰‖ / ‖θ_S⁰‖`` of the feature extractor from its pretrained weights.
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
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
    start = [p.detach().clone() for p in model.features.parameters()]
    params = [p for p in model.parameters() if p.requires_grad]
    lr = LR[method] if lr is None else lr
    sgd = None
    if optimizer == "sgd":
        sgd = lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)
    trainer = Trainer(
        model,
        cpu_amp=True,
        lr=lr,
        optimizer=sgd,
        params=params,
        loss_terms=terms,
        batch_size=BATCH,
        seed=seed,
        progress=False,
    )
    trainer.fit(train, max_steps=steps)
    out = {split: trainer.evaluate(getattr(target, split))["acc"] for split in ("val", "test")}
    if measure:
        out["source"] = trainer.evaluate(load_domain("fonts", seed=seed).test)["acc"]
        moved = sum(
            ((p.detach() - p0) ** 2).sum() for p, p0 in zip(model.features.parameters(), start)
        )
        out["dist"] = (moved / sum((p0**2).sum() for p0 in start)).sqrt().item()
    return out


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


class LRRun(NamedTuple):
    """One run of the learning-rate comparison."""

    method: str
    lr: float
    k: str
    seed: int


def _lr_job(method: str, lr: float, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed, lr=lr)


def lr_sweep(progress: bool | None = None) -> dict[str, dict[str, float]]:
    """Mean target-**val** accuracy (%) of every method at every learning rate of
    ``LR_CANDIDATES``, over ``LR_KS`` and ``LR_SEEDS``: how :data:`LR` is chosen, without the
    test split.  Cached like :func:`finetune_curve`."""
    jobs = [
        LRRun(m, float(lr), k_label(k), s)
        for s in LR_SEEDS
        for k in LR_KS
        for m in METHODS
        for lr in LR_CANDIDATES
    ]
    grid = run_grid(
        "bench-finetune-lr",
        {"steps": STEPS, "batch": BATCH, "l2sp_alpha": L2SP_ALPHA},
        jobs,
        _lr_job,
        "fine-tuning learning rates",
        progress,
        prepare=_source,
    )
    return {
        m: {
            f"{lr:g}": 100
            * mean(grid[(m, float(lr), k_label(k), s)]["val"] for s in LR_SEEDS for k in LR_KS)
            for lr in LR_CANDIDATES
        }
        for m in METHODS
    }


def record_lr_sweep(path: str | Path = LR_FILE, progress: bool | None = None) -> Path:
    """Run :func:`lr_sweep` and write it to ``path`` (JSON); :data:`LR` is read from it."""
    table = lr_sweep(progress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "what": "mean target-val accuracy (%) of each method of transferlab.bench.finetune at "
        "each learning rate of LR_CANDIDATES",
        "command": RECORD_LR_COMMAND,
        "ks": list(LR_KS),
        "seeds": list(LR_SEEDS),
        "steps": STEPS,
        "val": {m: {lr: round(v, 2) for lr, v in t.items()} for m, t in table.items()},
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


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
    if LR_ERROR:
        raise ValueError(LR_ERROR)
    jobs = [Run(m, k_label(k), s) for s in seeds for k in ks for m in methods]
    params = {"steps": STEPS, "lr": LR, "batch": BATCH, "l2sp_alpha": L2SP_ALPHA}
    grid = run_grid(
        "bench-finetune", params, jobs, _job, "fine-tune curve", progress, prepare=_source
    )
    if tuple(methods) == METHODS:  # the chapter's L2-SP study, computed (and cached) with it
        l2sp_study(seeds, progress)
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


#: the L2-SP study of the chapter: labelled examples per class, the strengths α compared (0:
#: plain fine-tuning), and SGD's learning rates (Adam's is :data:`LR`)
L2SP_K = 3
L2SP_ALPHAS = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
SGD_LRS = (3e-3, 1e-2, 3e-2)


class L2SPRun(NamedTuple):
    """One run of :func:`l2sp_study`."""

    optimizer: str
    lr: float
    alpha: float
    seed: int


def _l2sp_job(optimizer: str, lr: float, alpha: float, seed: int) -> RunResult:
    return run(
        "finetune_l2sp", L2SP_K, seed, l2sp_alpha=alpha, lr=lr, optimizer=optimizer, measure=True
    )


def l2sp_study(seeds: Sequence[int] = SEEDS, progress: bool | None = None) -> dict:
    """L2-SP under Adam and under the optimiser of Li et al. (2018), SGD with momentum 0.9, at
    ``L2SP_K`` labels per class: for every α of ``L2SP_ALPHAS``, per seed, the target-val and
    target-test accuracy, the accuracy on the *source* test split (what is forgotten) and the
    relative distance ``‖θ_S − θ_S⁰‖ / ‖θ_S⁰‖`` of the features from their pretrained values.
    SGD's learning rate is chosen on target-val among ``SGD_LRS`` at α = 0 (Adam's is
    :data:`LR`); cached like :func:`finetune_curve`.

    Returns:
        a dict with ``"lr"`` (each optimiser's learning rate), ``"runs"`` (for each optimiser
        and α, the lists ``"val"``, ``"test"``, ``"source"`` and ``"dist"`` over the seeds),
        ``"chosen"`` (each optimiser's α with the best mean target-val accuracy) and
        ``"source_before"`` (per seed, the pretrained model's accuracy on the source test
        split).
    """
    if LR_ERROR:
        raise ValueError(LR_ERROR)
    settings = {"k": L2SP_K, "steps": STEPS, "batch": BATCH}
    lr_jobs = [L2SPRun("sgd", float(lr), 0.0, s) for s in seeds for lr in SGD_LRS]
    grid = run_grid(
        "bench-finetune-l2sp",
        settings,
        lr_jobs,
        _l2sp_job,
        "SGD learning rate",
        progress,
        prepare=_source,
    )
    sgd_lr = max(
        SGD_LRS, key=lambda lr: mean(grid[("sgd", float(lr), 0.0, s)]["val"] for s in seeds)
    )
    lrs = {"adam": LR["finetune_l2sp"], "sgd": float(sgd_lr)}
    jobs = [
        L2SPRun(o, lrs[o], float(a), s) for s in seeds for o in ("adam", "sgd") for a in L2SP_ALPHAS
    ]
    grid = run_grid(
        "bench-finetune-l2sp", settings, jobs, _l2sp_job, "L2-SP study", progress, prepare=_source
    )
    runs = {
        o: {
            float(a): {
                key: [float(grid[(o, lrs[o], float(a), s)][key]) for s in seeds]
                for key in ("val", "test", "source", "dist")
            }
            for a in L2SP_ALPHAS
        }
        for o in ("adam", "sgd")
    }
    chosen = {o: max(runs[o], key=lambda a, o=o: mean(runs[o][a]["val"])) for o in runs}
    fonts = [load_domain("fonts", seed=s) for s in seeds]
    before = []
    for s, d in zip(seeds, fonts):
        model = pretrained_source(seed=s).eval()
        with torch.no_grad():
            before.append((model(d.test.x).argmax(1) == d.test.y).float().mean().item())
    return {"lr": lrs, "runs": runs, "chosen": chosen, "source_before": before}
