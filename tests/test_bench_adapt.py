"""Domain adaptation fonts → handwritten: the losses as Trainer terms, and the chapter's claims.

The chapter's benchmark (`transferlab bench adapt`: three seeds, each method with its recipe,
cached and shared with the page) records target-val and target-test for every run; the method
is chosen on target-val, target-test is only reported.  Margins: each effect was measured on
seeds 0–2 and on the disjoint seeds 100–102 (2026-11-25; one thread per run, so
OMP_NUM_THREADS does not change them); the tests assert about half of the smaller measurement
(MEASURED, points on target-test; 95 % CI in brackets).
"""

import json

import pytest
import torch

from transferlab.adapt.losses import DANNLoss, make_term
from transferlab.bench.adapt import (
    RECIPES,
    REFERENCE,
    TUNED,
    adapted_accuracy,
    adapted_model,
    best_on_val,
    discriminator_accuracy,
)
from transferlab.bench.results import BenchResult
from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, seed_everything

# paired effects on target-test, points: (seeds 0–2, seeds 100–102)
MEASURED = {
    "mmd − source_only": ("+28.9 [+25.6, +32.2]", "+32.1 [+30.9, +33.3]"),
    "mcc − source_only": ("+15.6 [+15.1, +16.1]", "+17.3 [+11.9, +22.7]"),
    "mcc − source_continued": ("+11.4 [+6.4, +16.5]", "+11.3 [+5.1, +17.5]"),
    "cdan − source_only": ("+19.1 [+5.1, +33.0]", "+13.6 [+1.1, +26.0]"),
    "mmd − dann": (
        "+15.9 [+5.4, +26.4]",
        "+15.2 [+11.8, +18.7]",
    ),  # a recomputation of 0–2: +18.1 [−1, +37]
    "dann − source_only": ("+13.0 [−0.7, +26.7]", "+16.9 [+12.9, +20.8]"),
    "dann − source_continued (the control)": ("+8.8 [−3.2, +20.9]", "+10.9 [+5.8, +16.0]"),
    "dann − dann_paper": ("+16.1 [+0.3, +31.9]", "+17.2 [+10.7, +23.6]"),
    "gap closed by dann": (
        "36 %",
        "44 %",
    ),  # a recomputation of 0–2 (another draw of the sources): 31 %
    "dann_paper − source_only": ("−3.1 [−15.3, +9.1]", "−0.3 [−5.7, +5.1]"),
    "discriminator accuracy, last 200 steps: dann_paper | dann": ("82 % | 61 %", "79 % | 60 %"),
    "gap closed by the method chosen on val": ("81 % (mmd)", "85 % (mmd)"),
    "val_labels_finetune − chosen method": ("+3.1 [−0.0, +6.2]", "+2.4 [−0.6, +5.4]"),
}
# Recomputed on 2026-12-06 on another machine of the same kind (same code, other CPU kernels, so
# other numbers), seeds 0–2 | 100–102: mmd − source_only +30.0 | +32.5; mmd − dann +19.3 [+15.0,
# +23.6] | +16.2 [+12.0, +20.3]; dann − source_only +10.7 [+5.1, +16.2] | +16.3 [+12.3, +20.3];
# dann − source_continued +11.1 | +10.7; dann − dann_paper +14.4 | +17.2; gap closed by dann
# 30 % | 43 %, by the chosen method 84 % | 86 % (mmd).  Every margin below still holds.


@pytest.fixture(scope="module")
def bench(adapt_bench):
    return adapt_bench


def gain(bench, method):
    return bench.effect(method, "source_only")


def test_the_method_chosen_on_target_val_closes_most_of_the_gap(bench):
    best = bench.chosen
    assert best == best_on_val(bench.records) and best not in (
        "source_only",
        "oracle",
        "source_continued",
        REFERENCE,
    )
    assert bench.gap == ("source_only", "oracle")
    assert bench.gap_closed(best) >= 0.60, (
        best,
        bench.gap_closed(best),
    )  # the goal; measured 81–85 %
    assert gain(bench, best)["low"] > 0


def test_the_choice_reads_target_val_and_never_target_test():
    accs = {
        "source_only": (0.6, 0.6),
        "mmd": (0.9, 0.5),
        "coral": (0.7, 0.95),
        "oracle": (0.99, 0.99),
        "source_continued": (0.95, 0.6),
    }
    fake = [
        {"method": m, "k": None, "seed": 0, "split": split, "acc": acc, "seconds": 1.0}
        for m, pair in accs.items()
        for split, acc in zip(("val", "test"), pair)
    ]
    fake.append(
        {"method": REFERENCE, "k": None, "seed": 0, "split": "test", "acc": 1.0, "seconds": 1.0}
    )
    assert best_on_val(fake) == "mmd"  # neither the control nor coral's better test accuracy


