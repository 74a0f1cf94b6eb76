"""ZACNN (Rios & Kavuluru, 2018), the part that needs no label hierarchy: label vectors come
from the label names' word vectors. They are the attention queries (after a projection) and
the output layer compares each label's document vector with its transformed label vector, so
a label with few examples still starts from what its name means.
"""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.layers import ConvEncoder, Embedding, LabelAttention


class ZACNN(nn.Module):
    label_vectors: torch.Tensor  # a buffer (see __init__); declared so that it reads as a tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embedding(cfg.vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.freeze_embeddings)
        self.encoder = ConvEncoder(cfg.embed_dim, cfg.filters, cfg.kernel_size)
        self.attention = LabelAttention(cfg.filters, cfg.n_labels, cfg.attn_dim, cfg.attn_dropout)
        # Mean word vector of each label name [L, E]; filled by the trainer, saved with the weights.
        self.register_buffer("label_vectors", torch.zeros(cfg.n_labels, cfg.embed_dim))
        self.to_query = nn.Linear(cfg.embed_dim, cfg.attn_dim or cfg.filters)
        self.to_output = nn.Linear(cfg.embed_dim, cfg.filters)
        self.bias = nn.Parameter(torch.zeros(cfg.n_labels))

    def set_label_vectors(self, vectors: torch.Tensor) -> None:
        self.label_vectors.copy_(vectors)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        h = self.encoder(self.embed(ids))  # [B, T, F]
        queries = self.to_query(self.label_vectors)  # [L, A]
        v, attn = self.attention(h, mask, queries=queries)  # [B, L, F]
        out_vectors = torch.relu(self.to_output(self.label_vectors))  # [L, F]
        return ModelOutput((v * out_vectors).sum(-1) + self.bias, attn)
