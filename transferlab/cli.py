"""The ``transferlab`` command line.

transferlab bench finetune [--seeds N] [--seed-offset S] [--json PATH] [--fp32] [--ks K,..]
    [--methods A,B]
transferlab bench adapt [--seeds N] [--seed-offset S] [--json PATH] [--fp32] [--methods A,B]
transferlab bench negative [--seeds N] [--seed-offset S] [--json PATH] [--fp32]
transferlab bench multitask [--seeds N] [--seed-offset S] [--json PATH] [--fp32] [--methods A,B]
transferlab bench distill [--seeds N] [--seed-offset S] [--json PATH] [--fp32]
transferlab bench peft [--seeds N] [--seed-offset S] [--json PATH] [--fp32] [--ks K,..]
    [--methods A,B]
transferlab bench text [--seeds N] [--seed-offset S] [--json PATH] [--fp32]
transferlab bench trainer [--repeats N] [--epochs E] [--n-train N] [--json PATH]
transferlab bench all [--cold] [--json PATH]
transferlab labs [--labs DIR] [--out DIR]
transferlab grade SUBMISSIONS_DIR --out scores.csv [--jobs N] [--timeout S] [--cell-timeout S]
    [--hidden-tests DIR]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transferlab.bench.results import BenchResult


def _seeds(seeds: tuple[int, ...]) -> str:
    return f"{seeds[0]}–{seeds[-1]} ({len(seeds)})" if len(seeds) > 1 else str(seeds[0])


def _write_json(data: dict, json_path: str | None) -> None:
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(data, indent=2))
        print(f"wrote {json_path}")


def _report(result: BenchResult, start: float, footer: str, json_path: str | None) -> int:
    """Print a benchmark's table and footer (with the time taken); write its records as JSON
    (:meth:`~transferlab.bench.results.BenchResult.to_json`, plus ``seconds``) if asked."""
    seconds = round(time.perf_counter() - start, 1)
    print(result.table())
    from transferlab.train.device import arithmetic

    print(f"\n{footer}; {arithmetic()}; {seconds} s")
    _write_json({**result.to_json(), "seconds": seconds}, json_path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    """``transferlab bench NAME``: the registry's entry ``NAME``
    (:data:`transferlab.bench.registry.BENCHMARKS`), its table and summary."""
    from transferlab.bench.common import seed_range
    from transferlab.bench.registry import benchmark

    bench = benchmark(args.bench)
    module = bench.load()
    options = {}
    for option in bench.options:
        text = getattr(args, option.dest)
        if text is None:
            continue
        try:
            value = option.parse(text)
        except ValueError:
            print(
                f"transferlab: {option.flag} takes values separated by commas, got {text!r}",
                file=sys.stderr,
            )
            return 2
        known = getattr(module, option.choices) if option.choices else None
        if known is not None and (unknown := [v for v in value if v not in known]):
            print(
                f"transferlab: unknown method(s) {unknown}; choose from {', '.join(known)}",
                file=sys.stderr,
            )
            return 2
        options[option.dest] = value
    function = getattr(module, bench.function)
    if args.fp32 and "amp" in inspect.signature(function).parameters:
        options["amp"] = False  # a benchmark that chooses its arithmetic is told so
    seeds = seed_range(args.seeds or len(module.SEEDS), args.seed_offset)
    start = time.perf_counter()
    result = bench.run(seeds, progress=not args.quiet, **options)
    # a summary's last line joins the seeds' line; lines before it (a table) come first
    *block, last = bench.summary(result).split("\n")
    line = "; ".join(filter(None, [f"seeds {_seeds(seeds)}", last]))
    return _report(result, start, "\n".join([*block, line]), args.json)


def _bench_trainer(args: argparse.Namespace) -> int:
    from transferlab.bench.loops import format_timings, trainer_benchmark

    if args.repeats < 1 or args.epochs < 1 or (args.n_train is not None and args.n_train < 1):
        print("transferlab: --repeats, --epochs and --n-train must be at least 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result = trainer_benchmark(
        repeats=args.repeats,
        epochs=args.epochs,
        n_train=args.n_train,
        progress=False if args.quiet else None,
    )
    seconds = round(time.perf_counter() - start, 1)
    print(format_timings(result))
    print(f"\n{seconds} s")
    _write_json({**result, "seconds": seconds}, args.json)
    return 0


def _labs(args: argparse.Namespace) -> int:
    from transferlab.grading.labs import assign_all

    try:
        assigned = assign_all(args.labs, args.out)
    except FileNotFoundError as exc:
        print(f"transferlab: {exc}", file=sys.stderr)
        return 2
    for lab in assigned:
        print(
            f"{lab.name}: student {lab.student}, autograder {lab.autograder}, "
            f"solutions {lab.solutions} (for instructors)"
        )
    return 0


def _grade(args: argparse.Namespace) -> int:
    from transferlab.grading.batch import Result, grade_folder

    jobs = (os.cpu_count() or 1) if args.jobs is None else args.jobs
    if jobs < 1:
        print(f"transferlab: --jobs must be at least 1, got {jobs}", file=sys.stderr)
        return 2

    def announce(
        jobs: int, timeout: float, cell_timeout: float
    ) -> None:  # once the folders are checked
        print(
            f"grading with {jobs} job(s); limits {cell_timeout:.0f} s per cell, "
            f"{timeout:.0f} s per notebook",
            flush=True,
        )

    def show(r: Result) -> None:  # as each submission is done
        print(
            f"{r.student:<20} {r.lab:<16} {r.total:5.1f} / {sum(r.possible.values()):4.1f}  "
            f"{r.seconds:5.1f} s  {r.status}",
            flush=True,
        )

    start = time.perf_counter()
    try:
        grade_folder(
            args.submissions,
            args.out,
            labs_dir=args.labs,
            build_dir=args.build,
            timeout_s=args.timeout,
            cell_timeout_s=args.cell_timeout,
            jobs=jobs,
            on_result=show,
            on_start=announce,
            hidden_tests=args.hidden_tests,
        )
    except FileNotFoundError as exc:
        print(f"transferlab: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} and {Path(args.out).parent / 'feedback'}/ "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return 0


def _run_benchmark(name: str) -> int:
    """Run ``transferlab bench NAME --quiet`` with the chapter's settings; its exit status."""
    args = build_parser().parse_args(["bench", name, "--quiet"])
    return args.func(args)


