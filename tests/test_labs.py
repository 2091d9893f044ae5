"""The student versions of the labs, executed as a student would run them.

Each lab's versions are the ones the README's ``make labs`` wrote (the ``made_labs`` fixture of
conftest.py, once per session; copied here); its student notebook is then run twice
(all the labs' runs as many at once as there are cores, each in its own kernel):
answered (every stub replaced by the master's solution: every ``grader.check`` passes; the
ungraded experiment at the end, which nbval runs in the master, is left out) and blank
(every check reports a failure with a readable message, and a cell that calls an unanswered stub
raises ``NotImplementedError`` naming the exercise).

Every generated test (in the student notebook and in the autograder) is self-contained: otter runs
each on its own copy of the submission's namespace, so it may use only the exercises' names and
what it defines itself, its private module loader included (written in by ``assign``; the masters
only import it).

(The master labs themselves run under nbval: see conftest.py at the top of the repository.)
"""

import ast
import asyncio
import builtins
import doctest
import os
import re
import symtable
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from transferlab.grading.labs import (
    AssignedLab,
    fill_in,
    lab_test_cells,
    private_loader,
    solution_sources,
    split_exercise,
)

MASTERS = {p.stem: p for p in sorted((Path(__file__).parents[1] / "labs").glob("*.md"))}


@pytest.fixture(scope="module")
def assigned(tmp_path_factory, made_labs) -> dict[str, AssignedLab]:
    """Every lab's student notebook and autograder, as ``make labs`` wrote them, in a folder of this
    module (the notebooks run there)."""
    return made_labs.copy(tmp_path_factory.mktemp("labs"))


def _client(lab: AssignedLab, answered: bool) -> tuple[nbformat.NotebookNode, NotebookClient]:
    """The student notebook (answered or blank) and a client that runs it in its folder, as a
    student would, errors allowed."""
    nb = nbformat.read(lab.student, as_version=4)
    if answered:
        nb = fill_in(nb, solution_sources(MASTERS[lab.name]))
        # the ungraded experiment at the end (tagged otter_ignore, as the grader skips it) is the
        # master's code once the stubs are answered, and nbval already runs the master
        nb.cells = [c for c in nb.cells if "otter_ignore" not in c.metadata.get("tags", [])]
    return nb, NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(lab.student.parent)}},
    )


@pytest.fixture(scope="module")
def executed(assigned) -> dict[tuple[str, bool], nbformat.NotebookNode]:
    """``{(lab, answered): executed notebook}`` for every lab, answered and blank: run as many at
    once as the machine has cores, each in its own kernel (they are independent, and each keeps
    one core busy)."""

    async def run_all() -> dict:
        gate = asyncio.Semaphore(os.cpu_count() or 1)

        async def run(name: str, answered: bool) -> nbformat.NotebookNode:
            async with gate:
                nb, client = _client(assigned[name], answered)
                await client.async_execute()
                return nb

        keys = [(name, answered) for name in assigned for answered in (True, False)]
        return dict(zip(keys, await asyncio.gather(*(run(*key) for key in keys))))

    return asyncio.run(run_all())


def _text(cell) -> str:
    return "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
    )


