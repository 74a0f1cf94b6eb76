"""Turning experiment results into a table (mean ± sample standard deviation over seeds), gains, and plots.

A leaf: results in, markdown and plots out. Every setting the text names (dimensions, schedule, patience,
split seed, tail cut, the machine, the paper's figures) is read from `results["settings"]`, which
training.experiment records with the runs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written on servers without a display
import matplotlib.pyplot as plt
import numpy as np

from training.wide import recorded_choice

EARLIER = ("linear", "caml", "zacnn", "bigru-lwan")  # "the best earlier method" of the claim
WIDE = "fmlc-wide"  # the default model, built from linear and FMLC/ASL: compared with every single method
COLUMNS = [  # (key in summary, header, path in a run's metrics)
    ("macro_f1", "macro-F1", ("all", "macro_f1")),
    ("micro_f1", "micro-F1", ("all", "micro_f1")),
    ("macro_p", "macro-P", ("all", "macro_p")),
    ("macro_r", "macro-R", ("all", "macro_r")),
    ("tail_macro_f1", "tail macro-F1", ("tail", "macro_f1")),
    ("tail_micro_f1", "tail micro-F1", ("tail", "micro_f1")),
    ("tail_macro_p", "tail macro-P", ("tail", "macro_p")),
    ("tail_macro_r", "tail macro-R", ("tail", "macro_r")),
    ("p@1", "P@1", ("p@1",)),
]
PATHS = {key: path for key, _, path in COLUMNS}
GAIN_KEYS = ("macro_f1", "tail_macro_f1")  # the two figures of the paper's claim


def _get(metrics: dict, path: tuple[str, ...]) -> float:
    for key in path:
        metrics = metrics[key]
    return float(metrics)


STD_NOTE = ("± is the sample standard deviation over seeds (ddof = 1, the n − 1 estimate, which 2–3 seeds call "
            "for); 0.00 for a single seed")


def sample_std(values: list[float]) -> float:
    """Sample standard deviation (ddof = 1); 0 for fewer than two values, which have no spread to estimate."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def leader(methods: dict, key: str, among: list[str] | None = None) -> str:
    """The method (of `among`, default all) with the highest mean of `key` in a summary's methods."""
    return max(methods if among is None else among, key=lambda m: methods[m][key]["mean"])


def summarise(results: dict, thresholds: str = "tuned") -> dict:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for run in results["runs"].values():
        by_method[run["method"]].append(run)
    summary: dict = {"thresholds": thresholds, "methods": {}}
    for method, runs in by_method.items():
        row: dict = {"seeds": len(runs)}
        for key, _, path in COLUMNS:
            values = [100 * _get(r[thresholds], path) for r in runs]
            row[key] = {"mean": float(np.mean(values)), "std": sample_std(values), "values": values}
        for key in ("seconds_per_epoch", "inference_docs_per_s", "epochs_run"):
            row[key] = float(np.mean([r[key] for r in runs]))
        summary["methods"][method] = row
    methods = summary["methods"]
    earlier = [m for m in EARLIER if m in methods]
    if "fmlc-asl" in methods and earlier:
        gains = {}
        for key in GAIN_KEYS:
            best = leader(methods, key, earlier)
            gains[key] = {"points": methods["fmlc-asl"][key]["mean"] - methods[best][key]["mean"],
                          "best_baseline": best}
        summary["gains"] = gains
        summary["gains_over_everything_else"] = {}
        others = [m for m in methods if m not in ("fmlc-asl", WIDE)]
        for key in GAIN_KEYS:
            best = leader(methods, key, others)
            summary["gains_over_everything_else"][key] = {
                "points": methods["fmlc-asl"][key]["mean"] - methods[best][key]["mean"], "best_other": best}
        summary["paired"] = paired_gains(results, thresholds)
        peer_best = best_peer(results.get("peer"))
        if peer_best:
            summary["gains_over_peer"] = {
                key: {"points": methods["fmlc-asl"][key]["mean"] - value, "best_peer": name}
                for key, (name, value) in peer_best.items()}
    singles = [m for m in methods if m != WIDE]
    if WIDE in methods and singles:
        summary["wide_gains"] = {}
        for key in GAIN_KEYS:
            best = leader(methods, key, singles)
            summary["wide_gains"][key] = {"points": methods[WIDE][key]["mean"] - methods[best][key]["mean"],
                                          "best_single": best}
        summary["wide_rule"] = wide_rule(results)
        summary["fmlc_asl_from_wide"] = sorted(r["seed"] for r in results["runs"].values()
                                               if r["method"] == "fmlc-asl" and "trained_as" in r)
    return summary


