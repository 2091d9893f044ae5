"""``transferlab bench all``: every chapter's benchmark in turn, each with its time and whether it
was computed (cold) or read from the cache (warm). Tested on a registry of two tiny benchmarks."""

import json
import os
import time

import pytest

from transferlab import cli


@pytest.fixture
def tiny(monkeypatch, tmp_cache):
    """Two fake benchmarks: ``a`` writes its cache entry only when it is missing; ``b`` never
    does."""
    seen = []

    def run(name):
        from transferlab.cache import cache_dir

        seen.append((name, os.environ["TRANSFERLAB_CACHE"]))
        entry = cache_dir() / f"bench-{name}-0.pt"
        if name == "a" and not entry.exists():
            time.sleep(0.2)  # computing
            entry.write_bytes(b"x")
        return 0

    from transferlab.bench import registry

    fake = {n: registry.Benchmark(n, n, n, "a fake benchmark", "none", "none") for n in "ab"}
    monkeypatch.setattr(registry, "BENCHMARKS", fake)
    monkeypatch.setattr(cli, "_run_benchmark", run)
    return seen


def test_bench_all_reports_each_benchmark_s_time_and_whether_it_was_cold(
    tiny, tmp_cache, tmp_path, capsys
):
    assert cli.main(["bench", "all", "--json", str(tmp_path / "all.json")]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "cold (computed)" in lines["a"] and "warm (read from the cache)" in lines["b"]
    assert float(lines["a"].split()[1]) >= 0.2 and "all" in lines
    rows = json.loads((tmp_path / "all.json").read_text())["benchmarks"]
    assert [(r["name"], r["cold"]) for r in rows] == [("a", True), ("b", False)]
    assert rows[0]["seconds"] >= 0.2 > rows[1]["seconds"]
    # a second run reads a from the cache
    cli.main(["bench", "all", "--json", str(tmp_path / "again.json")])
    assert [r["cold"] for r in json.loads((tmp_path / "again.json").read_text())["benchmarks"]] == [
        False,
        False,
    ]


def test_bench_all_cold_uses_a_fresh_empty_cache_and_restores_the_setting(
    tiny, tmp_cache, tmp_path
):
    (tmp_cache).mkdir(parents=True, exist_ok=True)
    (tmp_cache / "bench-a-0.pt").write_bytes(b"x")  # warm in the real cache
    assert cli.main(["bench", "all", "--cold", "--json", str(tmp_path / "cold.json")]) == 0
    rows = json.loads((tmp_path / "cold.json").read_text())["benchmarks"]
    assert rows[0]["cold"] is True  # computed again, in the fresh folder
    used = {where for _, where in tiny}
    assert len(used) == 1 and str(tmp_cache) not in used
    assert not os.path.exists(used.pop())  # removed afterwards
    assert os.environ["TRANSFERLAB_CACHE"] == str(tmp_cache)


def test_bench_all_fails_when_a_benchmark_fails(tiny, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_run_benchmark", lambda name: 3 if name == "b" else 0)
    assert cli.main(["bench", "all"]) == 3
    assert "FAILED (exit 3)" in capsys.readouterr().out


def test_the_readme_s_bench_all_command_runs_as_written(tiny, tmp_cache, capsys):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [
        ln.split("  #")[0].strip()
        for ln in readme.splitlines()
        if ln.startswith(".venv/bin/transferlab bench all")
    ]
    program, *argv = line.split()
    assert program == ".venv/bin/transferlab"
    assert cli.main(argv) == 0  # on the two tiny benchmarks: the real ones take half an hour cold
    assert "cold (computed)" in capsys.readouterr().out
