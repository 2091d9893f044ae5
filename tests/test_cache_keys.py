"""A benchmark's cache key follows the code it runs (``transferlab.cache.code_version``): a
docstring, a comment, a chapter or a module it never imports leave it alone; a change to a line of
code it runs, in its own module or in one it imports (directly or not), replaces it.  Checked on
a copy of the package, edited."""

import shutil
from pathlib import Path

import pytest

import transferlab
from transferlab.cache import code_modules, code_version

ROOT = Path(__file__).parents[1]
BENCH = "transferlab.bench.finetune"


@pytest.fixture
def package(tmp_path) -> Path:
    copy = tmp_path / "transferlab"
    shutil.copytree(
        Path(transferlab.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def test_the_key_follows_the_modules_a_benchmark_imports_and_no_other():
    modules = code_modules(BENCH)
    for needed in (
        BENCH,
        "transferlab.train.trainer",
        "transferlab.models.cnn",
        "transferlab.bench.sources",
        "transferlab.data.fonts",
        "transferlab.finetune",
        "transferlab",
        "transferlab.bench",
    ):
        assert needed in modules, needed
    for unrelated in (
        "transferlab.adapt",
        "transferlab.text.encoder",
        "transferlab.grading",
        "transferlab.viz",
        "transferlab.cli",
        "transferlab.bench.adapt",
    ):
        assert unrelated not in modules, unrelated
    assert code_version(BENCH) == code_version(BENCH)
    assert code_version(BENCH) != code_version("transferlab.bench.adapt")
    with pytest.raises(ValueError, match="name the module"):
        code_version()


@pytest.mark.parametrize(
    "where, old, new",
    [
        (
            "train/trainer.py",
            '"""The one training loop',
            '"""A reworded docstring: the one training loop',
        ),  # the module's docstring
        (
            "train/trainer.py",
            "    def evaluate(self, data: Data, batch_size: int = 1024) -> dict[str, float]:\n",
            (
                "    def evaluate(self, data: Data, batch_size: int = 1024) -> dict[str, float]:\n"
                "        # a new comment\n"
            ),
        ),
        ("models/cnn.py", "conv(32) → conv(64)", "two convolutions"),  # a class docstring
        (
            "adapt/losses.py",
            "import torch\n",
            "import torch\nUNRELATED = 1\n",
        ),  # code the benchmark never runs
        ("text/encoder.py", "import torch\n", "import torch\nUNRELATED = 1\n"),
    ],
)
def test_docstrings_comments_and_unrelated_modules_keep_the_key(package, where, old, new):
    before = code_version(BENCH, root=package)
    _edit(package / where, old, new)
    assert code_version(BENCH, root=package) == before


@pytest.mark.parametrize(
    "where, old, new",
    [
        ("bench/finetune.py", "STEPS = 100", "STEPS = 101"),  # the benchmark's own module
        (
            "train/trainer.py",
            "self.step += 1",
            "self.step += 1\n            self.step += 0",
        ),  # imported by it
        ("models/cnn.py", "nn.ReLU(),", "nn.GELU(),"),  # imported through transferlab.models
        (
            "data/fonts.py",
            "import torch\n",
            "import torch\nEXTRA = 1\n",
        ),  # imported by a module it imports
    ],
)
def test_a_change_to_code_the_benchmark_runs_replaces_the_key(package, where, old, new):
    before = code_version(BENCH, root=package)
    _edit(package / where, old, new)
    assert code_version(BENCH, root=package) != before


def test_a_chapter_edit_keeps_every_benchmarks_key(tmp_path):
    benches = [
        f"transferlab.bench.{p.stem}"
        for p in (ROOT / "transferlab" / "bench").glob("*.py")
        if p.stem not in ("__init__", "common", "results", "sources")
    ]
    keys = {b: code_version(b) for b in benches}
    assert all(
        ROOT / "book" not in path.parents for b in benches for path in code_modules(b).values()
    )
    assert {b: code_version(b) for b in benches} == keys
