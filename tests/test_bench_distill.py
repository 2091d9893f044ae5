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
    assert set(distill_bench.methods) == {"teacher", "student", "student_kd", "student_hard"}
    for records in (distill_bench.records, info["runs"]):
        runs = {}
        for r in records:
            runs.setdefault(
                (r["method"], r.get("size"), r["T"], r.get("lr"), r["seed"]), set()
            ).add(r["split"])
            assert isinstance(r["params"], int)
            assert (r["T"] is None) == (r["method"] not in ("student_kd", "student_hard"))
        assert all(splits == {"val", "test"} for splits in runs.values())
    assert {r["T"] for r in info["runs"] if r["method"] == "student_kd"} == set(TEMPERATURES)
    assert set(info["choices"]) == set(STUDENTS) and len(distill_bench.seeds) >= 5


def test_kd_closes_at_least_30_percent_of_the_gap_at_10x_compression(distill_bench):
    """The issue's goal, on the main student (9,802 parameters, 15x fewer than the teacher's
    151,306; T and learning rate chosen on target-val; the teacher fine-tuned at the learning rate
    of chapter "Pretrain and fine-tune").  Measured on target-test, means over seeds (student
    alone → with KD, teacher: share of the gap closed):

    - seeds 0–4 (the cache): 89.6 → 93.1 %, teacher 93.9 %: 84 % (per seed 52 % to 131 %);
    - seeds 100–104: 89.1 → 93.6 %, teacher 95.0 %: 76 %.

    Per seed the gap is small (about 4 points) and noisy, so the share is asserted on the means
    only; margin: the 30 % line lies more than 40 points below both measured shares.  (The
    smaller students are not asserted on: 2,570 parameters closes 59 % on seeds 0–4 and 35 % on
    seeds 100–104; 706 parameters is erratic, 35 % and −3 %.)"""
    main = distill_bench.info["main_student"]
    params = distill_bench.info["params"]
    assert params["teacher"] >= 10 * params[main]
    assert distill_bench.gap_closed("student_kd", "10") >= 0.30


def test_kd_helps_the_student_beyond_the_seed_noise(distill_bench):
    """student_kd − student on target-test, paired over seeds (points, mean [95 % CI]): seeds
    0–4: +3.6 [+2.9, +4.3]; seeds 100–104: +4.5 [+2.5, +6.5].  The assertion is that the
    interval excludes 0.  (The hard-label control: student_hard − student +3.4 [+1.5, +5.3] and
    +4.0 [+2.1, +5.9]; student_kd − student_hard +0.2 [−1.7, +2.2] and +0.5 [−0.2, +1.3], within
    the noise on both sets, so no sign is asserted.)"""
    assert distill_bench.effect("student_kd", "student", "10")["low"] > 0


def test_the_hard_label_control_sees_the_same_transfer_set_at_the_same_settings(distill_bench):
    """``student_hard``: the main student, its learning rate and T, the same transfer set, the
    teacher's one-hot decisions instead of its probabilities (what separates dark knowledge from
    more pseudo-labelled data; the chapter reports both effects, whatever their sign)."""
    info = distill_bench.info
    main = info["main_student"]
    assert info["choices"][main]["student_hard"] == info["choices"][main]["student_kd"]
    assert ("student_kd", "student_hard") in distill_bench.versus
    hard = [r for r in distill_bench.records if r["method"] == "student_hard"]
    assert {r["seed"] for r in hard} == set(distill_bench.seeds)


def test_hard_labels_are_one_hot_decisions_of_the_teacher():
    import torch

    from transferlab.bench.distill import HardLabels
    from transferlab.distill import kd_loss

    teacher = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    hard = HardLabels(teacher)(x)
    assert torch.equal(hard.argmax(1), teacher(x).argmax(1))
    student = torch.randn(8, 3)
    # at any temperature the soft target is one-hot: the loss is T² times the cross-entropy on
    # the teacher's decisions, at temperature T
    ce = torch.nn.functional.cross_entropy(student / 2.0, teacher(x).argmax(1))
    assert torch.allclose(kd_loss(student, hard, 2.0), 4.0 * ce, atol=1e-4)
