"""`transferlab bench trainer`: the Trainer against a hand-written loop and a DataLoader loop.

Only that the command runs, writes its timings and compares like with like: speed goals are
checked by running the benchmark (`transferlab bench trainer`), not asserted here, because
timings on a shared machine vary several-fold between runs.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

from transferlab.bench.loops import LOOPS, trainer_benchmark
from transferlab.cli import main

ROOT = Path(__file__).parents[1]


def test_the_command_prints_its_table_and_writes_the_raw_timings(tmp_path, capsys):
    out = tmp_path / "trainer.json"
    assert (
        main(
            [
                "bench",
                "trainer",
                "--repeats",
                "1",
                "--n-train",
                "256",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Trainer / hand-written loop" in printed and "DataLoader loop / Trainer" in printed
    data = json.loads(out.read_text())
    assert (
        data["bench"] == "trainer"
        and data["settings"]["n_train"] == 256
        and data["settings"]["repeats"] == 1
    )
    assert sorted(r["method"] for r in data["records"]) == sorted(LOOPS)
    assert all(r["seconds"] > 0 and r["seconds_per_epoch"] > 0 for r in data["records"])
    assert all(math.isfinite(v) and v > 0 for v in data["ratios"].values())
    assert set(data["ratios"]) == {"trainer/hand_loop", "dataloader/trainer"}


def test_the_three_loops_train_the_same_model_on_the_same_batches_with_the_same_optimiser():
    result = trainer_benchmark(repeats=2, n_train=192, progress=False)
    assert len(result["records"]) == 2 * len(LOOPS)
    # from the same initial weights, the same batches and the same Adam steps give the same weights
    assert all(d <= 1e-6 for d in result["max_weight_difference"].values()), result[
        "max_weight_difference"
    ]


def test_bad_settings_exit_with_a_message(capsys):
    assert main(["bench", "trainer", "--repeats", "0"]) == 2
    assert main(["bench", "trainer", "--n-train", "10", "--quiet"]) == 2  # less than one batch
    assert "at least one batch" in capsys.readouterr().err


def test_the_readme_trainer_bench_command_runs_as_written_from_the_repository_root():
    """`.venv/bin/transferlab bench trainer --json trainer.json`, typed at the root: the whole
    benchmark (7 interleaved repeats of one epoch of 10,000 images per loop; under a minute)."""
    command = ".venv/bin/transferlab bench trainer --json trainer.json"
    assert command in (ROOT / "README.md").read_text()
    exe = ROOT / ".venv" / "bin" / "transferlab"
    argv = (
        command.split()
        if exe.exists()
        else [sys.executable, "-m", "transferlab.cli", *command.split()[1:]]
    )
    out = ROOT / "trainer.json"
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        assert len(data["records"]) == 7 * len(LOOPS) and data["settings"]["n_train"] == 10_000
        assert all(v > 0 for v in data["ratios"].values())
    finally:
        out.unlink(missing_ok=True)
