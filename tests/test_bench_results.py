"""The one result type of the benchmarks (`transferlab.bench.results`), on records made by hand."""

import json

import pytest

from transferlab.bench.results import (
    BenchResult,
    accuracies,
    format_table,
    records_from_grid,
    summary,
)


def fake_records():
    """Two methods × two k × three seeds; "b" is 10 points better than "a" at k=1, except seed 2."""
    acc = {
        ("a", "1"): [0.60, 0.70, 0.80],
        ("b", "1"): [0.70, 0.80, 0.85],
        ("a", "all"): [0.9, 0.9, 0.9],
        ("b", "all"): [0.91, 0.92, 0.93],
    }
    return [
        {
            "method": m,
            "k": k,
            "seed": s,
            "split": split,
            "acc": a - (0.05 if split == "val" else 0),
            "seconds": 1.5,
        }
        for s in (2, 0, 1)
        for (m, k), values in acc.items()
        for split in ("val", "test")
        for a in [values[s]]
    ]


def test_accuracies_come_in_seed_order_so_that_two_methods_pair_up():
    recs = fake_records()
    assert accuracies(recs, "a", "1", seeds=[0, 1, 2]) == [0.60, 0.70, 0.80]
    assert accuracies(recs, "a", "1") == [
        0.80,
        0.60,
        0.70,
    ]  # default: the seeds in order of appearance
    assert accuracies(recs, "a", 1, "val", seeds=[0]) == [
        pytest.approx(0.55)
    ]  # an int k means its label
    with pytest.raises(KeyError, match="no test runs of method 'c'"):
        accuracies(recs, "c", "1")
    with pytest.raises(KeyError, match="seed"):
        accuracies(recs, "a", "1", seeds=[0, 7])


def test_the_summary_is_the_mean_and_sample_std_over_seeds_of_each_method_and_k():
    s = summary(fake_records())
    assert list(s) == [("a", "1"), ("b", "1"), ("a", "all"), ("b", "all")]
    assert s[("a", "1")]["mean"] == pytest.approx(0.70) and s[("a", "1")]["std"] == pytest.approx(
        0.10
    )
    assert s[("a", "1")]["n"] == 3 and summary(fake_records(), "val")[("a", "1")][
        "mean"
    ] == pytest.approx(0.65)


def test_the_table_shows_accuracies_and_paired_effects():
    table = format_table(fake_records(), versus=[("b", "a"), ("b", "missing")])
    lines = table.splitlines()
    assert lines[0].split() == ["method", "k=1", "k=all"]
    assert lines[2].split() == ["a", "70.0", "±", "10.0", "90.0", "±", "0.0"]
    effect = next(line for line in lines if line.startswith("b − a"))
    assert "+8.3 [" in effect and "+2.0 [" in effect  # mean of the paired differences, in points
    assert "b − missing" not in table and "3 seeds" in table


def test_a_benchmark_without_k_shows_one_column_per_split_and_the_gap_closed():
    recs = [
        {"method": m, "k": None, "seed": s, "split": split, "acc": acc + 0.01 * s, "seconds": 1.0}
        for s in range(3)
        for m, acc in (("low", 0.6), ("mid", 0.7), ("high", 0.8))
        for split in ("val", "test")
    ]
    result = BenchResult(
        "toy",
        recs,
        versus=[("mid", "low")],
        gap=("low", "high"),
        chosen="mid",
        splits=("val", "test"),
    )
    table = result.table()
    assert table.splitlines()[0].split() == ["method", "val", "(%)", "test", "(%)", "gap", "closed"]
    assert "mid *" in table and "50 %" in table and "chosen on target-val" in table
    assert result.gap_closed("mid") == pytest.approx(0.5) and result.ks == [None]


def test_the_json_file_gives_back_the_same_result_and_table(tmp_path):
    result = BenchResult("toy", fake_records(), versus=[("b", "a")], info={"steps": 100})
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({**result.to_json(), "seconds": 1.0}))
    again = BenchResult.load(path)
    assert (
        again.records == result.records
        and again.versus == [("b", "a")]
        and again.info["steps"] == 100
    )
    assert again.table() == result.table() and again.seeds == [2, 0, 1]


def test_a_grid_of_runs_becomes_one_record_per_run_and_split_and_nan_means_no_split():
    grid = {
        ("m", 0): {"val": 0.5, "test": 0.6, "seconds": 2.0},
        ("ref", 0): {"val": float("nan"), "test": 0.9, "seconds": 1.0},
    }
    recs = records_from_grid(grid, ("method", "seed"), k=None)
    assert recs == [
        {"method": "m", "k": None, "seed": 0, "split": "val", "acc": 0.5, "seconds": 2.0},
        {"method": "m", "k": None, "seed": 0, "split": "test", "acc": 0.6, "seconds": 2.0},
        {"method": "ref", "k": None, "seed": 0, "split": "test", "acc": 0.9, "seconds": 1.0},
    ]


def test_the_chapters_plots_draw_a_bench_result():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transferlab.viz import plot_bars, plot_curve, plot_gains

    curve = BenchResult("toy", fake_records(), versus=[("b", "a")])
    assert len(plot_curve(curve).lines) >= 2
    gains = plot_gains(curve)
    assert [t.get_text() for t in gains.get_xticklabels()] == ["1", "all"]
    recs = [
        {"method": m, "k": None, "seed": s, "split": "test", "acc": acc, "seconds": 1.0}
        for s in range(2)
        for m, acc in (("low", 0.6), ("mid", 0.7), ("ref", 0.75), ("high", 0.8))
    ]
    bars = plot_bars(BenchResult("toy", recs, gap=("low", "high"), chosen="mid"), reference="ref")
    assert (
        len(bars.patches) == 3 and len(bars.get_legend().get_texts()) == 2
    )  # ref is a line, not a bar
    plt.close("all")
