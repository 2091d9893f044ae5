"""The book publishes the student version of each lab: stubs and public checks, solutions only
in collapsed blocks, never a hidden test, otter's markers or the master source.

The book is built once, with `jupyter-book build -n` and the repository's `_toc.yml` and
`_config.yml`, but with execution turned off (fast; nbval runs the masters) into a temporary
folder; the lab pages must build without a single warning.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from transferlab.grading.labs import questions, secret_lines

ROOT = Path(__file__).parents[1]
MASTERS = {p.stem: p for p in sorted((ROOT / "labs").glob("*.md"))}
OTTER_MARKERS = ("ASSIGNMENT CONFIG", "BEGIN QUESTION", "BEGIN SOLUTION", "END SOLUTION", "BEGIN TESTS",
                 "END TESTS", "BEGIN PROMPT", "END PROMPT", "# HIDDEN", "otter")


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> tuple[Path, str]:
    """``(html folder, build log)`` of the book built without execution."""
    tmp = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (tmp / "_config.yml").write_text(yaml.safe_dump(config))
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run(
        [jb, "build", "-n", "--keep-going", "--config", str(tmp / "_config.yml"), "--path-output", str(tmp), str(ROOT)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )
    html = tmp / "_build" / "html"
    assert (html / "labs").is_dir(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return html, proc.stdout + proc.stderr


def test_the_lab_pages_build_without_warnings(book):
    _, log = book
    warnings = [ln for ln in log.splitlines() if "labs/" in ln and re.search(r"WARNING|ERROR", ln)]
    assert warnings == []


@pytest.mark.parametrize("name", MASTERS)
def test_a_lab_page_shows_stubs_and_checks_and_hides_solutions_and_hidden_tests(book, name):
    html_dir, _ = book
    html = (html_dir / "labs" / f"{name}.html").read_text()
    soup = BeautifulSoup(html, "html.parser")
    page = soup.find("article") or soup
    everything = page.get_text()
    collapsed = page.find_all("details")
    assert len([d for d in collapsed if "Show a solution" in d.get_text()]) >= len(questions(MASTERS[name]))
    for block in collapsed:
        block.decompose()
    visible = page.get_text()

    secrets = secret_lines(MASTERS[name])
    assert [s for s in secrets["hidden"] if s in everything] == [], "a hidden test is published"
    assert [s for s in secrets["solution"] if s in visible] == [], "a solution is published uncollapsed"
    assert all(s in everything for s in secrets["solution"]), "the collapsed solutions are for self-study"
    # the ungraded experiment's tag, otter_ignore, may show (as a CSS class): its prose explains it
    assert [m for m in OTTER_MARKERS if m in html.replace("otter_ignore", "")] == []
    for q in questions(MASTERS[name]):
        assert f'NotImplementedError("exercise {q}: ' in visible, f"no stub for {q}"
    assert "assert " in visible  # the public checks
    assert "_sources/labs" not in html, "the page offers the master (with hidden tests) for download"


def test_the_master_sources_are_not_published(book):
    html_dir, _ = book
    assert not (html_dir / "_sources" / "labs").exists()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    published = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    assert {f"labs/{name}" for name in MASTERS} <= published
