"""FMLC wide & deep: the linear TF-IDF model ("wide") beside FMLC ("deep"), blended per label.

Both paths read the same token ids; one forward pass runs both:

ids [B, T] → wide: TF-IDF [B, V] → logits_w [B, L];  deep: FMLC → logits_d [B, L]
p = β ⊙ σ(logits_w) + (1 − β) ⊙ σ(logits_d)     β [L]: each label's weight on the wide path

β is not trained by gradient: it is chosen on validation after both paths are fitted (training.wide),
as FMLC alone, linear alone, one weight for all labels or one per label (so that a label the linear
model reads better, a keyword-driven or rare one, can take the linear path), whichever holds up on
validation documents it was not fitted on. Returning log(p / (1 − p)) keeps the "logits" contract of every
network, so thresholds, evidence and the worker need nothing new.
"""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.fmlc import FMLC
from fmlc.models.linear import LinearTfidf

_EPS = 1e-6  # keeps the blended probability off 0 and 1, where the logit is infinite


class FMLCWide(nn.Module):
    blend: torch.Tensor  # a buffer (see __init__); declared so that it reads as a tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.wide = LinearTfidf(cfg)
        self.deep = FMLC(cfg)
        # β per label; 0 = FMLC alone until training.wide sets it from validation.
        self.register_buffer("blend", torch.zeros(cfg.n_labels))

    def set_blend(self, weights: torch.Tensor) -> None:
        if weights.shape != self.blend.shape or not bool(((weights >= 0) & (weights <= 1)).all()):
            raise ValueError(f"blend weights must be {tuple(self.blend.shape)} values in [0, 1]")
        self.blend.copy_(weights)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        wide = self.wide(ids, mask)  # logits [B, L], contributions [B, L, T]
        deep = self.deep(ids, mask)  # logits [B, L], attention [B, L, T]
        # In fp32 even under autocast: in half precision 1 - 1e-6 rounds to 1 and the logit to inf.
        beta = self.blend.float()
        p = beta * torch.sigmoid(wide.logits.float()) + (1 - beta) * torch.sigmoid(deep.logits.float())  # [B, L]
        p = p.clamp(_EPS, 1 - _EPS)
        # Evidence: the wide path's token contributions, made a distribution over positions like the
        # attention, weighted as the probabilities are.
        assert wide.attention is not None and deep.attention is not None
        contrib = wide.attention / wide.attention.sum(-1, keepdim=True).clamp(min=1e-12)  # [B, L, T]
        attention = beta[None, :, None] * contrib.float() + (1 - beta)[None, :, None] * deep.attention.float()
        return ModelOutput(torch.log(p) - torch.log1p(-p), attention)
