"""BiGRU-LWAN: BiGRU encoder + label-wise attention + one classifier per label (no label graph)."""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.layers import BiGRUEncoder, Embedding, LabelAttention, PerLabelLinear


class BiGRULWAN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embedding(cfg.vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.freeze_embeddings)
        self.encoder = BiGRUEncoder(cfg.embed_dim, cfg.hidden)
        self.attention = LabelAttention(2 * cfg.hidden, cfg.n_labels, cfg.attn_dim, cfg.attn_dropout)
        self.output = PerLabelLinear(2 * cfg.hidden, cfg.n_labels)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        h = self.encoder(self.embed(ids), mask)  # [B, T, 2H]
        v, attn = self.attention(h, mask)  # [B, L, 2H], [B, L, T]
        return ModelOutput(self.output(v), attn)
