"""The measurements behind `fmlc train`'s defaults: FMLC/ASL under several optimiser settings on one
data set, compared by validation macro-F1 (the test split is reported, never used to choose).

    fmlc defaults-study --data synth:3000:7 --out reports/defaults/synth3000 \\
        [--variants defaults,paper,...] [--threads 1]
    fmlc defaults-study --data ../shared/data/ccks2019_fin --out reports/defaults/ccks2019_fin \\
        --variants defaults --reference reports/ccks2019_fin
    fmlc defaults-study --render reports/defaults/synth3000 [--render ...]   # tables and plots
    fmlc defaults-study --index reports/defaults     # reports/defaults/README.md

`synth:N:SEED` is `fmlc synth --n N --seed SEED`. The data is loaded, split and prepared the way
`fmlc train` does it (split seed 0, one word2vec draw shared by the variants of one dimension), so
the `defaults` row is what `fmlc train --model fmlc --data DATA` gives: the optimiser's defaults are
measured on FMLC/ASL, the default model's gradient-trained path (the wide & deep model trains that
path with the same settings, training.trainer). `--reference` adds the FMLC/ASL runs of an
experiment grid on the same split as rows of the table (their validation macro-F1 counts towards the
best reached).
Writes results.json (resumable: finished variants are kept), report.md and learning_curves.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fmlc.models.config import ModelConfig
from training.data import Record, load_path, split_records
from training.experiment import console, prepare_reusing_vectors
from training.trainer import TrainConfig, fit, still_improving

# variant → (what it is, preset, TrainConfig overrides of that preset)
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "defaults": ("`fmlc train --model fmlc` with nothing else set", "default", {}),
    "paper": ("`--preset paper`: Adam lr 1e-4 constant, 10 epochs", "paper", {}),
    "lr1e-3-constant-10": ("lr 1e-3 constant, 10 epochs (the committed grids' setting)", "paper", {"lr": 1e-3}),
    "lr1e-3-constant-30": ("lr 1e-3 constant, up to 30 epochs", "paper", {"lr": 1e-3, "epochs": 30}),
    "cosine": ("warm-up 1 epoch, cosine decay over 30 epochs", "default", {"lr_schedule": "cosine"}),
    "no-warmup": ("plateau halving without warm-up", "default", {"warmup_epochs": 0.0}),
    "lr5e-4": ("defaults at lr 5e-4", "default", {"lr": 5e-4}),
    "lr2e-3": ("defaults at lr 2e-3", "default", {"lr": 2e-3}),
    "lr3e-3": ("defaults at lr 3e-3", "default", {"lr": 3e-3}),
    "batch16": ("defaults at batch 16", "default", {"batch_size": 16}),
    "batch64": ("defaults at batch 64", "default", {"batch_size": 64}),
    "patience5": ("defaults with patience 5", "default", {"patience": 5}),
    "small": ("`--preset small` (64 dimensions, what the demo trains)", "small", {}),
    "small-30": ("64 dimensions, up to 30 epochs", "small", {"epochs": 30}),
    "small-lr3e-3": ("64 dimensions, lr 3e-3", "small", {"lr": 3e-3}),
}


def load_data(data: str) -> tuple[list[Record], dict]:
    if data.startswith("synth:"):
        from training.synth import generate

        _, n, seed = data.split(":")
        rows = generate(int(n), int(seed))
        return [Record(id=str(r["id"]), text=r["text"], labels=tuple(r["labels"])) for r in rows], {}
    loaded = load_path(data)
    return loaded.records, {"duplicates_reported": len(loaded.duplicates)}


def run(data: str, out: Path, variants: list[str], threads: int | None = 1, seed: int = 0,
        reference: str | None = None, base: dict | None = None) -> dict:
    """`base`: TrainConfig values applied over every variant (small dimensions for a smoke test)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    setup = {"data": data, "seed": seed} | ({"base": base} if base else {})
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    resuming = old.get("setup") == setup
    records, info = load_data(data)
    splits = split_records(records, seed=seed)  # what `fmlc train --seed SEED` does
    info["split_sizes"] = {k: len(v) for k, v in splits.items()}
    preps: dict = {}

    def prepared(dim: int) -> tuple:  # one word2vec draw per embedding size, shared by its variants
        if dim not in preps:
            name = "vectors.npz" if dim == ModelConfig.embed_dim else f"vectors{dim}.npz"
            prep_cfg = TrainConfig.of(**((base or {}) | {"seed": seed, "embed_dim": dim, "progress": False}))
            preps[dim] = prepare_reusing_vectors(splits, prep_cfg, out / name, reuse=resuming)
        return preps[dim]

    prep, _ = prepared(TrainConfig.of(**(base or {})).network.embed_dim)
    info["labels"] = len(prep.labels)
    results: dict = {"setup": setup, "data": info, "defaults": TrainConfig().settings(),
                     "runs": old.get("runs", {}) if resuming else {}}
    if reference:
        results["reference"] = reference_runs(Path(reference), info["split_sizes"])
    for name in variants:
        if name in results["runs"]:
            continue
        what, preset, overrides = VARIANTS[name]
        # The optimiser's defaults were measured on FMLC/ASL, the default model's gradient-trained path.
        given = {"model": "fmlc"} | overrides | (base or {}) | {"seed": seed, "threads": threads, "progress": False}
        cfg = TrainConfig.from_preset(preset, **given)
        console.print(f"[bold cyan]{name}[/]: {what}")
        t0 = time.perf_counter()
        prep, vectors_id = prepared(cfg.network.embed_dim)
        result = fit(prep, cfg)
        history = [{"epoch": h["epoch"], "loss": h["loss"], "lr": h["lr"], "valid_macro_f1": h["valid_macro_f1_tuned"]}
                   for h in result.history]
        results["runs"][name] = {
            "what": what, "preset": preset, "overrides": overrides,
            "settings": {k: cfg.settings()[k] for k in ("lr", "lr_schedule", "warmup_epochs", "plateau_factor",
                                                       "epochs", "patience", "batch_size", "embed_dim")},
            "valid_macro_f1": result.metrics["valid"]["tuned"]["all"]["macro_f1"],
            "test_macro_f1": result.metrics["test"]["tuned"]["all"]["macro_f1"],
            "test_macro_f1_0.5": result.metrics["test"]["threshold_0.5"]["all"]["macro_f1"],
            "test_micro_f1": result.metrics["test"]["tuned"]["all"]["micro_f1"],
            "best_epoch": next(h["epoch"] for h in result.history if h.get("best")),
            "epochs_run": len(result.history), "history": history,
            "still_improving": still_improving(result.history, cfg.patience),
            "train_seconds": time.perf_counter() - t0, "vectors": vectors_id,
        }
        path.write_text(json.dumps(results, ensure_ascii=False, indent=1))
        r = results["runs"][name]
        console.print(f"  valid {r['valid_macro_f1']:.4f} (best epoch {r['best_epoch']} of {r['epochs_run']}), "
                      f"test {r['test_macro_f1']:.4f}, {r['train_seconds']:.0f}s")
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    render(out)
    return results


