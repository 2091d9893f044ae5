"""The claims of the chapter "Distillation and parameter-efficient transfer" (``book/distill.md``)
about distillation, on its benchmark (transferlab.bench.distill: five seeds, cached and shared
with the page)."""


# ---------------------------------------------------------------- the benchmark of the chapter


def test_every_model_sees_the_same_labels_and_every_run_has_val_and_test_records(distill_bench):
    from transferlab.bench.distill import STUDENTS, TEMPERATURES, K

    info = distill_bench.info
    assert info["k"] == K and {r["k"] for r in distill_bench.records} == {
        str(K)
    }  # teacher and students alike
    assert set(distill_bench.methods) == {"teacher", "student", "student_kd"}
    for records in (distill_bench.records, info["runs"]):
        runs = {}
        for r in records:
            runs.setdefault(
                (r["method"], r.get("size"), r["T"], r.get("lr"), r["seed"]), set()
            ).add(r["split"])
            assert isinstance(r["params"], int)
            assert (r["T"] is None) == (r["method"] != "student_kd")
        assert all(splits == {"val", "test"} for splits in runs.values())
    assert {r["T"] for r in info["runs"] if r["method"] == "student_kd"} == set(TEMPERATURES)
    assert set(info["choices"]) == set(STUDENTS) and len(distill_bench.seeds) >= 5


def test_kd_closes_at_least_30_percent_of_the_gap_at_10x_compression(distill_bench):
    """The issue's goal, on the main student (9,802 parameters, 15x fewer than the teacher's
    151,306; T and learning rate chosen on target-val).  Measured on target-test, means over
    seeds (student alone → with KD, teacher: share of the gap closed):

    - seeds 0–4 (the cache): 89.4 → 92.3 %, teacher 92.4 %: 99 %;
    - seeds 100–104: 89.6 → 93.9 %, teacher 93.1 %: 122 % (the student overtakes the teacher).
    - re-measured under bf16 autocast, seeds 0–4: 93 % (KD subtracting a cross-entropy), 94 %
      (KD weighing the cross-entropy by 1 − α, as now); seeds 100–104: 96 % (before).

    Per seed the gap is small (about 3 points) and noisy, so the share is asserted on the means
    only; margin: the 30 % line lies about 70 points below both measured shares.  (The smaller
    students are not asserted on: 2,570 parameters closes 38 % on seeds 0–4 and 30 % on seeds
    100–104, inside the noise of the goal; 706 parameters is erratic.)"""
    main = distill_bench.info["main_student"]
    params = distill_bench.info["params"]
    assert params["teacher"] >= 10 * params[main]
    assert distill_bench.gap_closed("student_kd", "10") >= 0.30


def test_kd_helps_the_student_beyond_the_seed_noise(distill_bench):
    """student_kd − student on target-test, paired over seeds (points, mean [95 % CI], sd of
    the per-seed differences): seeds 0–4: +2.9 [+2.1, +3.7], sd 0.6; seeds 100–104:
    +4.3 [+1.6, +7.0], sd 2.2.  Under bf16 autocast, seeds 0–4: +2.5 [+2.0, +3.0] (KD
    subtracting a cross-entropy), +2.6 [+2.0, +3.2] (weighing it by 1 − α, as now); seeds
    100–104: +4.0 [+2.5, +5.6] (before).  The assertion is that the interval excludes 0."""
    assert distill_bench.effect("student_kd", "student", "10")["low"] > 0
