"""How FMLC/ASL's validation macro-F1 moves with its loss and graph settings — validation only.

    fmlc sensitivity --data ../shared/data/duee1.0 --parent-labels - \\
        --out reports/duee1.0_parents/sensitivity [--seeds 1] [--epochs 10] [--lr 1e-3] [--threads 1]
    fmlc sensitivity --out reports/duee1.0_parents/sensitivity --render-only

The split is the experiment's (seed 0, same records), so the validation split here is the one the
experiment tunes thresholds and picks epochs on. The test split is never scored in the output:
this is for finding out why FMLC/ASL gains what it gains, not for choosing settings by test score.
Writes sensitivity.json (resumable: finished variants are kept), sensitivity.md and sensitivity.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmlc.models.config import ModelConfig
from training.experiment import ExperimentConfig, console, load_splits, prepare_reusing_vectors
from training.experiment_report import STD_NOTE, sample_std, vectors_clause
from training.trainer import TrainConfig, fit

# variant → (what it changes, TrainConfig overrides of FMLC/ASL)
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the paper's settings: γ- = 2, margin 0.05, edges at P(j|i) >= 0.3, neighbour weight 0.25", {}),
    "asl-off": ("γ- = 0 and margin 0: ASL reduced to BCE", {"asl_gamma_neg": 0.0, "asl_margin": 0.0}),
    "gamma1": ("γ- = 1", {"asl_gamma_neg": 1.0}),
    "gamma4": ("γ- = 4", {"asl_gamma_neg": 4.0}),
    "margin0": ("margin 0", {"asl_margin": 0.0}),
    "margin0.2": ("margin 0.2", {"asl_margin": 0.2}),
    "focus-detached": ("ASL focusing weights without gradient", {"asl_detach_focusing": True}),
    "focus-grad": ("ASL focusing weights with gradient (the ASL reference's default)", {"asl_detach_focusing": False}),
    "edges0.1": ("edges at P(j|i) >= 0.1", {"graph_threshold": 0.1}),
    "edges0.5": ("edges at P(j|i) >= 0.5", {"graph_threshold": 0.5}),
    "weight0.5": ("neighbour weight 0.5", {"graph_neighbour_weight": 0.5}),
    "identity": ("identity adjacency (no label graph)", {"graph": "identity"}),
    "random-vectors": ("random N(0, 0.1) embeddings instead of word2vec", {"embedding_init": "random"}),
    "frozen-vectors": ("word2vec vectors kept fixed", {"freeze_embeddings": True}),
}


def run(data: str, out: Path, *, parent_labels: str | None, seeds: int, base: dict, epochs: int,
        variants: list[str] | None = None, max_docs: int | None = None) -> dict:
    unknown = [v for v in variants or [] if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sensitivity.json"
    exp = ExperimentConfig(data=data, out=str(out), parent_labels=parent_labels, max_docs=max_docs, base=base)
    splits, info = load_splits(exp)
    setup = {"data": data, "parent_labels": parent_labels, "max_docs": max_docs, "epochs": epochs, "base": base}
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    resuming = old.get("setup") == setup
    prep, vectors_id = prepare_reusing_vectors(splits, TrainConfig.of(**base), out / "vectors.npz", reuse=resuming)
    results: dict = {"setup": setup, "data": info, "runs": old.get("runs", {}) if resuming else {}}
    for seed in range(seeds):
        for name in variants or VARIANTS:
            overrides = VARIANTS[name][1]
            key = f"{name}/seed{seed}"
            if key in results["runs"]:
                continue
            # The paper's constant-rate schedule, as in the committed sensitivity reports; `base` sets the lr.
            cfg = TrainConfig.from_preset("paper", **(base | {"model": "fmlc", "loss": "asl", "epochs": epochs,
                                                              "seed": seed} | overrides))
            console.print(f"[bold cyan]{key}[/]: {VARIANTS[name][0]}")
            result = fit(prep, cfg)
            valid = result.metrics["valid"]["tuned"]
            results["runs"][key] = {
                "variant": name, "seed": seed, "overrides": overrides, "epochs_run": len(result.history),
                "vectors": vectors_id,
                "valid_macro_f1": valid["all"]["macro_f1"], "valid_micro_f1": valid["all"]["micro_f1"],
                "valid_tail_macro_f1": valid["tail"]["macro_f1"],
                "config": {k: v for k, v in cfg.settings().items() if k in overrides or k in base},
            }
            path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
            console.print(f"  valid macro-F1 {valid['all']['macro_f1']:.4f} tail {valid['tail']['macro_f1']:.4f}")
    results["summary"] = summarise(results)
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    write_report(results, out)
    return results


def summarise(results: dict) -> dict:
    by_variant: dict[str, list[dict]] = {}
    for r in results["runs"].values():
        by_variant.setdefault(r["variant"], []).append(r)
    summary = {}
    for name, runs in by_variant.items():
        row = {"seeds": len(runs)}
        for key in ("valid_macro_f1", "valid_micro_f1", "valid_tail_macro_f1"):
            values = [100 * r[key] for r in runs]
            row[key] = {"mean": float(np.mean(values)), "std": sample_std(values)}
        summary[name] = row
    return summary


def write_report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    setup = results["setup"]
    subset = f"a random subset of {setup['max_docs']} documents, " if setup.get("max_docs") else ""
    lines = [f"# FMLC/ASL sensitivity on {setup['data']} (validation split only)", "",
             f"Split ({subset}seed 0) {results['data'].get('split_sizes')}, {setup['epochs']} epochs at most, "
             "base settings "
             f"{setup['base']}; parent labels {setup['parent_labels']!r}. Validation metrics in %, thresholds tuned "
             "on the same validation split (as in model selection), mean ± std over seeds. The test split is not "
             f"scored here. Word vectors: {vectors_clause(results['runs'])}. {STD_NOTE}.", "",
             "| variant | what it changes | seeds | valid macro-F1 | valid micro-F1 | valid tail macro-F1 | "
             "macro-F1 per seed | epochs run per seed |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        cells = [f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}"
                 for k in ("valid_macro_f1", "valid_micro_f1", "valid_tail_macro_f1")]
        what = VARIANTS[name][0] if name in VARIANTS else ""
        runs = sorted((r for r in results["runs"].values() if r["variant"] == name), key=lambda r: r["seed"])
        per_seed = ", ".join(f"{100 * r['valid_macro_f1']:.2f}" for r in runs)
        epochs = ", ".join(str(r["epochs_run"]) for r in runs)
        lines.append(f"| {name} | {what} | {row['seeds']} | " + " | ".join(cells) + f" | {per_seed} | {epochs} |")
    lines += ["", "![validation macro-F1 per variant, against the paper's settings](sensitivity.png)", ""]
    (out / "sensitivity.md").write_text("\n".join(lines), encoding="utf-8")

    # Differences of a point or less are what matters here, so the bars show each variant against
    # the paper's settings rather than the absolute F1 (which the table gives).
    names = [n for n in summary if n != "base"] if "base" in summary else list(summary)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    for offset, key, label in ((-0.2, "valid_macro_f1", "all labels"), (0.2, "valid_tail_macro_f1", "tail labels")):
        ref = summary["base"][key]["mean"] if "base" in summary else 0.0
        ax.barh(y + offset, [summary[n][key]["mean"] - ref for n in names], 0.4,
                xerr=[summary[n][key]["std"] for n in names], label=label, capsize=2)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("validation macro-F1 minus the paper's settings (points)" if "base" in summary
                  else "validation macro-F1 (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png", dpi=120)
    plt.close(fig)


def render(out: Path) -> None:
    """Rewrite sensitivity.md and sensitivity.png from sensitivity.json."""
    results = json.loads((out / "sensitivity.json").read_text(encoding="utf-8"))
    results["summary"] = summarise(results)
    (out / "sensitivity.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    write_report(results, out)


def run_options(data: str, out: Path, *, parent_labels: str | None = None, max_docs: int | None = None,
                seeds: int = 1, epochs: int = 10, lr: float = 1e-3, dim: int = ModelConfig.embed_dim,
                threads: int = 1, variants: list[str] | None = None) -> dict:
    """run() with the study's defaults: the paper's dimension, 10 epochs at lr 1e-3, one thread."""
    base = {"lr": lr, "embed_dim": dim, "hidden": dim, "attn_dim": dim, "graph_dim": dim, "filters": dim,
            "threads": threads}
    return run(data, out, parent_labels=parent_labels, seeds=seeds, base=base, epochs=epochs, variants=variants,
               max_docs=max_docs)


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("sensitivity")
