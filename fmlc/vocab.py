"""Word vocabulary: frequency-cut token → id mapping with padding and unknown ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAD, UNK = "<pad>", "<unk>"


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]  # position = id; 0 is <pad>, 1 is <unk>

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise ValueError("a vocabulary must start with <pad>, <unk>")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], min_count: int = 2, max_size: int | None = 50_000) -> Vocab:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(t for doc in docs for t in doc)
        # Ties broken by the token itself so that the same corpus always gives the same ids.
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls((PAD, UNK, *kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        ids = [index.get(t, 1) for t in tokens]
        return ids[:max_len] if max_len else ids
