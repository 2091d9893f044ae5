"""transferlab.distill: the KD loss against a hand computation, the T² gradient scale, the
Trainer terms (frozen teacher, mixing weight, unlabelled transfer set), FitNets hints, and the
clear errors."""

import copy

import pytest
import torch
import torch.nn.functional as F

from transferlab.distill import HintTerm, KDTerm, hint_loss, kd_loss
from transferlab.models import SmallCNN
from transferlab.train import Step, Trainer
from transferlab.train.batch import Batch


def test_kd_loss_matches_a_hand_computation_with_kl_div():
    g = torch.Generator().manual_seed(0)
    zs, zt = (
        torch.randn(5, 7, generator=g, dtype=torch.float64),
        torch.randn(5, 7, generator=g, dtype=torch.float64),
    )
    for t in (1.0, 2.5, 8.0):
        qt, qs = torch.softmax(zt / t, 1), torch.softmax(zs / t, 1)
        by_hand = t * t * (qt * (qt.log() - qs.log())).sum(1).mean()
        with_kl_div = t * t * F.kl_div(F.log_softmax(zs / t, 1), qt, reduction="sum") / 5
        assert kd_loss(zs, zt, t).item() == pytest.approx(by_hand.item(), rel=1e-6)
        assert by_hand.item() == pytest.approx(with_kl_div.item(), rel=1e-10)


def test_the_t_squared_factor_keeps_the_gradient_scale_at_high_temperature():
    g = torch.Generator().manual_seed(1)
    zs = torch.randn(8, 10, generator=g, dtype=torch.float64)
    zs = (zs - zs.mean(1, keepdim=True)).requires_grad_(True)
    zt = torch.randn(8, 10, generator=g, dtype=torch.float64)
    zt = zt - zt.mean(1, keepdim=True)
    norms = {}
    for t in (10.0, 100.0, 1000.0):
        zs.grad = None
        kd_loss(zs, zt, t).backward()
        norms[t] = zs.grad.norm().item()
    # with T²: the gradient tends to (z_s - z_t) / (C N), the same for every large T
    limit = ((zs.detach() - zt) / (10 * 8)).norm().item()
    assert all(abs(n - limit) / limit < 0.02 for t, n in norms.items() if t >= 100)
    # without T² it would fall as 1/T²: a factor of 100 between T = 10 and T = 100
    assert norms[10.0] / norms[100.0] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan")])
def test_a_non_positive_temperature_is_a_clear_error(t):
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        kd_loss(z, z, t)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        KDTerm(SmallCNN(), temperature=t)


def _step(student, x, y, unlabelled=None):
    batch = Batch(x, y, unlabelled=unlabelled)
    xs = x if unlabelled is None else torch.cat([x, unlabelled])
    logits = student(xs)
    lab, unl = (logits, None) if unlabelled is None else (logits[: len(x)], logits[len(x) :])
    return Step(model=student, batch=batch, features=None, logits=lab, unlabelled_logits=unl)


def test_kd_term_mixes_hard_and_soft_losses_with_weight_alpha():
    torch.manual_seed(2)
    teacher, student = SmallCNN(), SmallCNN(width=4, hidden=16)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(10, (6,))
    step = _step(student, x, y)
    ce = F.cross_entropy(step.logits, y)
    with torch.no_grad():
        soft = kd_loss(step.logits, teacher.eval()(x), 3.0)
    for alpha in (0.0, 0.3, 1.0):
        term = KDTerm(copy.deepcopy(teacher), temperature=3.0, alpha=alpha)
        value, extra = term(step)
        # the Trainer weighs ce by the term's supervised weight: (1 - alpha) ce + alpha soft
        assert term.supervised_weight == 1 - alpha
        assert (term.supervised_weight * ce + value).item() == pytest.approx(
            ((1 - alpha) * ce + alpha * soft).item(), rel=1e-5, abs=1e-6
        )
        assert extra["soft"].item() == pytest.approx(soft.item(), rel=1e-5)


