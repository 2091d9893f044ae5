"""The claims of chapter "Negative transfer", on the chapter's benchmark (ten seeds, cached and
shared with the page).

Measured with `transferlab bench negative` (seeds 0–9; transfer gain over scratch at the same
learning rate, points on target-test, mean [95 % CI]):
  digits          k=1 +8.4 [+4.2, +12.6]    k=3 +2.7     k=all +1.4
  letters         k=1 −2.1 [−3.9, −0.3]     k=3 +0.7     k=all +2.3
  shuffled        k=1 −15.8 [−20.0, −11.7]  k=3 −10.8 [−13.8, −7.8]  k=30 −1.0
                  k=all +1.1 [+0.2, +1.9]
  digits_lr_high vs scratch_lr_high: every interval covers 0 (a run at lr 3e-2 is a lottery);
  scratch_lr_high − scratch at k=3: −12.7 [−16.7, −8.6]
  LEEP puts the harmful source last on 10/10 seeds at every k; LogME on 0/10 at k=1, 5/10 at k=3
  and 10/10 from k=10; Kendall tau at k=all: LogME 0.39, LEEP 0.48.
  At k=3 against naive fine-tuning of the harmful source: conv only +13.1 [+10.5, +15.8], new
  head +10.9 [+7.6, +14.2]; against scratch: conv only +2.4, L2-SP −13.1, gate +0.0.
Checked on seeds 100–109 (`transferlab bench negative --seed-offset 100`, 2026-11-25): every
assertion below holds there too, with
  digits          k=1 +8.9 [+4.1, +13.7]    k=3 +4.2     k=all +1.9
  letters         k=1 +1.6 [−3.1, +6.2]     k=3 +1.4     k=10 +2.4 [+0.8, +4.0]   k=all +2.6
  shuffled        k=1 −13.2 [−17.3, −9.2]   k=3 −9.7 [−14.2, −5.2]   k=30 −1.6
                  k=all +1.1 [+0.2, +1.9]
  scratch_lr_high − scratch at k=3: −8.9 [−11.9, −5.9]
  LEEP last on 10/10 seeds at every k; LogME on 2/10 at k=1, 8/10 at k=3, 10/10 from k=10;
  Kendall tau at k=all: LogME 0.39, LEEP 0.37.
  At k=3 against naive: conv only +12.2, new head +9.6; against scratch: conv only +2.5
  [+0.8, +4.1], new head −0.1, L2-SP −12.1 [−16.6, −7.7], gate +0.5 [−0.6, +1.6].
(so the chapter does not claim a sign for letters at k=1, nor for digits_lr_high.)
The runs use one thread each, so OMP_NUM_THREADS=1 and 2 give the same numbers; each test
asserts about half of the measured effect, and an interval that excludes zero where the chapter
says an effect exists.
"""

import pytest

from transferlab.bench.negative import BASELINE, run, target_model, verdict
from transferlab.bench.results import BenchResult

SOURCES = ("digits", "letters", "shuffled")


@pytest.fixture(scope="module")
def result(negative_bench):
    return negative_bench


def gap(result, name, k):
    """The negative-transfer gap acc(scratch) − acc(transfer), paired over seeds (positive:
    hurt)."""
    return result.effect(BASELINE[name], name, k)


def test_the_random_label_source_shows_negative_transfer_with_few_labels(result):
    for k in ("1", "3"):
        g = gap(result, "shuffled", k)
        assert g["low"] > 0 and g["mean"] >= 0.05, (k, g)
        assert verdict(result.effect("shuffled", "scratch", k)) == "loss"


def test_the_related_source_shows_positive_transfer_at_one_label_per_class(result):
    g = gap(result, "digits", "1")
    assert g["high"] < 0 and g["mean"] <= -0.04, g
    assert verdict(result.effect("digits", "scratch", "1")) == "gain"


def test_the_harm_of_the_random_label_source_fades_with_every_label(result):
    few, every = gap(result, "shuffled", "3"), gap(result, "shuffled", "all")
    assert few["low"] > every["high"], (few, every)
    assert abs(every["mean"]) <= 0.03, every


def test_a_learning_rate_thirty_times_too_high_hurts_scratch_training_too(result):
    cost = result.effect("scratch_lr_high", "scratch", "3")
    assert cost["high"] < 0 and cost["mean"] <= -0.05, cost


def _last(result, k, metric):
    n = len(result.seeds)
    return sum(
        min(SOURCES, key=lambda s: result.info["scores"][s][k][i][metric]) == "shuffled"
        for i in range(n)
    )


def test_leep_flags_the_harmful_source_at_every_k_and_logme_from_ten_labels(result):
    n = len(result.seeds)
    for k in result.ks:
        assert _last(result, k, "leep") >= n - 1, (k, _last(result, k, "leep"))
    for k in ("10", "30", "all"):
        assert _last(result, k, "logme") >= n - 2, (k, _last(result, k, "logme"))


def test_with_every_label_both_scores_rank_the_sources_better_than_chance(result):
    tau = result.info["kendall"]["all"]
    assert tau["logme"] >= 0.15 and tau["leep"] >= 0.15, tau


def test_remedies_transferring_less_and_the_gate_recover_the_loss_l2sp_does_not(result):
    def effect(a, b):
        return result.effect(a, b, "3")

    assert effect("shuffled+conv_only", "shuffled")["mean"] >= 0.06
    assert effect("shuffled+new_head", "shuffled")["mean"] >= 0.05
    assert effect("shuffled+conv_only", "scratch")["mean"] >= -0.02
    l2sp = effect("shuffled+l2sp", "scratch")
    assert l2sp["high"] < 0 and l2sp["mean"] <= -0.05, l2sp
    assert effect("shuffled+gate", "scratch")["mean"] >= -0.02


def test_every_run_records_target_val_and_target_test(result):
    recs = result.records
    assert {r["split"] for r in recs} == {"val", "test"}
    assert {r["method"] for r in recs} >= {
        "letters",
        "shuffled",
        "scratch_lr_high",
        "digits_lr_high",
    }
    runs = {(r["method"], r["k"], r["seed"]) for r in recs}
    assert len(recs) == 2 * len(runs) and all(r["seconds"] > 0 for r in recs)


def test_unknown_sources_and_variants_are_rejected():
    with pytest.raises(ValueError, match="unknown source 'mnist'"):
        target_model("mnist", 0)
    with pytest.raises(ValueError, match="unknown fine-tuning variant"):
        run("digits", 1, 0, how="partial")


def test_cli_prints_the_gain_table_and_writes_json(result, tmp_path, capsys):
    import json

    from transferlab.cli import main

    out = tmp_path / "negative.json"
    assert main(["bench", "negative", "--json", str(out), "--quiet"]) == 0  # read from the cache
    data = json.loads(out.read_text())
    curves = {"scratch", "digits", "letters", "shuffled", "scratch_lr_high", "digits_lr_high"}
    assert curves <= {r["method"] for r in data["records"]}
    assert set(data["kendall"]) == set(data["ks"]) and set(data["kendall"]["all"]) == {
        "logme",
        "leep",
    }
    printed = capsys.readouterr().out
    assert "95 % CI" in printed and BenchResult.from_json(data).table() in printed
