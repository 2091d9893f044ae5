"""Let ``pytest --nbval-lax`` run the labs and chapters straight from their MyST-markdown text
(``labs/*.md``, ``book/*.md`` with a jupytext header); pages without code cells yield no test."""

from collections import defaultdict

import jupytext
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags


class MystNotebook(IPyNbFile):
    """An nbval notebook read from a jupytext MyST ``.md`` file instead of an ``.ipynb``."""

    def collect(self):
        self.nb = jupytext.read(str(self.fspath), fmt="md:myst")
        cells = [c for c in self.nb.cells if c.cell_type == "code"]
        for num, cell in enumerate(cells):
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(dict(find_comment_markers(cell.source)))
            options.setdefault("check", self.compare_outputs)
            yield IPyNbCell.from_parent(self, name=f"Cell {num}", cell_num=num, cell=cell, options=options)


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if ((opt.nbval or opt.nbval_lax) and file_path.suffix == ".md" and file_path.parent.name in ("labs", "book")
            and file_path.read_text(encoding="utf-8").startswith("---\njupytext:")):
        return MystNotebook.from_parent(parent, path=file_path)
