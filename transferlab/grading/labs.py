"""Student and autograder versions of the labs, made with otter-grader's ``otter assign``.

A lab's master is a MyST-markdown notebook (``labs/*.md``) in otter's format: raw cells
``# BEGIN QUESTION`` / ``# BEGIN SOLUTION`` / ``# BEGIN TESTS``, test cells of ``assert``s, and
``# HIDDEN`` on the first line of a hidden test.  :func:`assign` converts it to ``.ipynb`` and runs
``otter assign``; the student notebook keeps the public tests (run by ``grader.check("q1")``),
the autograder zip holds every test.

Inside an exercise's code cell, ``# BEGIN SOLUTION NO PROMPT`` ... ``# END SOLUTION`` holds the
solution, and a string literal whose lines end with ``# BEGIN PROMPT`` ... ``# END PROMPT``
holds the stub students get (``raise NotImplementedError("exercise q1: ...")``).  The cell
tags ``hide-input`` (solution cells) and ``remove-cell`` (hidden tests) shape the page the book
publishes; they are dropped from the student notebook.

Otter runs every test cell on its own copy of the submission's namespace, after the submission's
code: a test must define what it uses, and must not trust a shared module that the submission may
have monkeypatched.  A test in a master reaches the check helpers and the reference functions
through private copies of their modules, made by the loader ``private_module`` of
``transferlab.grading``, which it imports in one line
(``from transferlab.grading import private_module as _private``; enough under nbval, where no
submission runs).  :func:`assign` replaces that line, in every test it generates, by the
loader's own source (``private_loader``), so each test in the student notebook and in the
autograder defines its own loader, which no submission can reach; it refuses a test that imports
anything else from ``transferlab.grading``.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BOOK_TAGS = ("hide-input", "remove-cell")  # tags for the published page only
_BEGIN_SOLUTION = re.compile(r"(\s*)# BEGIN SOLUTION( NO PROMPT)?$")
# the line of a master's test that imports the loader, which assign writes out in its place
_LOADER_IMPORT = re.compile(
    r"^([ \t]*)from transferlab\.grading import private_module(?: as (\w+))?[ \t]*(?:#.*)?$",
    re.MULTILINE,
)
# any other import from transferlab.grading in a test reaches the copy a submission can patch
_SHARED_GRADING = re.compile(
    r"^[ \t]*(from transferlab\.grading\b.* import |import transferlab\.grading\b)", re.MULTILINE
)


@dataclass
class AssignedLab:
    """Where :func:`assign` wrote a lab's versions."""

    name: str
    student: Path  # the student notebook (solutions removed, public checks kept)
    autograder: Path  # otter's autograder zip (all tests, hidden ones included)
    points: dict[str, float] = field(default_factory=dict)  # question → points
    solutions: Path | None = None  # for instructors: the solved notebook, every test included


# a MyST role in a Markdown cell: {doc}`../book/finetune`, {term}`LoRA <lora>`, {ref}`text <label>`
_ROLE = re.compile(r"\{([a-z:]+)\}`([^`]+)`")
_EXPLICIT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.DOTALL)


def _page_title(page: Path) -> str | None:
    if page.is_file():
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return None


def plain_markdown(text: str, base: str | Path = "labs") -> str:
    """A Markdown cell's text with its MyST roles (which Jupyter shows as raw ``{doc}`...```) made
    plain Markdown: ``{doc}`../book/finetune``` becomes the chapter's title in italics, *Pretrain
    and fine-tune* (read from ``base/../book/finetune.md``), a role with an explicit text
    (``{term}`LoRA <lora>```) its text, and any other role its content as code."""

    def plain(match: re.Match) -> str:
        role, content = match.groups()
        explicit = _EXPLICIT.match(content)
        text, target = (explicit.group(1), explicit.group(2)) if explicit else (None, content)
        if role == "doc":
            return f"*{text or _page_title(Path(base) / f'{target}.md') or target}*"
        if role in ("term", "ref", "numref", "cite", "cite:p", "cite:t"):
            return text or target.lstrip("~")
        return f"`{text or target.lstrip('~')}`"

    return _ROLE.sub(plain, text)


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