def reference_runs(grid: Path, split_sizes: dict) -> dict:
    """FMLC/ASL runs of an experiment grid, if it used the same split (checked by its sizes)."""
    results = json.loads((grid / "results.json").read_text(encoding="utf-8"))
    if results["data"].get("split_sizes") != split_sizes:
        raise ValueError(f"{grid}: split sizes {results['data'].get('split_sizes')} differ from {split_sizes}")
    base = results["config"].get("base", {})
    return {"grid": str(grid), "lr": base.get("lr"), "epochs": results["config"].get("epochs_recurrent"),
            "runs": {key: {"valid_macro_f1": run["valid_macro_f1"], "test_macro_f1": run["tuned"]["all"]["macro_f1"],
                           "epochs_run": run["epochs_run"]}
                     for key, run in results["runs"].items() if run["method"] == "fmlc-asl"}}


def best_valid(results: dict) -> tuple[str, float]:
    """The highest validation macro-F1 among the variants and the reference runs."""
    rows = {name: r["valid_macro_f1"] for name, r in results["runs"].items()}
    for key, r in results.get("reference", {}).get("runs", {}).items():
        rows[f"grid {key}"] = r["valid_macro_f1"]
    name = max(rows, key=rows.__getitem__)
    return name, rows[name]


def render(out: Path) -> None:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    runs = results["runs"]
    best_name, best = best_valid(results)
    lines = [f"# Training defaults on {results['setup']['data']}", "",
             f"Split (seed {results['setup']['seed']}): {results['data']['split_sizes']}, "
             f"{results['data']['labels']} labels; FMLC/ASL at 300 dimensions unless the row says otherwise, "
             "one word2vec draw per dimension shared by its rows. Macro-F1 in %, thresholds tuned on validation; "
             "the settings were compared on validation only.",
             "", "| variant | settings | best epoch / run | valid macro-F1 | − best valid | test macro-F1 (tuned) "
             "| test macro-F1 (0.5) | wall minutes |", "|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(runs.items(), key=lambda kv: -kv[1]["valid_macro_f1"]):
        s = r["settings"]
        dim = "" if s.get("embed_dim", 300) == 300 else f"dim {s['embed_dim']}, "
        settings = (f"{dim}lr {s['lr']:g} {s['lr_schedule']}, warm-up {s['warmup_epochs']:g}, ≤ {s['epochs']} epochs, "
                    f"patience {s['patience']}, batch {s['batch_size']}")
        lines.append(f"| {'**defaults**' if name == 'defaults' else name} | {settings} | {r['best_epoch']} / "
                     f"{r['epochs_run']} | {100 * r['valid_macro_f1']:.2f} | {100 * (r['valid_macro_f1'] - best):+.2f} "
                     f"| {100 * r['test_macro_f1']:.2f} | {100 * r['test_macro_f1_0.5']:.2f} | "
                     f"{r['train_seconds'] / 60:.1f} |")
    ref = results.get("reference")
    if ref:
        for key, r in ref["runs"].items():
            lines.append(f"| grid {key} | lr {ref['lr']:g} constant, ≤ {ref['epochs']} epochs (`{ref['grid']}`, "
                         f"own word2vec draw) | ? / {r['epochs_run']} | {100 * r['valid_macro_f1']:.2f} | "
                         f"{100 * (r['valid_macro_f1'] - best):+.2f} | {100 * r['test_macro_f1']:.2f} | | |")
    lines += ["", f"Best validation macro-F1 reached: {100 * best:.2f} ({best_name})."]
    if ref:
        lines.append("The grid rows are the experiment grid's FMLC/ASL runs on this split (its seed N is this "
                     "study's --seed N; other seeds vary the initialisation), at the committed grids' setting.")
    lines.append("Wall minutes are on a shared 2-core machine with one torch thread: compare them within a table only.")
    if "defaults" in runs:
        gap = 100 * (best - runs["defaults"]["valid_macro_f1"])
        lines.append(f"The defaults are {gap:.2f} points below it ({'within' if gap <= 1 else 'NOT within'} 1 point).")
    notes = [f"- {name}: {r['still_improving']}" for name, r in runs.items() if r.get("still_improving")]
    if notes:
        lines += ["", "Still improving when the epoch cap ended training:", *notes]
    lines += ["", "![learning curves](learning_curves.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    _curves(results, out)


def index(folder: Path) -> None:
    """reports/defaults/README.md: the defaults against the best validation macro-F1 on every study."""
    lines = ["# `fmlc train`'s defaults, measured", "",
             "One row per data set: what `fmlc train --data DATA` with nothing else set reaches, against the best "
             "validation macro-F1 of any setting measured on the same split (the study's other variants and, "
             "where given, the FMLC/ASL runs of the experiment grid). Macro-F1 in %, thresholds tuned on "
             "validation. Details, every variant and learning curves: each folder's report.md. Regenerate:", "",
             "```bash"]
    rows = []
    for sub in sorted(p for p in folder.iterdir() if (p / "results.json").exists()):
        results = json.loads((sub / "results.json").read_text(encoding="utf-8"))
        variants = ",".join(results["runs"])
        ref = f" --reference {results['reference']['grid']}" if results.get("reference") else ""
        lines.append(f"fmlc defaults-study --data {results['setup']['data']} --out {sub} "
                     f"--variants {variants}{ref}")
        d = results["runs"].get("defaults")
        if d is None:
            continue
        best_name, best = best_valid(results)
        rows.append(f"| [{sub.name}]({sub.name}/report.md) | {results['data']['labels']} | {d['best_epoch']} / "
                    f"{d['epochs_run']} | {100 * d['valid_macro_f1']:.2f} | {100 * best:.2f} ({best_name}) | "
                    f"{100 * (d['valid_macro_f1'] - best):+.2f} | {100 * d['test_macro_f1']:.2f} | "
                    f"{100 * d['test_macro_f1_0.5']:.2f} | {'yes' if d.get('still_improving') else 'no'} |")
    lines += [f"fmlc defaults-study --index {folder}", "```", "",
              "| data | labels | defaults: best epoch / run | valid | best valid (by) | defaults − best | test (tuned) "
              "| test (0.5) | still improving at the cap |", "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _curves(results: dict, out: Path) -> None:
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    for n, (name, r) in enumerate(sorted(results["runs"].items())):
        epochs = [h["epoch"] for h in r["history"]]
        style = {"linewidth": 2.5} if name == "defaults" else {"linewidth": 1}
        ax.plot(epochs, [100 * h["valid_macro_f1"] for h in r["history"]], marker=".", color=f"C{n % 10}",
                label=name, **style)
        ax_lr.plot(epochs, [h["lr"] for h in r["history"]], marker=".", color=f"C{n % 10}", label=name, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1 (%)")
    ax.legend(fontsize=7)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (last step of the epoch)")
    ax_lr.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("defaults-study")
