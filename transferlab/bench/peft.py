"""Parameter-efficient transfer fonts → handwritten (page ``book/distill.md``): target
accuracy against the number of trained parameters.  ``transferlab bench peft`` and the chapter
both call :func:`peft_benchmark`.

Protocol: the source model pretrained on fonts
(:func:`~transferlab.bench.sources.pretrained_source`, one per seed, 151k parameters) is adapted to
the handwritten target with k labelled images per class (drawn with the seed), for a fixed budget of
optimiser steps (no early stopping):

- ``full_finetune``: every parameter (page ``book/finetune.md``);
- ``linear_probe``: the head only;
- ``bitfit``: the biases and the head;
- ``adapter``: a bottleneck adapter (m = 16) after the feature extractor h, and the head;
- ``lora_r1``, ``lora_r2``, ``lora_r4``: LoRA of rank r on both convolutions and the fully
  connected layer of h (``target_modules = ["features.0", "features.2", "features.6"]``), and
  the head;
- ``loraplus_r4``: the same LoRA of rank 4 trained as LoRA+ (Hayou et al. 2024): the ``B``
  matrices with a learning rate ``LORAPLUS_RATIO`` = 16 times that of the rest
  (:func:`~transferlab.peft.lora.loraplus_param_groups`; 16 is the paper's recommended ratio,
  fixed before any run).

Source and target share their labels (digits), so every method keeps the source's head and
trains it (PEFT's ``modules_to_save``).  Each run records its accuracy on target-val and on
target-test, and ``trainable`` and ``total`` parameter counts; the learning rate of each method
was chosen on target-val (:func:`lr_sweep`), target-test is only reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from transferlab.bench.common import RunResult, k_label, one_thread, parse_k, run_grid, seed_range
from transferlab.bench.results import BenchResult, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.cache import cached, code_version
from transferlab.data import load_domain
from transferlab.finetune import linear_probe
from transferlab.models import RowTransformer
from transferlab.peft import (
    add_adapters,
    apply_lora,
    bitfit,
    count_parameters,
    loraplus_param_groups,
)
from transferlab.train import Trainer, seed_everything
from transferlab.train.device import arithmetic

METHODS = (
    "full_finetune",
    "linear_probe",
    "bitfit",
    "adapter",
    "lora_r1",
    "lora_r2",
    "lora_r4",
    "loraplus_r4",
)
KS: tuple[int, ...] = (3, 10, 30)
SEEDS = seed_range(5)
#: learning rate of each method (Adam), chosen on target-val among 1e-3, 3e-3, 1e-2, 3e-2: the best
#: mean target-val accuracy over k = 3, 10, 30 and seeds 0–2 (:func:`lr_sweep`; in %, in that order
#: of rates: full_finetune 91.7 93.9 92.7 77.2; linear_probe 84.4 87.4 88.2 86.2; bitfit 84.2 87.5
#: 88.5 88.4; adapter 86.8 88.1 87.9 87.0; lora_r1 85.1 88.5 89.1 89.1; lora_r2 85.5 89.4 90.9 90.0;
#: lora_r4 87.2 90.5 91.4 92.1; loraplus_r4 91.1 92.6 89.9 19.3).  One rate per method, for every k,
#: as in page ``book/finetune.md``; for ``loraplus_r4`` it is the rate of ``A`` and the head.
LR = {
    "full_finetune": 3e-3,
    "linear_probe": 1e-2,
    "bitfit": 1e-2,
    "adapter": 3e-3,
    "lora_r1": 1e-2,
    "lora_r2": 1e-2,
    "lora_r4": 3e-2,
    "loraplus_r4": 3e-3,
}
LORAPLUS_RATIO = 16.0  #: LoRA+'s λ = η_B / η_A (Hayou et al. 2024 recommend 2^4)
LORA_TARGETS = ("features.0", "features.2", "features.6")
ADAPTER_AFTER = ("features.7",)  # after the ReLU that ends h: adapts the 128 features
ADAPTER_BOTTLENECK = 16
#: optimiser steps of every method.  Not chosen for accuracy but for time: compared on target-val
#: (:func:`steps_sweep`, seeds 0–2, k = 3, 10, 30, measured 2026-12-06; in %, at 100, 200, 400
#: steps): full_finetune 93.7 93.7 94.0; linear_probe 88.1 88.7 88.9; bitfit 88.1 88.8 89.0; adapter
#: 88.0 88.5 89.1; lora_r1 89.1 89.6 90.2; lora_r2 90.9 90.9 90.9; lora_r4 91.5 92.3 92.6;
#: loraplus_r4 92.3 92.7 92.7.  Longer budgets add at most 1.1 points to any method for four times
#: the time, and reorder only the linear probe, BitFit and the adapter, which stay within 0.3 points
#: of each other; the learning rates were chosen at 100 steps.
STEPS = 100
BATCH = 64
#: the comparisons the chapter reports, a − b paired over seeds
VERSUS = (
    ("lora_r4", "full_finetune"),
    ("lora_r4", "linear_probe"),
    ("adapter", "full_finetune"),
    ("bitfit", "full_finetune"),
    ("loraplus_r4", "full_finetune"),
    ("loraplus_r4", "lora_r4"),
)


def prepare_model(method: str, seed: int) -> nn.Module:
    """The source model of ``seed`` made ready for ``method``: the parameters it trains are the
    only ones with ``requires_grad``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    model = pretrained_source(seed=seed)
    if method == "linear_probe":
        linear_probe(model)
    elif method == "bitfit":
        bitfit(model, modules_to_save=["head"])
    elif method == "adapter":
        add_adapters(model, ADAPTER_AFTER, bottleneck=ADAPTER_BOTTLENECK, modules_to_save=["head"])
    elif method.startswith(("lora_r", "loraplus_r")):
        apply_lora(
            model, list(LORA_TARGETS), r=int(method.rpartition("_r")[2]), modules_to_save=["head"]
        )
    return model