def test_kd_term_keeps_the_teacher_frozen_and_in_eval_mode():
    teacher = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 10)
    )
    term = KDTerm(teacher, alpha=1.0)
    term.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    trainer = Trainer(SmallCNN(width=4, hidden=16), loss_terms=[term], progress=False, seed=0)
    assert all(p.requires_grad for g in trainer.optimizer.param_groups for p in g["params"])
    assert sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in trainer.model.parameters()
    )
    before = [p.clone() for p in teacher.parameters()]
    trainer.fit((torch.rand(64, 1, 8, 8), torch.randint(10, (64,))), max_steps=3)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_kd_on_an_unlabelled_transfer_set_uses_the_teachers_labels():
    torch.manual_seed(3)
    teacher, student = SmallCNN(), SmallCNN(width=4, hidden=16)
    x, y, u = torch.rand(4, 1, 8, 8), torch.randint(10, (4,)), torch.rand(5, 1, 8, 8)
    step = _step(student, x, y, unlabelled=u)
    term = KDTerm(teacher, temperature=2.0, alpha=1.0, on="unlabelled")
    value, _ = term(step)
    with torch.no_grad():
        expected = kd_loss(step.unlabelled_logits, teacher(u), 2.0)
    assert term.supervised_weight == 0.0  # alpha = 1: the soft targets alone
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    both, _ = KDTerm(teacher, temperature=2.0, alpha=1.0, on="both")(step)
    with torch.no_grad():
        expected = kd_loss(
            torch.cat([step.logits, step.unlabelled_logits]), teacher(torch.cat([x, u])), 2.0
        )
    assert both.item() == pytest.approx(expected.item(), abs=1e-5)
    with pytest.raises(ValueError, match="need unlabelled data"):
        Trainer(student, loss_terms=[KDTerm(teacher, on="unlabelled")], progress=False).fit(
            (x, y), max_steps=1
        )


def test_a_teacher_with_other_classes_is_a_clear_error():
    student = SmallCNN(num_classes=10)
    term = KDTerm(SmallCNN(num_classes=26))
    data = (torch.rand(8, 1, 8, 8), torch.randint(10, (8,)))
    with pytest.raises(ValueError, match="teacher predicts 26 classes but the student 10"):
        Trainer(student, loss_terms=[term], progress=False).fit(data, max_steps=1)
    with pytest.raises(ValueError, match="alpha"):
        KDTerm(SmallCNN(), alpha=1.5)
    with pytest.raises(ValueError, match="on must be"):
        KDTerm(SmallCNN(), on="target")


def test_kd_pulls_the_student_towards_the_teacher():
    torch.manual_seed(4)
    teacher, student = SmallCNN(), SmallCNN(width=4, hidden=16)
    u = torch.rand(256, 1, 8, 8)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(10, (16,))

    def disagreement():
        with torch.no_grad():
            return kd_loss(student(u), teacher.eval()(u), 1.0).item()

    before = disagreement()
    Trainer(
        student,
        lr=3e-3,
        loss_terms=[KDTerm(teacher, 2.0, alpha=1.0, on="unlabelled")],
        batch_size=16,
        progress=False,
    ).fit((x, y), unlabelled=u, max_steps=60)
    assert disagreement() < 0.5 * before


def test_hint_loss_is_the_mse_of_the_regressed_features():
    torch.manual_seed(5)
    hs, ht = torch.randn(4, 6), torch.randn(4, 9)
    reg = torch.nn.Linear(6, 9)
    assert hint_loss(hs, ht, reg).item() == pytest.approx(
        ((reg(hs) - ht) ** 2).mean().item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="regressed student features"):
        hint_loss(hs, ht[:, :5], reg)


def test_hint_term_trains_its_regressor_and_matches_the_teachers_features():
    torch.manual_seed(6)
    teacher, student = SmallCNN(), SmallCNN(width=4, hidden=16)
    term = HintTerm(teacher, student_dim=16, teacher_dim=128, weight=10.0, on="both")
    x, y, u = torch.rand(32, 1, 8, 8), torch.randint(10, (32,)), torch.rand(128, 1, 8, 8)
    trainer = Trainer(student, lr=3e-3, loss_terms=[term], batch_size=32, progress=False)
    assert any(
        p is term.regressor.weight for g in trainer.optimizer.param_groups for p in g["params"]
    )
    history = trainer.fit((x, y), unlabelled=u, max_steps=40)
    hints = [r["hint"] for r in history.records]
    assert hints[-1] < hints[0]


# ---------------------------------------------------------------- the benchmark of the chapter


def test_kd_loss_gradient_is_t_times_softmax_difference():
    g = torch.Generator().manual_seed(3)
    zs = torch.randn(6, 10, generator=g, requires_grad=True)
    zt = torch.randn(6, 10, generator=g)
    for t in (1.0, 4.0):
        zs.grad = None
        kd_loss(zs, zt, t).backward()
        expected = t * (torch.softmax(zs.detach() / t, 1) - torch.softmax(zt / t, 1)) / 6
        assert torch.allclose(zs.grad, expected, atol=1e-6)
    assert kd_loss(zt, zt, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(zs, zt, 0.0)
