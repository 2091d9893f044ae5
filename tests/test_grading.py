"""Batch grading of Lab 1 with synthetic submissions, hostile ones included, two at a time."""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import nbformat
import pytest

from transferlab.cli import main
from transferlab.grading.batch import grade_folder, grading_limits, load_factor
from transferlab.grading.labs import (
    assign,
    inline_loader,
    private_loader,
    secret_lines,
    solution_sources,
)

ROOT = Path(__file__).parents[1]
LAB = "lab1_finetune"
MASTERS = sorted((ROOT / "labs").glob("*.md"))


def _solutions() -> dict[str, str]:
    """``{function name: solution}`` of the lab's exercises."""
    return {
        first.split("(")[0][4:]: src
        for first, src in solution_sources(ROOT / "labs" / f"{LAB}.md").items()
    }


WRONG_L2SP = (
    "def l2sp(model, reference, alpha):\n"
    "    params = dict(model.named_parameters())\n"
    "    return alpha * sum(((params[n] - r) ** 2).sum() for n, r in reference.items())"
    "  # forgot the 1/2"
)

TAMPER = """import transferlab.grading, transferlab.finetune
transferlab.grading.compare_with_reference = lambda *args, **kwargs: None
transferlab.finetune.l2sp_penalty = lambda model, reference, alpha: l2sp(model, reference, alpha)"""

# name: (answers that replace the stubs, extra top-level cells placed after the q1 answer,
# expected total).
# A plainly answered and a blank notebook of every lab are graded by tests/test_grading_readme.py
# (full marks and zero); here, answers mixed with hostile or broken code.
CASES = {
    "partial": ({"freeze_features", "lr_groups"}, {"l2sp": WRONG_L2SP}, [], 2),
    "raising": (
        {"freeze_features", "lr_groups"},
        {"l2sp": "def l2sp(model, reference, alpha):\n    raise ValueError('oops')"},
        ["raise RuntimeError('a bug outside any exercise')"],
        2,
    ),
    "loop": ({"freeze_features", "l2sp", "lr_groups"}, {}, ["while True:\n    pass"], 3),
    "flood": (
        {"freeze_features", "l2sp", "lr_groups"},
        {},
        ["for _ in range(2000):\n    print('x' * 10_000)"],
        3,
    ),
    "exits": ({"freeze_features", "l2sp", "lr_groups"}, {}, ["import sys\nsys.exit(1)"], 3),
    "deleter": (
        {"freeze_features", "l2sp", "lr_groups"},
        {},
        [
            (
                "import os, shutil\nfor f in os.listdir('.'):\n"
                "    shutil.rmtree(f) if os.path.isdir(f) else os.remove(f)\n"
                "open('../evil.txt', 'w').write('x')"
            )
        ],
        3,
    ),
    "tamper": ({"freeze_features", "lr_groups"}, {"l2sp": WRONG_L2SP}, [TAMPER], 2),
}


def _strings(obj) -> list[str]:
    """Every string in a JSON document (cell sources, outputs, metadata: otter keeps tests
    there)."""
    if isinstance(obj, str):
        return [obj]
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    return [s for v in values for s in _strings(v)]


def _norm(code: str) -> str:
    """Code without spaces, brackets and quotes: otter rewrites tests (``"a"`` → ``'a'``)."""
    return re.sub(r"[\s()'\"]+", "", code)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, made_labs):
    build = tmp_path_factory.mktemp("build")
    lab = made_labs.copy(build, [LAB])[LAB]  # the versions `make labs` wrote, stamp included
    sols = _solutions()
    subs = tmp_path_factory.mktemp("submissions")
    for name, (good, other, extra, _) in CASES.items():
        nb = nbformat.read(lab.student, as_version=4)
        cells = []
        for c in nb.cells:
            if c.cell_type == "code" and c.source.startswith("def "):
                fn = c.source.split("(")[0][4:]
                c.source = sols[fn] if fn in good else other.get(fn, c.source)
                cells.append(c)
                if fn == "freeze_features":
                    cells += [nbformat.v4.new_code_cell(src) for src in extra]
            else:
                cells.append(c)
        nb.cells = cells
        nbformat.write(nb, subs / f"{name}_{LAB}.ipynb")
    (subs / "stray_notes.ipynb").write_text("{not json")
    # as if a submission of an earlier run had replaced the autograder: its stamp still matches,
    # so only a grader that assigns afresh scores these submissions right
    lab.autograder.write_bytes(b"replaced by a submission")
    with mock.patch.object(
        subprocess, "run", side_effect=AssertionError("the copied assignment is stale")
    ):
        assert (
            assign(ROOT / "labs" / f"{LAB}.md", build, reuse=True).autograder == lab.autograder
        )  # a reuser takes it
    before = _digest(subs)
    out = tmp_path_factory.mktemp("out") / "scores.csv"
    # two jobs at once: each still isolated; the cell limit leaves room for a shared CPU
    results = grade_folder(
        subs, out, labs_dir=ROOT / "labs", build_dir=build, timeout_s=300, cell_timeout_s=20, jobs=2
    )
    return {r.student: r for r in results}, out, subs, before, build