def _bench_all(args: argparse.Namespace) -> int:
    """Run every chapter's benchmark in turn and report how long each took, and whether it was
    computed (cold) or read from the cache (warm). ``--cold`` uses a fresh, empty cache folder, so
    every time is a cold time (source models and data sets are built by the first benchmark that
    needs them and shared by the later ones, as in a fresh checkout)."""
    import shutil
    import tempfile

    from transferlab.bench.registry import BENCHMARKS
    from transferlab.cache import cache_dir

    fresh = tempfile.mkdtemp(prefix="transferlab-cold-") if args.cold else None
    saved = os.environ.get("TRANSFERLAB_CACHE")
    if fresh:
        os.environ["TRANSFERLAB_CACHE"] = fresh
    rows, status = [], 0
    try:
        for name in BENCHMARKS:  # the book's order (``trainer`` is a timing, not a chapter's)
            before = {p.name for p in cache_dir().glob(f"bench-{name}-*")}
            start = time.perf_counter()
            rc = _run_benchmark(name)
            seconds = time.perf_counter() - start
            cold = bool({p.name for p in cache_dir().glob(f"bench-{name}-*")} - before)
            rows.append({"name": name, "seconds": round(seconds, 1), "cold": cold, "exit": rc})
            status = status or rc
    finally:
        if fresh:
            shutil.rmtree(fresh, ignore_errors=True)
            if saved is None:
                os.environ.pop("TRANSFERLAB_CACHE", None)
            else:
                os.environ["TRANSFERLAB_CACHE"] = saved
    print("\nbenchmark   seconds  cache")
    for row in rows:
        state = "cold (computed)" if row["cold"] else "warm (read from the cache)"
        failed = f", FAILED (exit {row['exit']})" if row["exit"] else ""
        print(f"{row['name']:<10} {row['seconds']:>8.1f}  {state}{failed}")
    print(f"{'all':<10} {sum(r['seconds'] for r in rows):>8.1f}")
    _write_json({"benchmarks": rows, "cold_cache": bool(fresh)}, args.json)
    return status


