"""Choosing FMLC wide & deep's per-label blend on validation (fmlc.models.wide).

Each label's weight β on the linear path is the grid value whose blend, with its own tuned
threshold, scores that label's best validation F1. Ties go to the value that is best for all labels
at once (one shared β), so a label whose F1 is flat in β does not take an arbitrary weight. β = 0 and
β = 1 are on the grid, so on validation the blend is never below FMLC alone or linear alone, label
by label; the test split says whether that holds out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmlc.metrics import per_label_f1, tune_thresholds

BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Blend:
    weights: np.ndarray  # β per label [L]
    shared: float  # the one β that is best for all labels together (the tie-break)
    valid_f1: np.ndarray  # [len(grid), L]: each label's tuned validation F1 at each β


def choose_blend(y_valid: np.ndarray, wide: np.ndarray, deep: np.ndarray,
                 grid: tuple[float, ...] = BLEND_GRID) -> Blend:
    """wide, deep: validation probabilities [N, L] of the linear and the FMLC path."""
    if wide.shape != deep.shape or wide.shape != np.shape(y_valid):
        raise ValueError(f"shapes differ: labels {np.shape(y_valid)}, wide {wide.shape}, deep {deep.shape}")
    f1 = np.stack([per_label_f1(y_valid, b >= tune_thresholds(y_valid, b))
                   for b in (w * wide + (1 - w) * deep for w in grid)])  # [G, L]
    grid_arr = np.asarray(grid)
    shared = int(np.argmax(f1.mean(axis=1)))
    # Best F1 per label; among equals, the value nearest the shared one.
    order = np.argsort(np.abs(grid_arr - grid_arr[shared]), kind="stable")
    best = order[np.argmax(f1[order], axis=0)]
    return Blend(weights=grid_arr[best].astype(np.float32), shared=float(grid_arr[shared]), valid_f1=f1)
