"""The experiment of page ``book/multitask.md``: k = 3 handwritten labels per class (the main
task ``y``, fixed before looking) with a second task that is cheap to label, against single-task
training with the same budget and against fine-tuning the fonts-pretrained source.

``transferlab bench multitask`` and the chapter both call ``multitask_benchmark``.

Pairings (``PAIRINGS``), each a mixed split (``transferlab.multitask.mix_tasks``) in
which the 30 main-task images are repeated so that they fill about half of every batch:

- ``fonts``: 2,000 rendered font digits, labelled with their digit (a second *domain*);
- ``fonts_random``: the same images with random labels (control: what the images alone do);
- ``coarse``: every handwritten training image (987) labelled with three coarse tasks
  derived from its digit, parity, closed loop and "< 5" (``transferlab.multitask.coarse_tasks``):
  cheap yes/no answers on the target's own images, a fine label for only 30 of them;
- ``letters``: 10,000 rendered letters A–Z (an unrelated task; it does no measurable harm);
- ``ink``: every handwritten training image with a regression target, its ink (the sum of its
  pixel values, in pixel units: mean ≈ 19.6, sd ≈ 2.1), *not* standardised: the harmful
  pairing.  Its squared error starts near 19.6² ≈ 390 against the digit's cross-entropy of
  ln 10 ≈ 2.3, so under equal weights its gradient swamps the digit's on the shared trunk.
  ``ink_std`` (the same target standardised with the training images' mean and sd) is the
  control that the harm comes from the scale, not the task; ``ink+*`` are its repairs by a
  weighting, one chosen on target-val.

Models and objectives: ``hard`` sharing (every head on the trunk's last layer), ``hier`` (the
coarse tasks read the pooled convolutional features, ``transferlab.multitask.hierarchical``),
``alternating`` (one task per step, round-robin), ``source`` (hard sharing whose trunk starts
from the fonts-pretrained source), and for the harmful pairing equal weights, uncertainty
weighting (Kendall et al.), GradNorm and a static weight of ``STATIC_WEIGHT`` on the ink.
Each run trains for ``STEPS`` Adam steps (no early stopping: target-test is never used for
selection), and records target-val and target-test of the main task plus, where a second task
can be scored on held-out images, that task's accuracy (records with a ``task`` field).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from transferlab.bench.common import RunResult, k_label, one_thread, parse_k, run_grid, seed_range
from transferlab.bench.results import MAIN_TASK, BenchResult, Record, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.cache import cached, code_version
from transferlab.data import TensorSplit, load_domain
from transferlab.models import SmallCNN
from transferlab.multitask import (
    Alternating,
    GradientCosine,
    GradNorm,
    RoundRobin,
    StaticWeights,
    UncertaintyWeighting,
    coarse_tasks,
    hard_sharing,
    hierarchical,
    mix_tasks,
)
from transferlab.train import Trainer, seed_everything
from transferlab.train.device import arithmetic

K = 3  #: labels per class of the main task, fixed before any run
SEEDS = seed_range(5)
STEPS, BATCH, LR = 200, 64, 1e-3
#: learning rate of the weightings' own parameters (log-variances, GradNorm's weights): at the
#: model's 1e-3 they would move by at most 0.2 in 200 steps
WEIGHT_LR = 0.05
N_FONTS = 2000
N_LETTERS = 10_000
PAIRINGS = ("fonts", "fonts_random", "coarse", "letters", "ink", "ink_std")
#: method → (pairing or None, model kind, objective)
METHODS: dict[str, tuple[str | None, str, str]] = {
    "single_task": (None, "single", "equal"),
    "finetune": (None, "finetune", "equal"),
    "fonts": ("fonts", "hard", "equal"),
    "fonts_random": ("fonts_random", "hard", "equal"),
    "coarse": ("coarse", "hard", "equal"),
    "coarse_hier": ("coarse", "hier", "equal"),
    "coarse_alternating": ("coarse", "hard", "alternating"),
    "coarse_source": ("coarse", "source", "equal"),
    "letters": ("letters", "hard", "equal"),
    "ink": ("ink", "hard", "equal"),
    "ink_std": ("ink_std", "hard", "equal"),
    "ink+uncertainty": ("ink", "hard", "uncertainty"),
    "ink+gradnorm": ("ink", "hard", "gradnorm"),
    "ink+static": ("ink", "hard", "static"),
}
#: the weightings among which target-val picks the repair of the harmful pairing
REPAIRS = ("ink+uncertainty", "ink+gradnorm", "ink+static")
#: weight of the second task in ``ink+static`` (the main task's is 1): about the ratio of the two
#: losses at the start, ln 10 / 390 ≈ 0.006, rounded up to 0.01
STATIC_WEIGHT = 0.01
VERSUS = (
    ("fonts", "single_task"),
    ("fonts_random", "single_task"),
    ("coarse", "single_task"),
    ("coarse", "finetune"),
    ("coarse_source", "finetune"),
    ("coarse_hier", "coarse"),
    ("letters", "single_task"),
    ("ink", "single_task"),
    ("ink_std", "single_task"),
)


def pairing_data(
    pairing: str, few: TensorSplit, seed: int
) -> tuple[TensorSplit, dict[str, int], dict]:
    """The mixed training split of a pairing, the classes of each task, and held-out data of the
    second task(s) (``{task: (val split, test split)}``; empty where it cannot be scored).

    Args:
        pairing: one of ``PAIRINGS``.
        few: the k-shot labelled main-task images.
        seed: draws the random labels of ``fonts_random``.

    Returns:
        the split (``ink``'s labels are floating point: a regression target, NaN where missing),
        ``{task: classes}`` (1 output for ``ink``), and the held-out data.
    """
    hand = load_domain("handwritten")
    g = torch.Generator().manual_seed(10_000 + seed)
    if pairing in ("fonts", "fonts_random"):
        fonts = load_domain("fonts")
        aux = fonts.train.subset(torch.arange(N_FONTS))
        if pairing == "fonts_random":
            aux = TensorSplit(aux.x, torch.randint(10, (len(aux),), generator=g))
        held = {"fonts": (fonts.val, fonts.test)} if pairing == "fonts" else {}
        train = mix_tasks({"y": few, "fonts": aux}, repeat={"y": len(aux) // len(few)})
        return (
            train,
            {"y": 10, "fonts": 10},
            {t: (TensorSplit(v.x, v.y), TensorSplit(s.x, s.y)) for t, (v, s) in held.items()},
        )
    rest = hand.train  # coarse answers for every handwritten training image
    r = len(rest) // len(few)
    if pairing == "coarse":
        coarse = coarse_tasks(rest.y)
        first = next(iter(coarse))
        train = mix_tasks(
            {"y": few, first: TensorSplit(rest.x, coarse[first])},
            repeat={"y": r},
            extra={first: {t: v for t, v in coarse.items() if t != first}},
        )
        held = {
            t: tuple(TensorSplit(s.x, coarse_tasks(s.y)[t]) for s in (hand.val, hand.test))
            for t in coarse
        }
        return train, {"y": 10, **{t: 2 for t in coarse}}, held
    if pairing == "letters":
        letters = load_domain("letters")
        aux = letters.train.subset(torch.arange(N_LETTERS))
        train = mix_tasks({"y": few, "letters": aux}, repeat={"y": len(aux) // len(few)})
        held = {
            "letters": (
                TensorSplit(letters.val.x, letters.val.y),
                TensorSplit(letters.test.x, letters.test.y),
            )
        }
        return train, {"y": 10, "letters": 26}, held
    if pairing in ("ink", "ink_std"):  # a regression target on every handwritten training image
        ink = rest.x.sum(dim=(1, 2, 3))  # (N,) float: the ink, in pixel units
        if pairing == "ink_std":
            ink = (ink - ink.mean()) / ink.std()
        train = mix_tasks({"y": few, "ink": TensorSplit(rest.x, ink)}, repeat={"y": r})
        return train, {"y": 10, "ink": 1}, {}
    raise ValueError(f"unknown pairing {pairing!r}; choose one of {PAIRINGS}")


def _objective(kind: str, tasks: list[str]):
    if kind == "equal":
        return None
    if kind == "alternating":
        return Alternating(RoundRobin(tasks))
    if kind == "uncertainty":
        return UncertaintyWeighting(tasks)
    if kind == "gradnorm":
        return GradNorm(tasks)
    if kind == "static":
        return StaticWeights(tasks, {t: 1.0 if t == MAIN_TASK else STATIC_WEIGHT for t in tasks})
    raise ValueError(f"unknown objective {kind!r}")


def build(
    method: str, k: int, seed: int, callbacks: Sequence[object] = ()
) -> tuple[Trainer, TensorSplit, dict]:
    """The trainer (model, objective), the training split and the held-out data of the second
    tasks for one run of ``method``; nothing trained yet."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {tuple(METHODS)}")
    pairing, kind, objective = METHODS[method]
    few = load_domain("handwritten").train.few_shot(k, seed=seed)
    held: dict = {}
    seed_everything(seed)
    if pairing is None:
        model = SmallCNN() if kind == "single" else pretrained_source(seed=seed)
        train = few
    else:
        train, classes, held = pairing_data(pairing, few, seed)
        if kind == "hier":
            model = hierarchical(
                {t: c for t, c in classes.items() if t != MAIN_TASK},
                {MAIN_TASK: classes[MAIN_TASK]},
            )
        else:
            model = hard_sharing(
                classes, trunk_from=pretrained_source(seed=seed) if kind == "source" else None
            )
    term = (
        _objective(objective, list(getattr(model, "head", {"y": None}).keys())) if pairing else None
    )
    params = None
    if isinstance(term, torch.nn.Module) and any(True for _ in term.parameters()):
        params = [
            {"params": list(model.parameters())},
            {"params": list(term.parameters()), "lr": WEIGHT_LR},
        ]
    trainer = Trainer(
        model,
        cpu_amp=True,
        lr=LR,
        params=params,
        loss_terms=[term] if term is not None else [],
        callbacks=callbacks,
        batch_size=BATCH,
        seed=seed,
        progress=False,
    )
    return trainer, train, held


