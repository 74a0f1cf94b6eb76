"""One markdown table across experiment reports, for the README: macro-F1 / tail macro-F1 per method
and data set, the best LibMultiLabel row, and FMLC/ASL's lead over the best earlier method.

    fmlc results-table reports/ccks2019_fin reports/duee1.0_parents reports/cail2018_subset

Every cell is recomputed from each report's results.json, so the README's table cannot drift from the
committed runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.experiment_report import GAIN_KEYS, best_peer, leader, summarise

ROWS = [  # (method key, README label)
    ("linear", "linear TF-IDF"),
    ("caml", "CAML"),
    ("zacnn", "ZACNN"),
    ("bigru-lwan", "BiGRU-LWAN"),
    ("fmlc-bce", "FMLC/BCE (ablation)"),
    ("fmlc-asl", "**FMLC/ASL**"),
    ("fmlc-asl-identity", "FMLC/ASL, identity graph (ablation)"),
    ("fmlc-wide", "FMLC wide & deep (the default)"),
]


def _cell(row: dict | None, best: dict[str, bool]) -> str:
    if row is None:
        return "not run"
    parts = []
    for key in GAIN_KEYS:
        mean, std = row[key]["mean"], row[key]["std"]
        # One seed (or a deterministic method) has no spread worth printing.
        text = f"{mean:.2f}" if row["seeds"] == 1 or std == 0 else f"{mean:.2f} ± {std:.2f}"
        parts.append(f"**{text}**" if best[key] else text)
    return " / ".join(parts) + f" ({row['seeds']})"


def _lead(summary: dict) -> str:
    gains = summary.get("gains")
    if not gains:
        return "—"
    a, t = gains["macro_f1"], gains["tail_macro_f1"]
    over = a["best_baseline"] if a["best_baseline"] == t["best_baseline"] else (
        f"{a['best_baseline']} / {t['best_baseline']}")
    text = f"{a['points']:+.2f} / {t['points']:+.2f} over {over}"
    paired = summary.get("paired", {})
    pa, pt = paired.get(a["best_baseline"]), paired.get(t["best_baseline"])
    if pa and pt and max(len(pa["seeds"]), len(pt["seeds"])) > 1:
        ma, mt = pa["macro_f1"], pt["tail_macro_f1"]
        text += (f"; ahead on {ma['wins']} of {len(pa['seeds'])} / {mt['wins']} of {len(pt['seeds'])} seeds, "
                 f"worst seed {ma['min']:+.2f} / {mt['min']:+.2f}")
    return text


def _wide_lead(summary: dict) -> str:
    gains = summary.get("wide_gains")
    if not gains:
        return "not run"
    a, t = gains["macro_f1"], gains["tail_macro_f1"]
    over = a["best_single"] if a["best_single"] == t["best_single"] else f"{a['best_single']} / {t['best_single']}"
    return f"{a['points']:+.2f} / {t['points']:+.2f} over {over}"


def table(reports: list[Path], names: list[str] | None = None) -> str:
    names = names or [p.name for p in reports]
    if len(names) != len(reports):
        raise ValueError(f"{len(names)} names for {len(reports)} reports: give one name per report")
    summaries, peers = [], []
    for path in reports:
        results_path = path / "results.json"
        if not results_path.exists():
            raise FileNotFoundError(f"{results_path} missing: run `fmlc experiment --out {path}` first")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        summaries.append(summarise(results))
        peers.append(best_peer(results.get("peer")))
    leaders = [{key: leader(s["methods"], key) for key in GAIN_KEYS} for s in summaries]
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for method, label in ROWS:
        if not any(method in s["methods"] for s in summaries):
            continue  # a row of "not run" in every column says nothing
        cells = [_cell(s["methods"].get(method), {key: top[key] == method for key in GAIN_KEYS})
                 for s, top in zip(summaries, leaders, strict=True)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    peer_cells = []
    for p in peers:
        if not p:
            peer_cells.append("not run")
            continue
        (a_name, a), (t_name, t) = p["macro_f1"], p["tail_macro_f1"]
        peer_cells.append(f"{a:.2f} / {t:.2f} ({a_name})" if a_name == t_name else
                          f"{a:.2f} ({a_name}) / {t:.2f} ({t_name})")
    if any(peers):
        lines.append("| LibMultiLabel, best row | " + " | ".join(peer_cells) + " |")
    if any("fmlc-asl" in s["methods"] for s in summaries):
        lines.append("| FMLC/ASL − best earlier method | " + " | ".join(_lead(s) for s in summaries) + " |")
    if any("wide_gains" in s for s in summaries):
        lines.append("| FMLC wide & deep − best single method | " + " | ".join(_wide_lead(s) for s in summaries)
                     + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("results-table")
