"""Asymmetric loss (Ridnik et al., 2021) and plain binary cross-entropy.

Both reduce the same way — sum over labels, mean over the batch — so that switching the loss in
an ablation does not also change the effective learning rate. (The ASL reference sums over the
batch too; with Adam the scale matters little, but the choice is stated here.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AsymmetricLoss(nn.Module):
    """-[ y (1-p)^γ+ log p + (1-y) p_m^γ- log(1-p_m) ], p_m = max(p - m, 0).

    The margin m hard-thresholds easy negatives (p < m gives zero loss); γ- down-weights the
    remaining easy negatives. The focusing weights are computed without gradient, as in the
    reference implementation's optimised variant: they scale the log-likelihood gradient only.
    """

    def __init__(self, gamma_neg: float = 2.0, gamma_pos: float = 0.0, margin: float = 0.05,
                 eps: float = 1e-8) -> None:
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0:
            raise ValueError("focusing parameters must be >= 0")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must lie in [0, 1), got {margin}")
        self.gamma_neg, self.gamma_pos, self.margin, self.eps = gamma_neg, gamma_pos, margin, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # logits, targets: [B, L]
        logits = logits.float()
        p = torch.sigmoid(logits)
        p_m = (p - self.margin).clamp(min=0.0) if self.margin > 0 else p
        log_p = F.logsigmoid(logits)
        log_not_p_m = torch.log((1.0 - p_m).clamp(min=self.eps))
        with torch.no_grad():
            w_pos = (1.0 - p).pow(self.gamma_pos)
            w_neg = p_m.pow(self.gamma_neg)
        loss = targets * w_pos * log_p + (1.0 - targets) * w_neg * log_not_p_m
        return -loss.sum(dim=1).mean()


class BCELoss(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
        return per.sum(dim=1).mean()


def make_loss(name: str, gamma_neg: float = 2.0, gamma_pos: float = 0.0, margin: float = 0.05) -> nn.Module:
    if name == "asl":
        return AsymmetricLoss(gamma_neg=gamma_neg, gamma_pos=gamma_pos, margin=margin)
    if name == "bce":
        return BCELoss()
    raise ValueError(f"unknown loss {name!r}: choose 'asl' or 'bce'")
