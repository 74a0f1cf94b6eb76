"""Label graph from training co-occurrence (ML-GCN style conditional probabilities)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

GraphMode = Literal["cooccurrence", "identity"]


@dataclass(frozen=True)
class GraphConfig:
    mode: GraphMode = "cooccurrence"
    threshold: float = 0.3  # P(j|i) below this is treated as noise and dropped
    min_count: int = 2  # co-occurrences needed before an edge may exist: one shared doc is no evidence
    neighbour_weight: float = 0.25  # share of a node's row given to its neighbours; the node keeps the rest

    def __post_init__(self) -> None:
        if self.mode not in ("cooccurrence", "identity"):
            raise ValueError(f"graph mode must be 'cooccurrence' or 'identity', got {self.mode!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        if not 0.0 <= self.neighbour_weight < 1.0:
            raise ValueError(f"neighbour_weight must lie in [0, 1), got {self.neighbour_weight}")

    def to_dict(self) -> dict:
        return asdict(self)


def cooccurrence_counts(label_matrix: np.ndarray) -> np.ndarray:
    """C[i, j] = number of documents carrying both i and j; C[i, i] = documents carrying i."""
    y = np.asarray(label_matrix, dtype=np.float64)
    return y.T @ y


def conditional_probabilities(counts: np.ndarray) -> np.ndarray:
    """P[i, j] = P(j | i) = C[i, j] / C[i, i]; rows of unseen labels are zero."""
    own = np.diag(counts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        probs = np.where(own[:, None] > 0, counts / own[:, None], 0.0)
    return probs


def build_adjacency(label_matrix: np.ndarray, config: GraphConfig = GraphConfig()) -> np.ndarray:
    """Row-normalised adjacency [L, L] used by the GGNN.

    Each row i: the node keeps 1 - p for itself and shares p equally among the labels j with
    P(j|i) >= threshold (and at least `min_count` shared documents). A label without such
    neighbours keeps its whole row, so every row sums to 1.
    """
    n_labels = label_matrix.shape[1]
    if config.mode == "identity":
        return np.eye(n_labels, dtype=np.float32)
    counts = cooccurrence_counts(label_matrix)
    probs = conditional_probabilities(counts)
    edges = (probs >= config.threshold) & (counts >= config.min_count)
    np.fill_diagonal(edges, False)
    adjacency = np.eye(n_labels, dtype=np.float64)
    degree = edges.sum(axis=1)
    for i in np.flatnonzero(degree):
        adjacency[i, i] = 1.0 - config.neighbour_weight
        adjacency[i, edges[i]] = config.neighbour_weight / degree[i]
    return adjacency.astype(np.float32)


def label_statistics(label_matrix: np.ndarray, adjacency: np.ndarray, tail_below: int) -> dict:
    """How much co-occurrence a label set offers the graph: with mostly single-label documents the
    adjacency is nearly the identity and the GGNN has little to mix."""
    y = np.asarray(label_matrix) > 0
    off = adjacency.copy()
    np.fill_diagonal(off, 0.0)
    has_neighbour = off.sum(axis=1) > 0
    tail = y.sum(axis=0) < tail_below
    per_doc = y.sum(axis=1)
    return {
        "mean_labels_per_doc": round(float(per_doc.mean()), 3) if len(y) else 0.0,
        "multi_label_docs": round(float((per_doc > 1).mean()), 4) if len(y) else 0.0,
        "edges": int((off > 0).sum()),
        "labels_with_neighbours": int(has_neighbour.sum()),
        "tail_labels": int(tail.sum()),
        "tail_labels_with_neighbours": int((has_neighbour & tail).sum()),
    }


def describe(adjacency: np.ndarray, labels: list[str], top: int = 20) -> dict:
    """A small human-readable summary stored next to the model."""
    off = adjacency.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    return {
        "labels": len(labels),
        "edges": int(len(src)),
        "labels_with_neighbours": int((off.sum(axis=1) > 0).sum()),
        "example_edges": [[labels[i], labels[j]] for i, j in list(zip(src, dst, strict=True))[:top]],
    }
