"""Building blocks shared by the networks: masked label-wise attention, GGNN, per-label output."""

from __future__ import annotations

import torch
from torch import nn


class LabelAttention(nn.Module):
    """One trainable query per label; each label reads its own weighted sum of the tokens.

    h: [B, T, D], mask: [B, T] → (v: [B, L, D], attn: [B, L, T])
    """

    def __init__(self, dim: int, n_labels: int, attn_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        attn_dim = attn_dim or dim
        self.proj = nn.Linear(dim, attn_dim)
        self.queries = nn.Parameter(torch.empty(n_labels, attn_dim))
        nn.init.xavier_uniform_(self.queries)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor,
                queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.queries if queries is None else queries  # [L, A]
        z = torch.tanh(self.proj(h))  # [B, T, A]
        scores = torch.einsum("la,bta->blt", q, z)  # [B, L, T]
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        v = torch.einsum("blt,btd->bld", self.dropout(attn), h)  # [B, L, D]
        return v, attn


class GGNN(nn.Module):
    """Gated graph neural network (Li et al., 2016) over the label graph, weights shared across steps.

    a = [A h ; Aᵀ h];  z = σ(W_z a + U_z h);  r = σ(W_r a + U_r h)
    h~ = tanh(W a + U (r ⊙ h));  h ← (1 - z) ⊙ h + z ⊙ h~
    """

    def __init__(self, dim: int, steps: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"GGNN needs at least one step, got {steps}")
        self.steps = steps
        self.w_zr = nn.Linear(2 * dim, 2 * dim)
        self.u_zr = nn.Linear(dim, 2 * dim, bias=False)
        self.w_h = nn.Linear(2 * dim, dim)
        self.u_h = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        # h: [B, L, D]; adjacency: [L, L], row i = how much node i listens to each node j
        for _ in range(self.steps):
            h = self.dropout(h)
            incoming = torch.einsum("ij,bjd->bid", adjacency, h)
            outgoing = torch.einsum("ji,bjd->bid", adjacency, h)
            a = torch.cat([incoming, outgoing], dim=-1)  # [B, L, 2D]
            z, r = torch.sigmoid(self.w_zr(a) + self.u_zr(h)).chunk(2, dim=-1)
            candidate = torch.tanh(self.w_h(a) + self.u_h(r * h))
            h = (1 - z) * h + z * candidate
        return h


class PerLabelLinear(nn.Module):
    """One binary classifier per label: logit_l = w_l · v_l + b_l.  v: [B, L, D] → [B, L]"""

    def __init__(self, dim: int, n_labels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_labels, dim))
        self.bias = nn.Parameter(torch.zeros(n_labels))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v * self.weight).sum(-1) + self.bias


class Embedding(nn.Module):
    """Word embedding with dropout, optionally initialised from word2vec and frozen."""

    def __init__(self, vocab_size: int, dim: int, dropout: float, freeze: bool = False) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.table.weight.requires_grad_(not freeze)
        self.dropout = nn.Dropout(dropout)

    def load_vectors(self, vectors: torch.Tensor) -> None:
        if vectors.shape != self.table.weight.shape:
            raise ValueError(f"vectors {tuple(vectors.shape)} do not fit the embedding "
                             f"{tuple(self.table.weight.shape)}")
        with torch.no_grad():
            self.table.weight.copy_(vectors)
            self.table.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.table(ids))  # [B, T, E]


class BiGRUEncoder(nn.Module):
    """[B, T, E] → [B, T, 2H]; packed so padding costs nothing and does not leak into the state."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class ConvEncoder(nn.Module):
    """One convolution layer with tanh, same-length output: [B, T, E] → [B, T, F] (CAML, ZACNN)."""

    def __init__(self, in_dim: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, filters, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # An even kernel pads one position too many; cut back to T.
        return torch.tanh(self.conv(x.transpose(1, 2)))[:, :, : x.shape[1]].transpose(1, 2)
