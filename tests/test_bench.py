import json

import pytest

from transferlab.bench.finetune import finetune_curve, run_one
from transferlab.cli import main

SEEDS = (0, 1, 2)
# The statements of chapter "Pretrain and fine-tune", each with the margin measured by
# `transferlab bench finetune --seeds 3` (target-test, mean over seeds 0, 1, 2):
#   k = 1:   finetune 74.1 ± 1.4, scratch 61.3 ± 4.6 (+12.8; per seed +18.9, +11.7, +7.8),
#            finetune_new_head 69.0 ± 5.6 (-5.1), finetune_l2sp 73.9 ± 1.3 (-0.2)
#   k = 30:  finetune 95.2, scratch 94.9 (+0.3)
#   k = all: finetune 96.7, linear_probe 92.0 (+4.7)
# Each test asserts about half the measured margin, so it fails if the effect disappears.


@pytest.fixture(scope="module")
def curve():
    few = finetune_curve(ks=(1,), seeds=SEEDS, progress=False)
    many = finetune_curve(ks=(30, None), seeds=SEEDS, methods=("scratch", "linear_probe", "finetune"), progress=False)
    return {**few["runs"], **{m: {**few["runs"].get(m, {}), **r} for m, r in many["runs"].items()}}


def _mean(values):
    return sum(values) / len(values)


def _gain(curve, a, b, k):
    return [x - y for x, y in zip(curve[a][k], curve[b][k])]


def test_fine_tuning_beats_scratch_with_one_label_per_class_on_every_seed(curve):
    gains = _gain(curve, "finetune", "scratch", "1")
    assert all(g > 0 for g in gains), f"fine-tuning lost to scratch on some seed: {gains}"
    assert _mean(gains) >= 0.06, f"mean gain {_mean(gains):.3f}, measured +0.128"


def test_keeping_the_source_head_beats_a_new_head_with_one_label_per_class(curve):
    assert _mean(_gain(curve, "finetune", "finetune_new_head", "1")) >= 0.02


def test_l2sp_stays_close_to_plain_fine_tuning(curve):
    assert abs(_mean(_gain(curve, "finetune_l2sp", "finetune", "1"))) <= 0.02


def test_scratch_catches_up_by_thirty_labels_per_class(curve):
    assert abs(_mean(_gain(curve, "finetune", "scratch", "30"))) <= 0.03


def test_linear_probe_trails_fine_tuning_with_every_label(curve):
    assert _mean(_gain(curve, "finetune", "linear_probe", "all")) >= 0.02


def test_run_one_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'fine_tune'.*finetune"):
        run_one("fine_tune", 1, 0)


def test_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "ft.json"
    assert main(["bench", "finetune", "--seeds", "1", "--ks", "1,all", "--methods", "scratch,linear_probe", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "linear_probe" in printed and "k=all" in printed
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"scratch", "linear_probe"} and result["ks"] == ["1", "all"]
    assert 0.1 < result["summary"]["scratch"]["all"]["mean"] <= 1


def test_cli_rejects_bad_arguments(capsys):
    assert main(["bench", "finetune", "--methods", "magic"]) == 2
    assert main(["bench", "finetune", "--ks", "one"]) == 2
    assert main(["bench", "finetune", "--seeds", "0"]) == 2
    assert "unknown method" in capsys.readouterr().err
