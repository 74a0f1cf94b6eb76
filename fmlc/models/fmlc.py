"""FMLC: BiGRU + label-wise attention + a GGNN over the label co-occurrence graph.

ids [B, T] → embed [B, T, E] → BiGRU [B, T, 2H] → label attention [B, L, 2H]
→ project to graph nodes [B, L, G] → GGNN (K steps over A [L, L]) [B, L, G]
→ read-out [h_K ; h_0] [B, L, 2G] → one binary classifier per label [B, L]
"""

from __future__ import annotations

import torch
from torch import nn

from fmlc.models.config import ModelConfig, ModelOutput
from fmlc.models.layers import GGNN, BiGRUEncoder, Embedding, LabelAttention, PerLabelLinear


class FMLC(nn.Module):
    adjacency: torch.Tensor  # a buffer (see __init__); declared so that it reads as a tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embedding(cfg.vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.freeze_embeddings)
        self.encoder = BiGRUEncoder(cfg.embed_dim, cfg.hidden)
        self.attention = LabelAttention(2 * cfg.hidden, cfg.n_labels, cfg.attn_dim, cfg.attn_dropout)
        self.to_nodes = nn.Linear(2 * cfg.hidden, cfg.graph_dim)
        self.ggnn = GGNN(cfg.graph_dim, cfg.graph_steps, cfg.graph_dropout)
        self.output = PerLabelLinear(2 * cfg.graph_dim, cfg.n_labels)
        # The adjacency is data, not a parameter: it is built from training co-occurrence and
        # saved with the weights so a loaded model sees exactly the graph it was trained with.
        self.register_buffer("adjacency", torch.eye(cfg.n_labels))

    def set_adjacency(self, adjacency: torch.Tensor) -> None:
        if adjacency.shape != self.adjacency.shape:
            raise ValueError(f"adjacency {tuple(adjacency.shape)} != ({self.adjacency.shape[0]},)*2")
        self.adjacency.copy_(adjacency)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        h = self.encoder(self.embed(ids), mask)  # [B, T, 2H]
        v, attn = self.attention(h, mask)  # [B, L, 2H], [B, L, T]
        h0 = torch.tanh(self.to_nodes(v))  # [B, L, G]
        hk = self.ggnn(h0, self.adjacency)  # [B, L, G]
        return ModelOutput(self.output(torch.cat([hk, h0], dim=-1)), attn)
