"""One result type for every benchmark of the book: long-format records, one summary, one table.

Every run of a benchmark is recorded once per split it was evaluated on (the long format of the
design notes)::

    {"method": "finetune", "k": "1", "seed": 0, "split": "test", "acc": 0.874, "seconds": 1.9}

- ``method``: what was trained (page ``book/negative.md``: the curve or remedy, e.g.
  ``"shuffled+conv_only"``);
- ``k``: labelled target images per class, as a string (``"1"``, …, ``"all"`` for every label);
  ``None`` (JSON ``null``) where k does not apply: the runs of page ``book/adapt.md`` use no
  target label at all (``oracle`` and the reference say in their name which labels they use);
- ``seed``; ``split``: ``"val"`` or ``"test"`` (a run that trains on target-val has no ``val``
  record); ``acc``: accuracy in [0, 1];
- ``seconds``: wall-clock time of the run (training and evaluation, one CPU thread), the same in
  its ``val`` and ``test`` records;
- ``task`` (only where a run scores more than one task, page ``book/multitask.md``): which
  task ``acc`` is about; a record without one is about the main task, ``MAIN_TASK`` (``"y"``).
  Summaries, tables and :func:`accuracies` read the main task's records unless told otherwise.

:class:`BenchResult` holds the records of one benchmark, the comparisons it reports and what it
derived from them (``info``).  ``transferlab bench NAME --json PATH`` writes
:meth:`BenchResult.to_json`; :meth:`BenchResult.load` reads the file back, so that
``print(BenchResult.load("finetune.json").table())`` prints the chapter's table from the file
alone.  :func:`summary` is the one summary (mean ± sample std over seeds, as
:mod:`transferlab.stats`) and :func:`format_table` the one table of every benchmark.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferlab.stats import paired_effect, summarize

Record = dict[str, Any]  # method, k, seed, split, acc, seconds (and any extra field)
Key = tuple[str, str | None]  # (method, k)
SPLITS = ("val", "test")
#: the task a record without a ``task`` field is about (the split's main labels)
MAIN_TASK = "y"


def _of_task(r: Record, task: str) -> bool:
    return r.get("task", MAIN_TASK) == task


def records_from_grid(
    grid: Mapping[tuple, Mapping[str, float]], fields: Sequence[str], **fixed: Any
) -> list[Record]:
    """The long format of a grid of runs ``{job: {"val": acc, "test": acc, "seconds": s}}``.

    Args:
        grid: e.g. the result of :func:`~transferlab.bench.common.run_grid`.
        fields: the names of the job's elements, e.g. ``("method", "k", "seed")``.
        fixed: fields every record shares, e.g. ``k=None``.
    Returns:
        one record per run and split, in the grid's order; a NaN accuracy (a run without that
        split) gives no record.
    """
    out = []
    for job, r in grid.items():
        run = {**fixed, **dict(zip(fields, job))}
        extra = {name: v for name, v in run.items() if name not in ("method", "k", "seed")}
        for split in SPLITS:
            if r[split] == r[split]:  # NaN: a run with no such split
                out.append(
                    {
                        "method": run["method"],
                        "k": run.get("k"),
                        "seed": run["seed"],
                        "split": split,
                        "acc": r[split],
                        "seconds": r["seconds"],
                        **extra,
                    }
                )
    return out


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _k(k: int | str | None) -> str | None:
    return str(k) if isinstance(k, int) else k


def accuracies(
    records: Iterable[Record],
    method: str,
    k: int | str | None = None,
    split: str = "test",
    seeds: Sequence[int] | None = None,
    task: str = MAIN_TASK,
) -> list[float]:
    """Per-seed accuracies of one ``(method, k)`` on ``split`` (of ``task``), in ``seeds`` order
    (default: the order in which the seeds first appear), so that two methods' lists pair up seed
    by seed.

    Raises:
        KeyError: no such run, or a seed without one.
    """
    records = list(records)
    k = _k(k)
    by_seed = {
        r["seed"]: r["acc"]
        for r in records
        if r["method"] == method and r["k"] == k and r["split"] == split and _of_task(r, task)
    }
    if not by_seed:
        have = sorted({(r["method"], r["k"]) for r in records if r["split"] == split}, key=str)
        raise KeyError(
            f"no {split} runs of method {method!r} with k={k!r}; the records have {have}"
        )
    seeds = _unique(r["seed"] for r in records) if seeds is None else list(seeds)
    if missing := [s for s in seeds if s not in by_seed]:
        raise KeyError(f"method {method!r} with k={k!r} has no {split} run for seed(s) {missing}")
    return [by_seed[s] for s in seeds]


def summary(
    records: Iterable[Record], split: str = "test", task: str = MAIN_TASK
) -> dict[Key, dict[str, float]]:
    """The one summary of the benchmarks: for every ``(method, k)`` (in order of appearance), the
    :func:`~transferlab.stats.summarize` of its accuracies on ``split`` (of ``task``) over seeds:
    ``mean``, ``std`` (sample), ``n`` and ``ci95`` (half-width of the 95 % interval of the mean)."""
    groups: dict[Key, list[float]] = {}
    for r in records:
        if r["split"] == split and _of_task(r, task):
            groups.setdefault((r["method"], r["k"]), []).append(r["acc"])
    return {key: summarize(values) for key, values in groups.items()}


def _header(split: str, k: str | None, splits: Sequence[str]) -> str:
    if k is None:
        return f"{split} (%)"
    return f"{split} k={k}" if len(splits) > 1 else f"k={k}"


def format_table(
    records: Iterable[Record],
    *,
    splits: Sequence[str] = ("test",),
    versus: Sequence[Sequence[str]] = (),
    gap: Sequence[str] | None = None,
    chosen: str | None = None,
) -> str:
    """The one table of the benchmarks, as plain text.

    First block: one row per method, one column per split in ``splits`` and per k, each cell the
    accuracy (%) as mean ± sample standard deviation over seeds (``—``: no such run).  With
    ``gap = (low, high)``, a column per k adds the share of the ``low`` → ``high`` gap that each
    method closes on target-test, (mean − mean_low) / (mean_high − mean_low).  ``chosen`` (the
    method picked on target-val) is marked with ``*``.

    Second block, for each pair ``(a, b)`` of ``versus``: the effect a − b on target-test in
    points, paired over seeds, as mean [95 % confidence interval] per k
    (:func:`~transferlab.stats.paired_effect`).
    """
    records = [r for r in records if _of_task(r, MAIN_TASK)]
    methods = _unique(r["method"] for r in records)
    ks = _unique(r["k"] for r in records)
    seeds = _unique(r["seed"] for r in records)
    stats = {split: summary(records, split) for split in splits}
    test = summary(records, "test")

    head = ["method"] + [_header(split, k, splits) for split in splits for k in ks]
    if gap is not None:
        head += [f"gap closed{'' if k is None else f' k={k}'}" for k in ks]
    rows = [head]
    for m in methods:
        cells = [m + (" *" if m == chosen else "")]
        for split in splits:
            for k in ks:
                s = stats[split].get((m, k))
                cells.append("—" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
        if gap is not None:
            for k in ks:
                lo, hi, s = test.get((gap[0], k)), test.get((gap[1], k)), test.get((m, k))
                ok = (
                    lo is not None and hi is not None and s is not None and hi["mean"] != lo["mean"]
                )
                cells.append(
                    f"{100 * (s['mean'] - lo['mean']) / (hi['mean'] - lo['mean']):.0f} %"
                    if ok
                    else "—"
                )
        rows.append(cells)
    lines = _align(rows)

    effects = [["effect (points)"] + [f"{'test' if k is None else f'k={k}'}" for k in ks]]
    for a, b in versus:
        cells = [f"{a} − {b}"]
        for k in ks:
            try:
                e = paired_effect(
                    accuracies(records, a, k, "test", seeds),
                    accuracies(records, b, k, "test", seeds),
                )
            except (KeyError, ValueError):
                cells.append("—")
                continue
            cells.append(
                f"{100 * e['mean']:+.1f} [{100 * e['low']:+.1f}, {100 * e['high']:+.1f}]"
                if math.isfinite(e["ci95"])
                else f"{100 * e['mean']:+.1f}"
            )
        if any(c != "—" for c in cells[1:]):
            effects.append(cells)
    if len(effects) > 1:
        lines += [""] + _align(effects)

    lines.append(
        f"accuracy on target-{' and target-'.join(splits)} (%): "
        f"mean ± sample std over {len(seeds)} seeds"
        + ("; * chosen on target-val" if chosen is not None else "")
    )
    if len(effects) > 1:
        lines.append(
            "effect: difference in points on target-test, paired over seeds: mean [95 % CI]"
        )
    return "\n".join(lines)


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("-" * len(lines[0]))
    return lines


@dataclass
class BenchResult:
    """The result of one benchmark: its long-format records and what it reports about them.

    Attributes:
        bench: the benchmark's name (``"finetune"``, ``"adapt"``, ``"negative"``).
        records: one record per run and split (see the module docstring).
        versus: the pairs ``(a, b)`` whose paired effect a − b the chapter reports.
        gap: ``(low, high)``: two baselines whose gap the methods are measured against, or ``None``.
        chosen: the method chosen on target-val, or ``None``.
        splits: the splits the table shows.
        info: whatever else the benchmark derived or was run with (JSON-serialisable), e.g. the
            transferability scores of page ``book/negative.md``.
    """

    bench: str
    records: list[Record]
    versus: list[tuple[str, str]] = field(default_factory=list)
    gap: tuple[str, str] | None = None
    chosen: str | None = None
    splits: tuple[str, ...] = ("test",)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The methods, in order of appearance."""
        return _unique(r["method"] for r in self.records)

    @property
    def ks(self) -> list[str | None]:
        """The values of k, in order of appearance (``[None]`` where k does not apply)."""
        return _unique(r["k"] for r in self.records)

    @property
    def seeds(self) -> list[int]:
        """The seeds, in order of appearance."""
        return _unique(r["seed"] for r in self.records)

    def accs(
        self, method: str, k: int | str | None = None, split: str = "test", task: str = MAIN_TASK
    ) -> list[float]:
        """Per-seed accuracies of ``(method, k)`` on ``split`` (of ``task``), in the order of
        ``seeds``."""
        return accuracies(self.records, method, k, split, self.seeds, task)

    def summary(self, split: str = "test", task: str = MAIN_TASK) -> dict[Key, dict[str, float]]:
        """:func:`~transferlab.bench.results.summary` of the records (of ``task``): ``{(method, k):
        {"mean", "std", "n", "ci95"}}``."""
        return summary(self.records, split, task)

    def effect(
        self, a: str, b: str, k: int | str | None = None, split: str = "test"
    ) -> dict[str, float]:
        """The paired effect ``a − b`` over seeds (:func:`~transferlab.stats.paired_effect`)."""
        return paired_effect(self.accs(a, k, split), self.accs(b, k, split))

    def gap_closed(self, method: str, k: int | str | None = None) -> float:
        """Share of the :attr:`gap` that ``method`` closes on target-test (mean accuracies)."""
        if self.gap is None:
            raise ValueError(f"benchmark {self.bench!r} measures no gap between two baselines")
        lo, hi, m = (
            sum(v) / len(v)
            for v in (self.accs(self.gap[0], k), self.accs(self.gap[1], k), self.accs(method, k))
        )
        return (m - lo) / (hi - lo)

    def gap_closed_by(self, method: str, low: str, high: str, k: int | str | None = None) -> float:
        """Share of the gap between ``low`` and ``high`` that ``method`` closes on target-test (mean
        accuracies over seeds): ``(m − low) / (high − low)``."""
        lo, hi, m = (
            sum(v) / len(v) for v in (self.accs(low, k), self.accs(high, k), self.accs(method, k))
        )
        return (m - lo) / (hi - lo)

    def table(self) -> str:
        """The benchmark's table (:func:`~transferlab.bench.results.format_table`)."""
        present = set(self.methods)
        versus = [(a, b) for a, b in self.versus if a in present and b in present]
        gap = self.gap if self.gap is not None and set(self.gap) <= present else None
        return format_table(
            self.records, splits=self.splits, versus=versus, gap=gap, chosen=self.chosen
        )

    def to_json(self) -> dict[str, Any]:
        """What ``--json`` writes: ``{"bench", "records", "seeds", "ks", "versus", "gap",
        "chosen", "splits", **info}``."""
        return {
            "bench": self.bench,
            "records": self.records,
            "seeds": self.seeds,
            "ks": self.ks,
            "versus": [list(p) for p in self.versus],
            "gap": list(self.gap) if self.gap else None,
            "chosen": self.chosen,
            "splits": list(self.splits),
            **self.info,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResult:
        """The inverse of :meth:`to_json` (``seeds`` and ``ks`` are read from the records)."""
        own = ("bench", "records", "seeds", "ks", "versus", "gap", "chosen", "splits")
        return cls(
            bench=data.get("bench", ""),
            records=list(data["records"]),
            versus=[tuple(p) for p in data.get("versus", [])],
            gap=tuple(data["gap"]) if data.get("gap") else None,
            chosen=data.get("chosen"),
            splits=tuple(data.get("splits", ("test",))),
            info={k: v for k, v in data.items() if k not in own},
        )

    @classmethod
    def load(cls, path: str | Path) -> BenchResult:
        """Read a file written by ``transferlab bench NAME --json PATH``."""
        return cls.from_json(json.loads(Path(path).read_text()))
