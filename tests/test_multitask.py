"""Multi-task learning (chapter "Multi-task learning", :mod:`transferlab.multitask`): reference
tests of each piece (hard sharing, the hierarchy, masked labels, weightings, schedules, gradient
cosines), clear errors, and the chapter's claims from the cached benchmark."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferlab.data import TensorSplit
from transferlab.multitask import (
    MISSING,
    Alternating,
    BySize,
    GradientCosine,
    GradNorm,
    HardSharing,
    RoundRobin,
    StaticWeights,
    UncertaintyWeighting,
    coarse_tasks,
    gradient_cosine,
    hard_sharing,
    hierarchical,
    mix_tasks,
    task_gradients,
)
from transferlab.train import Trainer, seed_everything
from transferlab.train.supervised import masked_cross_entropy, masked_mse


def _split(n=128, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(
        torch.rand(n, 1, 8, 8, generator=g), torch.randint(classes, (n,), generator=g)
    )


def _two_tasks(n=128):
    """A mixed split: half the samples labelled for ``y``, half for ``aux`` (3 classes)."""
    return mix_tasks({"y": _split(n // 2, 0), "aux": _split(n // 2, 1, classes=3)})


def _model(seed=0, **classes):
    seed_everything(seed)
    return hard_sharing(classes or {"y": 10, "aux": 3})


# ------------------------------------------------------------------ models and masked labels
def test_hard_sharing_gives_one_logit_tensor_per_task_from_one_trunk():
    model = _model(y=10, aux=3)
    out = model(torch.rand(5, 1, 8, 8))
    assert {t: tuple(v.shape) for t, v in out.items()} == {"y": (5, 10), "aux": (5, 3)}
    z = model.features(torch.rand(5, 1, 8, 8))
    assert z.shape == (5, 128) and model.tasks == ["y", "aux"]
    with pytest.raises(ValueError, match="at least one head"):
        HardSharing(nn.Identity(), {})


def test_masked_cross_entropy_averages_over_the_labelled_samples_only():
    logits = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, MISSING, 3, MISSING, 1, 2])
    known = y != MISSING
    assert torch.allclose(masked_cross_entropy(logits, y), F.cross_entropy(logits[known], y[known]))
    none = masked_cross_entropy(logits, torch.full((6,), MISSING))
    none.backward()  # a batch without a label of this task: 0, and a zero gradient, not NaN
    assert none.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_mix_tasks_labels_each_sample_for_its_own_task_and_marks_the_others_missing():
    a, b = _split(4, 0), _split(6, 1, classes=3)
    mixed = mix_tasks({"y": a, "aux": b}, repeat={"y": 2}, extra={"aux": {"parity": b.y % 2}})
    assert len(mixed) == 2 * 4 + 6 and set(mixed.groups) == {"aux", "parity"}
    assert torch.equal(mixed.y, torch.cat([a.y, a.y, torch.full((6,), MISSING)]))
    assert torch.equal(mixed.groups["aux"], torch.cat([torch.full((8,), MISSING), b.y]))
    assert torch.equal(mixed.groups["parity"], torch.cat([torch.full((8,), MISSING), b.y % 2]))
    assert torch.equal(mixed.x[4:8], a.x)
    with pytest.raises(ValueError, match="no task named 'y'"):
        mix_tasks({"aux": b})
    with pytest.raises(ValueError, match=r"task\(s\) \['other'\]"):
        mix_tasks({"y": a}, repeat={"other": 2})


def test_coarse_tasks_of_a_digit():
    d = torch.tensor([0, 1, 4, 6, 7, 8, 9, MISSING])
    c = coarse_tasks(d)
    assert c["parity"].tolist() == [0, 1, 0, 0, 1, 0, 1, MISSING]
    assert c["loop"].tolist() == [1, 0, 0, 1, 0, 1, 1, MISSING]
    assert c["small"].tolist() == [1, 1, 1, 0, 0, 0, 0, MISSING]


def test_the_trainer_loss_of_a_mixed_batch_is_the_sum_of_the_masked_task_losses():
    data, model = _two_tasks(64), _model()
    seen = []
    term = lambda step: (
        seen.append({t: v.detach() for t, v in step.task_losses.items()}),
        step.logits["y"].sum() * 0,
    )[1]
    logits = model(data.x)
    expected = {
        "y": F.cross_entropy(logits["y"][:32], data.y[:32]),
        "aux": F.cross_entropy(logits["aux"][32:], data.groups["aux"][32:]),
    }
    trainer = Trainer(model, lr=0.0, batch_size=64, loss_terms=[term], progress=False)
    history = trainer.fit(data, max_steps=1)
    assert all(torch.allclose(seen[0][t], expected[t]) for t in expected)
    assert history["loss"][0] == pytest.approx((expected["y"] + expected["aux"]).item(), rel=1e-5)


def test_evaluate_scores_only_the_labelled_samples_of_each_task():
    data, model = _two_tasks(64), _model()
    result = Trainer(model, progress=False).evaluate(data)
    logits = model(data.x)
    acc_aux = (logits["aux"][32:].argmax(1) == data.groups["aux"][32:]).float().mean().item()
    assert result["aux_acc"] == pytest.approx(acc_aux)
    only_y = Trainer(model, progress=False).evaluate(_split(20))  # no "aux" labels: aux not scored
    assert "aux_acc" not in only_y and only_y["acc"] == only_y["y_acc"]


# ------------------------------------------------------------- a regression task (float targets)
def _regression(n=64):
    """Half the samples labelled for ``y``, half with a float target ``ink`` (NaN elsewhere)."""
    a, b = _split(n // 2, 0), _split(n // 2, 1)
    return mix_tasks({"y": a, "ink": TensorSplit(b.x, b.x.sum(dim=(1, 2, 3)))})


def test_masked_mse_averages_over_the_known_targets_only():
    out = torch.randn(5, 1, requires_grad=True)
    y = torch.tensor([1.0, float("nan"), -2.0, float("nan"), 0.5])
    known = ~torch.isnan(y)
    assert torch.allclose(masked_mse(out, y), F.mse_loss(out[known, 0], y[known]))
    none = masked_mse(out, torch.full((5,), float("nan")))
    none.backward()  # no target in the batch: 0 and a zero gradient, not NaN
    assert none.item() == 0 and torch.equal(out.grad, torch.zeros_like(out))


def test_a_float_task_is_a_regression_head_trained_and_scored_by_its_squared_error():
    data = _regression(64)
    assert data.groups["ink"].dtype == torch.float32 and bool(
        torch.isnan(data.groups["ink"][:32]).all()
    )
    model = _model(y=10, ink=1)
    seen = []
    term = lambda step: (seen.append(step.task_losses["ink"].detach()), step.logits["y"].sum() * 0)[
        1
    ]
    expected = F.mse_loss(model(data.x)["ink"][32:, 0], data.groups["ink"][32:])
    trainer = Trainer(model, lr=0.0, batch_size=64, loss_terms=[term], progress=False)
    history = trainer.fit(data, max_steps=1)
    assert torch.allclose(seen[0], expected) and "mse_ink" in set(history.keys())
    result = trainer.evaluate(data)
    assert (
        result["ink_loss"] == pytest.approx(expected.item(), rel=1e-5) and "ink_acc" not in result
    )
    with pytest.raises(
        ValueError,
        match="'ink' are floating point, a regression target, but its head has 3 outputs",
    ):
        Trainer(_model(y=10, ink=3), progress=False).fit(data, max_steps=1)


def test_hierarchical_lower_tasks_train_only_the_lower_layers():
    seed_everything(0)
    model = hierarchical({"parity": 2}, {"y": 10})
    out = model(torch.rand(4, 1, 8, 8))
    assert out["parity"].shape == (4, 2) and out["y"].shape == (4, 10)
    stem, upper = model.features.stem, model.features.upper
    x, y = torch.rand(8, 1, 8, 8), torch.randint(10, (8,))
    F.cross_entropy(model(x)["parity"], y % 2).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in upper.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())
    model.zero_grad()
    F.cross_entropy(model(x)["y"], y).backward()
    assert all(p.grad.abs().sum() > 0 for p in [*stem.parameters(), *upper.parameters()])
    with pytest.raises(ValueError, match="both lower and higher"):
        hierarchical({"y": 2}, {"y": 10})


# ------------------------------------------------------------------------------ weighting
class _Step:
    def __init__(self, losses, model=None):
        self.task_losses, self.model, self.step = losses, model, 0


def test_static_weights_are_a_weighted_sum_and_refuse_the_wrong_length():
    losses = {"y": torch.tensor(2.0), "aux": torch.tensor(3.0)}
    assert StaticWeights(["y", "aux"])(_Step(losses)).item() == 5.0
    assert StaticWeights(["y", "aux"], [1.0, 0.1])(_Step(losses)).item() == pytest.approx(2.3)
    assert StaticWeights(["y", "aux"], {"aux": 0.5, "y": 2.0})(
        _Step(losses)
    ).item() == pytest.approx(5.5)
    with pytest.raises(ValueError, match=r"got 3 task weight\(s\) for 2 tasks"):
        StaticWeights(["y", "aux"], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="task weights name"):
        StaticWeights(["y", "aux"], {"y": 1.0})


def test_a_weighting_that_names_a_task_without_a_head_or_misses_a_head_is_an_error():
    losses = {"y": torch.tensor(2.0), "aux": torch.tensor(3.0)}
    with pytest.raises(ValueError, match=r"task\(s\) \['font'\] have no head"):
        StaticWeights(["y", "font"])(_Step(losses))
    with pytest.raises(ValueError, match="give one weight per head"):
        UncertaintyWeighting(["y"])(_Step(losses))
    # and through the Trainer, before any optimiser step
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"\['font'\] have no head"):
        Trainer(model, loss_terms=[StaticWeights(["y", "font"])], progress=False).fit(
            _two_tasks(), max_steps=1
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_uncertainty_weighting_matches_its_formula_and_its_optimum():
    w = UncertaintyWeighting(["y", "aux"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -1.0]))
    losses = {"y": torch.tensor(2.0), "aux": torch.tensor(0.3)}
    total, extras = w(_Step(losses))
    expected = math.exp(-0.5) * 2.0 + 0.25 + math.exp(1.0) * 0.3 - 0.5
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert extras["w_y"].item() == pytest.approx(math.exp(-0.5))
    # at s_t = log(2 L_t) the gradient in s vanishes: weight 1 / (2 L_t)
    with torch.no_grad():
        w.log_vars.copy_(torch.log(2 * torch.tensor([2.0, 0.3])))
    w(_Step(losses))[0].backward()
    assert torch.allclose(w.log_vars.grad, torch.zeros(2), atol=1e-6)


def test_gradnorm_moves_weight_towards_the_task_with_the_smaller_gradient_and_keeps_the_sum():
    trunk = nn.Linear(3, 3, bias=False)
    model = HardSharing(trunk, {"a": nn.Identity(), "b": nn.Identity()})
    x = torch.ones(1, 3)
    z = model.features(x)
    losses = {"a": 10 * z.sum(), "b": z.sum()}  # a's gradient on the trunk is 10 × b's
    g = GradNorm(["a", "b"], alpha=0.0)
    total, _ = g(_Step(losses, model))
    total.backward()
    assert g.w.grad[0] > 0 > g.w.grad[1]  # a descent step lowers w_a, raises w_b
    # the model's gradient is that of Σ w_t L_t alone (w = 1): L_grad reaches only the weights
    assert torch.allclose(trunk.weight.grad, torch.full((3, 3), 11.0))
    with torch.no_grad():
        g.w.copy_(torch.tensor([3.0, 1.0]))
    g(_Step({"a": 10 * model.features(x).sum(), "b": model.features(x).sum()}, model))
    assert g.w.sum().item() == pytest.approx(2.0)  # renormalised to Σ w = T


def test_only_one_term_may_replace_the_supervised_loss():
    with pytest.raises(ValueError, match="at most one loss term may replace"):
        Trainer(
            _model(), loss_terms=[StaticWeights(["y", "aux"]), UncertaintyWeighting(["y", "aux"])]
        )


def test_a_weighting_replaces_the_sum_of_task_losses_in_the_trainer():
    data = _two_tasks(64)
    model = _model()
    logits = model(data.x)
    ce_y = F.cross_entropy(logits["y"][:32], data.y[:32]).item()
    ce_aux = F.cross_entropy(logits["aux"][32:], data.groups["aux"][32:]).item()
    history = Trainer(
        model,
        lr=0.0,
        batch_size=64,
        loss_terms=[StaticWeights(["y", "aux"], [1.0, 0.25])],
        progress=False,
    ).fit(data, max_steps=1)
    assert history["loss"][0] == pytest.approx(ce_y + 0.25 * ce_aux, rel=1e-5)


def test_uncertainty_weights_are_learnt_by_the_trainer():
    w = UncertaintyWeighting(["y", "aux"])
    model = _model()
    params = [{"params": model.parameters()}, {"params": w.parameters(), "lr": 0.05}]
    Trainer(model, params=params, loss_terms=[w], batch_size=32, progress=False).fit(
        _two_tasks(), max_steps=20
    )
    assert not torch.equal(w.log_vars.detach(), torch.zeros(2))


# ------------------------------------------------------------------------------ schedules
def test_round_robin_and_by_size_schedules():
    assert [RoundRobin(["a", "b", "c"])(s) for s in range(7)] == list("abcabca")
    by_size = BySize({"a": 1, "b": 3})
    picks = [by_size(s) for s in range(8)]
    assert picks == list("babbbabb") and picks.count("a") == 2
    assert by_size(3) == "b"  # a function of the step: asking again gives the same task
    many = BySize({"a": 30, "b": 2000, "c": 970})
    seq = [many(s) for s in range(3000)]
    assert [seq.count(t) for t in "abc"] == [30, 2000, 970]
    with pytest.raises(ValueError, match="positive sample counts"):
        BySize({"a": 0})


def test_alternating_trains_only_the_scheduled_head():
    data, model = _two_tasks(64), _model()
    before = {t: [p.detach().clone() for p in g.parameters()] for t, g in model.head.items()}
    trainer = Trainer(
        model,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        batch_size=64,
        loss_terms=[Alternating(RoundRobin(["aux", "y"]))],
        progress=False,
    )
    trainer.fit(data, max_steps=1)  # step 0: "aux"
    assert all(torch.equal(a, b) for a, b in zip(before["y"], model.head["y"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before["aux"], model.head["aux"].parameters()))
    with pytest.raises(ValueError, match="names task 'font'.*no head"):
        Trainer(_model(), loss_terms=[Alternating(RoundRobin(["font"]))], progress=False).fit(
            data, max_steps=1
        )


# ------------------------------------------------------------------------------ bad input
def test_a_head_whose_task_has_no_label_in_the_training_data_is_refused():
    data = _split(64)
    data = TensorSplit(data.x, data.y, {"aux": torch.full((64,), MISSING)})
    with pytest.raises(
        ValueError, match=r"head\(s\) for task\(s\) \['aux'\] have no label anywhere"
    ):
        Trainer(_model(), progress=False).fit(data, max_steps=1)
    with pytest.raises(
        ValueError, match=r"head for task\(s\) \['aux'\] but the data has no such group label"
    ):
        Trainer(_model(), progress=False).fit(_split(64), max_steps=1)


# ------------------------------------------------------------------------ gradient cosine
def test_gradient_cosine_of_linear_losses_is_the_cosine_of_their_directions():
    p = nn.Parameter(torch.zeros(3))
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])
    grads = task_gradients({"a": (a * p).sum(), "b": (b * p).sum(), "c": (-a * p).sum()}, [p])
    cos = gradient_cosine(grads)
    assert cos[("a", "b")] == pytest.approx(1 / math.sqrt(2))
    assert cos[("a", "c")] == pytest.approx(-1.0)
    assert p.grad is None  # measuring leaves .grad alone


def test_the_gradient_cosine_callback_measures_without_changing_training():
    data = _two_tasks(128)
    plain, measured = _model(), _model()
    cos = GradientCosine(every=2)
    Trainer(plain, batch_size=32, seed=1, progress=False).fit(data, max_steps=6)
    Trainer(measured, batch_size=32, seed=1, callbacks=[cos], progress=False).fit(data, max_steps=6)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), measured.parameters()))
    assert cos.steps == [0, 2, 4] and list(cos.values) == [("y", "aux")]
    assert all(-1 <= c <= 1 for c in cos.values[("y", "aux")])


def test_the_cli_rejects_an_unknown_method(capsys):
    from transferlab.cli import main

    assert main(["bench", "multitask", "--methods", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
