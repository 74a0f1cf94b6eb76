"""CAML (Mullenbach et al., 2018): one CNN layer + label-wise attention + per-label output."""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.layers import ConvEncoder, Embedding, LabelAttention, PerLabelLinear


class CAML(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embedding(cfg.vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.freeze_embeddings)
        self.encoder = ConvEncoder(cfg.embed_dim, cfg.filters, cfg.kernel_size)
        self.attention = LabelAttention(cfg.filters, cfg.n_labels, cfg.attn_dim, cfg.attn_dropout)
        self.output = PerLabelLinear(cfg.filters, cfg.n_labels)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        h = self.encoder(self.embed(ids))  # [B, T, F]
        v, attn = self.attention(h, mask)  # [B, L, F]
        return ModelOutput(self.output(v), attn)
