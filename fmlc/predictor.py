"""Batched inference from a saved artifact: labels above threshold, scores and evidence tokens."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlc import artifact as artifact_io
from fmlc.batching import length_chunks, pad_batch
from fmlc.models import build_model
from fmlc.text import Tokenizer

log = logging.getLogger(__name__)


class OutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory for this call; retry with fewer texts."""


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 6), "evidence": self.evidence}


@dataclass(frozen=True)
class Prediction:
    labels: list[LabelScore]
    # Every label's probability, in the model's label order (drift and review read it; outputs do not).
    probs: np.ndarray | None = field(default=None, repr=False, compare=False)
    # max over labels of (probability − threshold): negative when no label is given.
    margin: float | None = None

    def to_dict(self) -> dict:
        return {"labels": [ls.to_dict() for ls in self.labels]}

    @property
    def names(self) -> list[str]:
        return [ls.label for ls in self.labels]


QUANTIZE_MODES = ("none", "int8")


def check_quantize(quantize: str | None, device: str | torch.device) -> str:
    """The quantisation mode, checked against the device: "none" (also for None) or "int8".

    int8 is dynamic quantisation (torch.ao), whose kernels run on the CPU only: on a CUDA device it
    is refused here rather than silently served in fp32, so a setting never means something else
    than it says."""
    mode = "none" if quantize is None else str(quantize).strip().lower()
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}")
    if mode == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 quantisation runs on the CPU only, and the device is {device}: "
                         "use device cpu, or no quantisation on an accelerator")
    return mode


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the GRU and Linear layers (weights int8, activations quantised
    on the fly): 2.57x the fp32 model on the CPU for 0.04 macro-F1 points on ccks2019_fin
    (bench/results/model_speed.md). Embeddings and the label graph stay fp32."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.GRU}, dtype=torch.qint8)


def pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)