@pytest.mark.parametrize("name", list(CASES))
def test_each_submission_gets_the_score_it_earned(graded, name):
    results, *_ = graded
    r = results[name]
    assert r.total == CASES[name][3], f"{name}: {r.scores} ({r.status})\n{r.feedback[-2000:]}"


def test_the_submissions_folder_is_left_untouched(graded):
    _, _, subs, before, _ = graded
    assert _digest(subs) == before
    assert not (subs.parent / "evil.txt").exists()


def test_the_csv_has_a_row_per_submission_and_a_column_per_question(graded):
    _, out, *_ = graded
    rows = list(csv.DictReader(out.open()))
    assert [r["student"] for r in rows] == sorted(r["student"] for r in rows)
    assert {"q1", "q2", "q3", "total", "possible", "status"} <= set(rows[0])
    assert len(rows) == len(CASES) + 1
    stray = next(r for r in rows if r["student"] == "stray_notes")
    assert "cannot tell which lab" in stray["status"]
    feedback = out.parent / "feedback" / f"partial_{LAB}.txt"
    assert "q2: 0 / 1" in feedback.read_text()


def test_student_versions_leak_no_solution_and_no_hidden_test(made_labs):
    for (
        master
    ) in MASTERS:  # the student versions that `transferlab labs` (the README's `make labs`) wrote
        secrets = secret_lines(master)
        assert len(secrets["solution"]) >= 5 and len(secrets["hidden"]) >= 5, master.name
        student_text = _norm(
            "\n".join(
                _strings(
                    json.loads((made_labs.labs / "student" / f"{master.stem}.ipynb").read_text())
                )
            )
        )
        assert (
            _norm('assert _m is not None, "return the model"') in student_text or master.stem != LAB
        )  # sees the tests
        leaked = [s for s in secrets["solution"] + secrets["hidden"] if _norm(s) in student_text]
        assert leaked == [], f"the student version of {master.stem} contains: {leaked}"


