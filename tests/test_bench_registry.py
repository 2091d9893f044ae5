"""transferlab.bench.registry: one entry per chapter's benchmark, read by the command line, the
tests' fixtures and the chapters."""

import inspect
import re
from pathlib import Path

import pytest

from transferlab import cli
from transferlab.bench.registry import BENCHMARKS, benchmark

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_an_entry_names_its_page_its_module_and_a_function_that_takes_seeds(name):
    entry = benchmark(name)
    page = ROOT / "book" / f"{entry.page}.md"
    assert page.is_file(), f"{name}: no page {page}"
    title = next(ln[2:].strip() for ln in page.read_text().splitlines() if ln.startswith("# "))
    assert entry.title == title
    assert f'benchmark("{name}").run()' in page.read_text()  # the chapter reads the registry
    module = entry.load()
    params = inspect.signature(getattr(module, entry.function)).parameters
    assert {"seeds", "progress"} <= set(params)
    assert {o.dest for o in entry.options} <= set(params)
    assert entry.seeds == tuple(module.SEEDS)


def test_the_command_line_offers_every_entry_and_nothing_else():
    parser = cli.build_parser()
    bench = next(
        a
        for a in parser._subparsers._group_actions[0].choices["bench"]._actions
        if a.dest == "bench"
    )
    assert list(bench.choices) == [*BENCHMARKS, "trainer", "all"]
    for name, entry in BENCHMARKS.items():
        flags = {f for a in bench.choices[name]._actions for f in a.option_strings}
        assert {o.flag for o in entry.options} <= flags


def test_the_tests_fixtures_come_from_the_registry():
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert "for _name in BENCHMARKS" in conftest
    assert not re.search(
        r"def (finetune|adapt|negative|multitask|distill|peft|text)_bench", conftest
    )


def test_bad_options_and_names_are_clear_errors(capsys):
    assert cli.main(["bench", "finetune", "--methods", "nope"]) == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err
    assert cli.main(["bench", "peft", "--ks", "three"]) == 2
    assert "--ks takes values separated by commas" in capsys.readouterr().err
    with pytest.raises(KeyError, match="the benchmarks are finetune, adapt"):
        benchmark("finetuning")
