"""Sphinx extension: execute the book's notebook pages one per CPU core at a time, before Sphinx
reads them.

myst-nb (``execute_notebooks: cache``) executes each page that is not in its jupyter-cache while
Sphinx reads it, one after the other: on a 2-core machine one core idles.  This extension runs
first (``builder-inited``): it adds every chapter and lab of ``_toc.yml`` to that same cache's
project and runs jupyter-cache's parallel execution worker on the pages whose code changed, one
process per core this build may use, each kernel on one thread.  Sphinx then finds every page in the cache, as
if it had executed them itself (same cache, same notebook reader, same working directory: the
page's folder).  A page that fails here is left to myst-nb, which executes it again and reports
its error as usual; nothing is hidden.

Pages that need the same cold benchmark would compute it twice at once: ``make book`` computes
the benchmarks first (``transferlab bench all``), and the tests build the book after theirs.

Enabled in ``_config.yml`` (``sphinx: local_extensions: {parallel_pages: book/_ext}``).
"""

from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from pathlib import Path

import yaml
from course_pages import build_cores, toc_units
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


@contextmanager
def _one_thread_per_kernel():
    """Kernels started inside get one intra-op thread each (two pages on two cores, not four
    threads fighting over them)."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def notebook_pages(srcdir: Path) -> list[Path]:
    """The pages of ``_toc.yml`` that are notebooks (MyST Markdown with a jupytext header)."""
    from myst_nb.core.read import is_myst_markdown_notebook

    root = yaml.safe_load((srcdir / "_toc.yml").read_text(encoding="utf-8")).get("root")
    pages = [srcdir / f"{doc}.md" for doc in ([root] if root else []) + [d for _, d in toc_units(srcdir)]]
    return [p for p in pages if p.is_file() and is_myst_markdown_notebook(p.read_text(encoding="utf-8"))]


def execute_in_parallel(app: Sphinx) -> None:
    # myst-nb's settings as its own ``builder-inited`` handler (connected before this one)
    # resolved them: the cache is ``_build/.jupyter_cache`` unless the configuration names one
    cfg = getattr(app.env, "mystnb_config", None)
    if cfg is None or cfg.execution_mode != "cache" or build_cores() < 2:
        return
    from jupyter_cache import get_cache

    try:  # jupyter-cache's executor internals (1.0): another version may have moved them
        from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc, ProcessData
    except ImportError as exc:
        logger.info(f"pages execute one at a time: this jupyter-cache lacks the parallel executor ({exc})")
        return

    cache = get_cache(cfg.execution_cache_path)
    uris = []
    for page in notebook_pages(Path(app.srcdir)):
        # the reader myst-nb registers with jupyter-cache for MyST Markdown notebooks
        record = cache.add_nb_to_project(str(page), read_data={"type": "plugin", "name": "myst_nb_md"})
        uris.append(record.uri)
    stale = cache.list_unexecuted(filter_uris=uris)
    if not stale:
        return
    n = build_cores()
    logger.info(f"executing {len(stale)} page(s), {n} at a time: {', '.join(Path(r.uri).stem for r in stale)}")
    # jupyter-cache's own "local-parallel" executor, with a pool of the cores this process may use
    # (its executor starts os.cpu_count() processes: the host's count, in a container too)
    work = [ProcessData(r.pk, r.uri, cache, cfg.execution_timeout, cfg.execution_allow_errors) for r in stale]
    with _one_thread_per_kernel(), multiprocessing.get_context("fork").Pool(n) as pool:
        results = pool.map(ExecutionWorkerLocalMProc(), work, chunksize=1)
    for code, uri in results:
        if code != 0:
            logger.info(f"{Path(uri).name} failed in parallel; myst-nb executes it again and reports why")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", execute_in_parallel)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
