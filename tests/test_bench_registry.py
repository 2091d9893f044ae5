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
    assert len(entry.seeds) >= 3  # every claim is a mean over seeds


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


FAKE = """
from transferlab.bench.results import BenchResult

SEEDS = (0, 1, 2)
METHODS = ("a", "b")


def fake(seeds, progress=None, methods=METHODS, ks=(1,)):
    records = [
        {"method": m, "k": str(k), "seed": s, "split": split, "acc": 0.5, "seconds": 0.0}
        for m in methods for k in ks for s in seeds for split in ("val", "test")
    ]
    return BenchResult("fake", records, info={"ks": list(ks)})


def summary(result):
    return "a table of its own\\n\\nks " + str(result.info["ks"])
"""


def test_a_new_benchmark_is_one_module_and_one_entry(tmp_path, monkeypatch, capsys):
    """The command line runs a registry entry with its options as keywords, and prints the
    module's summary under the table."""
    from transferlab.bench import registry

    (tmp_path / "fakebench.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registry.Benchmark(
        "fake",
        "finetune",
        "Pretrain and fine-tune",
        "a fake",
        "fakebench",
        "fake",
        (registry.KS, registry.METHODS),
    )
    monkeypatch.setattr(registry, "BENCHMARKS", {**BENCHMARKS, "fake": entry})
    assert cli.main(["bench", "fake", "--seeds", "2", "--methods", "b", "--ks", "3,all"]) == 0
    out = capsys.readouterr().out
    assert "a table of its own\n\nseeds 0–1 (2); ks [3, None]" in out
    rows = [ln.split()[0] for ln in out.splitlines() if ln[:2] in ("a ", "b ") and "±" in ln]
    assert rows == ["b"]  # --methods b reached the function
    assert cli.main(["bench", "fake", "--methods", "c"]) == 2