def wide_rule(results: dict) -> list[dict]:
    """Per wide & deep run, its validation and test figures beside those of its own two paths (the
    linear model and FMLC/ASL of the same seed): the default rule asks validation to be no worse than
    the better path."""
    rows = []
    for run in results["runs"].values():
        if run["method"] != WIDE or "components" not in run:
            continue
        parts = run["components"]
        row: dict = {"seed": run["seed"], "blend": parts["blend"]}
        for split, own in (("valid", {"macro_f1": run["valid_macro_f1"], "tail_macro_f1": run["valid_tail_macro_f1"]}),
                           ("test", {"macro_f1": run["tuned"]["all"]["macro_f1"],
                                     "tail_macro_f1": run["tuned"]["tail"]["macro_f1"]})):
            row[split] = {key: {"wide": 100 * own[key], "linear": 100 * parts["linear"][split][key],
                                "fmlc": 100 * parts["fmlc"][split][key],
                                "one_weight": 100 * parts["one weight"][split][key]} for key in GAIN_KEYS}
        blend = parts["blend"]
        row["strategy"], held = recorded_choice(blend)
        if held is not None:  # out of fold on validation (training.wide), where the rule is judged
            row["valid_out_of_fold"] = {key: {name: 100 * blend["cross_fitted"][strategy][key] for name, strategy in
                                              (("wide", blend["strategy"]), ("linear", "linear"), ("fmlc", "fmlc"),
                                               ("one_weight", "shared"))} for key in GAIN_KEYS}
            row["holds_on_valid"] = held
        else:
            row["holds_on_valid"] = all(
                row["valid"][k]["wide"] >= max(row["valid"][k]["linear"], row["valid"][k]["fmlc"]) for k in GAIN_KEYS)
        rows.append(row)
    return sorted(rows, key=lambda r: r["seed"])