class Predictor:
    """Load once, predict many times. `predict` = `tokenize` (jieba, CPU) + `predict_tokens` (model).

    `quantize`: None / "none" (fp32) or "int8" (CPU only; see `check_quantize`).

    `torch_threads` is process-wide: torch has one intra-op thread pool per process, so setting it
    here changes it for every model and every thread of the process. None (the default) leaves it
    as it is.
    """

    def __init__(self, art: artifact_io.Artifact, device: str | None = None, *, torch_threads: int | None = None,
                 quantize: str | None = None, version: str = "",
                 batch_size: int = 64, evidence_k: int = 3, max_batch_tokens: int | None = None) -> None:
        if torch_threads is not None:
            if torch_threads < 1:
                raise ValueError(f"torch_threads must be >= 1, got {torch_threads}")
            if torch_threads != torch.get_num_threads():
                log.info("setting torch's process-wide thread count %d -> %d", torch.get_num_threads(), torch_threads)
                torch.set_num_threads(torch_threads)
        self.artifact = art
        self.labels = art.labels
        self.version = version
        self.batch_size = batch_size
        self.evidence_k = evidence_k
        self.max_len = art.max_len
        self.tokenizer = Tokenizer.from_config(art.tokenizer_config)
        trained_with = (art.meta.get("train_config") or {}).get("user_dict")
        if trained_with and "user_dict" not in art.tokenizer_config:
            # Made before the dictionary travelled inside the artifact: it was always served without it.
            log.warning("model %s was trained with the user dictionary %s, which this artifact does not carry "
                        "(made by an older fmlc); it is served without it, so segmentation differs from training. "
                        "Retrain to serve it with its dictionary.", version or "(unversioned)", trained_with)
        self.thresholds = art.thresholds
        self._device = pick_device(device)
        self.quantize = check_quantize(quantize, self._device)
        # Padded tokens per model call: small on CPU, where padding is paid step by step; a GPU wants
        # big calls. Measured on CPU: 2048 ran a 64-message micro-batch 1.3x faster than one chunk.
        self.max_batch_tokens = max_batch_tokens or (2048 if self._device.type == "cpu" else 65536)
        model = build_model(art.model_config)
        model.load_state_dict(art.state_dict, strict=True)
        model.eval()
        if self.quantize == "int8":
            model = quantize_int8(model)
        self.model = model.to(self._device)
        self._thresholds_t = torch.as_tensor(self.thresholds, device=self._device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None, *, torch_threads: int | None = None,
             **kwargs: Any) -> Predictor:
        # Resolved once: when `path` is a symlink that a promotion flips, every file still comes
        # from one directory.
        root = Path(path).resolve()
        art = artifact_io.load(root)
        return cls(art, device=device, torch_threads=torch_threads, version=artifact_io.read_version(root),
                   **kwargs)

    @staticmethod
    def artifact_version(path: str | os.PathLike) -> str:
        return artifact_io.read_version(path)

    @property
    def device(self) -> str:
        return str(self._device)

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens the model sees for each text (what `fmlc tokenize` prints; the worker's
        tokenizer process runs the same `Tokenizer.tokenize(text, max_len)` from the same config)."""
        _texts_not_str(texts, "tokenize")
        return [self.tokenizer.tokenize(t, self.max_len) for t in texts]

    def _autocast(self) -> AbstractContextManager[Any]:
        if self._device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return nullcontext()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        try:
            with torch.inference_mode(), self._autocast():
                out = self.model(ids, mask)
                return torch.sigmoid(out.logits.float()), out.attention
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            shape = f"{ids.shape[0]}x{ids.shape[1]}"
            raise OutOfMemoryError(f"out of memory on {self._device} for a batch of {shape}") from exc

    def scores(self, tokens: Sequence[Sequence[str]], batch_size: int | None = None,
               length_aware: bool = True) -> np.ndarray:
        """Probabilities [N, L] without thresholds (for evaluation)."""
        _token_lists(tokens, "scores")
        return self._run(tokens, batch_size, length_aware, with_evidence=False)[0]

    def predict_tokens(self, tokens: Sequence[Sequence[str]], batch_size: int | None = None,
                       length_aware: bool = True) -> list[Prediction]:
        _token_lists(tokens, "predict_tokens")
        probs, evidence = self._run(tokens, batch_size, length_aware, with_evidence=True)
        results = []
        for i in range(len(tokens)):
            above = np.flatnonzero(probs[i] >= self.thresholds)
            ranked = above[np.argsort(-probs[i, above], kind="stable")]
            results.append(Prediction([LabelScore(self.labels[j], float(probs[i, j]), evidence[i].get(int(j), []))
                                       for j in ranked], probs=probs[i],
                                      margin=float(np.max(probs[i] - self.thresholds)) if len(self.labels) else None))
        return results

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[Prediction]:
        """One Prediction per text, in order. `texts` is a list of strings: a bare string is refused
        rather than classified character by character."""
        _texts_not_str(texts, "predict")
        return self.predict_tokens(self.tokenize(texts), batch_size=batch_size)

    def _run(self, tokens: Sequence[Sequence[str]], batch_size: int | None, length_aware: bool,
             with_evidence: bool) -> tuple[np.ndarray, list[dict[int, list[str]]]]:
        n = len(tokens)
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        evidence: list[dict[int, list[str]]] = [{} for _ in range(n)]
        if n == 0:
            return probs, evidence
        encoded = [self.artifact.vocab.encode(t, self.max_len) for t in tokens]
        lengths = [len(e) for e in encoded]
        for chunk in length_chunks(lengths, batch_size or self.batch_size, length_aware, self.max_batch_tokens):
            ids, mask = pad_batch([encoded[i] for i in chunk], self._device)
            p, attn = self._forward(ids, mask)
            probs[chunk] = p.cpu().numpy()
            if with_evidence and attn is not None:
                self._evidence(chunk, tokens, p >= self._thresholds_t, attn, evidence)
        return probs, evidence

    def _evidence(self, chunk: list[int], tokens: Sequence[Sequence[str]], predicted: torch.Tensor,
                  attn: torch.Tensor, out: list[dict[int, list[str]]]) -> None:
        # Only the predicted (row, label) pairs are looked at: the full [B, L, T] is never copied to the host.
        rows, labels = predicted.nonzero(as_tuple=True)
        if len(rows) == 0:
            return
        k = min(self.evidence_k * 2, attn.shape[-1])  # extra candidates: duplicates collapse below
        top = attn[rows, labels].float().topk(k, dim=-1).indices.cpu().numpy()
        for r, lab, positions in zip(rows.tolist(), labels.tolist(), top, strict=True):
            doc = tokens[chunk[r]]
            words: list[str] = []
            for pos in positions:
                if pos < len(doc) and doc[pos] not in words:
                    words.append(doc[pos])
                if len(words) == self.evidence_k:
                    break
            out[chunk[r]][lab] = words


def _texts_not_str(texts: object, method: str) -> None:
    if isinstance(texts, str):
        raise TypeError(f"Predictor.{method}() takes a list of texts, not one string (which would be read "
                        f"character by character); for one text pass [text]: predictor.{method}([text])")


def _token_lists(tokens: object, method: str) -> None:
    if isinstance(tokens, str) or any(isinstance(t, str) for t in tokens):  # type: ignore[attr-defined]
        raise TypeError(f"Predictor.{method}() takes one list of tokens per text (e.g. from "
                        "Predictor.tokenize(texts)), not strings")
