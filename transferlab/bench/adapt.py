"""Unsupervised domain adaptation fonts → handwritten (page ``book/adapt.md``).

``transferlab bench adapt`` and the chapter both call :func:`adapt_benchmark`.

Protocol: start from the source model pretrained on fonts (cached, one per seed), then train
for the steps of each method's :class:`Recipe` on labelled font batches plus, at every step,
the method's loss on an unlabelled handwritten batch of the same size (``target.train``; its
labels are never read).  Every run records its accuracy on target-val and on target-test; each
recipe (weight, learning rate, optimiser, λ_max, step budget) was chosen on target-val
(:func:`tune`, candidates in :data:`TUNED`), the best method is chosen on target-val
(:func:`best_on_val`), and target-test is only reported.  A method may combine losses with
``+`` (e.g. ``"mmd+entropy"``).

Baselines: ``source_only`` is the pretrained source model itself; ``oracle`` trains a fresh
model on the labelled target train split for ``STEPS`` steps.  ``source_continued`` is a
control: the source model trained on fonts alone for DANN's budget, so that a gain of a long
recipe is not mistaken for adaptation.  ``val_labels_finetune`` is a *reference*, not a
candidate: model selection uses the 270 labelled target-val images, so a reader will ask what
plain fine-tuning on those same labels gives.  It trains on target-val, so it has no validation
accuracy and cannot be chosen on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import mean
from typing import NamedTuple

import torch
from torch.nn.utils import vector_to_parameters

from transferlab.adapt.losses import make_term
from transferlab.bench.common import one_thread, run_grid, seed_range
from transferlab.bench.finetune import LR as FINETUNE_LRS
from transferlab.bench.results import BenchResult, Record, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import AnnealedLR, StepLog, Trainer, seed_everything


@dataclass
class Recipe:
    """How one adaptation method trains (every field chosen on target-val, see :data:`TUNED`).

    Attributes:
        loss: the loss of :mod:`transferlab.adapt.losses` (``"dann"``, ``"mmd"``, ...); ``""``
            for none (the control ``source_continued``).
        weight: its weight beside the source cross-entropy.
        steps: optimiser steps (one labelled source batch + one unlabelled target batch each).
        lr: learning rate (Adam; or the initial ``μ_0`` of SGD).
        optimizer: ``"adam"``, or ``"sgd"``: momentum 0.9 with DANN's per-step annealing
            ``μ_0 / (1 + 10 p)^0.75`` (:class:`~transferlab.train.schedules.AnnealedLR`).
        betas: Adam's ``(β1, β2)``.  β1 is the momentum of the averaged gradient; in an
            adversarial game a high β1 keeps pushing the features in the direction that fooled an
            earlier discriminator, so GANs train with β1 = 0.5 (Radford et al. 2016).
        options: keyword arguments of the loss (e.g. ``{"max_lambda": 0.3}``).
    """

    loss: str
    weight: float = 1.0
    steps: int = 300
    lr: float = 3e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(
                "betas must be Adam's two coefficients (β1, β2), each in [0, 1), "
                "e.g. (0.5, 0.999); "
                f"got {self.betas!r}"
            )
        self.betas = (float(betas[0]), float(betas[1]))  # JSON overrides give a list


#: The step budget of every adaptation method and of the control ``source_continued``.
BUDGET = 1000
#: The recipes before tuning, each adaptation method at :data:`BUDGET` steps with Adam at
#: ``LR``; the candidates of :data:`SWEEP` change the fields they name.
BASE: dict[str, Recipe] = {
    "dann": Recipe("dann", steps=BUDGET),
    "cdan": Recipe("cdan", steps=BUDGET),
    "mcc": Recipe("mcc", steps=BUDGET),
    "mmd": Recipe("mmd", steps=BUDGET),
    "coral": Recipe("coral", steps=BUDGET),
    "entropy": Recipe("entropy", steps=BUDGET),
    "self_training": Recipe("self_training", steps=BUDGET),
}
#: The candidates compared on target-val (seeds ``SWEEP_SEEDS``), the same number for every
#: tuned method, each a change of its :data:`BASE` recipe that names every field the method's
#: candidates vary (so a candidate means the same whatever recipe it is applied to).  The
#: adversarial methods vary λ_max and Adam's β1 (a GAN-style β1 = 0.5, Radford et al. 2016); the
#: others the weight of their loss, over a factor of about 30 around the value their loss's scale
#: suggests (CORAL's 1/(4d²) asks for large weights).
SWEEP: dict[str, list[dict]] = {
    "dann": [
        {"betas": [0.9, 0.999], "options": {"max_lambda": 1.0}},
        {"betas": [0.5, 0.999], "options": {"max_lambda": 0.1}},
        {"betas": [0.5, 0.999], "options": {"max_lambda": 0.3}},
        {"betas": [0.5, 0.999], "options": {"max_lambda": 1.0}},
    ],
    "cdan": [
        {"betas": [0.9, 0.999], "options": {"max_lambda": 0.1}},
        {"betas": [0.9, 0.999], "options": {"max_lambda": 0.3}},
        {"betas": [0.9, 0.999], "options": {"max_lambda": 1.0}},
        {"betas": [0.5, 0.999], "options": {"max_lambda": 1.0}},
    ],
    "mcc": [{"weight": w} for w in (0.3, 1.0, 3.0, 10.0)],
    "mmd": [{"weight": w} for w in (0.3, 1.0, 3.0, 10.0)],
    "coral": [{"weight": w} for w in (30.0, 100.0, 300.0, 1000.0)],
    "entropy": [{"weight": w} for w in (0.03, 0.1, 0.3, 1.0)],
    "self_training": [{"weight": w} for w in (0.3, 1.0, 3.0, 10.0)],
}
SWEEP_SEEDS = (0, 1)
#: The recorded sweep: ``record_sweep()`` writes it, :data:`RECIPES` are read from it.
SWEEP_FILE = Path(__file__).with_name("records") / "adapt_sweep.json"
RECORD_COMMAND = "python -c 'from transferlab.bench.adapt import record_sweep; record_sweep()'"


def _key(candidate: dict) -> str:
    return json.dumps(candidate, sort_keys=True)


def recorded_sweep(path: str | Path = SWEEP_FILE) -> dict[str, dict[str, float]]:
    """The recorded sweep ``{method: {candidate as JSON: mean target-val accuracy in %}}``.

    Raises:
        ValueError: the file is missing or was recorded for other candidates, seeds or budget
            than :data:`SWEEP`, ``SWEEP_SEEDS`` and :data:`BASE` (run :func:`record_sweep`).
    """
    path = Path(path)
    fix = f"re-record it with: {RECORD_COMMAND}"
    if not path.exists():
        raise ValueError(f"no recorded adaptation sweep at {path}; {fix}")
    data = json.loads(path.read_text())
    expected = {m: sorted(_key(c) for c in cs) for m, cs in SWEEP.items()}
    found = {m: sorted(table) for m, table in data.get("val", {}).items()}
    base = {m: asdict(r) for m, r in BASE.items()}
    same_base = data.get("base") == json.loads(json.dumps(base))
    if found != expected or data.get("seeds") != list(SWEEP_SEEDS) or not same_base:
        raise ValueError(
            f"{path} was recorded for other candidates, seeds or base recipes than SWEEP; {fix}"
        )
    return data["val"]


def sweep(progress: bool | None = None) -> dict[str, dict[str, float]]:
    """Run every candidate of :data:`SWEEP` on seeds ``SWEEP_SEEDS`` with :func:`tune`
    (target-val only; cached like the benchmark)."""
    return {m: tune(m, cs, SWEEP_SEEDS, progress) for m, cs in SWEEP.items()}


def record_sweep(path: str | Path = SWEEP_FILE, progress: bool | None = None) -> Path:
    """Run :func:`sweep` and write it to ``path`` (JSON): the seeds, the base recipes and each
    candidate's mean target-val accuracy; :data:`RECIPES` are read from this file."""
    table = sweep(progress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "what": "mean target-val accuracy (%) of each candidate of transferlab.bench.adapt.SWEEP",
        "command": RECORD_COMMAND,
        "seeds": list(SWEEP_SEEDS),
        "base": {m: asdict(r) for m, r in BASE.items()},
        "val": {m: {k: round(v, 2) for k, v in t.items()} for m, t in table.items()},
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def _tuned_recipes() -> tuple[dict[str, Recipe], dict[str, dict[str, float]], str | None]:
    try:
        table = recorded_sweep()
    except ValueError as err:  # recipes untuned until the sweep is recorded; the benchmark refuses
        return dict(BASE), {}, str(err)
    chosen = {m: replace(BASE[m], **json.loads(max(t, key=t.get))) for m, t in table.items()}
    return chosen, table, None


_TUNED_RECIPES, _TUNED, SWEEP_ERROR = _tuned_recipes()
#: The recorded sweep, ``{method: {candidate as JSON: mean target-val accuracy in %}}``; the best
#: candidate of each method is its recipe in :data:`RECIPES`.
TUNED: dict[str, dict[str, float]] = _TUNED
#: The recipes of the benchmark.  ``dann_paper`` is the published recipe (Ganin et al. 2016: SGD
#: with momentum, annealed learning rate, λ_max = 1, a 2-layer discriminator), untuned, with the
#: budget of the others; each other method's recipe is its candidate of :data:`SWEEP` with the
#: best mean target-val accuracy in the recorded sweep (:data:`TUNED`).
RECIPES: dict[str, Recipe] = {
    "dann_paper": Recipe(
        "dann", 1.0, steps=BUDGET, lr=0.01, optimizer="sgd", options={"max_lambda": 1.0}
    ),
    **_TUNED_RECIPES,
    # a control, not a method: the source model trained for the same budget on fonts alone
    "source_continued": Recipe("", steps=BUDGET),
}
BASELINES = ("source_only", "oracle")
REFERENCE = "val_labels_finetune"
#: runs that answer a question about the others and are never candidates
CONTROLS = ("source_continued",)
METHODS = (
    "source_only",
    "source_continued",
    "dann_paper",
    "dann",
    "cdan",
    "mcc",
    "mmd",
    "coral",
    "entropy",
    "self_training",
    "oracle",
    REFERENCE,
)
NOT_CANDIDATES = BASELINES + CONTROLS + (REFERENCE,)
SEEDS = seed_range(3)
#: the budget of the baselines and of the reference
STEPS = 300
BATCH = 64
LR = 3e-3
#: fine-tuning on the labelled val images: the recipe of page ``book/finetune.md``
FINETUNE_LR = FINETUNE_LRS["finetune"]
#: the losses whose discriminator accuracy is recorded at every step
ADVERSARIAL = ("dann", "cdan")


def _parts(method: str) -> list[str]:
    parts = method.split("+")
    unknown = [p for p in parts if p not in RECIPES]
    if unknown:
        raise ValueError(
            f"unknown adaptation method {method!r}: choose from source_only, oracle, "
            f"{REFERENCE}, or "
            f"{', '.join(RECIPES)} (combined with '+')"
        )
    return parts


def recipe(method: str, overrides: dict | None = None) -> Recipe:
    """The recipe of ``method`` (of its first part for a combination such as ``mmd+entropy``,
    whose parts keep their own weights), with ``overrides`` (e.g. ``{"steps": 2000}`` or
    ``{"options": {"max_lambda": 0.1}}``) applied."""
    base = RECIPES[_parts(method)[0]]
    return replace(base, **(overrides or {}))


@one_thread()
def train_adapted(
    method: str, seed: int, overrides: dict | None = None, log: StepLog | None = None
):
    """Train one model with ``method``, on one CPU thread; returns it (on the Trainer's device).

    Args:
        method: a name of ``METHODS`` (or parts of :data:`RECIPES` joined by ``+``).
        overrides: changes to the method's :class:`Recipe` (for :func:`tune`).
        log: a :class:`~transferlab.train.schedules.StepLog` to record parts of the loss at every
            step.
    """
    target = load_domain("handwritten")
    if method == "source_only":  # the pretrained source model as it is
        return pretrained_source(seed=seed)
    if method in ("oracle", REFERENCE):
        seed_everything(seed)
        if method == "oracle":
            model, labelled, lr = SmallCNN(num_classes=target.num_classes), target.train, LR
        else:
            model, labelled, lr = pretrained_source(seed=seed), target.val, FINETUNE_LR
        Trainer(model, cpu_amp=True, lr=lr, batch_size=BATCH, seed=seed, progress=False).fit(
            labelled, max_steps=STEPS
        )
        return model
    parts = _parts(method)
    main = recipe(method, overrides)
    source = load_domain("fonts", seed=seed)
    model = pretrained_source(seed=seed)
    seed_everything(seed)
    chosen = [main] + [RECIPES[p] for p in parts[1:]]
    terms = [make_term(r.loss, model.feature_dim, r.weight, **r.options) for r in chosen if r.loss]
    optimizer, callbacks = None, [log] if log is not None else []
    if main.optimizer == "sgd":
        optimizer = lambda params: torch.optim.SGD(params, lr=main.lr, momentum=0.9)
        callbacks.append(AnnealedLR())
    elif main.optimizer != "adam":
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {main.optimizer!r}")
    elif main.betas != Recipe.betas:
        optimizer = lambda params: torch.optim.Adam(params, lr=main.lr, betas=main.betas)
    Trainer(
        model,
        cpu_amp=True,
        lr=main.lr,
        optimizer=optimizer,
        loss_terms=terms,
        callbacks=callbacks,
        batch_size=BATCH,
        seed=seed,
        progress=False,
    ).fit(source.train, unlabelled=target.train if terms else None, max_steps=main.steps)
    return model


def run(method: str, seed: int, overrides: str = "") -> dict:
    """``{"val": acc, "test": acc}`` of one adapted model (``val`` is NaN for the reference that
    trains on target-val), plus ``"disc_acc"``, the discriminator's accuracy at every step, for
    the adversarial methods, and, for the first seed, the trained weights as one vector
    (:func:`adapted_model` reads them).  ``overrides``: a JSON object of :class:`Recipe`
    changes."""
    log = None
    if method not in BASELINES + (REFERENCE,) and recipe(method).loss in ADVERSARIAL:
        log = StepLog(f"{recipe(method).loss}_disc_acc")
    model = train_adapted(method, seed, json.loads(overrides) if overrides else None, log)
    target, ev = load_domain("handwritten"), Trainer(model, cpu_amp=True, progress=False)
    val = math.nan if method == REFERENCE else ev.evaluate(target.val)["acc"]
    out = {"val": val, "test": ev.evaluate(target.test)["acc"]}
    if log is not None:
        out["disc_acc"] = torch.tensor(next(iter(log.values.values())))
    if seed == SEEDS[0] and method != "source_only":  # kept for the chapter's figures (0.6 MB)
        # reshape, not parameters_to_vector's view: the Trainer left the conv weights channels-last
        out["weights"] = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu()
    return out


class Run(NamedTuple):
    """One run of the benchmark."""

    method: str
    seed: int


class Candidate(NamedTuple):
    """One run of :func:`tune`: a method under one change of its recipe (as JSON)."""

    method: str
    overrides: str
    seed: int


def _run_candidate(method: str, overrides: str, seed: int) -> dict:
    """:func:`run` with the seed last, as the grid of :func:`tune` orders its jobs."""
    return run(method, seed, overrides)


def _check(method: str) -> None:
    if method not in BASELINES + (REFERENCE,):
        _parts(method)


def adapted_accuracy(
    method: str, seed: int, split: str = "test", overrides: dict | None = None
) -> float:
    """Target accuracy on ``split`` (``"val"`` for tuning) of one model trained with ``method``
    (:func:`train_adapted`)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    _check(method)
    return run(method, seed, json.dumps(overrides) if overrides else "")[split]


def tune(
    method: str,
    candidates: Sequence[dict],
    seeds: Sequence[int] = (0, 1),
    progress: bool | None = None,
) -> dict[str, float]:
    """Mean target-**val** accuracy (%) of ``method`` under each candidate change of its recipe,
    e.g. ``tune("dann", [{"options": {"max_lambda": m}} for m in (0.1, 0.3, 1.0)])``; keyed by
    the candidate as JSON.  Runs in parallel and is cached like the benchmark; target-test is
    never read."""
    _parts(method)
    for c in candidates:  # a bad candidate fails here, with its message, before any run
        recipe(method, c)
    keys = [json.dumps(c, sort_keys=True) for c in candidates]
    base = BASE.get(_parts(method)[0], RECIPES[_parts(method)[0]])
    grid = run_grid(
        "bench-adapt-tune",
        {"batch": BATCH, "base": asdict(base)},
        [Candidate(method, k, s) for k in keys for s in seeds],
        _run_candidate,
        f"tuning {method} on target-val",
        progress,
        prepare=_prepare,
    )
    return {k: 100 * mean(grid[(method, k, s)]["val"] for s in seeds) for k in keys}


def _prepare(seed: int) -> None:
    pretrained_source(seed=seed)
    load_domain("fonts", seed=seed)


def _grid(methods: Sequence[str], seeds: Sequence[int], progress: bool | None) -> tuple[dict, dict]:
    for m in methods:
        _check(m)
    params = {
        "steps": STEPS,
        "lr": LR,
        "finetune_lr": FINETUNE_LR,
        "batch": BATCH,
        "recipes": {m: asdict(r) for m, r in RECIPES.items()},
    }
    jobs = [Run(m, s) for s in seeds for m in methods]
    return run_grid(
        "bench-adapt", params, jobs, run, "adaptation benchmark", progress, prepare=_prepare
    ), params


def adapt_benchmark(
    methods: Sequence[str] = METHODS, seeds: Sequence[int] = SEEDS, progress: bool | None = None
) -> BenchResult:
    """Every method over every seed, recording target-val and target-test; cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records have ``k = None`` (no
        target label is used by the adaptation methods); ``gap`` is (source_only, oracle) when
        both baselines are among ``methods``; ``chosen`` the candidate with the best target-val
        accuracy (:func:`best_on_val`); ``versus`` every other method against source_only;
        ``info`` the settings: each method's :class:`Recipe`, and the candidates compared on
        target-val to fix it (:data:`TUNED`).
    """
    grid, params = _grid(methods, seeds, progress)
    records = records_from_grid(grid, ("method", "seed"), k=None)
    candidates = [m for m in methods if m not in NOT_CANDIDATES]
    return BenchResult(
        "adapt",
        records,
        versus=[(m, "source_only") for m in methods if m != "source_only"]
        if "source_only" in methods
        else [],
        gap=BASELINES if all(b in methods for b in BASELINES) else None,
        chosen=best_on_val(records) if candidates else None,
        splits=("val", "test"),
        info={**params, "tuned_on_val": TUNED},
    )


def discriminator_accuracy(
    methods: Sequence[str] = ("dann_paper", "dann", "cdan"),
    seeds: Sequence[int] = SEEDS,
    progress: bool | None = None,
) -> dict[str, torch.Tensor]:
    """The discriminator's accuracy on each step's source + target batch, ``{method: (seeds,
    steps)}``, read from the benchmark's runs (the same cache entry as :func:`adapt_benchmark`
    with the default methods, so no run is repeated)."""
    for m in methods:
        if m in BASELINES + (REFERENCE,) or recipe(m).loss not in ADVERSARIAL:
            raise ValueError(
                f"{m!r} has no discriminator; choose among the adversarial methods "
                f"{[k for k, r in RECIPES.items() if r.loss in ADVERSARIAL]}"
            )
    grid, _ = _grid(METHODS, seeds, progress)
    return {m: torch.stack([grid[(m, s)]["disc_acc"] for s in seeds]) for m in methods}


def adapted_model(
    method: str, seed: int = SEEDS[0], progress: bool | None = None
) -> torch.nn.Module:
    """The model that the benchmark trained with ``method`` for the first seed, read from its
    cache (nothing is retrained once :func:`adapt_benchmark` has run), in eval mode on the CPU."""
    if seed != SEEDS[0]:
        raise ValueError(
            f"the benchmark keeps the models of seed {SEEDS[0]} only; "
            "train others with train_adapted()"
        )
    model = pretrained_source(seed=seed)
    if method != "source_only":
        _check(method)
        grid, _ = _grid(METHODS, SEEDS, progress)
        if (method, seed) not in grid:
            raise ValueError(f"{method!r} is not among the benchmark's methods {METHODS}")
        vector_to_parameters(
            grid[(method, seed)]["weights"].to(next(model.parameters()).dtype), model.parameters()
        )
    return model.cpu().eval()


def best_on_val(records: Iterable[Record]) -> str:
    """The adaptation method with the highest mean **target-val** accuracy (never target-test);
    the baselines, the control and the reference that trains on target-val are not candidates."""
    val: dict[str, list[float]] = {}
    for r in records:
        if r["split"] == "val" and r["method"] not in NOT_CANDIDATES:
            val.setdefault(r["method"], []).append(r["acc"])
    if not val:
        raise ValueError("no adaptation method among the results to choose from")
    return max(val, key=lambda m: mean(val[m]))


def summary(result: BenchResult) -> str:
    """The method chosen on target-val and the share of the source → oracle gap it closes (for
    ``transferlab bench adapt``)."""
    if result.chosen is None:
        return ""
    line = f"chosen on target-val: {result.chosen}"
    if result.gap is not None:
        line += (
            f", which closes {100 * result.gap_closed(result.chosen):.0f} % of the "
            f"{result.gap[0]} → {result.gap[1]} gap on target-test"
        )
    return line
