import math

import pytest
import torch

from transferlab.negative import leep, logme, negative_transfer_gap, transfer_gate


def test_leep_equals_a_hand_computation_on_a_tiny_example():
    theta = torch.tensor(
        [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=torch.float64
    )  # source softmax over 2 source classes
    y = torch.tensor([0, 1, 0])
    # joint P(y, z) = sum_i theta_iz [y_i = y] / n; P(z) = column sums; P(y|z) = joint / P(z)
    p_z = [(0.8 + 0.3 + 0.6) / 3, (0.2 + 0.7 + 0.4) / 3]
    p_y_given_z = {
        0: [(0.8 + 0.6) / 3 / p_z[0], (0.2 + 0.4) / 3 / p_z[1]],
        1: [0.3 / 3 / p_z[0], 0.7 / 3 / p_z[1]],
    }
    by_hand = (
        sum(
            math.log(sum(p_y_given_z[int(yi)][z] * theta[i, z].item() for z in range(2)))
            for i, yi in enumerate(y)
        )
        / 3
    )
    assert leep(theta, y) == pytest.approx(by_hand, rel=1e-9)
    assert leep(torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 0])) == pytest.approx(
        0.0, abs=1e-9
    )
    with pytest.raises(ValueError, match=r"\(N, Z\)"):
        leep(torch.rand(3), y)


def test_logme_prefers_features_that_separate_the_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(10, (500,), generator=g)
    separating = torch.nn.functional.one_hot(y, 10).float() @ torch.randn(
        10, 32, generator=g
    ) + 0.3 * torch.randn(500, 32, generator=g)
    random = torch.randn(500, 32, generator=g)
    assert logme(separating, y) > logme(random, y) + 0.5
    wide = torch.randn(50, 80, generator=g)  # more dimensions than samples still works
    assert math.isfinite(logme(wide, y[:50]))


def test_negative_transfer_gap_is_positive_when_transfer_hurts():
    gap, err = negative_transfer_gap([0.80, 0.82, 0.81], [0.70, 0.75, 0.72])
    assert gap == pytest.approx(0.0867, abs=1e-3) and err > 0
    assert negative_transfer_gap([0.5], [0.9]) == (pytest.approx(-0.4), 0.0)
    with pytest.raises(ValueError, match="one accuracy per seed"):
        negative_transfer_gap([0.5, 0.6], [0.9])


def test_gate_falls_back_to_scratch_when_validation_says_transfer_hurts():
    assert transfer_gate(0.9, 0.8) == "transfer"
    assert transfer_gate(0.7, 0.8) == "scratch"
    assert transfer_gate(0.81, 0.8, margin=0.02) == "scratch"
