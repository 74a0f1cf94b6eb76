"""Model-side speed, each speed-up with its macro-F1 cost, measured side by side in one run.

    python bench/model_speed.py [--model DIR] [--batch-size 64] [--docs 1500]

Reports (bench/results/model_speed.{json,md,png}):
- the limit: tokenise + predict an in-memory list at the worker's batch size and at batch size 1,
  and `model_batch_gain` = their ratio;
- length-aware batching vs plain padding (same weights: F1 must not move);
- int8 dynamic quantisation on the CPU (F1 cost on real data);
- the default model, FMLC wide & deep, against its own FMLC path served alone (the same weights,
  so the ratio `wide_vs_fmlc` is the cost of the linear path and the blend; measured alternately);
- on a GPU: mixed precision vs fp32 and GPU vs CPU.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from bench.common import REPO, RESULTS, machine, rate, train_bench_model, write_results
from fmlc import Predictor
from fmlc.artifact import Artifact
from fmlc.metrics import evaluate, to_matrix


def deep_path(art: Artifact) -> Artifact:
    """A wide & deep artifact's FMLC path as an artifact of its own: the same weights, served alone."""
    deep = {k.removeprefix("deep."): v for k, v in art.state_dict.items() if k.startswith("deep.")}
    return replace(art, model_config=replace(art.model_config, model="fmlc"), state_dict=deep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "runs" / "bench-model")
    ap.add_argument("--wide-model", type=Path, default=REPO / "runs" / "bench-model-wide")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--docs", type=int, default=1500)
    args = ap.parse_args()

    model_dir, splits = train_bench_model(args.model)
    test = splits["test"][: args.docs]
    texts = [r.text for r in test]
    base = Predictor.load(model_dir, device="cpu")
    y = to_matrix([r.labels for r in test], base.labels)
    tokens = base.tokenize(texts)

    def f1(p: Predictor, **kw: object) -> float:
        return evaluate(y, p.scores(tokens, **kw), p.thresholds)["all"]["macro_f1"]

    rows: dict[str, dict] = {}
    tokenize_rate = rate(lambda: base.tokenize(texts), len(texts), repeat=1)
    rows["limit b=1"] = {"docs_per_s": rate(lambda: base.predict(texts, batch_size=1), len(texts), repeat=1)}
    rows[f"limit b={args.batch_size}"] = {"docs_per_s": rate(lambda: base.predict(texts, batch_size=args.batch_size),
                                                             len(texts))}
    rows["model only, plain padding"] = {
        "docs_per_s": rate(lambda: base.scores(tokens, args.batch_size, length_aware=False), len(texts)),
        "macro_f1": f1(base, batch_size=args.batch_size, length_aware=False)}
    rows["model only, length-aware"] = {
        "docs_per_s": rate(lambda: base.scores(tokens, args.batch_size, length_aware=True), len(texts)),
        "macro_f1": f1(base, batch_size=args.batch_size)}
    quant = Predictor.load(model_dir, device="cpu", quantize="int8")
    rows["model only, int8 dynamic"] = {"docs_per_s": rate(lambda: quant.scores(tokens, args.batch_size), len(texts)),
                                        "macro_f1": f1(quant, batch_size=args.batch_size)}
    wide_dir, _ = train_bench_model(args.wide_model, model="fmlc-wide")
    wide = Predictor.load(wide_dir, device="cpu")
    deep = Predictor(deep_path(wide.artifact), device="cpu")
    wide_tokens = wide.tokenize(texts)
    # Alternating rounds, best of each: a slow spell of the machine hits both sides.
    fmlc_rates, wide_rates = [], []
    for _ in range(5):
        fmlc_rates.append(rate(lambda: deep.scores(wide_tokens, args.batch_size), len(texts), repeat=1))
        wide_rates.append(rate(lambda: wide.scores(wide_tokens, args.batch_size), len(texts), repeat=1))
    rows["model only, its FMLC path alone (alternating)"] = {"docs_per_s": max(fmlc_rates)}
    rows["model only, FMLC wide & deep (the default)"] = {"docs_per_s": max(wide_rates), "macro_f1": evaluate(
        y, wide.scores(wide_tokens, args.batch_size), wide.thresholds)["all"]["macro_f1"]}
    if torch.cuda.is_available():
        gpu = Predictor.load(model_dir, device="cuda")
        rows["model only, GPU mixed precision"] = {
            "docs_per_s": rate(lambda: gpu.scores(tokens, args.batch_size), len(texts)), "macro_f1": f1(gpu)}

    limit_b = rows[f"limit b={args.batch_size}"]["docs_per_s"]
    payload = {
        "machine": machine(), "model_version": base.version, "docs": len(texts), "batch_size": args.batch_size,
        "tokenize_docs_per_s": tokenize_rate, "rows": rows,
        "model_batch_gain": limit_b / rows["limit b=1"]["docs_per_s"],
        "length_aware_speedup": rows["model only, length-aware"]["docs_per_s"]
        / rows["model only, plain padding"]["docs_per_s"],
        "int8_speedup": rows["model only, int8 dynamic"]["docs_per_s"] / rows["model only, length-aware"]["docs_per_s"],
        "int8_macro_f1_cost_points": 100 * (rows["model only, length-aware"]["macro_f1"]
                                            - rows["model only, int8 dynamic"]["macro_f1"]),
        "wide_vs_fmlc": rows["model only, FMLC wide & deep (the default)"]["docs_per_s"]
        / rows["model only, its FMLC path alone (alternating)"]["docs_per_s"],
    }
    md = [f"# Model-side speed ({len(texts)} test docs of ccks2019_fin, paper dimensions, "
          f"{payload['machine']['cpu_threads']} CPU threads)", "",
          "| run | docs/s | macro-F1 |", "|---|---|---|"]
    md += [f"| {name} | {r['docs_per_s']:.0f} | {100 * r['macro_f1']:.2f} |" if "macro_f1" in r
           else f"| {name} | {r['docs_per_s']:.0f} | |" for name, r in rows.items()]
    md += ["", f"- tokenisation alone: {tokenize_rate:.0f} docs/s",
           f"- model_batch_gain (limit b={args.batch_size} / b=1): {payload['model_batch_gain']:.2f}x",
           f"- length-aware batching: {payload['length_aware_speedup']:.2f}x over plain padding",
           f"- int8 dynamic quantisation: {payload['int8_speedup']:.2f}x, macro-F1 cost "
           f"{payload['int8_macro_f1_cost_points']:+.2f} points",
           f"- FMLC wide & deep (the default) against its own FMLC path served alone (same weights): "
           f"{payload['wide_vs_fmlc']:.2f}x the docs/s (best of 5 alternating rounds each)", "",
           "![speed](model_speed.png)"]
    write_results("model_speed", payload, md)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(rows), [r["docs_per_s"] for r in rows.values()])
    ax.set_xlabel("docs/s")
    fig.tight_layout()
    fig.savefig(RESULTS / "model_speed.png", dpi=120)
    print("\n".join(md))


if __name__ == "__main__":
    main()
