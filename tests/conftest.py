import os
from pathlib import Path

import pytest

from transferlab.bench.registry import BENCHMARKS

# Tests share the checkout's cache (as the book build does) unless told otherwise.
os.environ.setdefault("TRANSFERLAB_QUIET", "1")


@pytest.fixture
def mnist_files():
    """Write MNIST's four IDX files (random 28×28 images, labels 0–9 in turn) in torchvision's
    layout under ``root/MNIST/raw``: ``mnist_files(root, n_train, n_test)``."""
    import struct

    import numpy as np

    def idx(path, array) -> None:
        header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(
            f">{array.ndim}I", *array.shape
        )
        path.write_bytes(header + array.astype(np.uint8).tobytes())

    def write(root, n_train: int, n_test: int):
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
            idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
        return root

    return write


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private cache folder for tests that corrupt or inspect cache files."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# The chapters' benchmarks, computed once per test session (and cached on disk for the book), on
# the chapters' seeds.  TRANSFERLAB_SEED_OFFSET=100 runs them on seeds from 100 on instead, which
# neither the book nor the tests use: how each claim's margin was checked (e.g.
# `TRANSFERLAB_SEED_OFFSET=100 pytest tests/test_bench_finetune.py`; with TRANSFERLAB_FP32=1, in
# float32).
SEED_OFFSET = int(os.environ.get("TRANSFERLAB_SEED_OFFSET", "0"))


def _bench_fixture(name: str):
    """The session fixture ``NAME_bench``: the registry's benchmark ``NAME``
    (transferlab.bench.registry), on the chapter's seeds shifted by ``SEED_OFFSET``."""

    @pytest.fixture(scope="session", name=f"{name}_bench")
    def fixture():
        from transferlab.bench.registry import benchmark

        return benchmark(name).run(seed_offset=SEED_OFFSET, progress=False)

    return fixture


for _name in BENCHMARKS:  # finetune_bench, adapt_bench, ..., text_bench
    globals()[f"{_name}_bench"] = _bench_fixture(_name)


# The book, built once per test session: `jupyter-book build -n -W --keep-going .` executes every
# chapter and every lab master (hidden tests included) through jupyter-cache and fails on an error
# or a warning. This build is the test of the pages: nothing else executes them.
BOOK_COMMAND = ["jupyter-book", "build", "-n", "-W", "--keep-going", "."]


def pytest_collection_modifyitems(config, items):
    """The tests of the built book run last: by then the unit tests have computed the chapters'
    benchmarks (cached on disk), so the book build only reads them."""
    late = [item for item in items if "built_book" in getattr(item, "fixturenames", ())]
    if late:
        items[:] = [item for item in items if item not in late] + late


@pytest.fixture(scope="session")
def built_book() -> Path:
    """``_build/html`` of the repository's book, built (or brought up to date) by this session.

    ``TRANSFERLAB_BOOK_HTML=path`` uses a book built already (``make book`` sets it after its own
    build), so no page is executed twice."""
    import shutil
    import subprocess
    import sys

    if given := os.environ.get("TRANSFERLAB_BOOK_HTML"):
        html = Path(given)
        assert (html / "index.html").is_file(), (
            f"TRANSFERLAB_BOOK_HTML={given}: no built book there"
        )
        return html
    root = Path(__file__).parents[1]
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run(
        [jb, *BOOK_COMMAND[1:]], cwd=root, capture_output=True, text=True, check=False
    )
    log = proc.stdout + proc.stderr
    (root / "_build").mkdir(exist_ok=True)
    (root / "_build" / "book-build.log").write_text(log)
    assert proc.returncode == 0, (
        f"the book build failed (full log: _build/book-build.log):\n{log[-6000:]}"
    )
    # the Chinese edition, from the same execution (the Makefile's `book` recipe does the same)
    zh = subprocess.run(
        [sys.executable, "book/_ext/build_lang.py", "html", "zh_CN"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    (root / "_build" / "book-build-zh.log").write_text(zh.stdout + zh.stderr)
    assert zh.returncode == 0, (
        "the Chinese edition failed (full log: _build/book-build-zh.log):\n"
        f"{(zh.stdout + zh.stderr)[-6000:]}"
    )
    return root / "_build" / "html"


# The README's `make labs`, run once per test session. Its student notebooks and autograders are
# the ones the lab tests (test_labs.py) execute and the grading tests (test_grading.py) grade and
# read, and the README's grading command (test_grading_readme.py) runs after it in the same
# folder: these tests assign a lab (`otter assign`, about 10 s a lab) only where a command under
# test (`make labs`, `transferlab grade`, `grade_folder`) does it itself.
MAKE_LABS = ".venv/bin/transferlab labs --out _build/labs"  # the Makefile's recipe of `labs`


@pytest.fixture(scope="session")
def made_labs(tmp_path_factory):
    """The README's ``make labs`` (its recipe, :data:`MAKE_LABS`), run once per session from the
    root of a copy of the repository's layout in a temporary folder (``labs/`` copied; ``.venv``
    and ``book/``, whose titles the labs' links show, linked), so that a real ``_build/``,
    ``submissions/`` or ``grades/`` in the checkout is never touched.

    Returns a namespace: ``repo`` (that folder), ``command`` (the command run), ``labs`` (a copy of
    the ``_build/labs`` it wrote, ``student/``, ``autograder/`` and ``solutions/``, taken before
    anything else ran there; read it, never write to it) and ``copy(dest, names=None)``, which
    copies the versions of the labs ``names`` (default: every lab) into ``dest`` and returns
    ``{name: AssignedLab}`` there, stamps included (``assign(reuse=True)`` would keep them)."""
    import shutil
    import subprocess
    from types import SimpleNamespace

    from transferlab.grading.labs import AssignedLab, questions

    root = Path(__file__).parents[1]
    repo = tmp_path_factory.mktemp("repo")
    (repo / ".venv").symlink_to(root / ".venv")
    (repo / "book").symlink_to(root / "book")
    shutil.copytree(
        root / "labs", repo / "labs", ignore=shutil.ignore_patterns(".*", "__pycache__")
    )
    env = dict(os.environ, TRANSFERLAB_QUIET="1")
    proc = subprocess.run(
        MAKE_LABS, shell=True, cwd=repo, capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    made = tmp_path_factory.mktemp("made_labs")
    shutil.copytree(repo / "_build" / "labs", made, dirs_exist_ok=True)
    masters = {m.stem: m for m in sorted((root / "labs").glob("*.md"))}

    def copy(dest: Path, names=None) -> dict:
        found = {}
        for name in masters if names is None else names:
            student, autograder, solutions = (
                Path("student") / f"{name}.ipynb",
                Path("autograder") / f"{name}-autograder.zip",
                Path("solutions") / f"{name}.ipynb",
            )
            for path in (student, autograder, solutions, Path("autograder") / f"{name}.stamp"):
                (dest / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(made / path, dest / path)
            found[name] = AssignedLab(
                name, dest / student, dest / autograder, questions(masters[name]), dest / solutions
            )
        return found

    return SimpleNamespace(repo=repo, command=MAKE_LABS, labs=made, copy=copy)
