"""Let ``pytest --nbval-lax`` run the labs and chapters straight from their MyST-markdown text
(``labs/*.md``, ``book/*.md`` with a jupytext header); pages without code cells yield no test.

``make test`` collects ``labs/`` this way (``testpaths`` in pyproject.toml): every cell of every
lab master, hidden tests included, is a test item.  Two things are added to nbval:

- **Outputs a lab must reproduce.**  A cell whose metadata carries ``expected_output`` (in the
  master: ``:expected_output: "..."`` under the cell's opening line) is compared with what it
  prints, as nbval compares a cell marked ``# NBVAL_CHECK_OUTPUT`` with its stored output: the
  verdict of a lab's graded experiment, so that a lab whose result silently changes fails.
- **One execution for the tests and the book.**  A page whose cells all pass is stored, with
  its outputs, in the book's jupyter-cache (``_build/.jupyter_cache``), under the key the book
  build computes from its code; the build then reads it instead of executing the page again.
"""

import time
from collections import defaultdict
from pathlib import Path

import nbformat
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

ROOT = Path(__file__).parent
BOOK_CACHE = (
    ROOT / "_build" / ".jupyter_cache"
)  # myst-nb's execution cache of `jupyter-book build .`


def read_page(path) -> nbformat.NotebookNode:
    """A page read as the book build reads it (myst-nb's reader), so that its cache key is the
    build's."""
    from jupyter_cache.readers import get_reader

    return get_reader({"type": "plugin", "name": "myst_nb_md"})(str(path))


class MystCell(IPyNbCell):
    """An nbval cell that keeps what it printed once it passed."""

    def runtest(self):
        start = time.perf_counter()
        super().runtest()
        self.parent.seconds += time.perf_counter() - start
        self.parent.passed[self.cell_num] = self.test_outputs


class MystNotebook(IPyNbFile):
    """An nbval notebook read from a jupytext MyST ``.md`` file instead of an ``.ipynb``."""

    def collect(self):
        self.nb = read_page(self.fspath)
        self.passed: dict[int, list] = {}
        self.seconds = 0.0  # the cells' execution time, which the book states on the page
        cells = [c for c in self.nb.cells if c.cell_type == "code"]
        for num, cell in enumerate(cells):
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(dict(find_comment_markers(cell.source)))
            if "expected_output" in cell.metadata:
                expected = str(cell.metadata["expected_output"])
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expected)]
                cell.execution_count = num + 1  # nbval compares only cells that were run
                options["check"] = True
            options.setdefault("check", self.compare_outputs)
            yield MystCell.from_parent(
                self, name=f"Cell {num}", cell_num=num, cell=cell, options=options
            )

    def teardown(self):
        super().teardown()
        code = [c for c in self.nb.cells if c.cell_type == "code"]
        if code and len(self.passed) == len(code):
            self.cache_for_the_book()

    def cache_for_the_book(self) -> None:
        """Store the page, executed, in the book's jupyter-cache (a fresh read of the page, with
        the outputs of this run: the stored key is that of the page's code)."""
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn

        nb = read_page(self.fspath)
        for num, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            cell.execution_count = num + 1
            cell.outputs = [nbformat.from_dict(dict(o)) for o in self.passed[num]]
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = num + 1
        BOOK_CACHE.parent.mkdir(exist_ok=True)
        get_cache(str(BOOK_CACHE)).cache_notebook_bundle(
            CacheBundleIn(nb, str(Path(self.fspath)), data={"execution_seconds": self.seconds}),
            check_validity=False,
            overwrite=True,
        )


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if (
        (opt.nbval or opt.nbval_lax)
        and file_path.suffix == ".md"
        and file_path.parent.name in ("labs", "book")
        and file_path.read_text(encoding="utf-8").startswith("---\njupytext:")
    ):
        return MystNotebook.from_parent(parent, path=file_path)
