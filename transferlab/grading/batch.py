"""Batch grading: a folder of submitted lab notebooks → a score table and per-student feedback.

Each submission is graded by otter-grader's ``otter run`` in its own process, in its own
temporary working folder that holds a *copy* of the notebook (the submissions folder is only
read), with a time limit per cell and per notebook and a cap on what it may print.  A
submission that raises, hangs, floods its output, exits or deletes files gets the score of the
questions it still answers correctly, and the batch goes on.  Up to ``jobs`` submissions are
graded at once (each still in its own process and folder); the default limits grow with the
load, so that a correct but slow submission is not cut off because it shared the machine.

Submissions are found as ``SUBMISSIONS/<student>/<lab>.ipynb`` or
``SUBMISSIONS/<student>_<lab>.ipynb`` (``<lab>`` as in ``labs/<lab>.md``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

TIMEOUT_S = 600.0  # default limit per notebook, for one job alone on an idle core
CELL_TIMEOUT_S = 60.0  # default limit per cell, likewise

# Runs first in every graded notebook: its own scratch folder as working directory (so that
# deleting "every file here" cannot touch the grader's files), a time limit per cell and a cap
# on printed output.
_GUARD = """# transferlab grading guard (inserted by the grader)
import os as _tl_os, signal as _tl_signal, sys as _tl_sys
_tl_home = _tl_os.getcwd()

def _tl_pre_cell(info):
    source = getattr(info, "raw_cell", "") or ""
    # otter's own cells (checks, export) need its folder; every other cell runs in a scratch folder
    _tl_os.chdir(_tl_home if ("otter" in source or ".check(" in source) else {scratch!r})
    _tl_signal.alarm({cell_s})

def _tl_timeout(signum, frame):
    raise TimeoutError("this cell ran longer than {cell_s} s and was stopped by the grader")

class _TlCappedStream:
    def __init__(self, inner, limit):
        self._inner, self._left = inner, limit
    def write(self, text):
        if self._left > 0:
            self._inner.write(text[: self._left])
            if len(text) >= self._left:
                self._inner.write("\\n[output truncated by the grader]\\n")
        self._left -= len(text)
        return len(text)
    def __getattr__(self, name):
        return getattr(self._inner, name)

_tl_signal.signal(_tl_signal.SIGALRM, _tl_timeout)
get_ipython().events.register("pre_run_cell", _tl_pre_cell)
get_ipython().events.register("post_run_cell", lambda *a: _tl_signal.alarm(0))
_tl_sys.stdout = _TlCappedStream(_tl_sys.stdout, {max_output})
_tl_sys.stderr = _TlCappedStream(_tl_sys.stderr, {max_output})
"""


@dataclass
class Result:
    """The grade of one submission."""

    student: str
    lab: str
    scores: dict[str, float] = field(default_factory=dict)  # question → points earned
    possible: dict[str, float] = field(default_factory=dict)  # question → points possible
    status: str = "graded"  # or what went wrong
    feedback: str = ""
    seconds: float = 0.0
    #: For each question that lost points, why, in the words of the first failure message of
    #: its checks, hidden ones included (the message only, never a hidden test's code).
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def _first_failure(output: str) -> str:
    """The first exception message in otter's report of a question (``AssertionError: ...``,
    ``NotImplementedError: ...``), a :class:`~transferlab.grading.Delegated` one first, or
    ``""``: what a student may read of a hidden check."""
    import re

    found = re.search(r"^\s*(?:\w+\.)*(Delegated): (.+)$", output, re.MULTILINE) or re.search(
        r"^\s*(?:\w+\.)*(\w*(?:Error|Exception)): (.+)$", output, re.MULTILINE
    )
    return f"{found.group(1)}: {found.group(2).strip()[:300]}" if found else ""


def load_factor(jobs: int, cores: int | None = None, load: float | None = None) -> float:
    """How much slower than alone on an idle core a grading job may run:
    ``max(1, (jobs + load) / cores)``, with ``load`` the 1-minute load average (what else runs)."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1.0, (jobs + load) / cores)


