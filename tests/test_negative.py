"""The claims of chapter "Negative transfer", over seeds 0, 1, 2.

Measured with `transferlab bench negative --seeds 3` (target-test, transfer gain over scratch in
points, k = 1 / 3 / 10 / 30 / all): digits +12.8 / +2.5 / +2.6 / +0.3 / +1.0; letters -0.1 / +1.9
/ +1.5 / +0.9 / +1.0; shuffled -14.0 / -11.9 / -4.1 / -1.5 / +0.1; digits_lr_high -12.0 / -28.8 /
-3.3 / -2.9 / -59.8.  Kendall tau with the accuracy at k = 3: LogME 0.67, LEEP 0.39.  At k = 3
(scratch 81.2 %): shuffled naive 69.3, + new head 80.4, + conv only 82.8, + L2-SP 67.0, gate
81.2.  Each test asserts about half of the measured effect.
"""

from statistics import mean

import pytest

from transferlab.bench.negative import crossing, negative_benchmark, run, target_model


@pytest.fixture(scope="module")
def result():
    return negative_benchmark(seeds=(0, 1, 2), progress=False)


def test_the_random_label_source_shows_negative_transfer_at_three_labels_per_class(result):
    gap, sem = result["gap"]["shuffled"]["3"]
    assert gap >= 0.05 and gap - 2 * sem > 0, (gap, sem)


def test_the_related_source_shows_positive_transfer_at_one_label_per_class(result):
    gap, sem = result["gap"]["digits"]["1"]
    assert gap <= -0.06 and gap + 2 * sem < 0, (gap, sem)


def test_an_aggressive_learning_rate_turns_a_good_source_harmful(result):
    assert result["gap"]["digits_lr_high"]["3"][0] >= 0.1


def test_the_harmful_source_stops_hurting_with_every_label(result):
    assert abs(result["gap"]["shuffled"]["all"][0]) < 0.02
    assert crossing(result, "shuffled") == "between k=30 and k=all (becomes positive)"


def test_both_scores_rank_the_harmful_source_last_on_every_seed(result):
    sc = result["scores"]
    for metric in ("logme", "leep"):
        for i in range(3):
            assert sc["shuffled"][i][metric] < min(sc["digits"][i][metric], sc["letters"][i][metric])
    assert result["kendall"]["logme"] >= 0.3 and result["kendall"]["leep"] >= 0.2


def test_remedies_transferring_conv_layers_and_the_gate_recover_the_loss_l2sp_does_not(result):
    scratch = mean(r["test"] for r in result["curves"]["scratch"]["3"])
    naive = mean(r["test"] for r in result["curves"]["shuffled"]["3"])
    conv = mean(r["test"] for r in result["remedies"]["shuffled+conv_only"])
    l2sp = mean(r["test"] for r in result["remedies"]["shuffled+l2sp"])
    assert conv >= naive + 0.06 and conv >= scratch - 0.02
    assert l2sp < scratch - 0.05
    assert mean(result["gate"]["shuffled"]) >= scratch - 0.02


def test_unknown_sources_and_variants_are_rejected():
    with pytest.raises(ValueError, match="unknown source 'mnist'"):
        target_model("mnist", 0)
    with pytest.raises(ValueError, match="unknown fine-tuning variant"):
        run("digits", 1, 0, how="partial")


def test_cli_prints_the_gain_table_and_writes_json(result, tmp_path, capsys):
    import json

    from transferlab.cli import main

    out = tmp_path / "negative.json"
    assert main(["bench", "negative", "--seeds", "3", "--json", str(out), "--quiet"]) == 0  # read from the cache
    data = json.loads(out.read_text())
    assert set(data["curves"]) == {"scratch", "digits", "letters", "shuffled", "digits_lr_high"}
    assert set(data["kendall"]) == {"logme", "leep"}
    assert "gain changes sign" in capsys.readouterr().out