def test_grading_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")]) == 2
    out = capsys.readouterr()
    assert "no submissions folder" in out.err and "<student>_<lab>.ipynb" in out.err
    assert "grading with" not in out.out  # no job announced for a batch that cannot start
    assert not (tmp_path / "s.csv").exists()
    assert (
        main(
            [
                "grade",
                str(tmp_path),
                "--labs",
                str(tmp_path / "nolabs"),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    out = capsys.readouterr()
    assert "no labs folder" in out.err and "grading with" not in out.out


def test_bad_jobs_and_missing_labs_are_clear_errors(tmp_path, capsys):
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "s.csv"), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1"):
        grade_folder(tmp_path, tmp_path / "s.csv", jobs=-1)
    assert main(["labs", "--labs", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "no labs folder" in capsys.readouterr().err


def test_default_limits_grow_with_the_jobs_per_core_and_given_ones_are_kept():
    assert load_factor(1, cores=2, load=0.0) == 1.0
    assert load_factor(4, cores=2, load=0.0) == 2.0
    assert load_factor(2, cores=2, load=2.0) == 2.0  # two jobs on a machine already busy
    cores = os.cpu_count() or 1
    timeout, cell = grading_limits(2 * cores)
    assert timeout >= 2 * 600 and cell >= 2 * 60
    assert grading_limits(2 * cores, timeout_s=100, cell_timeout_s=5) == (100, 5)


def test_gradient_and_training_helpers_accept_right_and_explain_wrong():
    import torch

    from transferlab.adapt import grad_reverse
    from transferlab.grading import check_gradient, check_trains

    check_gradient(lambda t: grad_reverse(t, 0.5), torch.randn(4, 3), lambda x, g: -0.5 * g)
    with pytest.raises(AssertionError, match="differs from the reference"):
        check_gradient(
            lambda t: t * 1.0, torch.randn(4, 3), lambda x, g: -0.5 * g, what="GRL gradient"
        )
    with pytest.raises(AssertionError, match="no gradient reached"):
        check_gradient(lambda t: t.detach() * 1.0, torch.randn(4, 3), lambda x, g: g)
    assert check_trains(lambda: 0.9, 0.8, seconds=5) == 0.9
    with pytest.raises(AssertionError, match="below the 95 % required"):
        check_trains(lambda: 0.9, 0.95, seconds=5)


def test_a_private_module_is_immune_to_a_monkeypatch_of_the_shared_one(monkeypatch):
    import torch

    import transferlab.finetune
    import transferlab.grading
    from transferlab.grading import private_module

    monkeypatch.setattr(transferlab.grading, "compare_with_reference", lambda *args, **kwargs: None)
    monkeypatch.setattr(transferlab.finetune, "l2sp_penalty", lambda *args: torch.zeros(()))
    namespace: dict = {}
    exec(private_loader("_private"), namespace)  # noqa: S102 (the loader that assign writes into tests)
    for load in (private_module, namespace["_private"]):
        grading, finetune = load("transferlab.grading"), load("transferlab.finetune")
        assert grading is not transferlab.grading and finetune is not transferlab.finetune
        with pytest.raises(AssertionError, match="differs from the reference"):
            grading.compare_with_reference(
                lambda t: 2 * t, lambda t: t, lambda g: (torch.randn(3, generator=g),)
            )
        assert (
            finetune.l2sp_penalty(torch.nn.Linear(2, 1), {"bias": torch.ones(1)}, 2.0)
            .detach()
            .item()
            > 0
        )
        with pytest.raises(ModuleNotFoundError, match="no module named 'transferlab.nope'"):
            load("transferlab.nope")


def test_own_work_fails_every_way_of_delegating_and_passes_an_answer_of_ones_own():
    """A reference called through its module, through an alias, from a default argument or a
    closure, swallowed by a try, or handed in as the answer or as its base class: each is
    caught, with a message naming the reference; an answer of one's own passes, and every
    reference is restored afterwards."""
    import torch

    import transferlab.finetune
    import transferlab.peft
    from transferlab.grading import Delegated, own_work

    ref, path = transferlab.finetune.l2sp_penalty, "transferlab.finetune.l2sp_penalty"
    model = torch.nn.Linear(2, 1)
    reference = {"bias": torch.ones(1)}

    def own(m, r, a):
        params = dict(m.named_parameters())
        return 0.5 * a * sum(((params[n] - v) ** 2).sum() for n, v in r.items())

    def through_module(m, r, a):
        return transferlab.finetune.l2sp_penalty(m, r, a)

    namespace = {"helper": ref}  # from transferlab.finetune import l2sp_penalty as helper
    exec("def through_alias(m, r, a):\n    return helper(m, r, a)", namespace)  # noqa: S102

    def through_default(m, r, a, _f=ref):
        return _f(m, r, a)

    def swallowed(m, r, a):
        try:
            return transferlab.finetune.l2sp_penalty(m, r, a)
        except Exception:  # noqa: BLE001
            return own(m, r, a)

    class Sub(transferlab.peft.LoRALinear):
        pass

    cases = [
        (ref, path),
        (through_module, path),
        (namespace["through_alias"], path),
        (through_default, path),
        (swallowed, path),
        (Sub, "transferlab.peft.LoRALinear"),
    ]
    for answer, refs in cases:
        with pytest.raises(Delegated, match=f"uses the package's {refs}: the exercise is to write"):
            own_work(answer, [refs], call=lambda a=answer: a(model, reference, 1.0), what="it")
    assert transferlab.finetune.l2sp_penalty is ref and namespace["helper"] is ref  # restored
    got = own_work(
        own, [path, "transferlab.finetune.L2SP"], call=lambda: own(model, reference, 1.0)
    )
    assert torch.allclose(got, ref(model, reference, 1.0))


def test_assign_writes_the_loader_into_each_test_and_refuses_a_shared_helper(tmp_path):
    test = (
        "# HIDDEN\nimport torch\n"
        "from transferlab.grading import private_module as _p  # a comment\n"
        "_grading = _p('transferlab.grading')"
    )
    assert (
        inline_loader(test)
        == "# HIDDEN\nimport torch\n"
        + private_loader("_p")
        + "\n_grading = _p('transferlab.grading')"
    )
    assert "def _p(name):" in private_loader("_p") and "import" not in inline_loader(
        "assert 1 == 1"
    )
    master = (ROOT / "labs" / f"{LAB}.md").read_text()
    line = "from transferlab.grading import private_module as _private"
    assert line in master
    (tmp_path / f"{LAB}.md").write_text(
        master.replace(line, "from transferlab.grading import compare_with_reference\n" + line)
    )
    with pytest.raises(ValueError, match="imports from the shared transferlab.grading"):
        assign(tmp_path / f"{LAB}.md", tmp_path / "out")


def test_assign_reuses_an_up_to_date_assignment_and_redoes_a_stale_one(
    graded, tmp_path, monkeypatch
):
    """What the book build does (``reuse=True``); the batch grader never reuses (fixture above)."""
    from transferlab.grading import labs

    *_, build = graded

    def no_otter(*args, **kwargs):
        raise AssertionError("otter assign ran again")

    monkeypatch.setattr(subprocess, "run", no_otter)
    reused = labs.assign(ROOT / "labs" / f"{LAB}.md", build, reuse=True)  # made by grade_folder
    assert reused.autograder.is_file() and reused.points == labs.questions(
        ROOT / "labs" / f"{LAB}.md"
    )
    edited = tmp_path / f"{LAB}.md"
    edited.write_text((ROOT / "labs" / f"{LAB}.md").read_text() + "\nOne more line.\n")
    shutil.copytree(build, tmp_path / "build")
    with pytest.raises(
        AssertionError, match="otter assign ran again"
    ):  # the master changed: assigned anew
        labs.assign(edited, tmp_path / "build", reuse=True)


COPYING = """import copy

def freeze_features(model):
    model = copy.deepcopy(model)  # works on a copy: the caller's model is left trainable
    for p in model.features.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return model"""

OWN_TEST = """from transferlab.models import SmallCNN as _SmallCNN

_model = _SmallCNN()
assert freeze_features(_model) is _model, "freeze the model you are given, not a copy"
"""


def test_an_instructors_own_hidden_test_fails_a_submission_that_passes_the_public_ones(
    tmp_path, made_labs
):
    """``grade --hidden-tests DIR`` (the instructors' page): a test of the instructor's,
    ``DIR/<lab>/q1_*.py``, kept outside the repository, joins the autograder's."""
    from transferlab.models import SmallCNN

    ns: dict = {}
    exec(COPYING, ns)  # noqa: S102 (the submission's answer, run as the public check runs it)
    frozen = ns["freeze_features"](SmallCNN())
    assert not any(p.requires_grad for p in frozen.features.parameters())  # the public check
    assert all(p.requires_grad for p in frozen.head.parameters())

    lab = made_labs.copy(tmp_path / "given", [LAB])[LAB]
    sols = _solutions()
    nb = nbformat.read(lab.student, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and c.source.startswith("def "):
            fn = c.source.split("(")[0][4:]
            c.source = COPYING if fn == "freeze_features" else sols[fn]
    (tmp_path / "subs").mkdir()
    nbformat.write(nb, tmp_path / "subs" / f"copier_{LAB}.ipynb")
    own = tmp_path / "my-hidden-tests" / LAB
    own.mkdir(parents=True)
    (own / "q1_same_model.py").write_text(OWN_TEST)
    (result,) = grade_folder(
        tmp_path / "subs",
        tmp_path / "scores.csv",
        labs_dir=ROOT / "labs",
        build_dir=tmp_path / "build",
        hidden_tests=tmp_path / "my-hidden-tests",
        jobs=1,
    )
    # the public check and the master's hidden tests pass, the instructor's own fails: the
    # question is all or nothing, and the feedback gives the failure's message, not the test
    assert result.scores == {"q1": 0.0, "q2": 1.0, "q3": 1.0, "q4": 2.0}, result
    assert result.reasons == {"q1": "AssertionError: freeze the model you are given, not a copy"}
    with pytest.raises(ValueError, match="name the file after the question"):
        (own / "notes.py").write_text("assert True")
        grade_folder(
            tmp_path / "subs",
            tmp_path / "scores.csv",
            labs_dir=ROOT / "labs",
            build_dir=tmp_path / "build",
            hidden_tests=tmp_path / "my-hidden-tests",
        )
