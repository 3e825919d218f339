from __future__ import annotations

import math

import pytest
import torch

from mpiqa.training.losses import class_loss, quality_loss, rank_fidelity_loss


def test_quality_losses_are_zero_at_the_target_and_grow_away_from_it():
    target = torch.tensor([0.2, 0.8])
    for kind in ("fidelity", "mse"):
        assert quality_loss(target.clone(), target, kind) == pytest.approx(0, abs=1e-4)
        assert quality_loss(torch.tensor([0.5, 0.5]), target, kind) > quality_loss(
            torch.tensor([0.3, 0.7]), target, kind
        )
    bce = quality_loss(torch.tensor([0.5]), torch.tensor([1.0]), "bce")
    assert bce.item() == pytest.approx(math.log(2), rel=1e-5)
    with pytest.raises(ValueError):
        quality_loss(target, target, "l7")


def test_rank_fidelity_loss_by_hand():
    # two images, predicted equal: p = 0.5 against g = 1 (and 0 the other way round)
    loss = rank_fidelity_loss(torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]))
    # 3e-4: the losses add 1e-8 under each square root (sqrt = 1e-4) for finite gradients
    assert loss.item() == pytest.approx(1 - math.sqrt(0.5), abs=3e-4)
    right = rank_fidelity_loss(torch.tensor([0.9, 0.1]), torch.tensor([0.9, 0.1]))
    wrong = rank_fidelity_loss(torch.tensor([0.1, 0.9]), torch.tensor([0.9, 0.1]))
    assert right < loss < wrong


def test_class_loss_ignores_unlabelled():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    assert class_loss(probs, torch.tensor([-1, -1])) is None
    assert class_loss(probs, torch.tensor([0, -1])).item() == pytest.approx(
        -math.log(0.7), rel=1e-5
    )
