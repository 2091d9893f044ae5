"""Student and autograder versions of the labs, made with otter-grader's ``otter assign``.

A lab's master is a MyST-markdown notebook (``labs/*.md``) in otter's format: raw cells
``# BEGIN QUESTION`` / ``# BEGIN SOLUTION`` / ``# BEGIN TESTS``, test cells of ``assert``s, and
``# HIDDEN`` on the first line of a hidden test.  :func:`assign` converts it to ``.ipynb`` and runs
``otter assign``; the student notebook keeps the public tests (run by ``grader.check("q1")``),
the autograder zip holds every test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AssignedLab:
    """Where :func:`assign` wrote a lab's versions."""

    name: str
    student: Path  # the student notebook (solutions removed, public checks kept)
    autograder: Path  # otter's autograder zip (all tests, hidden ones included)
    points: dict[str, float] = field(default_factory=dict)  # question → points


def questions(master: str | Path) -> dict[str, float]:
    """``{question name: points}`` of a master lab, read from its ``# BEGIN QUESTION`` cells."""
    import jupytext
    import yaml

    nb = jupytext.read(Path(master), fmt="md:myst")
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.lstrip().startswith("# BEGIN QUESTION"):
            meta = yaml.safe_load(cell.source.split("\n", 1)[1]) or {}
            found[str(meta["name"])] = float(meta.get("points", 1))
    return found


def assign_all(labs_dir: str | Path = "labs", out_dir: str | Path = "_build/labs") -> list[AssignedLab]:
    """:func:`assign` every ``labs_dir/*.md`` into ``out_dir/student`` and ``out_dir/autograder``."""
    masters = sorted(Path(labs_dir).glob("*.md"))
    if not masters:
        raise FileNotFoundError(f"no lab masters (*.md) in {labs_dir}")
    return [assign(m, out_dir) for m in masters]


def assign(master: str | Path, out_dir: str | Path) -> AssignedLab:
    """Generate the student notebook and the autograder of one lab.

    Args:
        master: the master lab, ``labs/NAME.md``.
        out_dir: gets ``student/NAME.ipynb`` and ``autograder/NAME-autograder.zip``.

    Raises:
        RuntimeError: otter assign failed (its output is in the message).
    """
    import jupytext

    master, out_dir = Path(master), Path(out_dir)
    name = master.stem
    with tempfile.TemporaryDirectory() as tmp:
        nb_path = Path(tmp) / f"{name}.ipynb"
        jupytext.write(jupytext.read(master, fmt="md:myst"), nb_path, fmt="ipynb")
        dist = Path(tmp) / "dist"
        proc = subprocess.run(
            [sys.executable, "-m", "otter", "assign", str(nb_path), str(dist)],
            capture_output=True, text=True, cwd=tmp,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"otter assign failed for {master}:\n{proc.stdout}\n{proc.stderr}")
        student_dir, grader_dir = out_dir / "student", out_dir / "autograder"
        student_dir.mkdir(parents=True, exist_ok=True)
        grader_dir.mkdir(parents=True, exist_ok=True)
        student = student_dir / f"{name}.ipynb"
        shutil.copy(dist / "student" / f"{name}.ipynb", student)
        (zip_path,) = (dist / "autograder").glob("*.zip")
        autograder = grader_dir / f"{name}-autograder.zip"
        shutil.copy(zip_path, autograder)
    return AssignedLab(name, student, autograder, questions(master))
