"""What every benchmark shares: seed ranges, k labels, and one cached grid of runs (whose
result :func:`transferlab.bench.results.records_from_grid` writes in the long format).

Each run trains a network of a few thousand parameters on 8×8 images, which one CPU thread
does as fast as two.  So every run uses exactly one thread, and on a CPU the grid is spread
over one worker process per core: twice as fast on a 2-core laptop, and the numbers do not
depend on ``OMP_NUM_THREADS`` or on how many cores a machine has (``TRANSFERLAB_WORKERS=1``
runs the grid in this process, with the same numbers).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from transferlab.cache import cached, code_version
from transferlab.train.device import arithmetic
from transferlab.train.trainer import default_progress

#: What a run returns, its ``val`` and ``test`` accuracies (floats), and any extra numbers or
#: tensors (parameter counts, a discriminator's accuracy at every step, weights, logits).
RunResult = dict[str, float | torch.Tensor]

#: A run of a grid is a ``NamedTuple`` of strings and numbers with a field ``seed`` (e.g. each
#: benchmark's ``Run(method, k, seed)``), passed to the run as ``run(*job)``.
Job = NamedTuple


def k_label(k: int | None) -> str:
    """``None`` (every labelled image) → ``"all"``, else the number as a string."""
    return "all" if k is None else str(k)


def parse_k(text: str) -> int | None:
    """``"all"`` → ``None`` (every label), else a positive integer."""
    return None if text.strip() == "all" else int(text)


def seed_range(n: int, offset: int = 0) -> tuple[int, ...]:
    """Seeds ``offset, …, offset + n − 1``: the book draws its claims from ``offset = 0``; a
    disjoint range (e.g. ``offset = 100``) checks that they hold for seeds the tests never used."""
    if n < 1 or offset < 0:
        raise ValueError(
            f"need at least one seed and a non-negative offset, got n={n}, offset={offset}"
        )
    return tuple(range(offset, offset + n))


@contextmanager
def one_thread() -> Iterator[None]:
    """Run a block with one intra-op thread (restored afterwards): the benchmarks' runs are
    then identical whatever ``OMP_NUM_THREADS`` says."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def workers() -> int:
    """Worker processes for a grid: ``$TRANSFERLAB_WORKERS``, else one per CPU core on Linux
    (one in all on CUDA, where a single process keeps the GPU busy, and on other systems,
    where processes cannot be forked safely)."""
    env = os.environ.get("TRANSFERLAB_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TRANSFERLAB_WORKERS must be a positive integer, got {env!r}")
        return int(env) if sys.platform == "linux" else 1
    if torch.cuda.is_available() or sys.platform != "linux":
        return 1
    return os.cpu_count() or 1


@contextmanager
def _inside_a_grid():
    """One thread, and no progress bar of its own: the grid's bar counts the runs."""
    before = os.environ.get("TRANSFERLAB_QUIET")
    os.environ["TRANSFERLAB_QUIET"] = "1"
    try:
        with one_thread():
            yield
    finally:
        if before is None:
            del os.environ["TRANSFERLAB_QUIET"]
        else:
            os.environ["TRANSFERLAB_QUIET"] = before


def _timed(run: Callable[..., RunResult], job: Job) -> tuple[list[float], dict[str, torch.Tensor]]:
    with _inside_a_grid():
        start = time.perf_counter()
        r = run(*job)
        extras = {
            k: torch.as_tensor(v).detach().cpu() for k, v in r.items() if k not in ("val", "test")
        }
        return [r["val"], r["test"], time.perf_counter() - start], extras


def _prepared(prepare: Callable[[int], object], seed: int) -> None:
    with _inside_a_grid():
        prepare(seed)


