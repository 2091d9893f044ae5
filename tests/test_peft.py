"""Unit tests of transferlab.peft: LoRA (linear and conv) against a hand-built reference, merge,
adapters, BitFit, parameter counts and the clear errors."""

import copy

import pytest
import torch
from torch import nn

from transferlab.models import SmallCNN
from transferlab.peft import (
    Adapter,
    LoRAConv2d,
    LoRALinear,
    add_adapters,
    apply_lora,
    bitfit,
    count_parameters,
    lora_layers,
    loraplus_param_groups,
    merge_and_unload,
    merge_lora,
    trainable_report,
)


def _trained_lora(layer):
    """Give B non-zero values, as training would."""
    with torch.no_grad():
        layer.lora_B.normal_(generator=torch.Generator().manual_seed(5))
    return layer


def test_lora_linear_starts_as_the_base_layer_and_matches_a_hand_computation():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(copy.deepcopy(base), r=2, lora_alpha=4)
    x = torch.randn(3, 6)
    assert torch.equal(lora(x), base(x))  # B = 0 at first
    assert torch.equal(lora.lora_B, torch.zeros(5, 2)) and lora.lora_A.shape == (2, 6)
    _trained_lora(lora)
    expected = x @ base.weight.T + base.bias + (4 / 2) * x @ lora.lora_A.T @ lora.lora_B.T
    assert torch.allclose(lora(x), expected, atol=1e-6)
    assert lora.scaling == 2.0 and not lora.base.weight.requires_grad and lora.lora_A.requires_grad


@pytest.mark.parametrize(
    "make",
    [
        lambda: LoRALinear(nn.Linear(8, 6), r=3),
        lambda: LoRAConv2d(nn.Conv2d(3, 5, 3, padding=1, stride=2), r=2, lora_alpha=8),
    ],
)
def test_merged_and_unmerged_outputs_agree_and_merging_twice_is_an_error(make):
    torch.manual_seed(1)
    layer = _trained_lora(make())
    x = torch.randn(4, 8) if isinstance(layer, LoRALinear) else torch.randn(2, 3, 9, 9)
    before = layer(x)
    w0 = layer.base.weight.clone()
    layer.merge()
    assert torch.allclose(layer(x), before, atol=1e-5)
    assert torch.allclose(
        layer.base(x), before, atol=1e-5
    )  # the plain layer now carries the update
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    assert torch.allclose(layer.base.weight, w0, atol=1e-6) and torch.allclose(
        layer(x), before, atol=1e-5
    )
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


def test_lora_conv2d_is_a_low_rank_update_of_the_kernel():
    torch.manual_seed(2)
    base = nn.Conv2d(4, 6, 3, padding=1)
    layer = _trained_lora(LoRAConv2d(copy.deepcopy(base), r=2))
    x = torch.randn(2, 4, 7, 7)
    reference = torch.nn.functional.conv2d(
        x, base.weight + layer.delta_weight(), base.bias, padding=1
    )
    assert torch.allclose(layer(x), reference, atol=1e-5)
    assert torch.linalg.matrix_rank(layer.delta_weight().flatten(1)) == 2


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LoRALinear(nn.Linear(8, 3), r=4), r"r=4 is larger than .*min\(d_in, d_out\) = 3"),
        (lambda: LoRALinear(nn.Linear(8, 3), r=0), "positive integer"),
        (lambda: LoRAConv2d(nn.Conv2d(1, 32, 3), r=10), r"min\(d_in, d_out\) = 9"),
        (lambda: LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2), r=1), "groups=1"),
    ],
)
def test_a_bad_rank_is_a_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_lora_wraps_the_named_layers_freezes_the_rest_and_trains():
    torch.manual_seed(3)
    model = SmallCNN()
    apply_lora(model, ["features.6"], r=4, modules_to_save=["head"])
    assert list(lora_layers(model)) == ["features.6"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"features.6.lora_A", "features.6.lora_B", "head.weight", "head.bias"}
    c = count_parameters(model)
    assert c.trainable == 4 * (1024 + 128) + 128 * 10 + 10
    assert c.total == sum(p.numel() for p in SmallCNN().parameters()) + 4 * (1024 + 128)
    assert trainable_report(model).startswith(
        f"trainable params: {c.trainable:,} || all params: {c.total:,}"
    )
    x = torch.rand(16, 1, 8, 8)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert model.features[6].lora_B.grad.abs().sum() > 0 and model.features[0].weight.grad is None


