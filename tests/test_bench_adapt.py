"""Domain adaptation fonts → handwritten: the losses as Trainer terms, and the chapter's claims.

The chapter's benchmark (`transferlab bench adapt`: three seeds, each method with its recipe,
cached and shared with the page) records target-val and target-test for every run; the method
is chosen on target-val, target-test is only reported.  Margins: each effect was measured on
seeds 0–2 and on the disjoint seeds 100–102 (one thread per run, so OMP_NUM_THREADS does not
change them); the tests assert about half of the smaller measurement (MEASURED, points on
target-test; 95 % CI in brackets).
"""

import json

import pytest
import torch

from transferlab.adapt.losses import DANNLoss, make_term
from transferlab.bench.adapt import (
    BASE,
    BUDGET,
    RECIPES,
    REFERENCE,
    SWEEP,
    SWEEP_SEEDS,
    TUNED,
    adapted_accuracy,
    adapted_model,
    best_on_val,
    discriminator_accuracy,
    recorded_sweep,
)
from transferlab.bench.results import BenchResult
from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, seed_everything

# paired effects on target-test, points: (seeds 0–2, seeds 100–102), every method at the budget
# of BUDGET steps with its recipe from the recorded sweep (transferlab/bench/records/)
MEASURED = {
    "mmd − source_only": ("+29.1 [+24.2, +34.1]", "+26.7 [+6.3, +47.2]"),
    "mcc − source_only": ("+16.2 [+14.8, +17.6]", "+19.0 [+3.5, +34.4]"),
    "mcc − source_continued": ("+12.3 [+2.1, +22.5]", "+13.1 [−7.6, +33.9]"),
    "cdan − source_only": ("+12.5 [+8.7, +16.4]", "+11.5 [+5.0, +18.1]"),
    "mmd − dann": ("+14.3 [+11.5, +17.1]", "+11.5 [−5.7, +28.7]"),
    "dann − source_only": ("+14.9 [+8.2, +21.6]", "+15.2 [+11.3, +19.2]"),
    "dann − source_continued (the control)": ("+11.0 [+5.2, +16.7]", "+9.4 [+6.0, +12.9]"),
    "dann − dann_paper": ("+19.6 [+6.1, +33.2]", "+15.9 [+10.1, +21.6]"),
    "gap closed by dann": ("41 %", "41 %"),
    "dann_paper − source_only": ("−4.8 [−21.1, +11.6]", "−0.6 [−4.0, +2.8]"),
    "gap closed by the method chosen on val": ("80 % (mmd)", "72 % (mmd)"),
    "val_labels_finetune − chosen method": ("+4.6 [+2.2, +7.1]", "+8.6 [−14.8, +32.1]"),
}
# Not asserted, because they change sign or verdict between the two seed sets: self-training
# (+14.4 [+8.8, +20.1] | +5.3 [−4.1, +14.7]), CORAL (+9.5 [−2.6, +21.6] | +8.9 [+8.0, +9.8]),
# CDAN − DANN (−2.3 [−9.9, +5.2] | −3.7 [−10.3, +2.9]); the chapter glues them with their verdict.


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
    )  # the goal; measured 80 % and 72 %
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
    assert over_control["mean"] >= 0.06, over_control  # an interval of 3 seeds grazes 0 on 100–102


def test_dann_with_its_val_chosen_recipe_closes_a_share_of_the_gap_and_mmd_stays_ahead(bench):
    """DANN with its recipe chosen on target-val closes 41 % of the gap on both seed sets;
    asserted at about half of the smaller measurement, as the other claims here, and on the mean
    effects only where a 3-seed interval grazes 0 (MEASURED)."""
    assert bench.gap_closed("dann") >= 0.20, bench.gap_closed("dann")
    assert gain(bench, "dann")["mean"] >= 0.075, gain(bench, "dann")
    assert bench.effect("dann", "dann_paper")["mean"] >= 0.08
    assert bench.effect("dann", "source_continued")["mean"] >= 0.045  # more than training longer
    # MMD's lead: +14.3 and +11.5 points; one bad MMD seed on 100–102 widens its interval
    assert bench.effect("mmd", "dann")["mean"] >= 0.055, bench.effect("mmd", "dann")


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
    assert info["tuned_on_val"] == TUNED == recorded_sweep()
    for method, table in TUNED.items():
        best = max(table, key=table.get)
        chosen = RECIPES[method]
        for field, value in json.loads(best).items():
            assert json.loads(json.dumps(getattr(chosen, field))) == value, (method, best)


def test_every_method_gets_the_same_budget_and_the_same_number_of_candidates():
    assert set(SWEEP) == set(BASE) == set(TUNED)
    assert len({len(candidates) for candidates in SWEEP.values()}) == 1
    for method, candidates in SWEEP.items():
        fields = {frozenset(c) for c in candidates}
        assert len(fields) == 1, f"{method}: every candidate names the same fields"
        assert "steps" not in next(iter(fields)), "the budget is not a candidate"
    assert {r.steps for m, r in RECIPES.items()} == {BUDGET}  # methods and the control


def test_the_recorded_sweep_is_the_benchmarks_own_runs(bench):
    """The recipe's val accuracy in the sweep is the benchmark's on the same seeds (the same
    computation; the margin allows for another machine's CPU kernels)."""
    for method, table in TUNED.items():
        recorded = max(table.values())
        ran = [
            100 * r["acc"]
            for r in bench.records
            if r["method"] == method and r["split"] == "val" and r["seed"] in SWEEP_SEEDS
        ]
        assert len(ran) == len(SWEEP_SEEDS)
        assert sum(ran) / len(ran) == pytest.approx(recorded, abs=6.0), method


def test_a_stale_sweep_record_is_refused_with_the_command_that_redoes_it(tmp_path):
    good = json.loads(recorded_sweep.__defaults__[0].read_text())
    for change in (
        lambda d: d["val"]["mmd"].pop(next(iter(d["val"]["mmd"]))),  # a candidate less
        lambda d: d.update(seeds=[0]),
        lambda d: d["base"]["coral"].update(steps=300),
    ):
        data = json.loads(json.dumps(good))
        change(data)
        path = tmp_path / "sweep.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match="record_sweep"):
            recorded_sweep(path)
    with pytest.raises(ValueError, match="no recorded adaptation sweep"):
        recorded_sweep(tmp_path / "missing.json")


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
    # with three seeds the paired interval can graze 0; the spread does not: every seed of the
    # reference is above the chosen method's mean (measured: at least 95.9 % against 91.5 % and
    # 88.1 %)
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