def _submit(
    pool: ProcessPoolExecutor,
    jobs: Sequence[Job],
    run: Callable[..., dict],
    prepare: Callable[[int], object] | None,
    seeds: Sequence[int],
) -> list[Future]:
    """Submit every job to ``pool``; with ``prepare``, a seed's jobs as soon as that seed is
    prepared, so no worker waits for the other seeds' preparation (with 3 seeds on 2 workers, the
    third seed's source trains while the first seed's runs start).  Returns the futures in the
    order of ``jobs``."""
    if not prepare:
        return [pool.submit(_timed, run, job) for job in jobs]
    futures: dict[int, Future] = {}
    pending = {pool.submit(_prepared, prepare, s): s for s in seeds}
    for done in as_completed(pending):
        done.result()  # a failed preparation stops the grid with its own error
        futures.update(
            {
                i: pool.submit(_timed, run, job)
                for i, job in enumerate(jobs)
                if job.seed == pending[done]
            }
        )
    return [futures[i] for i in range(len(jobs))]


def _pool(n: int) -> ProcessPoolExecutor:
    # fork, as DataLoader workers do on Linux: no re-import of the caller's script (spawn would
    # re-run a script that lacks an ``if __name__ == "__main__"`` guard), no start-up cost.  A
    # forked child must never start an OpenMP team: the parent's (a notebook kernel's, say) is
    # not copied, and the child would wait for it forever.  So each worker uses one thread for
    # good, from its start: not only inside a run, but also while it pickles the run's tensors
    # for the parent (a large tensor's copy into shared memory is a parallel loop; seen hanging
    # in a page's kernel when the one-thread setting ended with the run).
    return ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context("fork"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )


def run_grid(
    name: str,
    params: dict,
    jobs: Sequence[Job],
    run: Callable[..., RunResult],
    desc: str,
    progress: bool | None = None,
    prepare: Callable[[int], object] | None = None,
) -> dict[Job, RunResult]:
    """``run(*job)`` for every job, each returning ``{"val": acc, "test": acc}`` (``val`` may be
    NaN when a run has no validation accuracy) and, optionally, more tensors (e.g. a
    discriminator's accuracy at every step), timed, and cached on disk as one entry keyed by
    ``params``, the jobs and the code the runs execute (:func:`transferlab.cache.code_version` of
    ``run``'s and ``prepare``'s modules; so the tests, the chapter and the command share one
    computation, and no cached number outlives its code).

    Args:
        run: a module-level function (worker processes import it), called as ``run(*job)``.
        prepare: called once per seed (each job's ``seed``) before the runs, e.g. to
            pretrain and cache that seed's source models once instead of in several workers.
    Returns ``{job: {"val": ..., "test": ..., "seconds": ..., **extras}}`` (accuracies and
    seconds as floats, a run's extra outputs as tensors).
    """
    if unnamed := [job for job in jobs if "seed" not in getattr(type(job), "_fields", ())]:
        raise TypeError(
            f"{name}: a grid's jobs must be NamedTuples with a field 'seed', got {unnamed[0]!r}"
        )
    key = ["/".join(map(str, job)) for job in jobs]
    show = default_progress() if progress is None else progress

    def build() -> dict[str, torch.Tensor]:
        n = min(workers(), len(jobs))
        seeds = sorted({job.seed for job in jobs})
        bar = tqdm(total=len(jobs), desc=desc, disable=not show)
        if n <= 1:
            for s in seeds if prepare else ():
                _prepared(prepare, s)
            results = []
            for job in jobs:
                results.append(_timed(run, job))
                bar.update()
        else:
            with _pool(n) as pool:
                try:
                    futures = _submit(pool, jobs, run, prepare, seeds)
                    results = []
                    for future in futures:
                        results.append(future.result())
                        bar.update()
                except (
                    BaseException
                ):  # a failed run or preparation: drop the queued ones, not wait for them
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        bar.close()
        out = {label: torch.tensor(r, dtype=torch.float64) for label, (r, _) in zip(key, results)}
        out.update(
            {
                f"{label}#{k}": v
                for label, (_, extras) in zip(key, results)
                for k, v in extras.items()
            }
        )
        return out

    code = code_version(run.__module__, *([prepare.__module__] if prepare else []))
    raw = cached(name, {**params, "jobs": key, "code": code, "arithmetic": arithmetic()}, build)
    grid = {}
    for job, label in zip(jobs, key):
        grid[job] = dict(zip(("val", "test", "seconds"), raw[label].tolist()))
        grid[job].update(
            {k.split("#", 1)[1]: v for k, v in raw.items() if k.startswith(label + "#")}
        )
    return grid
