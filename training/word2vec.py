"""word2vec vectors (gensim) trained on the whole corpus, as the paper does, and the embedding
matrix built from them for a vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gensim.models import Word2Vec

from fmlc.vocab import Vocab


def train_vectors(docs: Sequence[Sequence[str]], dim: int = 300, seed: int = 0, epochs: int = 5,
                  window: int = 5, min_count: int = 1, workers: int = 2) -> dict[str, np.ndarray]:
    """Skip-gram vectors for every token seen `min_count` times. Unlabelled text from every split is
    allowed here (the paper pretrains on the whole corpus); labels never are."""
    model = Word2Vec(sentences=[list(d) for d in docs if d], vector_size=dim, window=window, min_count=min_count,
                     sg=1, workers=workers, seed=seed, epochs=epochs)
    return {word: model.wv[word] for word in model.wv.index_to_key}


def save_vectors(path: Path, vectors: dict[str, np.ndarray]) -> None:
    """Plain arrays (no pickle), so a resumed experiment can train on exactly the same vectors."""
    np.savez(path, words=np.array(list(vectors), dtype=str),
             matrix=np.stack(list(vectors.values())).astype(np.float32))


def load_vectors(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["words"].tolist(), data["matrix"], strict=True))


def embedding_matrix(vocab: Vocab, vectors: dict[str, np.ndarray], dim: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """[V, dim] float32: word2vec where known, small random vectors elsewhere, zeros for <pad>.
    Returns the matrix and the share of the vocabulary covered by word2vec."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    hits = 0
    for i, token in enumerate(vocab.tokens[2:], start=2):
        vec = vectors.get(token)
        if vec is not None:
            if len(vec) != dim:
                raise ValueError(f"word vectors have dimension {len(vec)}, the model expects {dim}")
            matrix[i] = vec
            hits += 1
    return matrix, hits / max(1, len(vocab) - 2)


def phrase_vector(tokens: Sequence[str], vectors: dict[str, np.ndarray], dim: int) -> np.ndarray | None:
    """Mean vector of the known tokens of a phrase (a label name), or None if none is known.
    Falls back to the characters of unknown words, which word2vec often knows for Chinese."""
    found = [vectors[t] for t in tokens if t in vectors]
    if not found:
        found = [vectors[c] for t in tokens for c in t if c in vectors]
    return np.mean(found, axis=0).astype(np.float32) if found else None
