"""transferlab.grading.book, the Sphinx extension that shapes the lab pages: a student's page
shows each exercise as its stub and nothing of its solution; the instructors' build
(``TRANSFERLAB_LAB_SOLUTIONS=1``) adds the solution, collapsed.  On a cell built as myst-nb
builds it (the built book is checked by tests/test_student_pages.py)."""

from types import SimpleNamespace

from docutils import nodes
from docutils.utils import new_document
from myst_nb.sphinx_ import HideCodeCellNode

from transferlab.grading.book import _clean_lab_page

EXERCISE = """def l2sp(model, reference, alpha):
    # BEGIN SOLUTION
    secret_answer_line = alpha * sum_of_squares(model, reference)
    return secret_answer_line
    # END SOLUTION
"""


def _page():
    """A lab page with one exercise cell (its input collapsed, as ``hide-input`` does) and the
    output the master's solution printed."""
    cell = nodes.container(nb_element="cell_code", classes=["cell"])
    source = nodes.container(nb_element="cell_code_source", classes=["cell_input"])
    source += nodes.literal_block(EXERCISE, EXERCISE)
    hider = HideCodeCellNode(prompt_show="Show code", prompt_hide="Hide code")
    hider += source
    cell += hider
    output = nodes.container(nb_element="cell_code_output", classes=["cell_output"])
    output += nodes.literal_block("the solution printed 0.42", "the solution printed 0.42")
    cell += output
    page = new_document("labs/lab0.md")
    page += cell
    return page


def _app(solutions: bool):
    return SimpleNamespace(config=SimpleNamespace(transferlab_lab_solutions=solutions))


def test_a_students_page_shows_the_stub_and_nothing_of_the_solution():
    page = _page()
    _clean_lab_page(_app(False), page, "labs/lab0")
    text = page.astext()
    assert "def l2sp(model, reference, alpha):" in text and "..." in text
    assert "secret_answer_line" not in text and "0.42" not in text
    assert not list(page.findall(HideCodeCellNode))  # the stub is shown, not behind a toggle


def test_the_instructors_build_adds_the_solution_collapsed_under_the_stub():
    page = _page()
    _clean_lab_page(_app(True), page, "labs/lab0")
    (hider,) = page.findall(HideCodeCellNode)
    assert hider["prompt_show"] == "Show a solution"
    assert "secret_answer_line" in hider.astext()
    stub = page.astext().replace(hider.astext(), "")
    assert "def l2sp" in stub and "secret_answer_line" not in stub


def test_a_chapter_page_is_left_alone():
    page = _page()
    _clean_lab_page(_app(False), page, "book/finetune")
    assert "secret_answer_line" in page.astext()