def split_exercise(source: str) -> tuple[str, str]:
    """``(stub, solution)`` of an exercise cell of a master: the code otter gives students (the
    prompt, or ``...`` where a solution block has no prompt) and the worked solution, both without
    otter's marker lines."""
    stub, solution = [], []
    in_solution = in_prompt = False
    for line in source.splitlines():
        text = line.rstrip()
        if begin := _BEGIN_SOLUTION.match(text):
            in_solution = True
            if not begin.group(2):
                stub.append(begin.group(1) + "...")
        elif text.endswith("# END SOLUTION"):
            in_solution = False
        elif text.endswith("# BEGIN PROMPT"):
            in_prompt = True
        elif text.endswith("# END PROMPT"):
            in_prompt = False
        else:
            if not in_solution:
                stub.append(line)
            if not in_prompt:
                solution.append(line)
    return "\n".join(stub), "\n".join(solution)


def private_loader(name: str = "private_module") -> str:
    """The code that :func:`assign` writes into a generated test in place of the line
    ``from transferlab.grading import private_module as NAME``: the source of that function,
    renamed ``NAME``, without its docstring and annotations (otter rewrites tests as doctests)."""
    from transferlab.grading import private_module

    tree = ast.parse(textwrap.dedent(inspect.getsource(private_module)))
    (loader,) = tree.body
    loader.name = name
    if ast.get_docstring(loader) is not None:
        loader.body = loader.body[1:]
    loader.returns = None
    for arg in loader.args.args:
        arg.annotation = None
    return ast.unparse(tree)


def inline_loader(test: str) -> str:
    """A master's test cell with its import of the loader replaced by the loader's source
    (``private_loader``); a test that does not import it is returned as it is."""
    return _LOADER_IMPORT.sub(
        lambda m: textwrap.indent(private_loader(m.group(2) or "private_module"), m.group(1)), test
    )


def lab_test_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The test cells of a lab: the code cells between ``# BEGIN TESTS`` and ``# END TESTS``."""
    found, inside = [], False
    for cell in nb.cells:
        marker = cell.source.strip() if cell.cell_type == "raw" else ""
        if marker in ("# BEGIN TESTS", "# END TESTS"):
            inside = marker == "# BEGIN TESTS"
        elif inside and cell.cell_type == "code":
            found.append(cell)
    return found


def extra_hidden_tests(folder: str | Path, master: str | Path) -> dict[str, list[str]]:
    """An instructor's own hidden tests of one lab: ``folder/LAB/QUESTION*.py`` (e.g.
    ``my-tests/lab1_finetune/q1_returns_the_model.py``), each file one test: plain Python with
    ``assert`` statements, as a master's hidden tests are.  ``{question: [code, ...]}``; ``{}``
    when the lab has no folder there.

    Raises:
        FileNotFoundError: no folder ``folder``.
        ValueError: a file that names no question of the lab.
    """
    folder, master = Path(folder), Path(master)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no folder of hidden tests at {folder}; make one with a sub-folder per lab "
            "(e.g. lab1_finetune/q1_extra.py)"
        )
    names = list(questions(master))
    found: dict[str, list[str]] = {}
    for path in sorted((folder / master.stem).glob("*.py")):
        question = next(
            (q for q in sorted(names, key=len, reverse=True) if path.stem.startswith(q)), None
        )
        if question is None:
            raise ValueError(
                f"{path}: name the file after the question it tests, one of {names} "
                f"(e.g. {names[0]}_extra.py)"
            )
        found.setdefault(question, []).append(path.read_text())
    return found


def _add_hidden_tests(nb: nbformat.NotebookNode, extra: dict[str, list[str]]) -> None:
    """Each question's extra tests as hidden test cells, at the end of its tests."""
    import yaml

    question = None
    cells = []
    for cell in nb.cells:
        text = cell.source.strip() if cell.cell_type == "raw" else ""
        if text.startswith("# BEGIN QUESTION"):
            question = str((yaml.safe_load(text.split("\n", 1)[1]) or {})["name"])
        if text == "# END TESTS" and question in extra:
            for code in extra[question]:
                cells.append(nbformat.v4.new_code_cell("# HIDDEN\n" + code.strip()))
        cells.append(cell)
    nb.cells = cells


def _read_master(master: str | Path) -> nbformat.NotebookNode:
    import jupytext

    master = Path(master)
    if not master.is_file():
        raise FileNotFoundError(f"no lab master at {master}")
    return jupytext.read(master, fmt="md:myst")


