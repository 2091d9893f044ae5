"""The book publishes each lab as students get it: stubs and public checks, never a line of a
solution, a hidden test, otter's markers or the master source.

The book is the one the test session builds (the ``built_book`` fixture of tests/conftest.py:
``jupyter-book build -n -W --keep-going .``); the lab pages must build without a single warning.
"""

import os
import re
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from transferlab.grading.labs import questions, secret_lines

ROOT = Path(__file__).parents[1]
MASTERS = {p.stem: p for p in sorted((ROOT / "labs").glob("*.md"))}
OTTER_MARKERS = (
    "ASSIGNMENT CONFIG",
    "BEGIN QUESTION",
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN TESTS",
    "END TESTS",
    "BEGIN PROMPT",
    "END PROMPT",
    "# HIDDEN",
    "otter",
)


@pytest.fixture(scope="module")
def book(built_book) -> tuple[Path, str]:
    """``(html folder, build log)``; the log is empty for a book built before the session
    (``TRANSFERLAB_BOOK_HTML``: ``make book``, whose ``-W`` build stops at the first warning)."""
    log = built_book.parent / "book-build.log"
    return (
        built_book,
        log.read_text() if log.is_file() and "TRANSFERLAB_BOOK_HTML" not in os.environ else "",
    )


def test_the_lab_pages_build_without_warnings(book):
    _, log = book
    warnings = [ln for ln in log.splitlines() if "labs/" in ln and re.search(r"WARNING|ERROR", ln)]
    assert warnings == []


@pytest.mark.parametrize("name", MASTERS)
def test_a_lab_page_shows_stubs_and_checks_and_no_solution_or_hidden_test(book, name):
    html_dir, _ = book
    html = (html_dir / "labs" / f"{name}.html").read_text()
    soup = BeautifulSoup(html, "html.parser")
    page = soup.find("article") or soup
    visible = everything = page.get_text()  # collapsed blocks included: nothing may hide there
    assert "Show a solution" not in everything

    secrets = secret_lines(MASTERS[name])
    assert secrets["solution"], "the master has solutions to look for"
    assert [s for s in secrets["hidden"] if s in everything] == [], "a hidden test is published"
    assert [s for s in secrets["solution"] if s in everything] == [], "a solution is published"
    # the ungraded experiment's tag, otter_ignore, may show (as a CSS class): its prose explains it
    assert [m for m in OTTER_MARKERS if m in html.replace("otter_ignore", "")] == []
    for q in questions(MASTERS[name]):
        assert f'NotImplementedError("exercise {q}: ' in visible, f"no stub for {q}"
    assert "assert " in visible  # the public checks
    assert "_sources/labs" not in html, (
        "the page offers the master (with hidden tests) for download"
    )


def test_the_master_sources_are_not_published(book):
    html_dir, _ = book
    assert not (html_dir / "_sources" / "labs").exists()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    published = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    assert {f"labs/{name}" for name in MASTERS} <= published