@one_thread()
def run(method: str, k: int, seed: int) -> RunResult:
    """One run: main-task accuracy on handwritten val and test, and the second tasks'
    accuracies on their held-out val and test images (``"val:TASK"``, ``"test:TASK"``)."""
    trainer, train, held = build(method, k, seed)
    trainer.fit(train, max_steps=STEPS)
    hand = load_domain("handwritten")
    out = {"val": trainer.evaluate(hand.val)["acc"], "test": trainer.evaluate(hand.test)["acc"]}
    for task, (val, test) in held.items():
        for split, data in (("val", val), ("test", test)):
            out[f"{split}:{task}"] = _task_acc(trainer, data, task)
    return out


def _task_acc(trainer: Trainer, data: TensorSplit, task: str) -> float:
    labels = TensorSplit(data.x, torch.full_like(data.y, -1), {task: data.y})
    return trainer.evaluate(labels)[f"{task}_acc"]


def scored_tasks(method: str) -> list[str]:
    """The second tasks whose held-out accuracy a run of ``method`` records."""
    pairing = METHODS[method][0]
    return {"fonts": ["fonts"], "coarse": ["parity", "loop", "small"], "letters": ["letters"]}.get(
        pairing or "", []
    )


class Run(NamedTuple):
    """One run of the benchmark."""

    method: str
    k: str
    seed: int