def _checks(nb) -> dict[str, nbformat.NotebookNode]:
    """``{question: its grader.check cell}``."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and (m := re.search(r'grader\.check\("(\w+)"\)', cell.source)):
            found[m.group(1)] = cell
    return found


def _errors(nb) -> list[tuple[int, str, str]]:
    return [
        (i, o.ename, o.evalue)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


@pytest.mark.parametrize("name", MASTERS)
def test_student_stubs_are_the_masters_prompts_and_name_their_exercise(assigned, name):
    master = jupytext.read(MASTERS[name], fmt="md:myst")
    stubs = [
        split_exercise(c.source)[0]
        for c in master.cells
        if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source
    ]
    student = nbformat.read(assigned[name].student, as_version=4)
    firsts = {s.splitlines()[0] for s in stubs}
    got = [
        c.source
        for c in student.cells
        if c.cell_type == "code" and c.source.partition("\n")[0] in firsts
    ]
    assert got == stubs  # what the book shows as the stub is what otter gives students
    for q in assigned[name].points:
        assert f'NotImplementedError("exercise {q}: ' in "".join(stubs), (
            f"{name}: no stub names exercise {q}"
        )
    assert not any(
        t in c.metadata.get("tags", [])
        for c in student.cells
        for t in ("hide-input", "remove-cell")
    )


@pytest.mark.parametrize("name", MASTERS)
def test_an_answered_student_notebook_passes_every_check(assigned, executed, name):
    nb = executed[(name, True)]
    assert _errors(nb) == []
    checks = _checks(nb)
    assert set(checks) == set(assigned[name].points)
    for q, cell in checks.items():
        assert "All test cases passed" in _text(cell), f"{name} {q}:\n{_text(cell)[-3000:]}"


@pytest.mark.parametrize("name", MASTERS)
def test_a_blank_student_notebook_fails_every_check_with_a_readable_message(
    assigned, executed, name
):
    nb = executed[(name, False)]
    checks = _checks(nb)
    assert set(checks) == set(assigned[name].points)
    first_check = min(nb.cells.index(c) for c in checks.values())
    errors = _errors(nb)
    assert [e for e in errors if e[0] < first_check] == [], (
        "the notebook must run up to its first exercise"
    )
    ignored = [i for i, c in enumerate(nb.cells) if "otter_ignore" in c.metadata.get("tags", [])]
    stub_failed_at = None  # the first ungraded cell that called a blank stub
    for i, ename, evalue in errors:  # cells outside the checks that call a blank stub
        if (
            stub_failed_at is not None
            and i > stub_failed_at
            and i in ignored
            and ename != "NotImplementedError"
        ):  # an ungraded cell after it reads what that cell never computed
            assert ename in ("NameError", "KeyError"), (i, ename, evalue)
            continue
        assert ename == "NotImplementedError" and re.match(r"exercise q\d+: complete ", evalue), (
            i,
            ename,
            evalue,
        )
        if i in ignored and stub_failed_at is None:
            stub_failed_at = i
    for q, cell in checks.items():
        report = _text(cell)
        assert f"{q} results" in report and "Test case failed" in report, report
        # doctest goes on after a failure: the first error is the message, later ones follow from it
        errors = re.findall(r"^\s*(\w+Error): (.+)$", report, flags=re.MULTILINE)
        first = errors[0]
        assert first[0] in ("NotImplementedError", "AssertionError"), (
            f"{name} {q}: unreadable failure\n{report}"
        )
        assert f"exercise {q}: complete " in first[1] or first[0] == "AssertionError", first
        for missing in re.findall(r"NameError: name '(\w+)' is not defined", report):
            assigned_here = re.search(
                rf"^\s*[\w, ]*\b{missing}\b[\w, ]*=[^=]", report, flags=re.MULTILINE
            )
            assert assigned_here, f"{name} {q}: the test uses {missing} that it does not define"


@pytest.mark.parametrize("name", MASTERS)
def test_only_the_final_experiment_is_left_out_of_grading(assigned, name):
    student = nbformat.read(assigned[name].student, as_version=4)
    code = [c for c in student.cells if c.cell_type == "code"]
    ignored = [i for i, c in enumerate(code) if "otter_ignore" in c.metadata.get("tags", [])]
    checks = [i for i, c in enumerate(code) if ".check(" in c.source]
    assert ignored and checks and min(ignored) > max(checks), (
        "only cells after the last check may be skipped by the grader"
    )


# what a pasted copy of the private module loader is made of
LOADER_CODE = ("importlib", "find_spec", "module_from_spec", "exec_module", "_fresh", "_ilu")


def _generated_tests(lab: AssignedLab) -> dict[str, list[tuple[str, bool, str]]]:
    """``{"student": [(question, hidden, source)], "autograder": [...]}``: every test case that
    otter generated, as Python source (otter stores them as doctests)."""

    def cases(question, test):
        for case in test["suites"][0]["cases"]:
            source = "".join(e.source for e in doctest.DocTestParser().get_examples(case["code"]))
            yield question, bool(case["hidden"]), source

    student = nbformat.read(lab.student, as_version=4)
    found = {
        "student": [c for q, t in student.metadata["otter"]["tests"].items() for c in cases(q, t)],
        "autograder": [],
    }
    with zipfile.ZipFile(lab.autograder) as z:
        for path in sorted(n for n in z.namelist() if re.fullmatch(r"tests/\w+\.py", n)):
            module = ast.parse(
                z.read(path).decode()
            )  # otter's OK format: OK_FORMAT = True; test = {...}
            test = next(
                ast.literal_eval(node.value)
                for node in module.body
                if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["test"]
            )
            found["autograder"] += cases(Path(path).stem, test)
    return found


def _free_names(source: str) -> set[str]:
    """The global names that ``source`` reads but neither assigns, imports nor defines, at any
    depth (functions, lambdas, comprehensions), builtins left out."""
    top = symtable.symtable(source, "<test>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    used, tables = set(), [top]
    while tables:
        table = tables.pop()
        tables += table.get_children()
        used |= {
            s.get_name()
            for s in table.get_symbols()
            if s.is_referenced() and (table is top or s.is_global()) and not s.is_imported()
        }
    return used - defined - set(dir(builtins))


def _exercise_names(lab: AssignedLab) -> set[str]:
    """What the student's exercise cells define: the only names a test may take from the
    notebook."""
    student = nbformat.read(lab.student, as_version=4)
    names = set()
    for cell in student.cells:
        if cell.cell_type == "code" and 'NotImplementedError("exercise ' in cell.source:
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
    return names


@pytest.mark.parametrize("name", MASTERS)
def test_no_master_pastes_the_private_module_loader(name):
    text = MASTERS[name].read_text()
    assert [code for code in LOADER_CODE if code in text] == [], (
        "import it: from transferlab.grading import private_module"
    )
    for cell in lab_test_cells(jupytext.read(MASTERS[name], fmt="md:myst")):
        if (
            "_private(" in cell.source
        ):  # nbval runs the master in one namespace: each cell imports it anyway
            assert "from transferlab.grading import private_module as _private" in cell.source, (
                cell.source
            )


@pytest.mark.parametrize("name", MASTERS)
def test_every_generated_test_is_self_contained_and_defines_its_own_loader(assigned, name):
    lab = assigned[name]
    exercises = _exercise_names(lab)
    assert exercises, f"{name}: no exercise cell found in the student notebook"
    generated = _generated_tests(lab)
    assert {q for q, _, _ in generated["autograder"]} == set(lab.points)
    public = [(q, src) for q, hidden, src in generated["autograder"] if not hidden]
    assert [(q, src) for q, hidden, src in generated["student"]] == public, (
        "the student notebook checks the public tests"
    )
    loaders = 0
    for where, tests in generated.items():
        for q, hidden, source in tests:
            label = f"{name} {q} ({where}, {'hidden' if hidden else 'public'})"
            free = _free_names(source)
            assert free <= exercises, (
                f"{label} uses {sorted(free - exercises)}, which it does not define:\n{source}"
            )
            tree = ast.parse(source)
            imported = [
                node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            ]
            imported += [
                a.name
                for node in ast.walk(tree)
                if isinstance(node, ast.Import)
                for a in node.names
            ]
            shared = [m for m in imported if m.startswith("transferlab.grading")]
            assert shared == [], (
                f"{label} imports the shared {shared}, which a submission can patch"
            )
            for (
                node
            ) in tree.body:  # the loader it defines is transferlab.grading.private_module's source
                if isinstance(node, ast.FunctionDef) and "find_spec" in ast.unparse(node):
                    assert ast.unparse(node) == ast.unparse(ast.parse(private_loader(node.name))), (
                        label
                    )
                    loaders += 1
    assert loaders > 0, f"{name}: no generated test loads a private copy of a module"


@pytest.mark.parametrize("name", MASTERS)
def test_make_test_runs_each_master_under_nbval_and_compares_its_verdict(name):
    """``make test`` collects ``labs/`` (pyproject's ``testpaths``), where conftest.py at the top
    makes each cell of a master a test item; each lab prints a verdict on its experiment that
    nbval compares with the cell's ``expected_output``."""
    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    options = config["tool"]["pytest"]["ini_options"]
    assert "labs" in options["testpaths"] and "--nbval-lax" in options["addopts"]
    master = jupytext.read(MASTERS[name], fmt="md:myst")
    expected = [c for c in master.cells if "expected_output" in c.metadata]
    assert expected, f"{name}: no cell states the output that nbval must find"
    for cell in expected:
        assert cell.metadata["expected_output"].endswith("\n") and "print(" in cell.source
