"""The registry of the chapters' benchmarks: one :class:`Benchmark` entry each.

An entry names the benchmark, the book page it serves, its module and the function there that
computes it (``seeds``, ``progress`` and the entry's options as keywords, a
:class:`~transferlab.bench.results.BenchResult` back), and the options the command line offers.
``transferlab bench NAME`` and ``transferlab bench all`` (``transferlab.cli``), the tests'
fixtures (``tests/conftest.py``) and the chapters read it.  Adding a benchmark is one module
under ``transferlab/bench/`` (with ``SEEDS``, the function, and optionally
``summary(result) -> str`` for lines its table cannot show) and one entry in
:data:`BENCHMARKS`.

The modules are imported only when a benchmark is run, so reading the registry is cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from transferlab.bench.common import parse_k, seed_range

if TYPE_CHECKING:
    from transferlab.bench.results import BenchResult


def _ks(text: str) -> tuple[int | None, ...]:
    return tuple(parse_k(k) for k in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(k) for k in text.split(","))


def _words(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(","))


@dataclass(frozen=True)
class Option:
    """A command-line option of one benchmark: ``--FLAG VALUE`` becomes the keyword ``dest`` of
    its function, parsed by ``parse`` (``None``, the default, leaves the function's default).

    ``choices``: the name of the module's constant that lists the allowed values (checked for
    ``--methods``)."""

    flag: str
    dest: str
    help: str
    parse: Callable[[str], tuple] = _words
    default: str | None = None
    choices: str | None = None


KS = Option("--ks", "ks", "labelled examples per class, comma-separated ('all': every label)", _ks)
METHODS = Option(
    "--methods", "methods", "comma-separated methods (default: all)", choices="METHODS"
)


@dataclass(frozen=True)
class Benchmark:
    """One chapter's benchmark.

    Attributes:
        name: the command (``transferlab bench NAME``) and the prefix of its cache files.
        page: the book page it serves (``book/PAGE.md``), whose chapter title ``title`` is.
        help: what it measures, in one line.
        module: its module (``transferlab.bench.NAME``), which defines ``SEEDS``.
        function: the function of ``module`` that computes it.
        options: the command-line options it takes beyond those every benchmark has.
    """

    name: str
    page: str
    title: str
    help: str
    module: str
    function: str
    options: tuple[Option, ...] = ()

    def load(self) -> ModuleType:
        """The benchmark's module (imported now)."""
        return importlib.import_module(self.module)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The chapter's seeds."""
        return tuple(self.load().SEEDS)

    def run(
        self,
        seeds: Sequence[int] | None = None,
        *,
        seed_offset: int = 0,
        progress: bool | None = None,
        **options,
    ) -> BenchResult:
        """Compute the benchmark (or read it from the cache): on ``seeds``, else on as many
        seeds as the chapter uses from ``seed_offset`` on (0: the chapter's own)."""
        module = self.load()
        if seeds is None:
            seeds = seed_range(len(module.SEEDS), seed_offset)
        return getattr(module, self.function)(seeds=tuple(seeds), progress=progress, **options)

    def summary(self, result: BenchResult) -> str:
        """The lines the chapter's table cannot show (the module's ``summary``), or ``""``: its
        last line a one-line summary, the lines before it (if any) a table of their own."""
        summary = getattr(self.load(), "summary", None)
        return summary(result) if summary is not None else ""


#: The chapters' benchmarks, in the book's order (``transferlab bench all`` runs them so).
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "finetune",
            "finetune",
            "Pretrain and fine-tune",
            "accuracy vs labelled target examples per class",
            "transferlab.bench.finetune",
            "finetune_curve",
            (KS, METHODS),
        ),
        Benchmark(
            "adapt",
            "adapt",
            "Domain adaptation",
            "unsupervised domain adaptation fonts → handwritten",
            "transferlab.bench.adapt",
            "adapt_benchmark",
            (
                Option(
                    "--methods",
                    "methods",
                    "comma-separated methods (default: all, with source_only and oracle)",
                ),
            ),
        ),
        Benchmark(
            "negative",
            "negative",
            "Negative transfer",
            "negative transfer: gain curves, LogME/LEEP, remedies",
            "transferlab.bench.negative",
            "negative_benchmark",
        ),
        Benchmark(
            "multitask",
            "multitask",
            "Multi-task learning",
            "multi-task learning with 3 handwritten labels per class",
            "transferlab.bench.multitask",
            "multitask_benchmark",
            (METHODS,),
        ),
        Benchmark(
            "distill",
            "distill",
            "Distillation and parameter-efficient transfer",
            "teacher, student alone and distilled student, with T and student size sweeps",
            "transferlab.bench.distill",
            "distill_benchmark",
        ),
        Benchmark(
            "peft",
            "distill",
            "Distillation and parameter-efficient transfer",
            "accuracy vs trainable parameters: linear probe, BitFit, adapter, LoRA, full "
            "fine-tuning",
            "transferlab.bench.peft",
            "peft_benchmark",
            (Option("--ks", "ks", "labelled examples per class, comma-separated", _ints), METHODS),
        ),
        Benchmark(
            "text",
            "text",
            "Transfer from a pretrained language model",
            "a real pretrained language model (all-MiniLM-L6-v2) on review snippets: learning "
            "curve, PEFT, distillation",
            "transferlab.bench.text",
            "text_benchmark",
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    """The registry's entry ``name``.

    Raises:
        KeyError: no such benchmark (the message lists them).
    """
    if name not in BENCHMARKS:
        raise KeyError(f"no benchmark {name!r}; the benchmarks are {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