def solution_sources(master: str | Path) -> dict[str, str]:
    """``{first line: solution}`` for every exercise cell of a master lab.

    The first line (``def l2sp(...)``, ``class GradReverse(...)``) is the same in the student
    notebook, so :func:`fill_in` can put the solutions into a student notebook: a reference
    submission.
    """
    return {
        cell.source.splitlines()[0]: split_exercise(cell.source)[1]
        for cell in _read_master(master).cells
        if cell.cell_type == "code" and "# BEGIN SOLUTION" in cell.source
    }


def fill_in(student: nbformat.NotebookNode, answers: Mapping[str, str]) -> nbformat.NotebookNode:
    """A copy of a student notebook whose exercise cells are replaced by ``answers`` (keyed by
    the cell's first line, as :func:`solution_sources` returns them); other cells are kept."""
    nb = copy.deepcopy(student)
    for cell in nb.cells:
        first = cell.source.splitlines()[0] if cell.cell_type == "code" and cell.source else None
        if first in answers:
            cell.source = answers[first]
    return nb


def secret_lines(master: str | Path, min_length: int = 12) -> dict[str, list[str]]:
    """``{"solution": [...], "hidden": [...]}``: the lines of a master's solutions and of its hidden
    tests that appear nowhere else in it, not even inside a public line or the text
    (``seed_everything(seed)`` in a solution, when the exercise says "call
    ``seed_everything(seed)``", is no secret); stripped, longer than ``min_length``.  None of
    them may reach a student notebook; no hidden line and no uncollapsed solution line may reach
    the book.
    """
    found: dict[str, set[str]] = {"solution": set(), "hidden": set(), "public": set()}
    for cell in _read_master(master).cells:
        hidden = cell.cell_type == "code" and cell.source.lstrip().startswith("# HIDDEN")
        in_solution = False
        for line in cell.source.splitlines():
            if line.rstrip().endswith(
                ("# END SOLUTION", "# BEGIN SOLUTION", "# BEGIN SOLUTION NO PROMPT")
            ):
                in_solution = "BEGIN" in line
                continue
            found["hidden" if hidden else "solution" if in_solution else "public"].add(line.strip())
    public = "\n".join(found["public"])
    return {
        kind: sorted(
            s for s in found[kind] if len(s) > min_length and s != "# HIDDEN" and s not in public
        )
        for kind in ("solution", "hidden")
    }


def lab_masters(labs_dir: str | Path = "labs") -> list[Path]:
    """The lab masters ``labs_dir/*.md``, sorted.

    Raises:
        FileNotFoundError: no such folder, or no master in it.
    """
    if not Path(labs_dir).is_dir():
        raise FileNotFoundError(f"no labs folder at {labs_dir}")
    masters = sorted(Path(labs_dir).glob("*.md"))
    if not masters:
        raise FileNotFoundError(f"no lab masters (*.md) in {labs_dir}")
    return masters


def assign_all(
    labs_dir: str | Path = "labs", out_dir: str | Path = "_build/labs", reuse: bool = False
) -> list[AssignedLab]:
    """:func:`assign` every ``labs_dir/*.md`` into ``out_dir/student`` and ``out_dir/autograder``,
    one lab per core at once (each ``otter assign`` is a process of its own).  ``reuse``: keep a
    lab's versions that are up to date (:func:`assign`; the book build does)."""
    masters = lab_masters(labs_dir)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda m: assign(m, out_dir, reuse=reuse), masters))


