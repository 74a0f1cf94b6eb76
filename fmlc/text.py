"""Text normalisation and Chinese word segmentation (jieba) with stop-word removal."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jieba

# Control characters and zero-width marks survive NFKC; they split words for jieba and hash
# differently for the cache, so they are removed before anything else looks at the text.
_CONTROL = re.compile(r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff]")
_SPACES = re.compile(r"\s+")
# A token is kept only if it has at least one letter, digit or CJK ideograph.
_CONTENT = re.compile(r"[0-9a-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

jieba.setLogLevel(60)  # jieba prints its dictionary-loading chatter at INFO


def normalize(text: str) -> str:
    """Full-width to half-width (NFKC), lower case, control characters out, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip().lower()


def default_stopwords() -> frozenset[str]:
    raw = resources.files("fmlc").joinpath("resources/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in raw.splitlines() if w.strip() and not w.startswith("#"))


@dataclass
class Tokenizer:
    """jieba segmentation with an optional user dictionary and a stop-word list.

    Each Tokenizer owns its own jieba instance so that a user dictionary never leaks into
    another model loaded in the same process.
    """

    user_dict: str | None = None
    stopwords: frozenset[str] = field(default_factory=default_stopwords)
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        self._jieba = jieba.Tokenizer()
        if self.user_dict:
            path = Path(self.user_dict)
            if not path.is_file():
                raise FileNotFoundError(f"user dictionary {path} does not exist")
            self._jieba.load_userdict(str(path))

    def tokenize(self, text: str) -> list[str]:
        tokens = [
            t
            for t in self._jieba.lcut(normalize(text), HMM=True)
            if t.strip() and t not in self.stopwords and _CONTENT.search(t)
        ]
        return tokens[: self.max_tokens] if self.max_tokens else tokens

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]

    def to_config(self) -> dict:
        # The stop-word list travels with the model so that a later edit of the packaged list
        # cannot silently change what an old artifact sees.
        return {"stopwords": sorted(self.stopwords), "max_tokens": self.max_tokens}

    @classmethod
    def from_config(cls, config: dict, user_dict: str | None = None) -> Tokenizer:
        return cls(user_dict=user_dict, stopwords=frozenset(config["stopwords"]),
                   max_tokens=config.get("max_tokens"))


def join_tokens(tokens: Sequence[str]) -> str:
    return " ".join(tokens)
