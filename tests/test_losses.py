import math

import pytest
import torch

from fmlc.losses import AsymmetricLoss, BCELoss, make_loss


def _asl_by_hand(logit: float, y: int, gamma_neg: float, gamma_pos: float, m: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    if y == 1:
        return -((1 - p) ** gamma_pos) * math.log(p)
    p_m = max(p - m, 0.0)
    return -(p_m**gamma_neg) * math.log(1 - p_m)


@pytest.mark.parametrize("logit", [-4.0, -1.0, 0.0, 0.3, 2.5])
@pytest.mark.parametrize("y", [0, 1])
def test_asl_matches_formula_per_element(logit: float, y: int) -> None:
    loss = AsymmetricLoss(gamma_neg=2, gamma_pos=0, margin=0.05)
    got = loss(torch.tensor([[logit]]), torch.tensor([[float(y)]])).item()
    assert got == pytest.approx(_asl_by_hand(logit, y, 2, 0, 0.05), rel=1e-5, abs=1e-7)


def test_asl_sums_labels_and_averages_batch() -> None:
    logits = torch.tensor([[0.5, -2.0, 1.0], [-0.2, 3.0, -1.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    expected = sum(_asl_by_hand(logits[i, j].item(), int(targets[i, j]), 2, 0, 0.05)
                   for i in range(2) for j in range(3)) / 2
    assert AsymmetricLoss()(logits, targets).item() == pytest.approx(expected, rel=1e-5)


def test_easy_negative_below_margin_costs_nothing() -> None:
    # p = sigmoid(-4) ≈ 0.018 < m = 0.05: the shifted probability is 0, so is the loss and its gradient.
    logits = torch.tensor([[-4.0]], requires_grad=True)
    loss = AsymmetricLoss(margin=0.05)(logits, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.abs().item() == 0.0


def test_asl_without_focusing_or_margin_equals_bce() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 6), (torch.rand(4, 6) > 0.5).float()
    plain = AsymmetricLoss(gamma_neg=0, gamma_pos=0, margin=0.0)(logits, targets)
    assert plain.item() == pytest.approx(BCELoss()(logits, targets).item(), rel=1e-5)


def test_focusing_downweights_negatives_relative_to_bce() -> None:
    logits, targets = torch.tensor([[1.0]]), torch.zeros(1, 1)
    assert AsymmetricLoss()(logits, targets).item() < BCELoss()(logits, targets).item()


def test_make_loss_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="asl"):
        make_loss("focal")
