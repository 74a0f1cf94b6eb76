"""Multi-label metrics: micro/macro P/R/F1 over all and tail labels, and P@k.

Macro averages run over every label of the model's label set. A label with no true positive, no
false positive and no false negative in the evaluated data scores 0 for P, R and F1 — the same as
scikit-learn's `zero_division=0` and LibMultiLabel — so a model cannot gain by ignoring labels
that happen to be absent from a test split. `labels_with_support` says how many labels had
positives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return p, r, f


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: y_true {y_true.shape} vs y_pred {y_pred.shape}")
    tp = (y_true & y_pred).sum(axis=0).astype(np.float64)
    fp = (~y_true & y_pred).sum(axis=0).astype(np.float64)
    fn = (y_true & ~y_pred).sum(axis=0).astype(np.float64)
    return tp, fp, fn


def per_label_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return _prf(*confusion(y_true, y_pred))[2]


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over documents of (true labels among the k highest scores) / k, k capped at the number of
    labels; a document with fewer than k true labels cannot reach 1. Ties: labels with equal scores
    rank in label order (the model's label list), lower index first — a stable sort, so the figure
    never depends on the sort algorithm."""
    if len(y_true) == 0:
        return 0.0
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(np.asarray(y_true, dtype=bool), top, axis=1).sum(axis=1)
    return float(np.mean(hits / k))


def _block(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    tp, fp, fn = tp[mask], fp[mask], fn[mask]
    if len(tp) == 0:
        return {k: 0.0 for k in ("micro_p", "micro_r", "micro_f1", "macro_p", "macro_r", "macro_f1")} | {
            "labels": 0, "labels_with_support": 0}
    mp, mr, mf = _prf(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))
    p, r, f = _prf(tp, fp, fn)
    return {
        "micro_p": float(mp[0]), "micro_r": float(mr[0]), "micro_f1": float(mf[0]),
        "macro_p": float(p.mean()), "macro_r": float(r.mean()), "macro_f1": float(f.mean()),
        "labels": int(len(tp)), "labels_with_support": int(((tp + fn) > 0).sum()),
    }


def evaluate(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
    train_counts: Sequence[int] | None = None,
    tail_below: int = 100,
) -> dict:
    """All metrics for one prediction run.

    y_true: [N, L] 0/1; scores: [N, L] probabilities; thresholds: scalar or [L].
    Tail labels are those with fewer than `tail_below` training examples (train_counts).
    """
    y_true = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    y_pred = scores >= np.asarray(thresholds)
    tp, fp, fn = confusion(y_true, y_pred)
    everything = np.ones(y_true.shape[1], dtype=bool)
    result: dict = {"all": _block(tp, fp, fn, everything), "docs": int(len(y_true))}
    if train_counts is not None:
        tail = np.asarray(train_counts) < tail_below
        result["tail"] = _block(tp, fp, fn, tail) | {"below": tail_below}
    for k in (1, 3, 5):
        result[f"p@{k}"] = precision_at_k(y_true, scores, k)
    result["per_label_f1"] = _prf(tp, fp, fn)[2].round(6).tolist()
    return result


def tune_thresholds(y_true: np.ndarray, scores: np.ndarray, grid: Sequence[float] | None = None,
                    default: float = 0.5, min_f1: float = 0.0) -> np.ndarray:
    """Per-label threshold maximising that label's F1 on held-out data.

    Labels without a positive in the held-out data keep `default`: their F1 is 0 whatever the
    threshold, so tuning would only pick an arbitrary value. Ties go to the threshold closest to
    `default`, which keeps tuned values from drifting on flat F1 curves. A label whose best held-out
    F1 stays below `min_f1` also keeps `default` (Yang's SCutFBR): a best F1 of 0.001 means one
    positive caught under thousands of false positives, and that threshold would flood the test set.
    """
    y_true = np.asarray(y_true, dtype=bool)
    candidates = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.951, 0.025), 3))
    best = np.full(y_true.shape[1], default, dtype=np.float64)
    order = np.argsort(np.abs(candidates - default), kind="stable")
    for j in np.flatnonzero(y_true.any(axis=0)):
        col_true, col = y_true[:, j], scores[:, j]
        preds = col[None, :] >= candidates[order, None]  # [G, N]
        tp = (preds & col_true).sum(axis=1)
        fp = (preds & ~col_true).sum(axis=1)
        fn = (~preds & col_true).sum(axis=1)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        if f1.max() >= min_f1:
            best[j] = candidates[order][int(np.argmax(f1))]
    return best.astype(np.float32)


def unknown_labels(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> Counter[str]:
    """Positives per label that is not in `labels`: what `to_matrix` leaves out of every metric."""
    known = set(labels)
    return Counter(name for names in label_sets for name in set(names) if name not in known)


def to_matrix(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """Binary [N, L] matrix; labels outside `labels` are ignored (they cannot be predicted)."""
    index = {name: i for i, name in enumerate(labels)}
    y = np.zeros((len(label_sets), len(labels)), dtype=np.float32)
    for row, names in enumerate(label_sets):
        for name in names:
            col = index.get(name)
            if col is not None:
                y[row, col] = 1.0
    return y