def test_mmd_mcc_and_cdan_beat_source_only(bench):
    for method, least in (("mmd", 0.10), ("mcc", 0.08), ("cdan", 0.06)):
        e = gain(bench, method)
        assert e["low"] > 0 and e["mean"] >= least, (method, e)
    over_control = bench.effect("mcc", "source_continued")  # not just a longer training
    assert over_control["low"] > 0 and over_control["mean"] >= 0.05, over_control


def test_dann_with_its_val_chosen_recipe_closes_a_share_of_the_gap_and_mmd_stays_ahead(bench):
    """Adam with β1 = 0.5 and λ_max = 0.3 (chosen on target-val): DANN closes 36 % and 44 % of the
    gap on the two seed sets; asserted at about half of the smaller measurement, as the other
    claims here: its seeds spread by about 5 points, so only the mean effects are asserted where
    an interval grazes 0."""
    assert bench.gap_closed("dann") >= 0.18, bench.gap_closed("dann")
    assert gain(bench, "dann")["mean"] >= 0.065, gain(bench, "dann")
    assert bench.effect("dann", "dann_paper")["mean"] >= 0.08
    assert bench.effect("dann", "source_continued")["mean"] >= 0.04  # more than training longer
    # MMD's lead is 15–18 points on every measurement, but DANN's spread over seeds (one seed 4–7
    # points below the others) lets a 3-seed interval graze 0 (CI [−1, +37] on one recomputation
    # of seeds 0–2): asserted on the mean, at half the smallest measurement
    assert bench.effect("mmd", "dann")["mean"] >= 0.08, bench.effect("mmd", "dann")


def test_the_published_dann_recipe_barely_moves_the_model_and_its_discriminator_keeps_winning(
    bench,
):
    e = gain(bench, "dann_paper")
    assert abs(e["mean"]) <= 0.08, e
    disc = discriminator_accuracy(("dann_paper", "dann"))
    end = {m: acc[:, -200:].mean().item() for m, acc in disc.items()}
    assert end["dann_paper"] >= 0.72 and end["dann_paper"] - end["dann"] >= 0.06, end


def test_every_recipe_was_chosen_among_candidates_measured_on_val(bench):
    info = bench.info
    assert info["recipes"]["dann"]["options"] == RECIPES["dann"].options
    assert info["tuned_on_val"] == TUNED
    for method, table in TUNED.items():
        best = max(table, key=table.get)
        chosen = RECIPES[method]
        for field, value in json.loads(best).items():
            assert json.loads(json.dumps(getattr(chosen, field))) == value, (method, best)


def test_the_chapter_reads_the_benchmarks_own_models_and_traces(bench):
    target = load_domain("handwritten")
    for method in (bench.chosen, "dann"):
        # evaluated as the benchmark evaluates (bf16 autocast on a CPU with native bf16)
        acc = Trainer(adapted_model(method), cpu_amp=True, progress=False).evaluate(target.test)[
            "acc"
        ]
        recorded = next(
            r["acc"]
            for r in bench.records
            if (r["method"], r["seed"], r["split"]) == (method, 0, "test")
        )
        assert acc == pytest.approx(recorded, abs=1e-6)
    traces = discriminator_accuracy()
    assert traces["dann"].shape == (len(bench.seeds), RECIPES["dann"].steps)
    with pytest.raises(ValueError, match="no discriminator"):
        discriminator_accuracy(("mmd",))
    with pytest.raises(ValueError, match="seed 0 only"):
        adapted_model("mmd", seed=1)


def test_fine_tuning_on_the_val_labels_is_a_reference_not_a_candidate(bench):
    assert not [r for r in bench.records if r["method"] == REFERENCE and r["split"] == "val"]
    e = gain(bench, REFERENCE)
    assert e["low"] > 0 and e["mean"] >= 0.15, e
    over_best = bench.effect(REFERENCE, bench.chosen)
    assert over_best["mean"] >= 0.012, over_best
    # with three seeds the paired interval grazes 0; the spread does not: every seed of the
    # reference is above the chosen method's mean (measured 94–95 % against 92–93 %)
    assert min(bench.accs(REFERENCE)) > sum(bench.accs(bench.chosen)) / len(bench.seeds)