def _job(method: str, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed)


def _source(seed: int) -> None:
    pretrained_source(seed=seed)


def _task_records(grid: dict, methods: Sequence[str]) -> list[Record]:
    out = []
    for (method, k, seed), r in grid.items():
        for task in scored_tasks(method):
            for split in ("val", "test"):
                out.append(
                    {
                        "method": method,
                        "k": k,
                        "seed": seed,
                        "split": split,
                        "acc": float(r[f"{split}:{task}"]),
                        "seconds": r["seconds"],
                        "task": task,
                    }
                )
    return out


def choose_repair(result: BenchResult) -> str:
    """The weighting of the harmful pairing with the best mean target-**val** accuracy."""
    val = result.summary("val")
    return max(REPAIRS, key=lambda m: val[(m, k_label(K))]["mean"])


def multitask_benchmark(
    seeds: Sequence[int] = SEEDS,
    methods: Sequence[str] = tuple(METHODS),
    progress: bool | None = None,
) -> BenchResult:
    """Every (method, seed) at k = ``K``, recording target-val and target-test; cached.

    Returns:
        a ``BenchResult``: main-task records (no ``task`` field)
        and second-task records (``task`` = ``"fonts"``, ``"parity"``, ``"loop"``, ``"small"``);
        ``chosen``: the repair of the harmful pairing picked on target-val (when all of
        ``REPAIRS`` ran); ``info``: the settings.
    """
    if unknown := [m for m in methods if m not in METHODS]:
        raise ValueError(f"unknown method(s) {unknown}; choose from {tuple(METHODS)}")
    jobs = [Run(m, k_label(K), s) for s in seeds for m in methods]
    params = {
        "steps": STEPS,
        "batch": BATCH,
        "lr": LR,
        "weight_lr": WEIGHT_LR,
        "n_fonts": N_FONTS,
        "n_letters": N_LETTERS,
        "static": STATIC_WEIGHT,
    }
    grid = run_grid("bench-multitask", params, jobs, _job, "multi-task", progress, prepare=_source)
    records = records_from_grid(grid, ("method", "k", "seed")) + _task_records(grid, methods)
    result = BenchResult(
        "multitask",
        records,
        versus=[p for p in VERSUS if set(p) <= set(methods)],
        splits=("val", "test"),
        info={**params, "k": K},
    )
    if set(REPAIRS) <= set(methods):
        result.chosen = choose_repair(result)
        result.versus.append((result.chosen, "single_task"))
    return result


