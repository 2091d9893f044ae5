"""What the built book tells a reader besides the chapters (the book the session builds once:
the ``built_book`` fixture): measured execution times, the syllabus, the student notebooks."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

from transferlab.grading.labs import secret_lines

ROOT = Path(__file__).parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
UNITS = [
    c["file"]
    for part in TOC["parts"]
    if part["caption"] in ("Chapters", "Labs")
    for c in part["chapters"]
]
LABS = [u for u in UNITS if u.startswith("labs/")]


def _soup(html: Path, docname: str) -> BeautifulSoup:
    return BeautifulSoup((html / f"{docname}.html").read_text(encoding="utf-8"), "html.parser")


def _executed(docname: str) -> bool:
    text = (ROOT / f"{docname}.md").read_text(encoding="utf-8")
    return text.startswith("---\njupytext:") and "```{code-cell}" in text


def test_the_running_page_has_the_build_s_execution_table_with_every_chapter_and_lab(built_book):
    page = _soup(built_book, "book/running")
    rows = page.select("article table tbody tr")
    documents = {
        r.find("td").get_text(strip=True): [td.get_text(strip=True) for td in r.find_all("td")]
        for r in rows
    }
    executed = [u for u in UNITS if _executed(u)]
    assert executed and all(u in documents for u in executed), (executed, list(documents))
    for unit in executed:
        _, _, method, seconds, status = documents[unit]
        assert method in ("cache", "auto", "force") and float(seconds) > 0 and status == "✅", (
            documents[unit]
        )
    assert re.search(r"Built on \S+ with \d+ CPU core", page.get_text())


@pytest.mark.parametrize("unit", UNITS)
def test_each_executed_page_states_its_measured_execution_time(built_book, unit):
    if not _executed(unit):
        pytest.skip(f"{unit} has no code")
    line = _soup(built_book, unit).select_one("article p.execution-time")
    assert line is not None and re.search(
        r"ran in \d+ s when the book was built \(\d+ CPU cores?", line.get_text()
    )
    assert line.find("a")["href"].endswith("running.html")


def test_the_syllabus_lists_every_unit_in_order_with_prerequisites_and_time(built_book):
    page = _soup(built_book, "book/syllabus")
    rows = [
        [td.get_text(" ", strip=True) for td in r.find_all("td")]
        for r in page.select("article table tbody tr")
    ]
    links = [r.find("td").find("a")["href"] for r in page.select("article table tbody tr")]
    assert [Path(h).stem for h in links] == [Path(u).name for u in UNITS]
    for unit, (_, needs, reading, running, total) in zip(UNITS, rows, strict=True):
        assert re.fullmatch(r"\d+ min", reading) and re.fullmatch(r"\d+ min", total), (
            unit,
            reading,
            total,
        )
        if _executed(unit):
            assert re.fullmatch(r"\d+ s", running), (unit, running)
        assert int(total.split()[0]) >= int(reading.split()[0])
        assert needs == "none" or unit != UNITS[0]
    assert rows[UNITS.index("labs/lab1_finetune")][1] == "Pretrain and fine-tune"


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_page_offers_its_student_notebook_without_solutions_or_hidden_tests(
    built_book, lab
):
    link = _soup(built_book, lab).select_one("article p.student-download a")
    assert link is not None, f"{lab}: no student notebook to download"
    path = (built_book / lab).parent / link["href"]
    nb = nbformat.read(path, as_version=4)
    text = nbformat.writes(nb)
    secrets = secret_lines(ROOT / f"{lab}.md")
    assert [s for s in secrets["hidden"] + secrets["solution"] if s in text] == []
    assert "# BEGIN SOLUTION" not in text and "grader.check(" in text
    assert nb.cells[-1].source.strip() == "grader.check_all()"
    assert (
        list((built_book / "_static" / "student").glob("*.zip")) == []
    )  # no autograder (hidden tests)


@pytest.mark.parametrize("unit", UNITS)
def test_each_chapter_and_lab_page_offers_a_binder_launch_button_for_its_own_source(
    built_book, unit
):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, branch = (
        config["repository"]["url"].rstrip("/"),
        config["repository"].get("branch", "main"),
    )
    org_repo = repo.removeprefix("https://github.com/")
    binder = config["launch_buttons"]["binderhub_url"].rstrip("/")
    hrefs = [
        a["href"]
        for a in _soup(built_book, unit).find_all("a", href=True)
        if a["href"].startswith(binder)
    ]
    assert hrefs, f"{unit}: no launch button"
    assert hrefs[0].startswith(f"{binder}/v2/gh/{org_repo}/{branch}?"), hrefs[0]
    assert (
        f"{unit}.md" in hrefs[0]
    )  # the page's own MyST source, which jupytext opens as a notebook
    assert (ROOT / f"{unit}.md").is_file()
    # the hosted environment installs the package (and jupytext, for the .md pages)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(p.startswith("-e .[") and "book" in p for p in pip), pip


CHAPTERS = [
    c["file"] for part in TOC["parts"] if part["caption"] == "Chapters" for c in part["chapters"]
]
EXERCISE = re.compile(r"^\d+\. (.*)$", re.MULTILINE)
LABEL = re.compile(r"^\*\(\d+ min, ★{1,3}\)\* ")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_ends_with_key_takeaways_and_labels_its_exercises(chapter):
    text = (ROOT / f"{chapter}.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert "Key takeaways" in sections, f"{chapter}: no 'Key takeaways' section"
    last = [s for s in sections if s != "References"][-1]
    assert last == "Key takeaways", (
        f"{chapter}: the takeaways must close the chapter (before References), not {last!r}"
    )
    if "Exercises" in sections:
        block = text.split("## Exercises", 1)[1].split("\n## ", 1)[0].split("```{admonition}", 1)[0]
        exercises = EXERCISE.findall(block)
        assert exercises
        unlabelled = [e[:60] for e in exercises if not LABEL.match(e)]
        assert unlabelled == [], f"{chapter}: exercises without '*(N min, ★..★★★)*': {unlabelled}"


def test_the_pages_are_executed_in_parallel_before_sphinx_reads_them(built_book):
    """``book/_ext/parallel_pages.py`` fills myst-nb's own cache, one page per core: myst-nb then
    finds every page there and executes none a second time (it did when the two caches differed)."""
    import os
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from course_pages import build_cores
        from parallel_pages import notebook_pages
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    pages = {str(p.relative_to(ROOT).with_suffix("")) for p in notebook_pages(ROOT)}
    assert {TOC["root"], *(u for u in UNITS if _executed(u))} <= pages, pages
    log = ROOT / "_build" / "book-build.log"
    if os.environ.get("TRANSFERLAB_BOOK_HTML") or not log.is_file():
        pytest.skip("the book was built outside this test session (no build log of its own)")
    if build_cores() < 2:
        pytest.skip("one core: myst-nb executes the pages itself, one after the other")
    text = log.read_text()
    assert "Executing notebook" not in text, [
        ln for ln in text.splitlines() if "Executing notebook" in ln
    ]
