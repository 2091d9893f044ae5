"""The README's lab commands, run as written from the repository root, with default options:

    make labs                            (its recipe: .venv/bin/transferlab labs --out _build/labs)
    .venv/bin/transferlab grade submissions/ --out grades/scores.csv

on four submissions of every lab: answered (full marks), blank (zero), delegating (every answer
calls the package's own version of it, from lab_submissions.py: zero) and partial (only the
first exercise answered: its points).  They run in a copy of
the repository's layout in a temporary folder (``labs/`` copied, ``.venv`` and ``book/`` linked), so
that a real ``submissions/`` or ``grades/`` folder in the checkout is never touched.  ``make labs``
runs once per session (the ``made_labs`` fixture of conftest.py), for these commands and for the
tests that execute and grade its student notebooks (test_labs.py, test_grading.py).
"""

import csv
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from lab_submissions import DELEGATING

from transferlab.grading.labs import fill_in, questions, solution_sources

ROOT = Path(__file__).parents[1]
MASTERS = sorted((ROOT / "labs").glob("*.md"))


def _readme_command(prefix: str) -> str:
    """The README's command line that starts with ``prefix``, without its comment."""
    lines = [ln.split("  #")[0].strip() for ln in (ROOT / "README.md").read_text().splitlines()]
    found = [ln for ln in lines if ln.startswith(prefix)]
    assert found, f"the README no longer shows a command starting with {prefix!r}"
    return found[0]


def _make_recipe(target: str) -> str:
    """The command ``make TARGET`` runs, with ``$(BIN)`` spelled out as ``.venv/bin``."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", makefile, flags=re.MULTILINE)
    assert recipe, f"no '{target}' target in the Makefile"
    return recipe.group(1).replace("$(BIN)", ".venv/bin")


@pytest.fixture(scope="module")
def graded(made_labs):
    repo = made_labs.repo  # where `make labs` has run (and succeeded), from the repository's root
    assert "make labs" in _readme_command("make labs")
    labs_cmd, grade_cmd = _make_recipe("labs"), _readme_command(".venv/bin/transferlab grade")
    assert labs_cmd == made_labs.command == ".venv/bin/transferlab labs --out _build/labs"
    assert grade_cmd == ".venv/bin/transferlab grade submissions/ --out grades/scores.csv"
    env = dict(os.environ, TRANSFERLAB_QUIET="1")
    (repo / "submissions").mkdir()
    for master in MASTERS:  # what students hand in: their copy of the student notebook
        student = nbformat.read(
            repo / "_build" / "labs" / "student" / f"{master.stem}.ipynb", as_version=4
        )
        nbformat.write(
            fill_in(student, solution_sources(master)),
            repo / "submissions" / f"answered_{master.stem}.ipynb",
        )
        nbformat.write(student, repo / "submissions" / f"blank_{master.stem}.ipynb")
        solutions = solution_sources(master)
        first = next(iter(solutions))
        nbformat.write(
            fill_in(student, {first: solutions[first]}),
            repo / "submissions" / f"partial_{master.stem}.ipynb",
        )
        assert set(DELEGATING[master.stem]) == set(solutions), master.stem  # every exercise
        nbformat.write(
            fill_in(student, DELEGATING[master.stem]),
            repo / "submissions" / f"delegating_{master.stem}.ipynb",
        )
    grade = subprocess.run(
        grade_cmd,
        shell=True,
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=1800,
    )
    rows = (
        list(csv.DictReader((repo / "grades" / "scores.csv").open()))
        if grade.returncode == 0
        else []
    )
    return grade, {(r["student"], r["lab"]): r for r in rows}, repo


def test_the_commands_succeed_with_one_job_per_core(graded):
    grade, rows, repo = graded
    assert grade.returncode == 0, grade.stdout[-3000:] + grade.stderr[-3000:]
    assert f"grading with {os.cpu_count()} job(s)" in grade.stdout
    assert len(rows) == 4 * len(MASTERS)
    assert len(list((repo / "grades" / "feedback").glob("*.txt"))) == 4 * len(MASTERS)


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_an_answered_lab_gets_full_marks_and_a_blank_one_zero(graded, master):
    grade, rows, repo = graded
    assert grade.returncode == 0, grade.stderr[-3000:]
    possible = sum(questions(master).values())
    answered, blank = rows[("answered", master.stem)], rows[("blank", master.stem)]
    feedback = (repo / "grades" / "feedback" / f"answered_{master.stem}.txt").read_text()
    assert float(answered["total"]) == float(answered["possible"]) == possible, (
        f"{answered}\n{feedback[-3000:]}"
    )
    assert float(blank["total"]) == 0 and float(blank["possible"]) == possible, blank
    assert answered["status"] == blank["status"] == "graded"


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_a_delegating_lab_gets_zero_and_a_partial_one_the_points_it_earned(graded, master):
    grade, rows, repo = graded
    assert grade.returncode == 0, grade.stderr[-3000:]
    points = questions(master)
    delegating, partial = rows[("delegating", master.stem)], rows[("partial", master.stem)]
    feedback = (repo / "grades" / "feedback" / f"delegating_{master.stem}.txt").read_text()
    assert float(delegating["total"]) == 0 and delegating["status"] == "graded", (
        f"{delegating}\n{feedback[-3000:]}"
    )
    # the instructor's feedback says why, from the hidden check (its message, not its code)
    assert "uses the package's transferlab." in feedback, feedback[-3000:]
    first = next(iter(points))
    assert float(partial["total"]) == float(partial[first]) == points[first], partial


def test_make_labs_writes_each_lab_solved_for_instructors(made_labs):
    """``_build/labs/solutions/<lab>.ipynb`` (the instructors' page names it): every line of the
    master's solutions is in it; the student notebook has none of them."""
    from transferlab.grading.labs import secret_lines

    for master in MASTERS:
        solved, student = (
            "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
            for path in (
                made_labs.labs / "solutions" / f"{master.stem}.ipynb",
                made_labs.labs / "student" / f"{master.stem}.ipynb",
            )
        )
        lines = secret_lines(master)["solution"]
        assert lines and all(s in solved for s in lines), master.stem
        assert not [s for s in lines if s in student], master.stem
    assert "_build/labs/solutions/" in (ROOT / "book" / "instructors.md").read_text()