def _stamp(master: Path) -> str:
    """What a lab's assigned versions depend on: its master, the titles its ``{doc}`` roles
    resolve to (:func:`plain_markdown`), the grading package (this module, the loader each test
    inlines) and the versions of the tools that write them."""
    from importlib.metadata import version

    text = master.read_text(encoding="utf-8")
    h = hashlib.sha256(text.encode())
    h.update(plain_markdown(text, master.parent).encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    for tool in ("otter-grader", "jupytext", "nbformat"):
        h.update(f"{tool}=={version(tool)}".encode())
    return h.hexdigest()


def assign(
    master: str | Path,
    out_dir: str | Path,
    reuse: bool = False,
    extra_tests: dict[str, list[str]] | None = None,
) -> AssignedLab:
    """Generate the student notebook and the autograder of one lab.

    Args:
        master: the master lab, ``labs/NAME.md``.
        out_dir: gets ``student/NAME.ipynb``, ``autograder/NAME-autograder.zip`` and, for
            instructors, ``solutions/NAME.ipynb`` (otter's solved notebook, solutions in place),
            and ``autograder/NAME.stamp``, a digest of what
            they were made from.
        reuse: keep the versions already in ``out_dir`` if they were made from this master by
            this code (a stamp over the master, the page titles its roles resolve to, the
            grading package and the versions of otter, jupytext and nbformat; the book build
            reuses, since ``otter assign`` takes about 10 s a lab).  The batch grader never
            reuses: a submission runs as the grader's user and could have replaced an
            autograder left in ``out_dir`` by an earlier run.
        extra_tests: an instructor's own hidden tests, ``{question: [code, ...]}``
            (:func:`extra_hidden_tests`), added to the master's (never reused).

    Each test's import of the loader (``from transferlab.grading import private_module as NAME``)
    becomes the loader's own source (``private_loader``): every generated test is
    self-contained, and no submission can replace the loader a test uses.

    Raises:
        ValueError: a test imports something else from ``transferlab.grading`` (the shared copy,
            which a submission can monkeypatch).
        RuntimeError: otter assign failed (its output is in the message).
    """
    import jupytext

    master, out_dir = Path(master).resolve(), Path(out_dir).resolve()
    name = master.stem
    student, autograder, solutions = (
        out_dir / "student" / f"{name}.ipynb",
        out_dir / "autograder" / f"{name}-autograder.zip",
        out_dir / "solutions" / f"{name}.ipynb",
    )
    stamp, digest = out_dir / "autograder" / f"{name}.stamp", _stamp(master)
    if (
        reuse
        and not extra_tests
        and student.is_file()
        and autograder.is_file()
        and solutions.is_file()
        and stamp.is_file()
        and stamp.read_text() == digest
    ):
        return AssignedLab(name, student, autograder, questions(master), solutions)
    nb = _read_master(master)
    if extra_tests:
        _add_hidden_tests(nb, extra_tests)
    for cell in lab_test_cells(nb):
        cell.source = inline_loader(cell.source)
        if shared := _SHARED_GRADING.search(cell.source):
            raise ValueError(
                f"a test in {master} imports from the shared transferlab.grading, which a "
                f"submission can replace ({shared.group(0).strip()!r}): import only its loader, "
                f"'from transferlab.grading import private_module as _private', and use "
                f"_private('transferlab.grading') and _private(<the reference's module>)\n"
                f"{cell.source}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        nb_path = Path(tmp) / f"{name}.ipynb"
        jupytext.write(nb, nb_path, fmt="ipynb")
        dist = Path(tmp) / "dist"
        proc = subprocess.run(
            [sys.executable, "-m", "otter", "assign", str(nb_path), str(dist)],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"otter assign failed for {master}:\n{proc.stdout}\n{proc.stderr}")
        student.parent.mkdir(parents=True, exist_ok=True)
        autograder.parent.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)  # written last: an interrupted assignment is never reused
        nb = nbformat.read(dist / "student" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if any(t in BOOK_TAGS for t in tags):
                cell.metadata["tags"] = [t for t in tags if t not in BOOK_TAGS]
            if cell.cell_type == "markdown":  # the book's roles, as plain Markdown for Jupyter
                cell.source = plain_markdown(cell.source, master.parent)
            if cell.cell_type == "code" and cell.source.strip() == "grader.check_all()":
                # the running score at the end (check_all_cell: true): for the student; the grader
                # runs every test anyway, so it skips this cell as it skips the final experiment
                cell.metadata["tags"] = [*cell.metadata.get("tags", []), "otter_ignore"]
        nbformat.write(nb, student)
        (zip_path,) = (dist / "autograder").glob("*.zip")
        shutil.copy(zip_path, autograder)
        solutions.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dist / "autograder" / f"{name}.ipynb", solutions)
        partial = stamp.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        partial.write_text(digest)
        os.replace(partial, stamp)
    return AssignedLab(name, student, autograder, questions(master), solutions)