@one_thread()
def run(
    method: str, k: int | None, seed: int, lr: float | None = None, steps: int = STEPS
) -> RunResult:
    """One run: ``{"val", "test", "trainable", "total"}`` on the handwritten target after
    adapting the source with ``method`` on ``k`` labelled images per class drawn with ``seed``."""
    target = load_domain("handwritten")
    train = target.train.few_shot(k, seed=seed)
    seed_everything(seed)
    model = prepare_model(method, seed)  # the new parameters are drawn after seeding
    counts = count_parameters(model)
    lr = LR[method] if lr is None else lr
    if method.startswith("loraplus_"):
        params = loraplus_param_groups(model, lr, LORAPLUS_RATIO)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(
        model, cpu_amp=True, lr=lr, params=params, batch_size=BATCH, seed=seed, progress=False
    )
    trainer.fit(train, max_steps=steps)
    out = {split: trainer.evaluate(getattr(target, split))["acc"] for split in ("val", "test")}
    return {**out, "trainable": counts.trainable, "total": counts.total}


def parameter_counts(method: str) -> tuple[int, int]:
    """``(trainable, total)`` parameters of ``method`` (the same for every seed)."""
    c = count_parameters(prepare_model(method, 0))
    return c.trainable, c.total


class Run(NamedTuple):
    """One run of the benchmark."""

    method: str
    k: str
    seed: int


class Setting(NamedTuple):
    """One run of a sweep: a method with one value of the swept setting (lr or steps)."""

    method: str
    value: float
    k: str
    seed: int


def _job(method: str, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed)


def _source(seed: int) -> None:
    pretrained_source(seed=seed)


