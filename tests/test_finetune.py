import numpy as np
import pytest
import torch

from transferlab.finetune import (
    L2SP,
    GradualUnfreezing,
    discriminative_lr_groups,
    freeze,
    l2sp_penalty,
    linear_probe,
    trainable_names,
    unfreeze,
)
from transferlab.models import SmallCNN, new_head
from transferlab.train import Trainer, seed_everything


def _model():
    seed_everything(0)
    return SmallCNN()


def test_freeze_and_unfreeze_by_name_pattern():
    m = _model()
    frozen = freeze(m, "features.0.*")
    assert frozen == ["features.0.weight", "features.0.bias"]
    assert "features.0.weight" not in trainable_names(m) and "features.2.weight" in trainable_names(
        m
    )
    unfreeze(m, ["features.0.weight"])
    assert "features.0.weight" in trainable_names(m) and "features.0.bias" not in trainable_names(m)
    freeze(m)
    assert trainable_names(m) == []


def test_a_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="no parameter matches.*features.0.weight"):
        freeze(_model(), "feature.*")


def test_linear_probe_trains_only_the_head_and_leaves_features_unchanged():
    m = linear_probe(_model())
    assert trainable_names(m) == ["head.weight", "head.bias"]
    before = [p.clone() for p in m.features.parameters()]
    x, y = torch.rand(64, 1, 8, 8), torch.randint(10, (64,))
    Trainer(m, params=[p for p in m.parameters() if p.requires_grad]).fit((x, y), epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(before, m.features.parameters()))


def test_discriminative_learning_rates_shrink_towards_the_input():
    m = _model()
    groups = discriminative_lr_groups(m, lr=1e-2, decay=0.5)
    assert [g["lr"] for g in groups] == pytest.approx([1e-2 / 8, 1e-2 / 4, 1e-2 / 2, 1e-2])
    assert groups[-1]["params"] == list(m.head.parameters())
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())
    torch.optim.Adam(groups)
    with pytest.raises(ValueError, match="decay"):
        discriminative_lr_groups(m, 1e-3, decay=0)


def test_gradual_unfreezing_opens_one_block_per_epoch_from_the_top():
    m = _model()
    trainer = Trainer(m, progress=False)
    schedule = GradualUnfreezing(every=1)
    counts = []
    for epoch in range(5):
        schedule.on_epoch_start(trainer, epoch)
        counts.append(trainable_names(m))
    assert counts[0] == ["head.weight", "head.bias"]
    assert counts[1] == ["features.6.weight", "features.6.bias", "head.weight", "head.bias"]
    assert len(counts[3]) == len(counts[4]) == 8


def test_l2sp_penalty_matches_a_numpy_computation():
    m = _model()
    g = torch.Generator().manual_seed(0)
    ref = {
        n: p.detach() + torch.randn(p.shape, generator=g)
        for n, p in m.named_parameters()
        if n.startswith("features")
    }
    expected = (
        0.5
        * 0.3
        * sum(
            np.sum((p.detach().numpy().astype(np.float64) - ref[n].numpy()) ** 2)
            for n, p in m.named_parameters()
            if n in ref
        )
    )
    assert float(l2sp_penalty(m, ref, 0.3).detach()) == pytest.approx(expected, rel=1e-5)


def test_l2sp_gradient_pulls_shared_weights_back_and_leaves_the_new_head_free():
    source = _model()
    target = new_head(source, 10)
    term = L2SP(target, alpha=2.0)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    loss = term(type("S", (), {"model": target})())
    loss.backward()
    for n, p in target.named_parameters():
        if n.startswith("features"):
            assert torch.allclose(p.grad, torch.full_like(p, 2.0)), n  # alpha * (theta - theta0)
        else:
            assert p.grad is None, "the new head must not be penalised"


def test_l2sp_is_zero_at_the_start_and_logged_by_the_trainer():
    m = _model()
    term = L2SP(m, alpha=1.0)
    assert float(term(type("S", (), {"model": m})()).detach()) == 0.0
    x, y = torch.rand(64, 1, 8, 8), torch.randint(10, (64,))
    h = Trainer(m, loss_terms=[term]).fit((x, y), epochs=2)
    assert h["l2sp"][0] >= 0 and h["loss"][0] == pytest.approx(h["ce"][0] + h["l2sp"][0], rel=1e-5)