def _wide_lines(summary: dict) -> list[str]:
    if "wide_gains" not in summary:
        return []
    g = summary["wide_gains"]
    lines = ["", "## FMLC wide & deep (the default) against every single method",
             f"- macro-F1: {g['macro_f1']['points']:+.2f} points over {g['macro_f1']['best_single']}",
             f"- tail macro-F1: {g['tail_macro_f1']['points']:+.2f} points over {g['tail_macro_f1']['best_single']}"]
    if summary.get("wide_rule"):
        lines += ["", "Each run beside its own two paths (same seed), macro-F1 / tail macro-F1; the default rule "
                  "asks validation to be no worse than the better path. The blend (FMLC alone, linear alone, one "
                  "shared weight or one weight per label) is chosen by cross-fitting within validation "
                  "(training/wide.py): \"valid, out of fold\" scores each document with weights and thresholds "
                  "fitted on the other folds, and the rule is judged there; \"valid\" is in-sample.", "",
                  "| seed | blend | split | wide & deep | linear path | FMLC/ASL path | one shared weight | "
                  "rule on validation |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in summary["wide_rule"]:
            strategy = row["strategy"]
            splits = (("valid_out_of_fold", "valid, out of fold"),) if "valid_out_of_fold" in row else ()
            for split, name in (*splits, ("valid", "valid"), ("test", "test")):
                cells = [" / ".join(f"{row[split][k][path]:.2f}" for k in GAIN_KEYS)
                         for path in ("wide", "linear", "fmlc", "one_weight")]
                holds = ("holds" if row["holds_on_valid"] else "fails") if split == judged_on(row) else ""
                lines.append(f"| {row['seed']} | {strategy} | {name} | " + " | ".join(cells) + f" | {holds} |")
    if summary.get("fmlc_asl_from_wide"):
        seeds = ", ".join(str(s) for s in summary["fmlc_asl_from_wide"])
        lines += ["", f"FMLC/ASL (seed {seeds}) is the FMLC path of the wide & deep run of the same seed, scored "
                  "as a model of its own: `--model fmlc` trains exactly that network on the same split, vectors "
                  "and seed, so it was not trained twice."]
    return lines


def judged_on(row: dict) -> str:
    """The validation figures a wide_rule row's rule is judged on."""
    return "valid_out_of_fold" if "valid_out_of_fold" in row else "valid"


def paired_gains(results: dict, thresholds: str = "tuned") -> dict:
    """FMLC/ASL minus each other method, seed by seed, on the seeds both have run.

    Seeds vary only the initialisation (the split and vectors are shared), so a difference taken
    within a seed removes the part of the spread that both methods share; a mean gain that one
    seed reverses is visible here and not in the mean ± std table.
    """
    runs = results["runs"]
    own = {r["seed"]: r for r in runs.values() if r["method"] == "fmlc-asl"}
    present = {r["method"] for r in runs.values()} - {"fmlc-asl", WIDE}
    others = [m for m in EARLIER if m in present] + sorted(present - set(EARLIER))  # baselines, then ablations
    paired: dict = {}
    for other in others:
        seeds = sorted(s for s in own if f"{other}/seed{s}" in runs)
        if not seeds:
            continue
        entry: dict = {"seeds": seeds}
        for key in GAIN_KEYS:
            path = PATHS[key]
            deltas = [100 * (_get(own[s][thresholds], path) - _get(runs[f"{other}/seed{s}"][thresholds], path))
                      for s in seeds]
            entry[key] = {"per_seed": deltas, "mean": float(np.mean(deltas)), "min": float(min(deltas)),
                          "wins": int(sum(d > 0 for d in deltas))}
        paired[other] = entry
    return paired


def same_vectors(runs: dict, keys: list[str], peer_vectors: str | None = None) -> bool:
    """Whether these runs (and the peer, when given) provably trained on one set of word vectors: every
    recorded fingerprint equal, none missing. The linear model uses no vectors and does not count."""
    ids = [runs[k].get("vectors") for k in keys if k in runs and runs[k].get("method") != "linear"]
    if peer_vectors is not None:
        ids.append(peer_vectors)
    return bool(ids) and None not in ids and len(set(ids)) == 1


def _paired_lines(paired: dict, runs: dict | None = None) -> list[str]:
    if not paired:
        return []
    runs = runs or {}
    pairs = [[f"fmlc-asl/seed{s}", f"{other}/seed{s}"] for other, e in paired.items() for s in e["seeds"]]
    matched = sum(same_vectors(runs, pair) for pair in pairs)
    if matched == len(pairs):
        same = "same split and vectors, same initialisation seed"
    else:
        same = (f"same split and initialisation seed; the word vectors are provably the same for {matched} of "
                f"{len(pairs)} pairs, the others' vectors were not recorded or differ")
    lines = ["", "## Seed by seed", "",
             f"FMLC/ASL minus each method within the same seed ({same}), in points, on the seeds both have run.", "",
             "| against | seeds | macro-F1 per seed | mean | worst | tail macro-F1 per seed | mean | worst | "
             "seeds won (all / tail) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for other, e in paired.items():
        a, t = e["macro_f1"], e["tail_macro_f1"]
        lines.append(f"| {other} | {len(e['seeds'])} | {', '.join(f'{d:+.2f}' for d in a['per_seed'])} | "
                     f"{a['mean']:+.2f} | {a['min']:+.2f} | {', '.join(f'{d:+.2f}' for d in t['per_seed'])} | "
                     f"{t['mean']:+.2f} | {t['min']:+.2f} | {a['wins']} / {t['wins']} of {len(e['seeds'])} |")
    return lines


def best_peer(peer: dict | None) -> dict[str, tuple[str, float]]:
    """LibMultiLabel's best macro-F1 and tail macro-F1 (%) over its methods and both threshold rules:
    the comparison gives the reference every benefit of the doubt."""
    if not peer or "skipped" in peer:
        return {}
    best: dict[str, tuple[str, float]] = {}
    for method, entry in peer.items():
        for kind in ("threshold_0.5", "tuned"):
            if kind not in entry:
                continue
            for key in GAIN_KEYS:
                value = 100 * _get(entry[kind], PATHS[key])
                if key not in best or value > best[key][1]:
                    best[key] = (f"{method} ({kind})", value)
    return best


def vectors_clause(runs: dict) -> str:
    """How many word2vec vector sets the runs trained on, as a clause for a report."""
    ids = {run.get("vectors") for run in runs.values() if run.get("method") != "linear"}
    known = ids - {None}
    if not known:
        return "word2vec vectors shared within each invocation of the grid (one that resumed trained new ones)"
    if len(known) == 1 and None not in ids:
        return "the same word2vec vectors for every run"
    unrecorded = ", and runs from before vectors were kept on those of their own invocation" if None in ids else ""
    return f"{len(known)} recorded set(s) of word2vec vectors{unrecorded}"


def _settings_line(settings: dict, runs: dict) -> str:
    changed = settings.get("changed", [])
    warmup = f", warm-up {settings['warmup_epochs']:g} epochs" if settings["warmup_epochs"] else ""
    return (f"Settings: preset {settings['preset']}{' with ' + ', '.join(changed) + ' changed' if changed else ''}: "
            f"dimension {settings['embed_dim']} (GRU {settings['hidden']} per direction, graph "
            f"{settings['graph_dim']}), Adam lr {settings['lr']:g} ({settings['lr_schedule']}{warmup}), "
            f"batch {settings['batch_size']}, at most {settings['epochs_recurrent']} epochs for recurrent and "
            f"{settings['epochs_convolutional']} for convolutional models, early stopping on validation macro-F1 "
            f"(patience {settings['patience']}), one split (seed {settings['split_seed']}) shared by every method, "
            f"{vectors_clause(runs)}; seeds vary the initialisation only.")


def _table(summary: dict) -> list[str]:
    methods = summary["methods"]
    best = {key: leader(methods, key) for key in PATHS}
    head = "| method | seeds | " + " | ".join(h for _, h, _ in COLUMNS) + " | s/epoch | docs/s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for method, row in methods.items():
        cells = []
        for key, _, _ in COLUMNS:
            text = f"{row[key]['mean']:.2f} ± {row[key]['std']:.2f}"
            cells.append(f"**{text}**" if best[key] == method else text)
        lines.append(f"| {method} | {row['seeds']} | " + " | ".join(cells)
                     + f" | {row['seconds_per_epoch']:.1f} | {row['inference_docs_per_s']:.0f} |")
    return lines


def _peer_lines(peer: dict) -> list[str]:
    if not peer or "skipped" in peer:
        if peer is None:
            return []
        return [f"LibMultiLabel reference run skipped: {peer.get('skipped', 'not requested')}"]
    lines = ["| LibMultiLabel method | thresholds | macro-F1 | micro-F1 | tail macro-F1 | P@1 | config |",
             "|---|---|---|---|---|---|---|"]
    for method, entry in peer.items():
        for kind in ("threshold_0.5", "tuned"):
            if kind not in entry:
                continue
            m = entry[kind]
            cfg = entry.get("meta", {}).get("config", {})
            lines.append(f"| {method} | {kind} | {100 * m['all']['macro_f1']:.2f} | {100 * m['all']['micro_f1']:.2f} | "
                         f"{100 * m['tail']['macro_f1']:.2f} | {100 * m['p@1']:.2f} | `{_short(cfg)}` |")
    return lines


def _short(cfg: dict) -> str:
    keep = ("epochs", "rnn_dim", "num_filter_per_size", "filter_sizes", "learning_rate", "batch_size", "embed_dropout")
    return ", ".join(f"{k}={cfg[k]}" for k in keep if k in cfg) or "see peer/*.json"


def _graph_lines(g: dict | None) -> list[str]:
    if not g:
        return []
    cfg = g.get("config", {})
    return [f"Label graph from the training split (P(j|i) >= {cfg.get('threshold')}, at least "
            f"{cfg.get('min_count')} shared documents): {g['multi_label_docs']:.1%} of training documents carry "
            f"more than one label ({g['mean_labels_per_doc']} per document); {g['edges']} directed edges; "
            f"{g['labels_with_neighbours']} labels have a neighbour, {g['tail_labels_with_neighbours']} of the "
            f"{g['tail_labels']} tail labels.", ""]


GRAPH_EFFECT_METHODS = ("fmlc-asl", "fmlc-asl-identity", "fmlc-bce", "bigru-lwan", "caml")


def graph_effect(results: dict) -> dict:
    """Mean test F1 per label (tuned thresholds, averaged over seeds) of the labels that have a
    neighbour in the label graph against those that do not. If the graph is what FMLC adds, its edge
    over the identity ablation should sit in the first group."""
    g = results.get("data", {}).get("label_graph") or {}
    if "with_neighbours" not in g:
        return {}
    labels = results["labels"]
    with_neighbours = set(g["with_neighbours"])
    linked = np.array([lab in with_neighbours for lab in labels])
    effect: dict = {"labels_with_neighbours": int(linked.sum()), "labels_without": int((~linked).sum()),
                    "methods": {}}
    for method in GRAPH_EFFECT_METHODS:
        runs = [r for r in results["runs"].values() if r["method"] == method]
        if not runs:
            continue
        f1 = 100 * np.mean([r["tuned"]["per_label_f1"] for r in runs], axis=0)
        effect["methods"][method] = {
            "with_neighbours": float(f1[linked].mean()) if linked.any() else None,
            "without": float(f1[~linked].mean()) if (~linked).any() else None, "seeds": len(runs)}
    return effect


def _graph_effect_lines(results: dict) -> list[str]:
    effect = graph_effect(results)
    if not effect or not effect["methods"]:
        return []

    def cell(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    lines = ["", "## Where the label graph can act", "",
             f"Mean test F1 per label (%), labels with a graph neighbour ({effect['labels_with_neighbours']}) "
             f"against labels without one ({effect['labels_without']}), each method averaged over its seeds.", "",
             "| method | seeds | with a neighbour | without |", "|---|---|---|---|"]
    for method, row in effect["methods"].items():
        lines.append(f"| {method} | {row['seeds']} | {cell(row['with_neighbours'])} | {cell(row['without'])} |")
    return lines


def _machine_clause(settings: dict) -> str:
    machine = settings.get("machine")
    if not machine:
        return "on a machine that was not recorded"
    threads = machine["torch_threads"]
    return f"on a {machine['cpus']}-core machine (torch {threads} thread{'s' if threads != 1 else ''})"


def write_report(results: dict, out: Path) -> None:
    """report.md and the plots for `results`, which must hold its `settings` (training.experiment records them)."""
    summary = results["summary"]
    data = results["data"]
    settings = results["settings"]
    lines = [f"# Experiment: {results['config']['data']}", "",
             f"Docs {data.get('docs_loaded')}, split {data.get('split_sizes')}, labels {data.get('labels')}, "
             f"tail labels (< {settings['tail_below']} training examples) {data.get('tail_labels')}.", "",
             *_graph_lines(data.get("label_graph")),
             "Test-split metrics in %, mean ± std over seeds, per-label thresholds tuned on the validation split "
             "(the fixed-0.5 numbers are in results.json). Macro averages run over all labels of the training set; "
             "a label with no positives and no predictions in the test split counts 0. P@k counts the true labels "
             "among the k highest scores, divided by k; equal scores rank in label order (labels.json).", "",
             STD_NOTE + ".", "",
             _settings_line(settings, results["runs"]), ""]
    lines += _table(summary)
    lines += ["", f"s/epoch and docs/s were measured inside the grid {_machine_clause(settings)} and are only "
              "indicative; `bench/` measures speed side by side."]
    if "gains" in summary:
        g = summary["gains"]
        paper = settings.get("paper_gains", {})

        def claim(key: str) -> str:
            return f" (paper: {paper[key]:+.1f})" if key in paper else ""

        lines += ["", "## FMLC/ASL against the best earlier method",
                  f"- macro-F1: {g['macro_f1']['points']:+.2f} points over {g['macro_f1']['best_baseline']}"
                  + claim("macro_f1"),
                  f"- tail macro-F1: {g['tail_macro_f1']['points']:+.2f} points over "
                  f"{g['tail_macro_f1']['best_baseline']}" + claim("tail_macro_f1")]
        o = summary["gains_over_everything_else"]
        lines += ["- against every other row (ablations included; not the wide & deep model built on it): "
                  f"macro-F1 {o['macro_f1']['points']:+.2f} "
                  f"(vs {o['macro_f1']['best_other']}), tail {o['tail_macro_f1']['points']:+.2f} "
                  f"(vs {o['tail_macro_f1']['best_other']})"]
        if "gains_over_peer" in summary:
            p = summary["gains_over_peer"]
            lines += [f"- against LibMultiLabel (its best method and threshold rule for each figure): macro-F1 "
                      f"{p['macro_f1']['points']:+.2f} (vs {p['macro_f1']['best_peer']}), tail "
                      f"{p['tail_macro_f1']['points']:+.2f} (vs {p['tail_macro_f1']['best_peer']})"]
    lines += _wide_lines(summary)
    lines += _paired_lines(summary.get("paired", {}), results["runs"])
    lines += _graph_effect_lines(results)
    if "peer" in results:
        peer_vectors = results.get("peer_vectors")
        if same_vectors(results["runs"], list(results["runs"]), peer_vectors):
            lines += ["", "## External reference: LibMultiLabel on the same split and vectors", ""]
        else:
            lines += ["", "## External reference: LibMultiLabel on the same split", "",
                      "Its networks were given the word vectors written to split/embeddings.txt by the invocation "
                      "that ran it; " + ("their fingerprint was not recorded" if peer_vectors is None else
                                          f"their fingerprint {peer_vectors} differs from some runs'")
                      + ", so they are not shown to be those of every run above.", ""]
        lines += _peer_lines(results["peer"])
        floor = max((e.get("tuned_min_valid_f1", 0) for e in results["peer"].values() if isinstance(e, dict)),
                    default=0)
        if floor:
            lines += ["", "Tuned rows use the same validation grid as ours; for the linear model, whose scores are "
                      f"SVM decision values through a sigmoid, a label whose best validation F1 is below {floor}"
                      " keeps the library's own rule (see `PEER_LINEAR_MIN_F1` in training/experiment.py)."]
    lines += ["", "![macro-F1 per method](macro_f1.png)", "", "![per-label F1 vs frequency](per_label_f1.png)", ""]
    lines += _curve_lines(results)
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    _plots(results, out)
    if _with_history(results):
        _learning_curves(results, out)


def _with_history(results: dict) -> dict[str, dict]:
    return {key: run for key, run in results["runs"].items() if run.get("history")}


def epoch_cap_effect(results: dict, cap: int) -> dict[str, dict]:
    """Per run with a recorded history: the best validation macro-F1 within the first `cap` epochs
    against the best over the whole run. The learning rate is constant, so the first `cap` epochs
    are what a run capped at `cap` would have trained."""
    effect = {}
    for key, run in _with_history(results).items():
        f1 = [h["valid_macro_f1"] for h in run["history"]]
        best = int(np.argmax(f1))
        within = f1[:cap]
        effect[key] = {"epochs_run": len(f1), "best_epoch": best + 1, "best_valid_macro_f1": f1[best],
                       f"best_within_{cap}": max(within), f"best_epoch_within_{cap}": int(np.argmax(within)) + 1,
                       "gain_after_cap": f1[best] - max(within)}
    return effect


def _curve_lines(results: dict) -> list[str]:
    settings = results["settings"]
    cap = settings["paper_epochs"]
    effect = epoch_cap_effect(results, cap)
    if not effect:
        return []
    lines = ["## Validation macro-F1 by epoch", "",
             f"Best epoch and validation macro-F1 (tuned thresholds, %) of each run, and the best within the paper's "
             f"{cap} epochs; early stopping has patience {settings['patience']}.", "",
             f"| run | epochs run | best epoch | best valid macro-F1 | best within {cap} epochs (epoch) | "
             f"gained after epoch {cap} |", "|---|---|---|---|---|---|"]
    for key, e in effect.items():
        lines.append(f"| {key} | {e['epochs_run']} | {e['best_epoch']} | {100 * e['best_valid_macro_f1']:.2f} | "
                     f"{100 * e[f'best_within_{cap}']:.2f} ({e[f'best_epoch_within_{cap}']}) | "
                     f"{100 * e['gain_after_cap']:+.2f} |")
    return lines + ["", "![validation macro-F1 by epoch](learning_curves.png)", ""]


def _learning_curves(results: dict, out: Path) -> None:
    cap = results["settings"]["paper_epochs"]
    fig, ax = plt.subplots(figsize=(7, 4))
    colours: dict[str, str] = {}
    for key, run in _with_history(results).items():
        epochs = [h["epoch"] for h in run["history"]]
        f1 = [100 * h["valid_macro_f1"] for h in run["history"]]
        colour = colours.setdefault(run["method"], f"C{len(colours)}")
        ax.plot(epochs, f1, marker=".", color=colour, label=key)
    ax.axvline(cap, color="grey", linestyle=":", label=f"paper's cap ({cap})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    plt.close(fig)


def _plots(results: dict, out: Path) -> None:
    methods = results["summary"]["methods"]
    names = list(methods)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4))
    for offset, key, label in ((-0.2, "macro_f1", "all labels"), (0.2, "tail_macro_f1", "tail labels")):
        ax.bar(x + offset, [methods[m][key]["mean"] for m in names], 0.4,
               yerr=[methods[m][key]["std"] for m in names], label=label, capsize=3)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("macro-F1 (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "macro_f1.png", dpi=120)
    plt.close(fig)

    counts = np.asarray(results["train_counts"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, marker in (("fmlc-asl", "o"), ("bigru-lwan", "x")):
        runs = [r for r in results["runs"].values() if r["method"] == method]
        if runs:
            f1 = np.mean([r["tuned"]["per_label_f1"] for r in runs], axis=0)
            ax.scatter(counts, f1, marker=marker, alpha=0.7, label=method)
    ax.set_xscale("log")
    tail_below = results["settings"]["tail_below"]
    ax.axvline(tail_below, color="grey", linestyle=":", label=f"tail cut ({tail_below})")
    ax.set_xlabel("training examples of the label (log)")
    ax.set_ylabel("test F1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_label_f1.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("report")