def cosine_traces(
    methods: Sequence[str] = ("fonts", "coarse", "letters"),
    seed: int = 0,
    every: int = 5,
) -> dict[str, dict[str, list[float]]]:
    """The cosine of the main task's gradient on the shared trunk with each second task's, every
    ``every`` steps of one run per method (seed ``seed``); cached.

    Returns:
        ``{method: {"step": [...], task: [cos y·task at each step], ...}}``.
    """

    def compute() -> dict[str, torch.Tensor]:
        out = {}
        with one_thread():
            for m in methods:
                cos = GradientCosine(every=every)
                trainer, train, _ = build(m, K, seed, callbacks=[cos])
                trainer.fit(train, max_steps=STEPS)
                out[f"{m}/step"] = torch.tensor(cos.steps, dtype=torch.float64)
                for (a, b), v in cos.values.items():
                    if a == MAIN_TASK:
                        out[f"{m}/{b}"] = torch.tensor(v, dtype=torch.float64)
        return out

    params = {
        "methods": list(methods),
        "seed": seed,
        "every": every,
        "steps": STEPS,
        "code": code_version(__name__),
        "arithmetic": arithmetic(),
    }
    raw = cached("bench-multitask-cosine", params, compute)
    traces: dict[str, dict[str, list[float]]] = {}
    for key, v in raw.items():
        m, name = key.split("/")
        traces.setdefault(m, {})[name] = v.tolist()
    return traces


def summary(result: BenchResult) -> str:
    """The labels per class and the repair chosen on target-val (for ``transferlab bench
    multitask``)."""
    line = f"k = {K} handwritten labels per class (main task)"
    if result.chosen:
        line += f"; repair of the harmful pairing chosen on target-val: {result.chosen}"
    return line
