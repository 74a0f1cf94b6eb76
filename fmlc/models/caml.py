"""CAML (Mullenbach et al., 2018): one CNN layer + label-wise attention + per-label output."""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.layers import Embedding, LabelAttention, PerLabelLinear


class CAML(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embedding(cfg.vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.freeze_embeddings)
        self.conv = nn.Conv1d(cfg.embed_dim, cfg.filters, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.attention = LabelAttention(cfg.filters, cfg.n_labels, cfg.attn_dim, cfg.attn_dropout)
        self.output = PerLabelLinear(cfg.filters, cfg.n_labels)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        x = self.embed(ids).transpose(1, 2)  # [B, E, T]
        h = torch.tanh(self.conv(x))[:, :, : ids.shape[1]].transpose(1, 2)  # [B, T, F]
        v, attn = self.attention(h, mask)  # [B, L, F]
        return ModelOutput(self.output(v), attn)
