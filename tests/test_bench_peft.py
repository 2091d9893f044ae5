"""The claims of the chapter "Distillation and parameter-efficient transfer" (``book/distill.md``)
about parameter-efficient transfer, on its benchmark (transferlab.bench.peft: five seeds, cached
and shared with the page)."""


# ---------------------------------------------------------------- the benchmark of the chapter


def test_every_run_has_val_and_test_records_with_parameter_counts(peft_bench):
    from transferlab.bench.peft import METHODS

    assert (
        peft_bench.methods == list(METHODS)
        and peft_bench.ks == ["3", "10", "30"]
        and len(peft_bench.seeds) >= 5
    )
    runs = {}
    for r in peft_bench.records:
        runs.setdefault((r["method"], r["k"], r["seed"]), set()).add(r["split"])
        assert (r["trainable"], r["total"]) == tuple(peft_bench.info["params"][r["method"]])
    assert len(runs) == len(METHODS) * 3 * len(peft_bench.seeds)
    assert all(splits == {"val", "test"} for splits in runs.values())
    full = peft_bench.info["params"]["full_finetune"]
    assert full[0] == full[1]
    counts = {m: t for m, (t, _) in peft_bench.info["params"].items()}
    assert (
        counts["linear_probe"]
        < counts["bitfit"]
        < counts["lora_r1"]
        < counts["lora_r2"]
        < counts["lora_r4"]
    )


# LoRA against the methods that keep the weights (linear probe, BitFit, the adapter after h) at
# k = 30: paired over seeds, target-test, points, mean [95 % CI].  Measured on two machines of
# this kind, whose CPU kernels differ (so do the numbers): host A (2026-11-25) and host B
# (2026-12-06), seeds 0–4 (the cache) | seeds 100–104.
#
#   lora_r2 − linear_probe   A +3.4 [+2.3, +4.6] | +4.1 [+3.5, +4.6]
#                            B +3.2 [+0.6, +5.9] | +4.2 [+2.7, +5.6]
#   lora_r2 − bitfit         A +3.3 [+2.3, +4.2] | +3.4 [+2.4, +4.5]
#                            B +3.0 [+0.9, +5.1] | +3.3 [+2.5, +4.1]
#   lora_r2 − adapter        A +3.8 [+2.5, +5.1] | +4.1 [+2.9, +5.3]
#                            B +3.4 [+0.7, +6.2] | +4.3 [+3.8, +4.9]
#   loraplus_r4 − probe      A +4.6 [+3.7, +5.4] | +4.6 [+2.7, +6.4]
#                            B +4.3 [+3.5, +5.2] | +4.1 [+2.1, +6.2]
#   loraplus_r4 − bitfit     A +4.4 [+3.5, +5.2] | +3.9 [+2.6, +5.2]
#                            B +4.1 [+3.0, +5.1] | +3.3 [+1.8, +4.7]
#   loraplus_r4 − adapter    A +4.9 [+3.8, +6.0] | +4.6 [+3.5, +5.8]
#                            B +4.6 [+2.9, +6.2] | +4.3 [+3.0, +5.6]
#
# Every interval excludes 0, but the lower ends moved by up to 1.7 points from host A to host B
# (seeds 0–4), so "the interval excludes 0" is not asserted: it sits too near the line on host B.
# The means moved by at most 0.6 point; the smallest is 3.0.  Asserted: each mean is above
# MARGIN = 1.5 points (half the smallest).
MARGIN = 0.015
KEEP_THE_WEIGHTS = ("linear_probe", "bitfit", "adapter")


def test_lora_trains_under_10_percent_and_beats_the_methods_that_keep_the_weights_at_k30(
    peft_bench,
):
    """LoRA of rank 2 is ahead of the linear probe, BitFit and the adapter at k = 30 by more than
    MARGIN on average (measurements above).  Rank 4 is not used: on host A one of its five seeds
    (0–4) dropped to 90.6 % at its val-chosen learning rate (3e-2)."""
    for r in ("lora_r1", "lora_r2", "lora_r4"):
        trainable, total = peft_bench.info["params"][r]
        assert trainable <= 0.10 * total
    for other in KEEP_THE_WEIGHTS:
        assert peft_bench.effect("lora_r2", other, "30")["mean"] > MARGIN, other


def test_loraplus_trains_the_same_parameters_and_beats_the_methods_that_keep_the_weights_at_k30(
    peft_bench,
):
    """LoRA+ (rank 4, η_B = 16 η_A) is ahead of the same three by more than MARGIN on average."""
    assert peft_bench.info["params"]["loraplus_r4"] == peft_bench.info["params"]["lora_r4"]
    for other in KEEP_THE_WEIGHTS:
        assert peft_bench.effect("loraplus_r4", other, "30")["mean"] > MARGIN, other


# The goal, LoRA of rank <= 4 within 1 point of full fine-tuning at k = 30, is NOT met on
# this source model (151k parameters, learning rates chosen on target-val).  full_finetune minus
# (points, k = 30, target-test; seeds 0–4 | 100–104):
#
#   lora_r2       A +1.9 [+1.3, +2.5] | +2.1 [+0.6, +3.6]   B +1.8 [−0.5, +4.0] | +2.0 [+1.8, +2.2]
#   lora_r4       A +2.3 [−1.5, +6.1] | +2.2 [+1.2, +3.1]   B +1.0 [+0.0, +2.1] | +2.3 [+1.5, +3.2]
#   loraplus_r4   A +0.8 [+0.1, +1.5] | +1.6 [+0.5, +2.7]   B +0.7 [−0.1, +1.5] | +2.0 [+1.1, +2.9]
#
# Longer budgets do not close it (host B, seeds 100–104, k = 30, minus full fine-tuning at the
# same budget, 100 / 200 / 400 steps: lora_r4 −2.3 / −2.2 / −1.7, loraplus_r4 −2.0 / −1.3 / −1.2).
# Nothing here is asserted about the sign: full fine-tuning's lead over rank 2, asserted until
# 2026-12-06, has an interval that covers 0 on host B (seeds 0–4), where the test failed.  What
# holds with room is how much of the linear probe's shortfall LoRA+ of rank 4 makes up: the gap
# between the linear probe and full fine-tuning, closed 88 % | 67 % on host B (full fine-tuning
# 96.9 | 97.0 %, the probe 91.9 | 90.9 %, LoRA+ 96.3 | 95.0 %); asserted: at least half.


def test_loraplus_closes_most_of_the_gap_between_the_linear_probe_and_full_finetuning_at_k30(
    peft_bench,
):
    s = peft_bench.summary()
    full, probe, plus = (
        s[(m, "30")]["mean"] for m in ("full_finetune", "linear_probe", "loraplus_r4")
    )
    assert full > probe
    assert (plus - probe) / (full - probe) >= 0.5, (plus, probe, full)