def _chapter_bench(sub, name: str, help: str) -> argparse.ArgumentParser:
    """The sub-command of a chapter's benchmark, with the options they all share."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--seeds", type=int, help="number of seeds (default: the chapter's)")
    p.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        metavar="S",
        help="first seed (default 0, the chapter's); e.g. 100 to check a claim on unseen seeds",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="float32 everywhere (default: bf16 autocast on a CPU with native bf16, AMP on CUDA)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferlab", description="The transferlab course's command line."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="reproduce the numbers behind the book's figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    from transferlab.bench.registry import BENCHMARKS

    for entry in BENCHMARKS.values():
        p = _chapter_bench(bench_sub, entry.name, help=f"{entry.help} (chapter '{entry.title}')")
        for option in entry.options:
            p.add_argument(option.flag, dest=option.dest, default=option.default, help=option.help)
        p.set_defaults(func=_bench)
    tr = bench_sub.add_parser(
        "trainer",
        help="time per epoch of Trainer.fit against a hand-written loop and a "
        "DataLoader loop (same model, batches and optimiser)",
    )
    tr.add_argument(
        "--repeats", type=int, default=7, help="interleaved repeats of the three loops (default 7)"
    )
    tr.add_argument("--epochs", type=int, default=1, help="epochs per timed run (default 1)")
    tr.add_argument(
        "--n-train", type=int, metavar="N", help="first N font images only (default: all 10,000)"
    )
    tr.add_argument("--json", metavar="PATH", help="also write the raw timings as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_bench_trainer)
    al = bench_sub.add_parser(
        "all",
        help="every chapter's benchmark in turn, with the time each took and "
        "whether it was computed (cold) or read from the cache",
    )
    al.add_argument(
        "--cold",
        action="store_true",
        help="use a fresh, empty cache folder: every time reported is a cold time",
    )
    al.add_argument("--json", metavar="PATH", help="also write the times as JSON")
    al.set_defaults(func=_bench_all)

    labs = sub.add_parser("labs", help="write the student and autograder versions of every lab")
    labs.add_argument("--labs", default="labs", help="folder of lab masters (default labs)")
    labs.add_argument("--out", default="_build/labs", help="output folder (default _build/labs)")
    labs.set_defaults(func=_labs)

    grade = sub.add_parser("grade", help="grade a folder of submitted lab notebooks into a CSV")
    grade.add_argument(
        "submissions", help="folder of <student>_<lab>.ipynb or <student>/<lab>.ipynb"
    )
    grade.add_argument(
        "--out", default="scores.csv", help="CSV to write (feedback/ goes beside it)"
    )
    grade.add_argument("--labs", default="labs", help="folder of lab masters (default labs)")
    grade.add_argument(
        "--build", default="_build/labs", help="where autograders are built (default _build/labs)"
    )
    grade.add_argument(
        "--jobs", type=int, help="submissions graded at once (default: one per core)"
    )
    grade.add_argument(
        "--timeout",
        type=float,
        help="seconds per notebook (default 600, times max(1, (jobs + load) / cores))",
    )
    grade.add_argument(
        "--cell-timeout",
        type=float,
        help="seconds per cell (default 60, times max(1, (jobs + load) / cores))",
    )
    grade.add_argument(
        "--hidden-tests",
        metavar="DIR",
        help="your own hidden tests, DIR/<lab>/<question>*.py, added to each lab's autograder "
        "(keep DIR outside the repository)",
    )
    grade.set_defaults(func=_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = getattr(args, "seeds", None)
    if (seeds is not None and seeds < 1) or getattr(args, "seed_offset", 0) < 0:
        print(
            "transferlab: --seeds must be at least 1 and --seed-offset at least 0", file=sys.stderr
        )
        return 2
    if getattr(
        args, "fp32", False
    ):  # read by every Trainer, in this process and in the grid's workers
        from transferlab.train.device import FP32_ENV

        os.environ[FP32_ENV] = "1"
    try:
        return args.func(args)
    except (
        ValueError
    ) as exc:  # bad settings found while running (e.g. TRANSFERLAB_WORKERS): say what, no traceback
        print(f"transferlab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