def test_every_run_records_target_val_and_target_test(bench):
    recs = bench.records
    assert {r["split"] for r in recs if r["method"] == "mmd"} == {"val", "test"}
    assert all(r["k"] is None for r in recs)  # adaptation uses no target label: k does not apply
    assert {r["split"] for r in recs if r["method"] == REFERENCE} == {"test"}


def test_unknown_methods_raise_instead_of_training_with_a_zero_loss():
    with pytest.raises(
        ValueError, match="unknown adaptation method 'mmmd'; choose one of mmd, coral, dann, cdan"
    ):
        make_term("mmmd", 128)
    with pytest.raises(ValueError, match="unknown adaptation method"):
        adapted_accuracy("coral+magic", 0)
    with pytest.raises(ValueError, match="split"):
        adapted_accuracy("mmd", 0, split="train")


def test_dann_term_trains_its_discriminator_and_logs_its_accuracy():
    target = load_domain("handwritten")
    seed_everything(0)
    model = SmallCNN()
    term = make_term("dann", model.feature_dim, weight=0.5)
    # params= names the model's parameters only: the discriminator is optimised all the same
    trainer = Trainer(model, loss_terms=[term], batch_size=32, params=list(model.parameters()))
    disc = term.loss.discriminator
    assert any(
        p is q
        for g in trainer.optimizer.param_groups
        for p in g["params"]
        for q in disc.parameters()
    )
    before = [p.clone() for p in disc.parameters()]
    history = trainer.fit(target.val, epochs=2, unlabelled=target.train)
    assert not all(torch.equal(a, b) for a, b in zip(before, disc.parameters()))
    assert 0.0 <= history["dann_disc_acc"][-1] <= 1.0 and history["dann_lambda"][-1] > 0


def test_a_bad_recipe_candidate_is_a_clear_error_before_any_run():
    from transferlab.bench.adapt import tune

    with pytest.raises(ValueError, match="betas must be Adam's two coefficients"):
        tune("dann", [{"betas": [0.5]}])
    with pytest.raises(ValueError, match=r"each in \[0, 1\)"):
        tune("dann", [{"betas": [0.5, 1.5]}])
    with pytest.raises(TypeError, match="momentum"):
        tune("dann", [{"momentum": 0.5}])


def test_target_images_of_another_shape_are_refused_before_training():
    target = load_domain("handwritten")
    model = SmallCNN()
    trainer = Trainer(model, loss_terms=[make_term("dann", model.feature_dim)], batch_size=32)
    wrong = torch.zeros(40, 1, 16, 16)
    with pytest.raises(
        ValueError, match=r"unlabelled images have shape \(1, 16, 16\).*\(1, 8, 8\)"
    ):
        trainer.fit(target.val, epochs=1, unlabelled=wrong)
    assert trainer.step == 0


def test_dann_lambda_warms_up_from_zero_to_its_maximum():
    loss = DANNLoss(8, max_lambda=2.0)
    values = []
    for p in (0.0, 0.1, 1.0):
        loss.set_progress(p)
        values.append(loss.lambd)
    assert (
        values[0] == 0.0 and 0 < values[1] < values[2] and values[2] == pytest.approx(2.0, abs=1e-3)
    )


@pytest.mark.parametrize("method", ["mmd", "coral", "entropy", "self_training", "mcc", "cdan"])
def test_each_loss_runs_as_a_trainer_term(method):
    target = load_domain("handwritten")
    seed_everything(0)
    model = SmallCNN()
    h = Trainer(model, loss_terms=[make_term(method, model.feature_dim)], batch_size=64).fit(
        target.val, epochs=1, unlabelled=target.train
    )
    assert method in h.keys() and h["loss"][0] == h["loss"][0]  # noqa: SIM118 (History is no dict): logged, not NaN


def test_cli_writes_the_benchmark_json_with_both_baselines(bench, tmp_path, capsys):
    import json

    from transferlab.cli import main

    out = tmp_path / "adapt.json"
    assert main(["bench", "adapt", "--json", str(out), "--quiet"]) == 0  # read from the cache
    data = json.loads(out.read_text())
    assert {"source_only", "oracle", "mmd", "dann", "coral", "self_training", REFERENCE} <= {
        r["method"] for r in data["records"]
    }
    assert data["gap"] == ["source_only", "oracle"] and data["chosen"] == bench.chosen
    printed = capsys.readouterr().out
    assert "gap closed" in printed and BenchResult.from_json(data).table() in printed
    assert main(["bench", "adapt", "--methods", "mmd,magic"]) == 2
