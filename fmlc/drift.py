"""Drift of the complaint mix: recent predictions against the training baseline.

The baseline, recorded at training time from the validation split, is per label group the
histogram of the group's strongest score (the max over its labels' probabilities) in `BINS`
equal-width bins on [0, 1], plus each label's prior (its share of training documents). Serving
keeps the same histogram over a rolling window of recent documents, and the drift score of a group
is the population stability index (PSI) between the two:

    PSI = Σ_b (actual_b − expected_b) · ln(actual_b / expected_b)

with both sides floored at `EPS` so that an empty bin cannot give infinity. Conventional reading:
below 0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a significant one.

Groups keep the metric's cardinality bounded: a label's group comes from the data's own taxonomy
when it has one (a "parent-child" name such as 司法行为-起诉 belongs to 司法行为), else every label
belongs to the group "all"; at most `MAX_GROUPS` groups are kept, the rest go to "other".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BINS = 10
EPS = 1e-4
MAX_GROUPS = 24
PARENT_SEPARATORS = ("-", "/")


def label_groups(labels: Sequence[str], known: Mapping[str, str] | None = None) -> list[str]:
    """One group name per label: `known[label]` when given, else the parent in a "parent-child"
    name, else "all". Beyond MAX_GROUPS distinct groups the least common go to "other"."""
    groups = []
    for label in labels:
        if known and label in known:
            groups.append(known[label])
            continue
        cut = min((label.find(sep) for sep in PARENT_SEPARATORS if sep in label[1:]), default=-1)
        groups.append(label[:cut] if cut > 0 else "all")
    if len(set(groups)) > MAX_GROUPS:
        by_size = sorted(set(groups), key=lambda g: (-groups.count(g), g))
        kept = set(by_size[: MAX_GROUPS - 1])
        groups = [g if g in kept else "other" for g in groups]
    return groups


def _group_index(groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    return names, np.array([index[g] for g in groups], dtype=np.int64)


def group_max(probs: np.ndarray, label_group: np.ndarray, n_groups: int) -> np.ndarray:
    """[N, L] probabilities -> [N, G]: each group's strongest score."""
    out = np.zeros((probs.shape[0], n_groups), dtype=np.float32)
    for g in range(n_groups):
        cols = label_group == g
        if cols.any():
            out[:, g] = probs[:, cols].max(axis=1)
    return out


def _bins(values: np.ndarray) -> np.ndarray:
    return np.minimum((values * BINS).astype(np.int64), BINS - 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Baseline:
    groups: list[str]            # group names, sorted
    label_group: list[str]       # one group name per label, in the model's label order
    histograms: list[list[float]]  # [G, BINS] shares of validation documents
    priors: list[float]          # [L] share of training documents carrying the label
    docs: int                    # validation documents behind the histograms
    # [L, BINS] each label's own score histogram on validation: for looking into a drifting group
    # offline; the worker exports groups only, to keep the metric's cardinality bounded.
    label_histograms: list[list[float]] | None = None

    def to_dict(self) -> dict:
        return {"bins": BINS, "groups": self.groups, "label_group": self.label_group,
                "histograms": self.histograms, "priors": self.priors, "docs": self.docs,
                "label_histograms": self.label_histograms}

    @classmethod
    def from_dict(cls, d: Mapping) -> Baseline:
        if int(d.get("bins", 0)) != BINS:
            raise ValueError(f"drift baseline has {d.get('bins')} bins, this fmlc uses {BINS}")
        return cls(groups=list(d["groups"]), label_group=list(d["label_group"]),
                   histograms=[list(map(float, h)) for h in d["histograms"]],
                   priors=list(map(float, d["priors"])), docs=int(d["docs"]),
                   label_histograms=d.get("label_histograms"))


def build_baseline(valid_probs: np.ndarray, train_counts: Sequence[int], train_docs: int,
                   groups: Sequence[str]) -> Baseline:
    """valid_probs: [N, L] validation probabilities; groups: one group name per label."""
    names, label_group = _group_index(groups)
    best = group_max(np.asarray(valid_probs, dtype=np.float32), label_group, len(names))  # [N, G]
    hist = np.zeros((len(names), BINS))
    for g in range(len(names)):
        hist[g] = np.bincount(_bins(best[:, g]), minlength=BINS) / max(len(best), 1)
    probs = np.asarray(valid_probs, dtype=np.float32)
    per_label = np.stack([np.bincount(_bins(probs[:, j]), minlength=BINS) for j in range(probs.shape[1])]) \
        / max(len(probs), 1)  # [L, BINS]
    return Baseline(groups=names, label_group=list(groups), histograms=hist.round(6).tolist(),
                    priors=[round(c / max(train_docs, 1), 6) for c in train_counts], docs=int(len(best)),
                    label_histograms=per_label.round(6).tolist())


class DriftMonitor:
    """Rolling histograms of the last `window` documents' group scores, and their PSI against the
    baseline. Not thread-safe: one stage of the worker updates and reads it."""

    def __init__(self, baseline: Baseline, window: int = 2000, min_docs: int = 200) -> None:
        if window < 1 or not 1 <= min_docs <= window:
            raise ValueError("drift window must be >= 1 and min_docs between 1 and window")
        self.baseline = baseline
        self.window = window
        self.min_docs = min_docs
        self._groups, self._label_group = _group_index(baseline.label_group)
        if self._groups != baseline.groups:
            raise ValueError("drift baseline: label groups and group names disagree")
        self._expected = np.asarray(baseline.histograms)  # [G, BINS]
        self._ring = np.zeros((window, len(self._groups)), dtype=np.int64)  # bin per group, per document
        self._counts = np.zeros((len(self._groups), BINS), dtype=np.int64)
        self._seen = 0

    @property
    def groups(self) -> list[str]:
        return self._groups

    @property
    def docs(self) -> int:
        return min(self._seen, self.window)

    def update(self, probs: np.ndarray) -> None:
        """Add documents' [N, L] probabilities (label order as in the baseline)."""
        if len(probs) == 0:
            return
        bins = _bins(group_max(np.asarray(probs, dtype=np.float32), self._label_group, len(self._groups)))
        cols = np.arange(len(self._groups))
        for row in bins[-self.window:]:
            slot = self._seen % self.window
            if self._seen >= self.window:
                np.subtract.at(self._counts, (cols, self._ring[slot]), 1)
            self._ring[slot] = row
            np.add.at(self._counts, (cols, row), 1)
            self._seen += 1

    def scores(self) -> dict[str, float]:
        """PSI per group; empty until `min_docs` documents have been seen."""
        if self.docs < self.min_docs:
            return {}
        actual = self._counts / self.docs
        return {g: psi(self._expected[i], actual[i]) for i, g in enumerate(self._groups)}


__all__ = ["BINS", "Baseline", "DriftMonitor", "build_baseline", "group_max", "label_groups", "psi"]