def test_target_modules_follow_peft_matching_and_name_the_layers_when_nothing_matches():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2)
    apply_lora(model, ["linear1", "linear2"], r=2)
    assert sorted(lora_layers(model)) == [
        "layers.0.linear1",
        "layers.0.linear2",
        "layers.1.linear1",
        "layers.1.linear2",
    ]
    model = SmallCNN()
    apply_lora(model, r"features\.[02]", r=1)  # one string: a regular expression on the full name
    assert sorted(lora_layers(model)) == ["features.0", "features.2"]
    with pytest.raises(
        ValueError, match=r"matches no nn.Linear or nn.Conv2d layer.*'features.6', 'head'"
    ):
        apply_lora(SmallCNN(), ["query"], r=2)


def test_merge_and_unload_gives_back_the_plain_architecture_with_the_same_outputs():
    torch.manual_seed(4)
    model = apply_lora(SmallCNN(), ["features.2", "features.6"], r=2)
    for layer in lora_layers(model).values():
        _trained_lora(layer)
    x = torch.rand(5, 1, 8, 8)
    before = model(x)
    merge_lora(model)
    assert torch.allclose(model(x), before, atol=1e-5)
    with pytest.raises(RuntimeError, match="already merged"):
        merge_lora(model)
    merge_and_unload(model)
    assert lora_layers(model) == {} and isinstance(model.features[6], nn.Linear)
    assert torch.allclose(model(x), before, atol=1e-5)
    assert count_parameters(model).total == count_parameters(SmallCNN()).total


def test_an_adapter_starts_as_the_identity_and_counts_2md_plus_m_plus_d():
    torch.manual_seed(5)
    a = Adapter(16, 4)
    h = torch.randn(3, 16)
    h3 = torch.randn(2, 5, 16)
    assert torch.equal(a(h), h) and torch.equal(a(h3), h3)
    assert count_parameters(a).total == 2 * 4 * 16 + 4 + 16
    conv_h = torch.randn(2, 16, 3, 3)
    assert torch.equal(a(conv_h), conv_h)
    with pytest.raises(ValueError, match="last dimension must be 16"):
        a(torch.randn(3, 8))


def test_add_adapters_inserts_after_a_layer_and_trains_only_adapter_and_head():
    torch.manual_seed(6)
    model = SmallCNN()
    x = torch.rand(4, 1, 8, 8)
    before = model(x)
    add_adapters(model, ["features.7"], bottleneck=8, modules_to_save=["head"])
    assert torch.equal(model(x), before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "features.7.adapter.down.weight",
        "features.7.adapter.down.bias",
        "features.7.adapter.up.weight",
        "features.7.adapter.up.bias",
        "head.weight",
        "head.bias",
    }
    assert model.features[7].adapter.dim == 128
    with pytest.raises(ValueError, match="no submodule named 'features.99'"):
        add_adapters(SmallCNN(), ["features.99"])


def test_bitfit_trains_only_biases_and_the_saved_modules():
    model = bitfit(SmallCNN(), modules_to_save=["head"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "features.0.bias",
        "features.2.bias",
        "features.6.bias",
        "head.weight",
        "head.bias",
    }
    assert count_parameters(model).trainable == 32 + 64 + 128 + 1280 + 10
    with pytest.raises(ValueError, match="no parameter named"):
        bitfit(nn.Linear(3, 3, bias=False))
    with pytest.raises(ValueError, match="modules_to_save: no submodule named 'classifier'"):
        bitfit(SmallCNN(), modules_to_save=["classifier"])


def test_loraplus_groups_give_b_lambda_times_the_rate_and_leave_frozen_parameters_out():
    model = apply_lora(SmallCNN(), ["features.0", "features.6"], r=2, modules_to_save=["head"])
    rest, b = loraplus_param_groups(model, lr=1e-3, loraplus_lr_ratio=16)
    bs = {id(layer.lora_B) for layer in lora_layers(model).values()}
    assert (
        {id(p) for p in b["params"]} == bs
        and b["lr"] == pytest.approx(1.6e-2)
        and rest["lr"] == 1e-3
    )
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {
        id(p) for p in rest["params"]
    } == trainable - bs  # the A matrices and the head, nothing frozen
    # reference: one Adam step with the groups equals separate Adam steps at lr and 16 lr
    x = torch.rand(8, 1, 8, 8)
    twin = copy.deepcopy(model)
    opt = torch.optim.Adam(loraplus_param_groups(model, 1e-3))
    ref_b = [twin.get_submodule(n).lora_B for n in lora_layers(twin)]
    ref_rest = [p for p in twin.parameters() if p.requires_grad and all(p is not q for q in ref_b)]
    ref = [torch.optim.Adam(ref_rest, lr=1e-3), torch.optim.Adam(ref_b, lr=1.6e-2)]
    for m, opts in ((model, [opt]), (twin, ref)):
        m(x).square().mean().backward()
        for o in opts:
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="no trainable LoRA layer"):
        loraplus_param_groups(SmallCNN(), 1e-3)
    with pytest.raises(ValueError, match="must be positive"):
        loraplus_param_groups(model, 1e-3, loraplus_lr_ratio=0)