def grading_limits(
    jobs: int,
    timeout_s: float | None = None,
    cell_timeout_s: float | None = None,
) -> tuple[float, float]:
    """``(per-notebook, per-cell)`` limits in seconds for ``jobs`` parallel jobs: a limit given
    is used as is; a default one (``TIMEOUT_S``, ``CELL_TIMEOUT_S``) is scaled by
    :func:`load_factor`."""
    factor = load_factor(jobs) if timeout_s is None or cell_timeout_s is None else 1.0
    return (
        TIMEOUT_S * factor if timeout_s is None else timeout_s,
        CELL_TIMEOUT_S * factor if cell_timeout_s is None else cell_timeout_s,
    )


def find_submissions(folder: Path, labs: list[str]) -> list[tuple[str, str | None, Path]]:
    """``(student, lab or None, path)`` for every notebook below ``folder``, sorted."""
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        stem = path.stem
        if stem in labs and path.parent != folder:
            found.append((path.parent.name, stem, path))
            continue
        lab = next((lab for lab in labs if stem.endswith(("_" + lab, "-" + lab))), None)
        student = stem[: -len(lab) - 1] if lab else stem
        found.append((student, lab, path))
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def grade_one(
    notebook: Path,
    autograder: Path,
    student: str,
    lab: str,
    timeout_s: float = TIMEOUT_S,
    cell_timeout_s: float = CELL_TIMEOUT_S,
    max_output: int = 200_000,
    threads: int | None = None,
) -> Result:
    """Grade one notebook with ``otter run`` in an isolated copy; never raises for a bad submission.

    ``threads`` caps the CPU threads of the grading kernel (``OMP_NUM_THREADS``), so that
    parallel jobs do not oversubscribe the cores.
    """
    notebook, autograder = (
        Path(notebook).resolve(),
        Path(autograder).resolve(),
    )  # otter runs elsewhere
    result = Result(student, lab)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tl-grade-") as tmp:
        work, out, scratch = Path(tmp) / "work", Path(tmp) / "out", Path(tmp) / "scratch" / "cwd"
        for folder in (work, out, scratch):
            folder.mkdir(parents=True)
        try:
            nb = nbformat.read(notebook, as_version=4)
        except Exception as exc:  # noqa: BLE001  (any unreadable file is a row, not a crash)
            result.status = f"unreadable notebook ({type(exc).__name__}: {str(exc)[:200]})"
            return result
        guard = _GUARD.format(
            cell_s=int(cell_timeout_s), max_output=int(max_output), scratch=str(scratch)
        )
        nb.cells.insert(0, nbformat.v4.new_code_cell(guard))
        copy = work / f"{lab}.ipynb"
        nbformat.write(nb, copy)
        log = Path(tmp) / "otter.log"
        env = dict(os.environ, TRANSFERLAB_QUIET="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        if threads and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "otter",
                    "run",
                    "--no-logo",
                    "-a",
                    str(autograder),
                    "-o",
                    str(out),
                    str(copy),
                ],
                cwd=work,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                result.status = (
                    f"stopped after {timeout_s:.0f} s (the whole notebook took too long)"
                )
            else:
                _kill_group(proc)  # also ends any process the submission left behind
        results = out / "results.json"
        if results.exists():
            tests = json.loads(results.read_text()).get("tests", [])
            for t in tests:
                if t.get("name") == "Public Tests" or t.get("max_score") is None:
                    continue
                result.scores[t["name"]] = float(t.get("score") or 0.0)
                result.possible[t["name"]] = float(t["max_score"])
                if result.scores[t["name"]] < result.possible[t["name"]]:
                    result.reasons[t["name"]] = _first_failure(t.get("output") or "")
            public = next(
                (t.get("output", "") for t in tests if t.get("name") == "Public Tests"), ""
            )
            result.feedback = public
        elif result.status == "graded":
            tail = log.read_bytes()[-2000:].decode(errors="replace")
            result.status = "grading failed (the notebook's kernel died or otter could not run it)"
            result.feedback = tail
    result.seconds = time.perf_counter() - start
    return result


