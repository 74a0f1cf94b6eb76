"""The configuration every network is built from, and what every network returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch

MODEL_NAMES = ("fmlc-wide", "fmlc", "bigru-lwan", "caml", "zacnn", "linear")


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # [B, L]
    attention: torch.Tensor | None  # [B, L, T]: how much each label looked at each token


@dataclass(frozen=True)
class ModelConfig:
    model: str
    vocab_size: int
    n_labels: int
    embed_dim: int = 300
    hidden: int = 300  # GRU units per direction (d_c)
    attn_dim: int | None = 300
    graph_dim: int = 300
    graph_steps: int = 2
    embed_dropout: float = 0.2
    attn_dropout: float = 0.2
    graph_dropout: float = 0.1
    filters: int = 300  # CAML / ZACNN convolution width
    kernel_size: int = 5
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}")
        for name in ("vocab_size", "n_labels", "embed_dim", "hidden", "graph_dim", "graph_steps",
                     "filters", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("embed_dropout", "attn_dropout", "graph_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; was this artifact made by a newer fmlc?")
        return cls(**raw)
