"""Learning curves of the default model against its two parts: test macro-F1 and tail macro-F1
against the number of training documents, for linear TF-IDF, FMLC/ASL and FMLC wide & deep.

    fmlc curves --data ../shared/data/ccks2019_fin --out reports/curves/ccks2019_fin \\
        --sizes 1000,2000,5000,all [--parent-labels -] [--seeds 1] [--threads 1]

The split is the experiment grid's (split seed 0); validation and test stay whole, and the training
split is cut to the first N documents of one fixed shuffle, so every smaller set lies inside every
larger one. Each point is one `fmlc train` run of the wide & deep model with the given preset (the
defaults unless set) on those documents: its two paths are the linear model and FMLC/ASL trained
alone (training.trainer records both), so one run gives the three rows. Labels without a training
document at a size cannot be predicted there and drop out of that point's scores (the point records
how many labels it has). Writes results.json after every point (resumable), report.md and curves.png.

    fmlc curves --index reports/curves     # reports/curves/README.md: every set's points in one table
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.data import Record, load_path, split_records
from training.experiment import SPLIT_SEED, add_parent_labels, console, split_id
from training.trainer import PRESETS, TrainConfig, fit, prepare, save_scores
from training.wide import recorded_choice

PATHS = (("linear", "linear TF-IDF"), ("fmlc", "FMLC/ASL"), ("fmlc-wide", "FMLC wide & deep"))
SUBSET_SEED = 0  # the one shuffle every size cuts from


@dataclass
class CurvesConfig:
    data: str
    out: str
    sizes: list[int | None] = field(default_factory=lambda: [1000, 2000, 5000, None])  # None: all of train
    seeds: int = 1
    parent_labels: str | None = None
    preset: str = "default"
    base: dict = field(default_factory=dict)  # TrainConfig overrides (flat names)

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("give at least one size")
        if any(n is not None and n < 10 for n in self.sizes):
            raise ValueError("each size must be at least 10 documents, or 'all'")
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")


def parse_sizes(text: str) -> list[int | None]:
    """"1000,2000,all" → [1000, 2000, None]."""
    sizes: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            sizes.append(None)
        elif part.isdigit():
            sizes.append(int(part))
        else:
            raise ValueError(f"--sizes takes numbers of documents and 'all', comma-separated; got {part!r}")
    return sizes


def _scores(block: dict) -> dict:
    """The figures a point keeps of one `evaluate` result (tuned thresholds)."""
    return {"macro_f1": block["all"]["macro_f1"], "micro_f1": block["all"]["micro_f1"],
            "tail_macro_f1": block["tail"]["macro_f1"], "tail_labels": block["tail"]["labels"]}


def run(cfg: CurvesConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_path(cfg.data).records
    if cfg.parent_labels:
        records = add_parent_labels(records, cfg.parent_labels)
    splits = split_records(records, seed=SPLIT_SEED)
    train = splits["train"]
    order = np.random.default_rng(SUBSET_SEED).permutation(len(train))
    path = out / "results.json"
    # Points are keyed by size and seed, so the sizes and seeds asked for are not part of the setup;
    # the data is named by its split's fingerprint, not by the path it was given as.
    setup = {k: v for k, v in asdict(cfg).items() if k not in ("out", "seeds", "sizes", "data")}
    setup["split_id"] = split_id(splits)
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if old.get("points") and old.get("setup") != setup:
        raise ValueError(f"{path} holds points of another setup ({old.get('setup')}); write these to another --out")
    results: dict = {"setup": setup, "data": cfg.data, "split_sizes": {k: len(v) for k, v in splits.items()},
                     "points": old.get("points", {})}
    for n in cfg.sizes:
        size = len(train) if n is None or n >= len(train) else n
        subset: list[Record] = [train[i] for i in sorted(order[:size])]
        for seed in range(cfg.seeds):
            key = f"{size}/seed{seed}"
            if key in results["points"]:
                continue
            tcfg = TrainConfig.from_preset(cfg.preset, **(cfg.base | {"model": "fmlc-wide", "seed": seed}))
            console.print(f"[bold cyan]{key}[/]: {size} training documents, {tcfg.preset} preset")
            t0 = time.perf_counter()
            prep = prepare({"train": subset, "valid": splits["valid"], "test": splits["test"]}, tcfg)
            result = fit(prep, tcfg)
            parts = result.metrics["components"]
            # evaluate() results by model and split: the wide & deep model's own at its tuned thresholds.
            blocks = {"fmlc-wide": {split: result.metrics[split]["tuned"] for split in ("valid", "test")}} | {
                name: parts[name] for name in ("linear", "fmlc", "one weight")}
            point = {"train_docs": size, "seed": seed, "labels": len(prep.labels),
                     "epochs_run": len(result.history), "seconds": time.perf_counter() - t0,
                     "blend": parts["blend"]} | {
                name: {split: _scores(by_split[split]) for split in ("valid", "test")}
                for name, by_split in blocks.items()}
            results["points"][key] = point
            save_scores(out / "split" / "scores" / f"{size}-seed{seed}.npz", result, prep)
            path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
            write_report(results, out)
            console.print("  test macro-F1 / tail: " + ", ".join(
                f"{label} {100 * point[name]['test']['macro_f1']:.2f} / "
                f"{100 * point[name]['test']['tail_macro_f1']:.2f}" for name, label in PATHS))
    write_report(results, out)
    return results


def gains(row: dict, split: str = "test") -> dict[str, float]:
    """The wide & deep model minus the better of its two parts, on macro-F1 and tail macro-F1."""
    return {k: row["fmlc-wide"][split][k] - max(row["linear"][split][k], row["fmlc"][split][k])
            for k in ("macro_f1", "tail_macro_f1")}


def summary(results: dict) -> list[dict]:
    """One row per size: mean over seeds of each path's scores."""
    by_size: dict[int, list[dict]] = {}
    for point in results["points"].values():
        by_size.setdefault(point["train_docs"], []).append(point)
    rows = []
    for size in sorted(by_size):
        points = by_size[size]
        row: dict = {"train_docs": size, "seeds": len(points), "labels": points[0]["labels"]}
        for name in (*(p for p, _ in PATHS), "one weight"):
            row[name] = {split: {k: float(np.mean([p[name][split][k] for p in points]))
                                 for k in ("macro_f1", "tail_macro_f1", "micro_f1")}
                         for split in ("valid", "test")}
        choices = [recorded_choice(p["blend"]) for p in points]
        row["blends"] = sorted({strategy for strategy, _ in choices})
        # The rule is judged out of fold where the blend was chosen that way (training.wide); points
        # from before keep the in-sample comparison.
        held = [h for _, h in choices if h is not None]
        row["holds_on_valid"] = (all(held) if len(held) == len(choices)
                                 else all(g >= 0 for g in gains(row, "valid").values()))
        rows.append(row)
    return rows


