"""The promotion gate: a candidate model replaces the served one only when it is no worse on the
same held-out data.

Both models are scored on the same records, each with its own tuned thresholds (what it would
serve). Their label sets may differ (a retrained model can learn a label the old one lacks), so the
comparison runs over the union: a label a model does not know is a label it never predicts. Tail
labels are the union's labels with fewer than `tail_below` training examples in the *current*
model (a label new to the candidate counts as 0 there), so the tail is the one the users of the
current model know.

The served model is a symlink (`--link`). Promotion points a fresh link at the candidate and
renames it over the old one: `rename(2)` is atomic, so a worker resolving the link sees the old
directory or the new one, never neither.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmlc.metrics import evaluate, per_label_f1, to_matrix
from fmlc.predictor import Predictor

PROMOTED, REFUSED = 0, 3  # exit codes of `fmlc promote`; any other failure exits with another code


@dataclass(frozen=True)
class Scores:
    """One model's figures on the held-out data, in percent."""

    version: str
    macro_f1: float
    micro_f1: float
    tail_macro_f1: float
    per_label: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    candidate: Scores
    current: Scores
    docs: int
    labels: int
    tail_labels: int
    losers: list[tuple[str, float]] = field(default_factory=list)  # (label, candidate − current), worst first

    @property
    def macro_gain(self) -> float:
        return self.candidate.macro_f1 - self.current.macro_f1

    @property
    def tail_loss(self) -> float:
        return self.current.tail_macro_f1 - self.candidate.tail_macro_f1


@dataclass(frozen=True)
class Gate:
    """A candidate passes when its macro-F1 gain is at least `min_gain` points and its tail macro-F1
    falls by at most `max_tail_loss` points."""

    min_gain: float = 0.0
    max_tail_loss: float = 1.0

    def reasons_to_refuse(self, comparison: Comparison) -> list[str]:
        reasons = []
        if comparison.macro_gain < self.min_gain:
            reasons.append(f"macro-F1 gain {comparison.macro_gain:+.2f} is below --min-gain {self.min_gain:+.2f}")
        if comparison.tail_loss > self.max_tail_loss:
            reasons.append(f"tail macro-F1 falls {comparison.tail_loss:.2f} points, more than --max-tail-loss "
                           f"{self.max_tail_loss:.2f}")
        return reasons


def _predictions(predictor: Predictor, texts: Sequence[str], union: Sequence[str]) -> np.ndarray:
    scores = predictor.scores(predictor.tokenize(list(texts)))  # [N, L_model]
    own = scores >= predictor.thresholds
    out = np.zeros((len(texts), len(union)), dtype=bool)  # [N, L_union]
    index = {label: i for i, label in enumerate(union)}
    for j, label in enumerate(predictor.labels):
        out[:, index[label]] = own[:, j]
    return out


def _scores(predictor: Predictor, y: np.ndarray, pred: np.ndarray, union: list[str], tail: np.ndarray) -> Scores:
    # evaluate() takes probabilities and thresholds; 0/1 predictions at 0.5 are the same decisions.
    metrics = evaluate(y, pred.astype(np.float32), 0.5)
    f1 = per_label_f1(y, pred)
    tail_f1 = float(f1[tail].mean()) if tail.any() else 0.0
    return Scores(version=predictor.version, macro_f1=100 * metrics["all"]["macro_f1"],
                  micro_f1=100 * metrics["all"]["micro_f1"], tail_macro_f1=100 * tail_f1,
                  per_label={label: 100 * float(v) for label, v in zip(union, f1, strict=True)})


def compare(candidate: Predictor, current: Predictor, texts: Sequence[str], label_sets: Sequence[Sequence[str]],
            tail_below: int = 100, show: int = 5) -> Comparison:
    if not texts:
        raise ValueError("the held-out data has no records")
    union = sorted(set(candidate.labels) | set(current.labels))
    y = to_matrix(label_sets, union)
    counts = dict(zip(current.labels, current.artifact.train_counts, strict=True))
    tail = np.array([counts.get(label, 0) < tail_below for label in union])
    cand = _scores(candidate, y, _predictions(candidate, texts, union), union, tail)
    cur = _scores(current, y, _predictions(current, texts, union), union, tail)
    deltas = sorted(((label, cand.per_label[label] - cur.per_label[label]) for label in union), key=lambda d: d[1])
    return Comparison(candidate=cand, current=cur, docs=len(texts), labels=len(union), tail_labels=int(tail.sum()),
                      losers=[d for d in deltas[:show] if d[1] < 0])


def render(comparison: Comparison, refusals: list[str]) -> str:
    c, k = comparison.candidate, comparison.current
    lines = [
        f"held-out: {comparison.docs} records, {comparison.labels} labels ({comparison.tail_labels} tail)",
        f"{'':16}{'current':>10}{'candidate':>11}{'change':>9}",
        f"{'macro-F1':16}{k.macro_f1:10.2f}{c.macro_f1:11.2f}{c.macro_f1 - k.macro_f1:+9.2f}",
        f"{'micro-F1':16}{k.micro_f1:10.2f}{c.micro_f1:11.2f}{c.micro_f1 - k.micro_f1:+9.2f}",
        f"{'tail macro-F1':16}{k.tail_macro_f1:10.2f}{c.tail_macro_f1:11.2f}{c.tail_macro_f1 - k.tail_macro_f1:+9.2f}",
        f"current {k.version}, candidate {c.version}",
    ]
    if comparison.losers:
        lines.append("labels that lose most: " + ", ".join(f"{label} {d:+.1f}" for label, d in comparison.losers))
    else:
        lines.append("no label loses F1")
    lines += [f"refused: {reason}" for reason in refusals] or ["passed the gate"]
    return "\n".join(lines)


def swap_link(link: Path, target: Path) -> None:
    """Point `link` at `target` atomically. The link is relative (`model-candidate`, not
    `/srv/runs/model-candidate`), so it resolves the same inside a container that mounts the
    parent directory elsewhere."""
    if link.exists() and not link.is_symlink():
        raise ValueError(f"{link}: exists and is not a symlink; promotion only swaps a symlink")
    link.parent.mkdir(parents=True, exist_ok=True)
    fresh = link.with_name(f".{link.name}.promote-{os.getpid()}")
    if fresh.is_symlink():
        fresh.unlink()
    fresh.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)
    os.replace(fresh, link)


__all__ = ["PROMOTED", "REFUSED", "Comparison", "Gate", "Scores", "compare", "render", "swap_link"]