def peft_benchmark(
    ks: Sequence[int | None] = KS,
    seeds: Sequence[int] = SEEDS,
    methods: Sequence[str] = METHODS,
    progress: bool | None = None,
) -> BenchResult:
    """Run every (method, k, seed), recording target-val and target-test; cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records carry ``trainable`` and
        ``total`` parameter counts; ``info`` holds the settings and ``params``
        (``{method: [trainable, total]}``).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    jobs = [Run(m, k_label(k), s) for s in seeds for k in ks for m in methods]
    settings = {
        "steps": STEPS,
        "lr": LR,
        "batch": BATCH,
        "lora_targets": list(LORA_TARGETS),
        "loraplus_ratio": LORAPLUS_RATIO,
        "adapter_bottleneck": ADAPTER_BOTTLENECK,
    }
    grid = run_grid("bench-peft", settings, jobs, _job, "PEFT", progress, prepare=_source)
    counts = {m: parameter_counts(m) for m in methods}
    records = records_from_grid(grid, ("method", "k", "seed"))
    for r in records:
        r["trainable"], r["total"] = counts[r["method"]]
    versus = [(a, b) for a, b in VERSUS if a in methods and b in methods]
    return BenchResult(
        "peft",
        records,
        versus=versus,
        info={**settings, "params": {m: list(c) for m, c in counts.items()}},
    )


def _lr_job(method: str, lr: float, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed, lr=lr)


def _val_sweep(
    name: str,
    settings: dict,
    values: Sequence,
    job,
    ks: Sequence[int],
    seeds: Sequence[int],
    methods: Sequence[str],
    progress: bool | None,
) -> dict[str, dict]:
    """``{method: {value: mean target-val accuracy}}`` of ``job(method, value, k, seed)`` over
    ``ks`` and ``seeds`` (the grid of :func:`lr_sweep` and :func:`steps_sweep`); cached."""
    jobs = [
        Setting(m, v, k_label(k), s) for s in seeds for k in ks for m in methods for v in values
    ]
    grid = run_grid(
        name, settings, jobs, job, name.replace("bench-", ""), progress, prepare=_source
    )
    out: dict[str, dict] = {}
    for m in methods:
        for v in values:
            vals = [grid[(m, v, k_label(k), s)]["val"] for s in seeds for k in ks]
            out.setdefault(m, {})[v] = sum(vals) / len(vals)
    return out


def lr_sweep(
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2),
    ks: Sequence[int] = KS,
    seeds: Sequence[int] = seed_range(3),
    methods: Sequence[str] = METHODS,
    progress: bool | None = None,
) -> dict[str, dict[float, float]]:
    """Mean target-**val** accuracy of each method at each learning rate (over ``ks`` and
    ``seeds``, after ``STEPS`` steps): how ``LR`` was chosen, without the test split.  Cached
    like :func:`peft_benchmark`."""
    return _val_sweep(
        "bench-peft-lr",
        {"steps": STEPS, "batch": BATCH},
        [float(lr) for lr in lrs],
        _lr_job,
        ks,
        seeds,
        methods,
        progress,
    )


def _steps_job(method: str, steps: int, k: str, seed: int) -> RunResult:
    return run(method, parse_k(k), seed, steps=steps)


def steps_sweep(
    budgets: Sequence[int] = (100, 200, 400),
    ks: Sequence[int] = KS,
    seeds: Sequence[int] = seed_range(3),
    methods: Sequence[str] = METHODS,
    progress: bool | None = None,
) -> dict[str, dict[int, float]]:
    """Mean target-**val** accuracy of each method after each step budget (over ``ks`` and
    ``seeds``, at the method's learning rate ``LR``): how the budgets behind ``STEPS`` were
    compared, without the test split.  Cached like :func:`peft_benchmark`."""
    return _val_sweep(
        "bench-peft-steps",
        {"lr": LR, "batch": BATCH},
        [int(n) for n in budgets],
        _steps_job,
        ks,
        seeds,
        methods,
        progress,
    )


def transformer_source(seed: int = 0, steps: int = 300, lr: float = 3e-3) -> RowTransformer:
    """A :class:`~transferlab.models.transformer.RowTransformer` (each 8×8 digit read as 8 row
    tokens) trained on the fonts domain for ``steps`` steps (Adam, batch 64, one CPU thread): the
    source model of the chapter's LoRA-on-a-Transformer example; cached on disk, returned on the
    CPU."""

    def build() -> dict[str, torch.Tensor]:
        with one_thread():
            seed_everything(seed)
            model = RowTransformer()
            Trainer(model, cpu_amp=True, lr=lr, batch_size=BATCH, seed=seed, progress=False).fit(
                load_domain("fonts", seed=seed).train, max_steps=steps
            )
            return {n: v.detach().cpu() for n, v in model.state_dict().items()}

    model = RowTransformer()
    model.load_state_dict(
        cached(
            "source-rowtransformer",
            {
                "seed": seed,
                "steps": steps,
                "lr": lr,
                "batch": BATCH,
                "config": model.config,
                "code": code_version(__name__),
                "arithmetic": arithmetic(),
            },
            build,
        )
    )
    return model


def summary(result: BenchResult) -> str:
    """Trainable and total parameters of each method (for ``transferlab bench peft``)."""
    counts = ", ".join(f"{m} {t:,}/{n:,}" for m, (t, n) in result.info["params"].items())
    return f"trainable/total parameters: {counts}"
