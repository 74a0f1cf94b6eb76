"""Choosing FMLC wide & deep's blend on validation (fmlc.models.wide).

There are four ways to set β, the weight of the linear path, label by label:

- "fmlc": β = 0 everywhere (FMLC alone);
- "linear": β = 1 everywhere (linear alone);
- "shared": one β for every label, the grid value whose blend scores the best macro-F1;
- "per-label": each label's own best β, ties going to the value nearest the shared one.

In-sample, per-label can only win: it has the most freedom, and thresholds tuned on the same blended
scores add to the optimism. On small or noisy validation sets that optimism does not carry to test.
So the way is chosen out of sample, by cross-fitting within validation: each way fits β and its
thresholds on 4/5 of the documents and predicts the other 1/5, until every document has an
out-of-fold prediction, and scores macro-F1 and tail macro-F1 over those predictions, averaged over
a few reshuffles. The default rule asks for both figures to be no worse than the better of FMLC alone
and linear alone; among the ways that keep it out of fold, the one with the best macro-F1 wins (ties
go to the simpler way, in the order above) and is fitted again on the whole of validation. As FMLC
alone and linear alone are candidates, some way keeps the rule unless one path is better on macro-F1
and the other on the tail; then the best macro-F1 wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmlc.metrics import per_label_f1, tune_thresholds

BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
STRATEGIES = ("fmlc", "linear", "shared", "per-label")  # simplest first: the order of tie-breaks
FOLDS = 5
REPEATS = 3
KEYS = ("macro_f1", "tail_macro_f1")


@dataclass(frozen=True)
class Blend:
    weights: np.ndarray  # β per label [L]
    strategy: str  # one of STRATEGIES
    shared: float  # the one β best for all labels together, fitted on the whole of validation
    cross_fitted: dict[str, dict]  # strategy → out-of-fold validation figures (KEYS, fold_macro_f1)


def fit_all_weights(y: np.ndarray, wide: np.ndarray, deep: np.ndarray,
                    grid: tuple[float, ...] = BLEND_GRID) -> dict[str, np.ndarray]:
    """β per label [L] of every strategy, fitted on (y, wide, deep). One scan of the grid (each
    value's blend with its own tuned thresholds) serves both "shared" and "per-label"."""
    n_labels = y.shape[1]
    f1 = np.stack([per_label_f1(y, b >= tune_thresholds(y, b))
                   for b in (w * wide + (1 - w) * deep for w in grid)])  # [G, L]
    grid_arr = np.asarray(grid)
    shared = int(np.argmax(f1.mean(axis=1)))
    # Best F1 per label; among equals, the value nearest the shared one, so that a label whose F1 is
    # flat in β does not take an arbitrary weight.
    order = np.argsort(np.abs(grid_arr - grid_arr[shared]), kind="stable")
    best = order[np.argmax(f1[order], axis=0)]
    return {"fmlc": np.zeros(n_labels, dtype=np.float32), "linear": np.ones(n_labels, dtype=np.float32),
            "shared": np.full(n_labels, grid_arr[shared], dtype=np.float32),
            "per-label": grid_arr[best].astype(np.float32)}


def fit_weights(strategy: str, y: np.ndarray, wide: np.ndarray, deep: np.ndarray,
                grid: tuple[float, ...] = BLEND_GRID) -> np.ndarray:
    """β per label [L] for one strategy, fitted on (y, wide, deep)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown blend strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return fit_all_weights(y, wide, deep, grid)[strategy]


def cross_fitted_f1(y: np.ndarray, wide: np.ndarray, deep: np.ndarray, tail: np.ndarray | None = None,
                    folds: int = FOLDS, repeats: int = REPEATS, seed: int = 0,
                    grid: tuple[float, ...] = BLEND_GRID) -> dict[str, dict[str, float]]:
    """Each strategy's macro-F1 and tail macro-F1 (over the labels `tail` marks; all labels when it
    marks none) over out-of-fold predictions on validation, β and thresholds fitted on the other
    folds; the mean over `repeats` shuffles. "fold_macro_f1" keeps the macro-F1 of each held fold
    (repeat by repeat), from which paired differences between strategies and their spread follow."""
    n = len(y)
    tail = np.ones(y.shape[1], dtype=bool) if tail is None or not np.any(tail) else np.asarray(tail, dtype=bool)
    scores: dict[str, list[np.ndarray]] = {s: [] for s in STRATEGIES}
    by_fold: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        parts = np.array_split(rng.permutation(n), min(folds, n))
        predicted = {s: np.zeros(y.shape, dtype=bool) for s in STRATEGIES}
        for held in parts:
            fit = np.setdiff1d(np.arange(n), held)
            fitted = fit_all_weights(y[fit], wide[fit], deep[fit], grid)
            for strategy, beta in fitted.items():
                thresholds = tune_thresholds(y[fit], beta * wide[fit] + (1 - beta) * deep[fit])
                predicted[strategy][held] = beta * wide[held] + (1 - beta) * deep[held] >= thresholds
                by_fold[strategy].append(float(per_label_f1(y[held], predicted[strategy][held]).mean()))
        for strategy in STRATEGIES:
            scores[strategy].append(per_label_f1(y, predicted[strategy]))
    return {s: {"macro_f1": float(np.mean(f1s)), "tail_macro_f1": float(np.mean([f1[tail] for f1 in f1s])),
                "fold_macro_f1": by_fold[s]} for s, f1s in scores.items()}


def keeps_rule(figures: dict[str, dict[str, float]], strategy: str) -> bool:
    """Whether a strategy's figures are no worse than the better of FMLC alone and linear alone on
    both macro-F1 and tail macro-F1."""
    return all(figures[strategy][k] >= max(figures["fmlc"][k], figures["linear"][k]) for k in KEYS)


def recorded_choice(blend: dict) -> tuple[str, bool | None]:
    """A run's recorded blend (metrics["components"]["blend"]) → its strategy, and whether it kept the
    rule out of fold. Runs from before the out-of-fold choice always took per-label weights chosen
    in-sample and recorded no out-of-fold figures: None, for the caller to judge in-sample."""
    if "cross_fitted" not in blend:
        return "per label, in-sample", None
    return blend["strategy"], keeps_rule(blend["cross_fitted"], blend["strategy"])


def choose_blend(y_valid: np.ndarray, wide: np.ndarray, deep: np.ndarray, tail: np.ndarray | None = None,
                 grid: tuple[float, ...] = BLEND_GRID, seed: int = 0) -> Blend:
    """wide, deep: validation probabilities [N, L] of the linear and the FMLC path; tail: [L] bool,
    the labels the tail macro-F1 is taken over."""
    y_valid = np.asarray(y_valid, dtype=bool)
    if wide.shape != deep.shape or wide.shape != y_valid.shape:
        raise ValueError(f"shapes differ: labels {y_valid.shape}, wide {wide.shape}, deep {deep.shape}")
    if len(y_valid) < 2 * FOLDS:
        raise ValueError(f"the blend is chosen by {FOLDS}-fold cross-fitting on validation, which needs at "
                         f"least {2 * FOLDS} documents; it has {len(y_valid)}")
    cross = cross_fitted_f1(y_valid, wide, deep, tail, seed=seed, grid=grid)
    pool = [s for s in STRATEGIES if keeps_rule(cross, s)] or list(STRATEGIES)
    strategy = max(pool, key=lambda s: (cross[s]["macro_f1"], -STRATEGIES.index(s)))
    fitted = fit_all_weights(y_valid, wide, deep, grid)
    return Blend(weights=fitted[strategy], strategy=strategy, shared=float(fitted["shared"][0]), cross_fitted=cross)