def grade_folder(
    submissions: str | Path,
    out_csv: str | Path,
    labs_dir: str | Path = "labs",
    build_dir: str | Path = "_build/labs",
    timeout_s: float | None = None,
    cell_timeout_s: float | None = None,
    jobs: int | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_start: Callable[[int, float, float], None] | None = None,
    hidden_tests: str | Path | None = None,
) -> list[Result]:
    """Grade every submission in ``submissions``; write ``out_csv`` and ``feedback/`` beside it.

    Relative paths are taken from the current directory.  ``jobs`` submissions (default: one
    per core, ``os.cpu_count()``) are graded at once, each in its own process and temporary
    folder; limits left to ``None`` are sized for that many jobs (``grading_limits``).
    ``on_start(jobs, timeout_s, cell_timeout_s)`` is called once the folders are checked, before
    any grading; ``on_result`` with each result as soon as it is ready.  ``hidden_tests``: a
    folder of the instructor's own hidden tests, ``LAB/QUESTION*.py``
    (:func:`~transferlab.grading.labs.extra_hidden_tests`), added to each lab's autograder.

    The CSV has one row per submission: ``student, lab, <question>..., total, possible, status``.
    Questions a submission did not get to score 0.

    Raises:
        FileNotFoundError: no submissions folder, no lab masters, or no ``hidden_tests`` folder.
        ValueError: ``jobs`` is less than 1, or a hidden test names no question of its lab.
    """
    from transferlab.grading.labs import assign, extra_hidden_tests, lab_masters

    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    # otter runs in a folder of its own: hand it absolute paths, relative to the caller's cwd
    submissions, out_csv, labs_dir, build_dir = (
        Path(p).resolve() for p in (submissions, out_csv, labs_dir, build_dir)
    )
    if not submissions.is_dir():
        raise FileNotFoundError(
            f"no submissions folder at {submissions}; put the notebooks students handed in "
            "(named <student>_<lab>.ipynb) in one folder and pass its path"
        )
    timeout_s, cell_timeout_s = grading_limits(jobs, timeout_s, cell_timeout_s)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    masters = {m.stem: m for m in lab_masters(labs_dir)}
    extra = {
        lab: extra_hidden_tests(hidden_tests, master) if hidden_tests is not None else {}
        for lab, master in masters.items()
    }
    found = find_submissions(submissions, list(masters))
    if on_start:
        on_start(jobs, timeout_s, cell_timeout_s)
    # the labs handed in, and only those, assigned afresh (never reused: a submission of an earlier
    # run executed as this user and could have replaced an autograder in build_dir), jobs at once
    wanted = sorted({lab for _, lab, _ in found if lab})
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        labs = dict(
            zip(
                wanted,
                pool.map(
                    lambda lab: assign(masters[lab], build_dir, extra_tests=extra[lab]), wanted
                ),
            )
        )

    def grade(found: tuple[str, str | None, Path]) -> Result:
        student, lab, path = found
        if lab is None:
            r = Result(
                student,
                "?",
                status=f"cannot tell which lab {path.name} answers; name it <student>_<lab>.ipynb",
            )
        else:
            r = grade_one(
                path,
                labs[lab].autograder,
                student,
                lab,
                timeout_s=timeout_s,
                cell_timeout_s=cell_timeout_s,
                threads=threads,
            )
            for q, points in labs[lab].points.items():
                r.scores.setdefault(q, 0.0)
                r.possible.setdefault(q, points)
        if on_result:
            on_result(r)
        return r

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(grade, found))
    questions = sorted({q for r in results for q in r.possible})
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "lab", *questions, "total", "possible", "status"])
        for r in results:
            writer.writerow(
                [
                    r.student,
                    r.lab,
                    *[r.scores.get(q, "") for q in questions],
                    r.total,
                    sum(r.possible.values()),
                    r.status,
                ]
            )
    feedback_dir = out_csv.parent / "feedback"
    feedback_dir.mkdir(exist_ok=True)
    for r in results:
        lines = [
            f"{r.student} — {r.lab}: {r.total:g} / {sum(r.possible.values()):g} ({r.status})",
            "",
        ]
        lines += [
            f"{q}: {r.scores.get(q, 0):g} / {r.possible[q]:g}"
            + (f"  ({r.reasons[q]})" if r.reasons.get(q) else "")
            for q in sorted(r.possible)
        ]
        lines += ["", "Public checks:", r.feedback[-20_000:]]
        (feedback_dir / f"{r.student}_{r.lab}.txt").write_text("\n".join(lines))
    return results