def write_report(results: dict, out: Path) -> None:
    rows = summary(results)
    lines = [f"# Learning curves: {results['data']}", "",
             f"Split (seed {SPLIT_SEED}): {results['split_sizes']}; training cut to the first N documents of "
             f"one shuffle (seed {SUBSET_SEED}), validation and test whole. Preset "
             f"`{results['setup']['preset']}`"
             + (f", overrides {results['setup']['base']}" if results['setup']['base'] else "")
             + (f", parent labels added (separator `{results['setup']['parent_labels']}`)"
                if results['setup']['parent_labels'] else "") + ".",
             "", "Macro-F1 / tail macro-F1 in %, thresholds tuned on validation; validation in brackets. "
             "Bold: the best test figure at that size. Tail labels are those with fewer than 100 documents in "
             "that size's training set, so the tail is a different set of labels at each size: compare the three "
             "models within a size, not a model across sizes. The blend (FMLC alone, linear alone, one shared "
             "weight or one weight per label) is chosen by cross-fitting within validation (training/wide.py), "
             "and the default rule is judged on those out-of-fold figures; test is where it can still fail.", "",
             "| training docs (labels) | seeds | " + " | ".join(label for _, label in PATHS)
             + " | wide & deep − best part (test) |",
             "|---|---|" + "---|" * len(PATHS) + "---|"]
    for row in rows:
        cells = []
        best_macro = max(row[p]["test"]["macro_f1"] for p, _ in PATHS)
        best_tail = max(row[p]["test"]["tail_macro_f1"] for p, _ in PATHS)
        for name, _ in PATHS:
            t, v = row[name]["test"], row[name]["valid"]
            macro = f"{100 * t['macro_f1']:.2f}"
            tail = f"{100 * t['tail_macro_f1']:.2f}"
            cells.append(f"{f'**{macro}**' if t['macro_f1'] == best_macro else macro} / "
                         f"{f'**{tail}**' if t['tail_macro_f1'] == best_tail else tail} "
                         f"({100 * v['macro_f1']:.2f} / {100 * v['tail_macro_f1']:.2f})")
        gain = gains(row)
        lines.append(f"| {row['train_docs']} ({row['labels']}) | {row['seeds']} | " + " | ".join(cells)
                     + f" | {100 * gain['macro_f1']:+.2f} / {100 * gain['tail_macro_f1']:+.2f} |")
    lines += ["", "One shared weight instead of one per label (test macro-F1 / tail): " + ", ".join(
        f"{row['train_docs']}: {100 * row['one weight']['test']['macro_f1']:.2f} / "
        f"{100 * row['one weight']['test']['tail_macro_f1']:.2f}" for row in rows) + ".", "",
        "Blend chosen, and the rule on validation: " + ", ".join(
            f"{row['train_docs']}: {' / '.join(row['blends'])} ({'holds' if row['holds_on_valid'] else 'fails'})"
            for row in rows) + ".", "",
        "![curves](curves.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    plot(rows, out / "curves.png", results["data"])


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["train_docs"] for r in rows]
    for ax, key, name in ((axes[0], "macro_f1", "test macro-F1 (%)"), (axes[1], "tail_macro_f1",
                                                                         "test tail macro-F1 (%)")):
        for (path_name, label), marker in zip(PATHS, ("s", "o", "^"), strict=True):
            ax.plot(sizes, [100 * r[path_name]["test"][key] for r in rows], marker=marker, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("training documents")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_index(folder: Path) -> str:
    """One table over every curves report under `folder` (its README.md): test macro-F1 / tail of the
    three models per set and size, and whether validation kept the default rule (the wide & deep
    model no worse than the better of linear and FMLC/ASL, on macro-F1 and on tail macro-F1)."""
    lines = ["# The default model against its parts, by set and training size", "",
             "Test macro-F1 / tail macro-F1 in % (mean over the seeds run), thresholds tuned on validation. "
             "Rule: on validation, FMLC wide & deep is no worse than the better of linear and FMLC/ASL on "
             "both figures, judged out of fold where the blend was chosen by cross-fitting (training/wide.py). "
             "Blend: what that choice kept (FMLC alone, linear alone, one shared weight or one per label). "
             "Written by `fmlc curves --index` from each folder's results.json.", "",
             "| set | training docs | seeds | " + " | ".join(label for _, label in PATHS)
             + " | wide & deep − best part | blend | rule on validation |",
             "|---|---|---|" + "---|" * len(PATHS) + "---|---|---|"]
    reports = sorted(p.parent for p in folder.glob("*/results.json"))
    if not reports:
        raise FileNotFoundError(f"no curves reports (*/results.json) under {folder}: run `fmlc curves` first")
    for report in reports:
        results = json.loads((report / "results.json").read_text(encoding="utf-8"))
        for row in summary(results):
            cells = [f"{100 * row[name]['test']['macro_f1']:.2f} / {100 * row[name]['test']['tail_macro_f1']:.2f}"
                     for name, _ in PATHS]
            gain = gains(row)
            lines.append(f"| [{report.name}]({report.name}/report.md) | {row['train_docs']} | {row['seeds']} | "
                         + " | ".join(cells) + f" | {100 * gain['macro_f1']:+.2f} / "
                         f"{100 * gain['tail_macro_f1']:+.2f} | {' / '.join(row['blends'])} | "
                         + ("holds" if row["holds_on_valid"] else "**fails**") + " |")
    text = "\n".join(lines) + "\n"
    (folder / "README.md").write_text(text, encoding="utf-8")
    return text
