"""Complaints a person should look at: copied to `FMLC_REVIEW_TOPIC`, the normal output unchanged.

A complaint is sent for review when the model gave it no label at all, or when its most certain
label sits within `FMLC_REVIEW_MARGIN` of that label's threshold (a coin flip the agents can settle,
and their correction comes back as training data). Copies are rate-limited by a token bucket so a
shifted input mix cannot flood the review queue; what the bucket holds back is counted, not queued.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from fmlc import Prediction

NO_LABEL = "no_label"
NEAR_THRESHOLD = "near_threshold"
REASONS = (NO_LABEL, NEAR_THRESHOLD)


def review_reason(prediction: Prediction, margin: float) -> str | None:
    """Why this prediction needs a person, or None. `prediction.margin` is max(probability − threshold)."""
    if not prediction.labels:
        return NO_LABEL
    if prediction.margin is not None and prediction.margin < margin:
        return NEAR_THRESHOLD
    return None


class TokenBucket:
    """At most `rate` per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def render_review(complaint_id: str, text: str, prediction: Prediction, labels: Sequence[str], reason: str,
                  model_version: str, top: int = 3) -> bytes:
    """The review copy: the complaint, what the model said, and its closest candidates."""
    best: list[dict] = []
    probs = prediction.probs
    if probs is not None and labels:
        order = sorted(range(len(labels)), key=lambda j: -float(probs[j]))[:top]
        best = [{"label": labels[j], "score": round(float(probs[j]), 4)} for j in order]
    return json.dumps({"id": complaint_id, "text": text, "labels": prediction.names, "reason": reason,
                       "margin": None if prediction.margin is None else round(prediction.margin, 4),
                       "candidates": best, "model_version": model_version}, ensure_ascii=False).encode()


__all__ = ["NEAR_THRESHOLD", "NO_LABEL", "REASONS", "TokenBucket", "render_review", "review_reason"]
