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


@pytest.mark.parametrize("logit", [17.0, 30.0, 80.0])
def test_confident_wrong_negative_margin_0_has_exact_loss_and_gradient(logit: float) -> None:
    # float32 sigmoid rounds to 1 from about 17 on; log(clamp(1 - p)) then gave 18.42 and no gradient.
    x = torch.tensor([[logit]], requires_grad=True)
    loss = AsymmetricLoss(gamma_neg=0, gamma_pos=0, margin=0.0)(x, torch.zeros(1, 1))
    loss.backward()
    # -log(1 - sigmoid(x)) = softplus(x) ≈ x; d/dx = sigmoid(x) ≈ 1
    assert loss.item() == pytest.approx(logit, rel=1e-6)
    assert x.grad.item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("detach", [True, False])
def test_focused_negative_with_large_logit_keeps_its_gradient(detach: bool) -> None:
    x = torch.tensor([[25.0]], requires_grad=True)
    loss = AsymmetricLoss(gamma_neg=2, gamma_pos=0, margin=0.0, detach_focusing=detach)(x, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(25.0, rel=1e-5)  # weight p^2 = 1
    assert x.grad.item() == pytest.approx(1.0, rel=1e-5)
    assert math.isfinite(x.grad.item())


def test_large_negative_logits_are_finite_for_positives_and_negatives() -> None:
    x = torch.tensor([[-90.0, 90.0, -90.0, 90.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss = AsymmetricLoss(gamma_neg=2, gamma_pos=1, margin=0.0)(x, y)
    loss.backward()
    assert loss.item() == pytest.approx(180.0, rel=1e-5)  # the two wrong ones cost |x| each
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 0].item() == pytest.approx(-1.0, rel=1e-5)
    assert x.grad[0, 1].item() == pytest.approx(1.0, rel=1e-5)


def test_margin_loss_saturates_at_minus_log_margin_for_huge_logits() -> None:
    x = torch.tensor([[40.0]], requires_grad=True)
    loss = AsymmetricLoss(gamma_neg=0, margin=0.05)(x, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(0.05), rel=1e-6)
    assert math.isfinite(x.grad.item())


def _grad_by_hand(logit: float, gamma: float, detach: bool) -> float:
    # negative, margin 0: loss = -p^γ log(1-p); d/dx with s = p(1-p)
    p = 1 / (1 + math.exp(-logit))
    s = p * (1 - p)
    through_log = p**gamma * p  # -p^γ * d/dx log(1-p) = p^γ * p
    through_weight = 0.0 if detach else -gamma * p ** (gamma - 1) * s * math.log(1 - p)
    return through_log + through_weight


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("logit", [-1.0, 0.5, 2.0])
def test_focusing_weight_gradient_follows_the_detach_choice(detach: bool, logit: float) -> None:
    x = torch.tensor([[logit]], dtype=torch.float64, requires_grad=True)
    loss = AsymmetricLoss(gamma_neg=2, margin=0.0, detach_focusing=detach)
    loss(x, torch.zeros(1, 1, dtype=torch.float64)).backward()
    assert x.grad.item() == pytest.approx(_grad_by_hand(logit, 2, detach), rel=1e-5)
