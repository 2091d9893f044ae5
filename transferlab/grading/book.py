"""Sphinx extension that publishes the labs (``labs/*`` pages) as students get them.

The masters carry the tags that shape the page: hidden tests are tagged ``remove-cell`` (myst-nb
drops them), solution cells ``hide-input``; otter's raw cells have no format, so myst-nb skips
them.  This extension

- shows each exercise cell as its student stub, without its output and without otter's
  markers: no line of a solution is published.  Instructors build the same book with each
  worked solution collapsed under its stub ("Show a solution") by setting
  ``TRANSFERLAB_LAB_SOLUTIONS=1`` (the config value ``transferlab_lab_solutions``): for
  themselves, never to publish;
- warns (an error under ``-W``) when a lab page would show a hidden test, or (in the
  instructors' build) a solution that is not collapsed;
- never publishes a lab's master source: no ``_sources/labs/*.md`` (it holds the hidden tests)
  and no download button for it;
- offers each lab's student notebook for download instead (a link under the page's title to
  ``_static/student/NAME.ipynb``, written by :func:`~transferlab.grading.labs.assign` when the
  build finishes: stubs and public checks, no solution, no hidden test).

Enabled in ``_config.yml`` (``sphinx: extra_extensions: [transferlab.grading.book]``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from docutils import nodes
from myst_nb.sphinx_ import HideCodeCellNode
from sphinx.application import Sphinx
from sphinx.util import logging

from transferlab.grading.labs import split_exercise

logger = logging.getLogger(__name__)
LAB_PREFIX = "labs/"
STUDENT_DIR = "_static/student"  # under the html output: the student notebooks offered for download


def _set_text(block: nodes.literal_block, text: str) -> None:
    block.rawsource = text
    block.children = [nodes.Text(text)]


def _clean_lab_page(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Lab pages: each exercise as its stub (and, in the instructors' build, its solution
    collapsed below it); no hidden test."""
    if not docname.startswith(LAB_PREFIX):
        return
    solutions = app.config.transferlab_lab_solutions
    for block in list(doctree.findall(nodes.literal_block)):
        text = block.astext()
        if text.lstrip().startswith("# HIDDEN"):
            logger.warning(
                "a hidden test would be published; tag its cell remove-cell", location=block
            )
        elif "# BEGIN SOLUTION" in text and not solutions:
            stub, _ = split_exercise(text)
            _set_text(block, stub)
            cell_input = block.parent
            hider = cell_input.parent
            cell = hider.parent if isinstance(hider, HideCodeCellNode) else hider
            if isinstance(hider, HideCodeCellNode):  # shown, not behind "Show code"
                cell.replace(hider, cell_input)
            for output in [c for c in cell.children if c.get("nb_element") == "cell_code_output"]:
                cell.remove(output)  # what the solution printed is not the stub's
        elif "# BEGIN SOLUTION" in text:
            cell_input = block.parent
            hider = cell_input.parent
            if not isinstance(hider, HideCodeCellNode):
                logger.warning(
                    "a solution would be published uncollapsed; tag its cell hide-input",
                    location=block,
                )
                continue
            stub, solution = split_exercise(text)
            _set_text(block, solution)
            chinese = (getattr(app.config, "language", None) or "").startswith("zh")
            prompts = ("显示参考答案", "隐藏参考答案")
            if not chinese:
                prompts = ("Show a solution", "Hide the solution")
            hider["prompt_show"], hider["prompt_hide"] = prompts
            stub_input = cell_input.deepcopy()
            _set_text(next(iter(stub_input.findall(nodes.literal_block))), stub)
            hider.parent.insert(hider.parent.index(hider), stub_input)


def _student_download(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Under a lab page's title: a link to its student notebook."""
    if not docname.startswith(LAB_PREFIX):
        return
    title = next(iter(doctree.findall(nodes.title)), None)
    if title is None:
        return
    name = docname[len(LAB_PREFIX) :]
    href = (
        "../" * docname.count("/") + f"{STUDENT_DIR}/{name}.ipynb"
    )  # from the page up to the root
    line = nodes.paragraph(classes=["student-download"])
    chinese = (getattr(app.config, "language", None) or "").startswith("zh")  # the Chinese edition
    line += nodes.strong(text="学生版笔记本：" if chinese else "Student notebook: ")
    line += nodes.reference("", f"{name}.ipynb", refuri=href, classes=["download"])
    line += nodes.Text(
        "（练习为待完成的桩代码，每个练习下有 grader.check：在 Jupyter 中打开，"
        "或在仓库的克隆中运行 make lab）"
        if chinese
        else " (the exercises as stubs, with grader.check under each: open it in Jupyter, or run "
        "make lab in a clone of the repository)"
    )
    section = title.parent
    section.insert(section.index(title) + 1, line)


def _write_student_notebooks(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from transferlab.grading.labs import assign_all

    out = Path(app.outdir) / STUDENT_DIR
    out.mkdir(parents=True, exist_ok=True)
    # kept beside the HTML (outside it: the autograders hold the hidden tests) so that a rebuild
    # reuses the labs whose master did not change
    work = Path(app.outdir).parent / ".book-labs"
    for lab in assign_all(Path(app.srcdir) / LAB_PREFIX, work, reuse=True):
        shutil.copy(lab.student, out / lab.student.name)  # never the autograder (hidden tests)


def _no_lab_source(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if pagename.startswith(LAB_PREFIX):
        context["sourcename"] = ""  # no copy in _sources/ and no "download source" button
        context["page_source_suffix"] = ""


def _remove_stale_sources(app: Sphinx, exception: Exception | None) -> None:
    stale = Path(app.outdir) / "_sources" / LAB_PREFIX
    if stale.is_dir():
        shutil.rmtree(stale)


def setup(app: Sphinx) -> dict:
    # "html": switching it rewrites every page from the cached execution, executing nothing
    app.add_config_value(
        "transferlab_lab_solutions",
        os.environ.get("TRANSFERLAB_LAB_SOLUTIONS", "").strip() not in ("", "0"),
        "html",
    )
    app.connect("doctree-resolved", _clean_lab_page)
    app.connect("doctree-resolved", _student_download)
    # before sphinx-book-theme adds its header buttons (priority 501)
    app.connect("html-page-context", _no_lab_source, priority=400)
    app.connect("build-finished", _remove_stale_sources)
    app.connect("build-finished", _write_student_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
