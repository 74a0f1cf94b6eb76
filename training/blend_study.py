"""How each way of blending would have done, from the probabilities wide & deep runs saved
(split/scores/*.npz of `fmlc experiment` and `fmlc curves`), without training again:

    fmlc blend-study reports/grid-default/*/split/scores/fmlc-wide-seed0.npz \\
        reports/curves/*/split/scores/*.npz --out reports/blend-study.md

For every run and every strategy of training.wide: its out-of-fold validation figures (what the
choice sees) and its test figures when fitted on the whole of validation (what the choice cannot
see). The table says which strategy the rule picks and which was best on test, so whether choosing
out of fold pays can be checked on every run there is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmlc.metrics import evaluate, tune_thresholds
from training.wide import FOLDS, KEYS, STRATEGIES, choose_blend, fit_all_weights

NEEDED = ("valid/linear", "valid/fmlc", "test/linear", "test/fmlc", "y/valid", "y/test", "train_counts")


def study(path: Path, tail_below: int = 100) -> dict:
    """One run's figures by strategy: {"chosen", "test_best", "strategies": {s: {"out_of_fold", "test"}}}."""
    with np.load(path, allow_pickle=False) as saved:
        missing = [k for k in NEEDED if k not in saved]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}: give the scores of a wide & deep run "
                             "(split/scores/*.npz of `fmlc experiment` with fmlc-wide, or of `fmlc curves`)")
        arrays = {k: saved[k] for k in NEEDED}
    y_valid, y_test = arrays["y/valid"].astype(bool), arrays["y/test"].astype(bool)
    tail = arrays["train_counts"] < tail_below
    blend = choose_blend(y_valid, arrays["valid/linear"], arrays["valid/fmlc"], tail=tail)
    figures: dict = {}
    for strategy, beta in fit_all_weights(y_valid, arrays["valid/linear"], arrays["valid/fmlc"]).items():
        valid = beta * arrays["valid/linear"] + (1 - beta) * arrays["valid/fmlc"]
        test = beta * arrays["test/linear"] + (1 - beta) * arrays["test/fmlc"]
        scored = evaluate(y_test, test, tune_thresholds(y_valid, valid), arrays["train_counts"], tail_below)
        own = blend.cross_fitted[strategy]
        # Fold by fold against FMLC alone: the same documents, so what the folds share cancels.
        gain = 100 * (np.asarray(own["fold_macro_f1"]) - np.asarray(blend.cross_fitted["fmlc"]["fold_macro_f1"]))
        figures[strategy] = {"out_of_fold": {k: own[k] for k in KEYS},
                             "fold_gain_over_fmlc": {"mean": float(gain.mean()),
                                                     "se": float(gain.std() / np.sqrt(FOLDS))},
                             "test": {"macro_f1": scored["all"]["macro_f1"],
                                      "tail_macro_f1": scored["tail"]["macro_f1"]}}
    test_best = max(STRATEGIES, key=lambda s: (figures[s]["test"]["macro_f1"], -STRATEGIES.index(s)))
    return {"chosen": blend.strategy, "test_best": test_best, "strategies": figures}


def run_name(path: Path) -> str:
    """reports/curves/ccks2019_fin/split/scores/2000-seed0.npz → "curves/ccks2019_fin 2000-seed0"."""
    parts = path.parts
    where = "/".join(parts[max(0, len(parts) - 5):len(parts) - 3])
    return f"{where} {path.stem}"


def render(paths: list[Path], tail_below: int = 100) -> str:
    lines = ["# Which blend, chosen how", "",
             "Per wide & deep run (from its saved probabilities), each way of blending: macro-F1 / tail "
             "macro-F1 in %, out of fold on validation (5 folds, 3 reshuffles: what the choice sees) → on "
             "test, fitted on all of validation; in brackets, the macro-F1 gain over FMLC alone fold by fold "
             "(mean ± standard error over the 5 folds, the spread pooled over reshuffles). **Bold**: the way "
             "the rule picks (training/wide.py); _italic_: the best test macro-F1. Written by "
             "`fmlc blend-study`.", "",
             "| run | " + " | ".join(STRATEGIES) + " | picked = best on test |",
             "|---|" + "---|" * len(STRATEGIES) + "---|"]
    agree = 0
    for path in paths:
        one = study(path, tail_below)
        cells = []
        for strategy in STRATEGIES:
            f = one["strategies"][strategy]
            text = (" / ".join(f"{100 * f['out_of_fold'][k]:.2f}" for k in KEYS) + " → "
                    + " / ".join(f"{100 * f['test'][k]:.2f}" for k in KEYS))
            if strategy != "fmlc":
                gain = f["fold_gain_over_fmlc"]
                text += f" ({gain['mean']:+.2f} ± {gain['se']:.2f})"
            if strategy == one["test_best"]:
                text = f"_{text}_"
            cells.append(f"**{text}**" if strategy == one["chosen"] else text)
        same = one["chosen"] == one["test_best"]
        agree += same
        lines.append(f"| {run_name(path)} | " + " | ".join(cells) + f" | {'yes' if same else 'no'} |")
    lines += ["", f"The rule picked the way best on test in {agree} of {len(paths)} runs.", ""]
    return "\n".join(lines)
