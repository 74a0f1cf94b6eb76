"""Linear TF-IDF one-vs-rest baseline, held as tensors so it saves and predicts like the networks.

The logistic regressions are fitted by scikit-learn (training.linear_fit); here only the fitted
numbers live: idf [V], coef [L, V], intercept [L]. The per-token contribution tfidf(t)·coef[l, t]
doubles as the "attention" that yields evidence tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput


class LinearTfidf(nn.Module):
    # Buffers, declared so that they read as tensors rather than as nn.Module.__getattr__'s union.
    idf: torch.Tensor
    coef: torch.Tensor
    intercept: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("idf", torch.zeros(cfg.vocab_size))
        self.register_buffer("coef", torch.zeros(cfg.n_labels, cfg.vocab_size))
        self.register_buffer("intercept", torch.zeros(cfg.n_labels))

    def tfidf(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sublinear tf × idf, L2-normalised rows: [B, T] → [B, V]. Padding and <unk> count for nothing."""
        counts = torch.zeros(ids.shape[0], self.idf.shape[0], device=ids.device)
        counts.scatter_add_(1, ids, mask.float())
        counts[:, :2] = 0.0
        x = torch.where(counts > 0, 1.0 + torch.log(counts.clamp(min=1.0)), counts) * self.idf
        return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        x = self.tfidf(ids, mask)  # [B, V]
        logits = x @ self.coef.T + self.intercept  # [B, L]
        # Contribution of each token position: x[b, ids[b, t]] * coef[l, ids[b, t]]  → [B, L, T]
        token_weight = torch.gather(x, 1, ids) * mask  # [B, T]
        contrib = self.coef[:, ids].permute(1, 0, 2) * token_weight[:, None, :]
        return ModelOutput(logits, contrib.clamp(min=0.0))