def test_count_parameters_counts_a_shared_weight_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_parameters(model).total == 20
    lin.bias.requires_grad_(False)
    c = count_parameters(model)
    assert (c.trainable, c.total) == (16, 20) and c.fraction == pytest.approx(0.8)


def test_lora_works_inside_a_transformer_encoder_in_training_and_in_the_inference_fast_path():
    """nn.MultiheadAttention reads ``out_proj.weight`` and the eval fast path of
    nn.TransformerEncoderLayer reads ``linear1.weight``: LoRA layers expose the effective weight."""
    from transferlab.models import RowTransformer

    torch.manual_seed(7)
    model = RowTransformer()
    apply_lora(model, ["out_proj", "linear1", "linear2"], r=2, modules_to_save=["head"])
    assert len(lora_layers(model)) == 6
    for layer in lora_layers(model).values():
        _trained_lora(layer)
    x = torch.rand(5, 1, 8, 8)
    train_out = model.train()(x)
    train_out.sum().backward()
    assert model.features.encoder.layers[0].self_attn.out_proj.lora_B.grad.abs().sum() > 0
    with torch.no_grad():
        eval_out = model.eval()(x)
        assert torch.allclose(eval_out, train_out, atol=1e-5)
        merged = merge_and_unload(model)(x)
    assert torch.allclose(merged, train_out, atol=1e-5)


# ---------------------------------------------------------------- the benchmark of the chapter

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


def test_the_bench_commands_reject_bad_arguments(capsys):
    from transferlab.cli import main

    assert main(["bench", "peft", "--methods", "magic"]) == 2
    assert main(["bench", "peft", "--ks", "all"]) == 2
    assert main(["bench", "distill", "--seeds", "0"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_the_step_sweep_reads_target_val_only(tmp_cache, monkeypatch):
    """``steps_sweep`` (how STEPS was compared) averages target-val, never target-test."""
    from transferlab.bench import peft

    monkeypatch.setenv("TRANSFERLAB_WORKERS", "1")
    calls = []

    def fake(method, k, seed, lr=None, steps=peft.STEPS):
        calls.append((method, k, seed, steps))
        return {"val": steps / 1000, "test": float("nan"), "trainable": 1, "total": 1}

    monkeypatch.setattr(peft, "run", fake)
    monkeypatch.setattr(peft, "_source", lambda seed: None)
    out = peft.steps_sweep(
        budgets=(1, 2), ks=(3,), seeds=(0, 1), methods=("bitfit",), progress=False
    )
    assert out == {"bitfit": {1: 0.001, 2: 0.002}}
    assert sorted(calls) == [("bitfit", 3, s, n) for s in (0, 1) for n in (1, 2)]


def test_the_lr_sweep_reads_target_val_only(tmp_cache, monkeypatch):
    from transferlab.bench import peft

    monkeypatch.setenv("TRANSFERLAB_WORKERS", "1")
    monkeypatch.setattr(
        peft,
        "run",
        lambda method, k, seed, lr=None, steps=peft.STEPS: {
            "val": lr * (seed + 1),
            "test": float("nan"),
            "trainable": 1,
            "total": 1,
        },
    )
    monkeypatch.setattr(peft, "_source", lambda seed: None)
    out = peft.lr_sweep(
        lrs=(0.5, 1), ks=(3, 10), seeds=(0, 1), methods=("bitfit", "adapter"), progress=False
    )
    assert out == {m: {0.5: 0.75, 1.0: 1.5} for m in ("bitfit", "adapter")}
