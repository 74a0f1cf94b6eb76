"""Text normalisation and Chinese word segmentation (jieba) with stop-word removal."""

from __future__ import annotations

import re
import unicodedata
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


# Names the whole text → tokens recipe below (normalize(), jieba with HMM, the content filter).
# An artifact records it; a change to any of them gets a new name, and an artifact made under
# another name is refused instead of being served with tokens it was not trained on.
NORMALIZATION = "nfkc-lower-jieba-hmm-1"
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")  # jieba's own "word [freq] [tag]" format


def read_user_dict(path: str | Path) -> tuple[str, ...]:
    """The entries of a jieba user dictionary file (UTF-8, one `word [freq] [tag]` per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"user dictionary {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"user dictionary {path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@dataclass
class Tokenizer:
    """jieba segmentation with an optional user dictionary and a stop-word list.

    Each Tokenizer owns its own jieba instance so that a user dictionary never leaks into
    another model loaded in the same process. The dictionary's entries (not its path) are part
    of `to_config()`, so they travel inside a model artifact and the model is served with the
    segmentation it was trained on.
    """

    user_dict: str | None = None  # a file to read the entries from
    stopwords: frozenset[str] = field(default_factory=default_stopwords)
    user_dict_entries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.user_dict:
            self.user_dict_entries = tuple(self.user_dict_entries) + read_user_dict(self.user_dict)
        self._jieba = jieba.Tokenizer()
        for entry in self.user_dict_entries:
            word, freq, tag = _USER_DICT_LINE.match(entry).groups()  # type: ignore[union-attr]
            # Words are normalised like the text they must match (full-width, upper case).
            word = normalize(word)
            if word:
                self._jieba.add_word(word, int(freq) if freq else None, tag.strip() if tag else None)

    def tokenize(self, text: str, max_len: int | None = None) -> list[str]:
        """The tokens a model sees: normalise, segment, drop stop words and punctuation, cut at
        `max_len`. Training, `Predictor` and the worker's tokenizer process all call this."""
        tokens = [
            t
            for t in self._jieba.lcut(normalize(text), HMM=True)
            if t.strip() and t not in self.stopwords and _CONTENT.search(t)
        ]
        return tokens[:max_len] if max_len else tokens

    def to_config(self) -> dict:
        # The stop-word list and the user dictionary travel with the model so that a later edit of
        # the packaged list, or a user dictionary left behind on the training machine, cannot
        # silently change what a model sees. Both sit in config.json, which the version hashes.
        return {"normalization": NORMALIZATION, "stopwords": sorted(self.stopwords),
                "user_dict": list(self.user_dict_entries)}

    @classmethod
    def from_config(cls, config: dict) -> Tokenizer:
        """Rebuild a model's tokenizer. Configs written before the normalisation name and the user
        dictionary were recorded have neither: they were made with the one normalisation that
        existed then and were served without a dictionary, which is what they get here."""
        normalization = config.get("normalization", NORMALIZATION)
        if normalization != NORMALIZATION:
            raise ValueError(f"tokenizer normalization {normalization!r} is not known to this fmlc (it has "
                             f"{NORMALIZATION!r}); serve the model with the fmlc version that trained it")
        # Artifacts made while the tokenizer had its own token cap record it, always null (nothing
        # ever set it); one that names a cap would be served with tokens it was not trained on.
        if config.get("max_tokens") is not None:
            raise ValueError(f"tokenizer max_tokens={config['max_tokens']!r} is not supported by this fmlc; "
                             "serve the model with the fmlc version that trained it")
        return cls(stopwords=frozenset(config["stopwords"]), user_dict_entries=tuple(config.get("user_dict", ())))
