"""Distillation on the handwritten target (page ``book/distill.md``): a small student
trained alone, the same student distilled from a large teacher, and the teacher.
``transferlab bench distill`` and the chapter both call :func:`distill_benchmark`.

Protocol, and which labels each model sees (no label leakage):

- ``teacher``: the source model pretrained on fonts (151k parameters; font labels only, no
  handwritten label), fine-tuned on the same ``K`` labelled handwritten images per class as the
  students (page ``book/finetune.md``).
- ``student``: a small :class:`~transferlab.models.cnn.SmallCNN` trained from scratch on those
  ``K`` labelled images per class, alone.
- ``student_kd``: the same student, on the same labelled images, plus Hinton's loss against
  the teacher (:class:`~transferlab.distill.KDTerm`, α = ``ALPHA``) on an unlabelled
  *transfer set*: the handwritten target-train images, whose labels are never read (the
  teacher labels them; at each step a batch of them is drawn beside the labelled batch).
- ``student_hard``: the control that tells dark knowledge apart from more (pseudo-)labelled
  data: the same student and loss on the same transfer set, but against the teacher's *hard*
  labels (:class:`HardLabels`), at the temperature chosen for ``student_kd``.

So teacher and students see exactly the same handwritten labels; the teacher's extra knowledge
comes from the font pretraining and its size.  Every model gets the same budget of optimiser
steps (no early stopping); each student's learning rate is chosen on target-val among
``LRS`` (trained alone; the distilled student uses the same), the temperature T on
target-val among ``TEMPERATURES`` for ``MAIN_STUDENT`` (the other sizes are distilled
at that T); target-test is only reported.  Student sizes: ``STUDENTS`` (``width``, ``hidden`` of the
SmallCNN).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from statistics import mean, median
from typing import NamedTuple

import torch

from transferlab.bench.common import RunResult, one_thread, run_grid, seed_range
from transferlab.bench.finetune import LR as FINETUNE_LRS
from transferlab.bench.finetune import STEPS as FINETUNE_STEPS
from transferlab.bench.results import BenchResult, Record, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.cache import cached, code_version
from transferlab.data import load_domain
from transferlab.distill import KDTerm, LogitTable
from transferlab.models import SmallCNN
from transferlab.peft import count_parameters
from transferlab.train import Trainer, seed_everything
from transferlab.train.device import arithmetic

#: labelled handwritten images per class, for the teacher and the students alike
K = 10
SEEDS = seed_range(5)
#: student sizes: name → (width, hidden) of a SmallCNN
STUDENTS = {"s706": (2, 8), "s2570": (4, 16), "s9802": (8, 32)}
#: the student of the headline comparison (the compression at which the chapter states the goal)
MAIN_STUDENT = "s9802"
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
LRS = (3e-3, 1e-2)
ALPHA = 0.9
STEPS = 200
BATCH = 64
#: fine-tuning the teacher: the recipe of page ``book/finetune.md``
TEACHER_LR, TEACHER_STEPS = FINETUNE_LRS["finetune"], FINETUNE_STEPS


def student_model(size: str) -> SmallCNN:
    """A fresh student of the named size (seed the RNG first)."""
    if size not in STUDENTS:
        raise ValueError(f"unknown student size {size!r}; choose from {list(STUDENTS)}")
    width, hidden = STUDENTS[size]
    return SmallCNN(width=width, hidden=hidden)


def teacher_model(seed: int, k: int = K) -> SmallCNN:
    """The teacher of ``seed``: the fonts-pretrained source fine-tuned on ``k`` labelled
    handwritten images per class (drawn with ``seed``); cached on disk, returned in eval mode."""

    def build() -> dict[str, torch.Tensor]:
        with one_thread():
            target = load_domain("handwritten")
            model = pretrained_source(seed=seed)
            seed_everything(seed)
            Trainer(
                model, cpu_amp=True, lr=TEACHER_LR, batch_size=BATCH, seed=seed, progress=False
            ).fit(target.train.few_shot(k, seed=seed), max_steps=TEACHER_STEPS)
            return {n: v.detach().cpu() for n, v in model.state_dict().items()}

    params = {
        "seed": seed,
        "k": k,
        "lr": TEACHER_LR,
        "steps": TEACHER_STEPS,
        "batch": BATCH,
        "code": code_version(__name__),
        "arithmetic": arithmetic(),
    }
    model = SmallCNN()
    model.load_state_dict(cached("distill-teacher", params, build))
    return model.eval()


class HardLabels(torch.nn.Module):
    """A teacher's hard labels as logits, ``HARD_LOGIT · one_hot(argmax teacher(x))`` (a one-hot
    distribution at any temperature ≤ 100, :class:`~transferlab.distill.LogitTable`): the
    student learns the teacher's decisions on the transfer set, not its dark knowledge.

    Shapes: ``(N, 1, 8, 8) → (N, C)``.
    """

    def __init__(self, teacher: torch.nn.Module):
        super().__init__()
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.teacher(x)
        hot = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1])
        return hot.to(logits.dtype) * LogitTable.HARD_LOGIT


@one_thread()
def run(
    method: str, size: str, temperature: float, lr: float, seed: int, k: int = K, steps: int = STEPS
) -> RunResult:
    """One run: ``{"val": acc, "test": acc}`` on the handwritten target.

    Args:
        method: ``"teacher"`` (``size``, ``temperature``, ``lr`` ignored), ``"student"``,
            ``"student_kd"`` or ``"student_hard"`` (``temperature`` T of the KD loss).
    """
    target = load_domain("handwritten")
    if method == "teacher":
        trainer = Trainer(teacher_model(seed, k), cpu_amp=True, progress=False)
        return {split: trainer.evaluate(getattr(target, split))["acc"] for split in ("val", "test")}
    if method not in ("student", "student_kd", "student_hard"):
        raise ValueError(
            f"unknown method {method!r}; choose from teacher, student, student_kd, student_hard"
        )
    train = target.train.few_shot(k, seed=seed)
    terms, unlabelled = [], None
    if method in ("student_kd", "student_hard"):
        teacher = teacher_model(seed, k)
        if method == "student_hard":
            teacher = HardLabels(teacher)
        terms = [KDTerm(teacher, temperature=temperature, alpha=ALPHA, on="unlabelled")]
        unlabelled = target.train.x  # the transfer set: images only, the teacher labels them
    seed_everything(seed)
    student = student_model(size)
    trainer = Trainer(
        student, cpu_amp=True, lr=lr, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False
    )
    trainer.fit(train, max_steps=steps, unlabelled=unlabelled)
    return {split: trainer.evaluate(getattr(target, split))["acc"] for split in ("val", "test")}


class Run(NamedTuple):
    """One run: a model (teacher, student alone or distilled) of a size, with its settings."""

    method: str
    size: str
    temperature: float
    lr: float
    seed: int


def _job(method: str, size: str, temperature: float, lr: float, seed: int) -> RunResult:
    return run(method, size, temperature, lr, seed)


def _teacher(seed: int) -> None:
    teacher_model(seed)


def inference_ms(model: torch.nn.Module, n: int = 512, repeats: int = 7) -> float:
    """Median CPU time (ms, one thread) of one forward pass over ``n`` 8×8 images."""
    x = torch.rand(n, 1, 8, 8)
    model = model.eval()
    times = []
    with one_thread(), torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return median(times)


def _params(size: str) -> int:
    return count_parameters(SmallCNN() if size == "teacher" else student_model(size)).total


def distill_benchmark(
    seeds: Sequence[int] = SEEDS,
    sizes: Sequence[str] = tuple(STUDENTS),
    progress: bool | None = None,
) -> BenchResult:
    """Teacher, students alone and distilled students over ``seeds``; cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records (methods ``teacher``,
        ``student``, ``student_kd``: the main student, ``MAIN_STUDENT``, with its learning
        rate and T chosen on target-val) carry ``params`` (the model's parameters) and ``T``
        (the temperature, ``None`` where no KD loss is used); ``info["runs"]`` holds every run
        of the sweep (each size and learning rate; each T for the main student) in the same
        format, with ``size`` and ``lr``, and ``info["choices"]`` the choices made on target-val.
        Its ``gap`` is ``("student", "teacher")``:
        :meth:`~transferlab.bench.results.BenchResult.gap_closed` gives the share of that gap that
        distillation closes.
    """
    unknown = [s for s in sizes if s not in STUDENTS]
    if unknown:
        raise ValueError(f"unknown student size(s) {unknown}; choose from {list(STUDENTS)}")
    settings = {
        "k": K,
        "steps": STEPS,
        "batch": BATCH,
        "alpha": ALPHA,
        "lrs": list(LRS),
        "temperatures": list(TEMPERATURES),
        "students": {z: list(v) for z, v in STUDENTS.items()},
        "teacher_lr": TEACHER_LR,
        "teacher_steps": TEACHER_STEPS,
    }
    # first the teachers and the students alone (each size at each learning rate) ...
    jobs = [Run("teacher", "teacher", 0.0, TEACHER_LR, s) for s in seeds]
    jobs += [Run("student", z, 0.0, lr, s) for s in seeds for z in sizes for lr in LRS]
    grid = dict(
        run_grid(
            "bench-distill",
            settings,
            jobs,
            _job,
            "teacher and students",
            progress,
            prepare=_teacher,
        )
    )

    def val_mean(method: str, size: str, t: float, lr: float) -> float:
        return mean(grid[(method, size, t, lr, s)]["val"] for s in seeds)

    # ... then the main student distilled at the learning rate chosen on target-val for it alone
    # (the same recipe, plus the KD term), at every temperature; T is chosen on target-val ...
    lr_of = {z: max(LRS, key=lambda lr, z=z: val_mean("student", z, 0.0, lr)) for z in sizes}
    main = MAIN_STUDENT if MAIN_STUDENT in sizes else sizes[0]
    kd_jobs = [Run("student_kd", main, t, lr_of[main], s) for s in seeds for t in TEMPERATURES]
    grid.update(
        run_grid(
            "bench-distill-kd", settings, kd_jobs, _job, "temperatures", progress, prepare=_teacher
        )
    )
    t_main = max(TEMPERATURES, key=lambda t: val_mean("student_kd", main, t, lr_of[main]))
    # ... the control on the teacher's hard labels, and the other sizes distilled at that T
    size_jobs = [Run("student_hard", main, t_main, lr_of[main], s) for s in seeds]
    others = [z for z in sizes if z != main]
    size_jobs += [Run("student_kd", z, t_main, lr_of[z], s) for s in seeds for z in others]
    grid.update(
        run_grid(
            "bench-distill-sizes",
            settings,
            size_jobs,
            _job,
            "hard-label control and student sizes",
            progress,
            prepare=_teacher,
        )
    )
    chosen = {
        z: {"student": {"lr": lr_of[z]}, "student_kd": {"lr": lr_of[z], "T": t_main}} for z in sizes
    }
    chosen[main]["student_hard"] = {"lr": lr_of[main], "T": t_main}
    runs: list[Record] = records_from_grid(grid, ("method", "size", "T", "lr", "seed"), k=str(K))
    for r in runs:
        r["params"] = _params(r["size"])
        if r["method"] not in ("student_kd", "student_hard"):
            r["T"] = None

    def is_chosen(r: Record) -> bool:
        if r["method"] == "teacher":
            return True
        c = chosen[r["size"]][r["method"]]
        return r["lr"] == c["lr"] and r["T"] == c.get("T")

    records = [
        {k: v for k, v in r.items() if k not in ("size", "lr")}
        for r in runs
        if is_chosen(r) and r["size"] in (main, "teacher")
    ]
    timing = {z: inference_ms(student_model(z)) for z in ("teacher", *sizes) if z != "teacher"}
    timing["teacher"] = inference_ms(SmallCNN())
    info = {
        **settings,
        "main_student": main,
        "choices": chosen,
        "runs": runs,
        "params": {z: _params(z) for z in ("teacher", *sizes)},
        "inference_ms": timing,
    }
    return BenchResult(
        "distill",
        records,
        versus=[
            ("student_kd", "student"),
            ("student_hard", "student"),
            ("student_kd", "student_hard"),
            ("teacher", "student_kd"),
        ],
        gap=("student", "teacher"),
        splits=("val", "test"),
        info=info,
    )


def by_size(result: BenchResult, split: str = "test") -> dict[str, dict[str, list[float]]]:
    """Per student size, the per-seed accuracies on ``split`` of the student alone and of the
    distilled student, each at its configuration chosen on target-val:
    ``{size: {"student": [...], "student_kd": [...]}}`` (seeds in the result's order)."""
    out: dict[str, dict[str, list[float]]] = {}
    for z, c in result.info["choices"].items():
        for method in ("student", "student_kd"):
            picked = {
                r["seed"]: r["acc"]
                for r in result.info["runs"]
                if r["split"] == split
                and r["method"] == method
                and r["size"] == z
                and r["lr"] == c[method]["lr"]
                and r["T"] == c[method].get("T")
            }
            out.setdefault(z, {})[method] = [picked[s] for s in result.seeds]
    return out


def temperature_sweep(
    result: BenchResult, size: str | None = None, split: str = "val"
) -> dict[float, list[float]]:
    """Per-seed accuracies on ``split`` of the distilled student of ``size`` (default: the main
    one) at each temperature (at the learning rate chosen for that student):
    ``{T: [acc per seed]}``, seeds in the result's order."""
    size = size or result.info["main_student"]
    lr = result.info["choices"][size]["student_kd"]["lr"]
    out = {}
    for t in result.info["temperatures"]:
        picked = {
            r["seed"]: r["acc"]
            for r in result.info["runs"]
            if r["method"] == "student_kd"
            and r["size"] == size
            and r["T"] == t
            and r["lr"] == lr
            and r["split"] == split
        }
        out[float(t)] = [picked[s] for s in result.seeds]
    return out


def size_table(result: BenchResult) -> str:
    """The table of student sizes: parameters, compression, CPU time, test accuracy alone and
    distilled, the temperature used and the share of the student → teacher gap closed (what
    :meth:`~transferlab.bench.results.BenchResult.table` cannot show)."""
    info, seeds = result.info, {r["seed"] for r in result.records}
    lines = [
        (
            f"teacher: {info['params']['teacher']:,} parameters, "
            f"{info['inference_ms']['teacher']:.1f} ms per 512 images (one CPU thread); "
            "every model "
            f"saw the same {info['k']} labelled handwritten images per class"
        ),
        (
            "student size   params  compression  ms/512  alone (test %)  distilled (test %)  T  "
            "gap closed"
        ),
    ]
    teacher = sum(result.accs("teacher", str(info["k"]))) / len(seeds)
    for size, accs in by_size(result).items():
        alone, kd = (sum(v) / len(v) for v in (accs["student"], accs["student_kd"]))
        n = info["params"][size]
        closed = f"{100 * (kd - alone) / (teacher - alone):.0f} %" if teacher != alone else "—"
        lines.append(
            f"{size:<12} {n:>8,} {info['params']['teacher'] / n:>11.0f}x "
            f"{info['inference_ms'][size]:>7.1f} {100 * alone:>15.1f} {100 * kd:>19.1f} "
            f"{info['choices'][size]['student_kd']['T']:>2g} {closed:>11}"
        )
    return "\n".join(lines)


def summary(result: BenchResult) -> str:
    """:func:`size_table` and the share of the gap the main student's KD closes (for
    ``transferlab bench distill``)."""
    info = result.info
    return (
        size_table(result) + f"\n\nmain student {info['main_student']}: KD closes "
        f"{100 * result.gap_closed('student_kd', str(info['k'])):.0f} % of the student → teacher "
        "gap on target-test"
    )
