"""The ``transferlab`` command line.

    transferlab bench finetune [--seeds N] [--json PATH]
    transferlab bench adapt [--seeds N] [--json PATH] [--methods A,B]
    transferlab bench negative [--seeds N] [--json PATH]
    transferlab labs [--labs DIR] [--out DIR]
    transferlab grade SUBMISSIONS_DIR --out scores.csv [--timeout S] [--cell-timeout S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _report(result: dict, start: float, table: str, footer: str, json_path: str | None) -> int:
    """Print a benchmark's table and footer (with the time taken); write its JSON if asked."""
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(table)
    print(f"\n{footer}; {result['seconds']} s")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return 0


def _bench_finetune(args: argparse.Namespace) -> int:
    from transferlab.bench.finetune import METHODS, finetune_curve, format_table, parse_k

    try:
        ks = tuple(parse_k(k) for k in args.ks.split(","))
    except ValueError:
        print(f"transferlab: --ks takes numbers or 'all' separated by commas, got {args.ks!r}", file=sys.stderr)
        return 2
    methods = tuple(args.methods.split(","))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"transferlab: unknown method(s) {unknown}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result = finetune_curve(ks=ks, seeds=tuple(range(args.seeds)), methods=methods, progress=not args.quiet)
    return _report(result, start, format_table(result),
                   f"target test accuracy (%), mean ± std over {args.seeds} seeds", args.json)


def _bench_adapt(args: argparse.Namespace) -> int:
    from transferlab.bench.adapt import METHODS, adapt_benchmark, format_table

    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    start = time.perf_counter()
    try:
        result = adapt_benchmark(methods=methods, seeds=tuple(range(args.seeds)), progress=not args.quiet)
    except ValueError as exc:
        print(f"transferlab: {exc}", file=sys.stderr)
        return 2
    return _report(result, start, format_table(result), f"mean ± std over {args.seeds} seeds", args.json)


def _bench_negative(args: argparse.Namespace) -> int:
    from transferlab.bench.negative import format_table, negative_benchmark

    start = time.perf_counter()
    result = negative_benchmark(seeds=tuple(range(args.seeds)), progress=not args.quiet)
    tau = {m: round(t, 2) for m, t in result["kendall"].items()}
    return _report(result, start, format_table(result),
                   f"transfer gain over scratch (points, target test), mean over {args.seeds} seeds; "
                   f"Kendall tau between score and fine-tuned accuracy: {tau}", args.json)


def _labs(args: argparse.Namespace) -> int:
    from transferlab.grading.labs import assign_all

    for lab in assign_all(args.labs, args.out):
        print(f"{lab.name}: student {lab.student}, autograder {lab.autograder}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from transferlab.grading.batch import grade_folder

    try:
        results = grade_folder(args.submissions, args.out, labs_dir=args.labs, build_dir=args.build,
                               timeout_s=args.timeout, cell_timeout_s=args.cell_timeout)
    except FileNotFoundError as exc:
        print(f"transferlab: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.student:<20} {r.lab:<16} {r.total:5.1f} / {sum(r.possible.values()):4.1f}  {r.seconds:5.1f} s  {r.status}")
    print(f"wrote {args.out} and {Path(args.out).parent / 'feedback'}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description="The transferlab course's command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="reproduce the numbers behind the book's figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    ft = bench_sub.add_parser("finetune", help="accuracy vs labelled target examples per class (chapter 'Pretrain and fine-tune')")
    ft.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ft.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ft.add_argument("--ks", default="1,3,10,30,all", help="labelled examples per class (default 1,3,10,30,all)")
    ft.add_argument(
        "--methods", default="scratch,linear_probe,finetune,finetune_new_head,finetune_l2sp",
        help="comma-separated methods (default: all five)",
    )
    ft.add_argument("--quiet", action="store_true", help="no progress bar")
    ft.set_defaults(func=_bench_finetune)
    ad = bench_sub.add_parser("adapt", help="unsupervised domain adaptation fonts → handwritten (chapter 'Domain adaptation')")
    ad.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ad.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ad.add_argument("--methods", help="comma-separated methods (default: all, with source_only and oracle)")
    ad.add_argument("--quiet", action="store_true", help="no progress bar")
    ad.set_defaults(func=_bench_adapt)
    ng = bench_sub.add_parser("negative", help="negative transfer: gain curves, LogME/LEEP, remedies (chapter 'Negative transfer')")
    ng.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ng.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ng.add_argument("--quiet", action="store_true", help="no progress bar")
    ng.set_defaults(func=_bench_negative)

    labs = sub.add_parser("labs", help="write the student and autograder versions of every lab")
    labs.add_argument("--labs", default="labs", help="folder of lab masters (default labs)")
    labs.add_argument("--out", default="_build/labs", help="output folder (default _build/labs)")
    labs.set_defaults(func=_labs)

    grade = sub.add_parser("grade", help="grade a folder of submitted lab notebooks into a CSV")
    grade.add_argument("submissions", help="folder of <student>_<lab>.ipynb or <student>/<lab>.ipynb")
    grade.add_argument("--out", default="scores.csv", help="CSV to write (feedback/ goes beside it)")
    grade.add_argument("--labs", default="labs", help="folder of lab masters (default labs)")
    grade.add_argument("--build", default="_build/labs", help="where autograders are built (default _build/labs)")
    grade.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    grade.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    grade.set_defaults(func=_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "seeds", 1) < 1:
        print("transferlab: --seeds must be at least 1", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
