"""FMLC_QUANTIZE=int8 against fp32: the worker side by side, label agreement, F1 cost, one more CPU path.

    python -m bench.quantize [--rounds 3] [--messages 2000] [--agreement-docs 1000]
    python -m bench.quantize --model DIR --data PATH     (F1 cost of a given trained artifact)

- Worker: `python -m worker` with FMLC_QUANTIZE=none and =int8 drains a fresh backlog of real
  ccks2019_fin texts through a real broker (Tansu), in interleaved rounds (bench.worker_ab: forward
  order on even rounds, reversed on odd ones). Each round's int8 / fp32 messages/s is one ratio;
  the result is their median. Target: >= 1.6x.
- Agreement: the same texts through the fp32 and the int8 predictor (the code the worker runs);
  mean Jaccard of the label sets. Target: >= 0.95.
- F1: macro-F1 at the model's tuned thresholds, fp32 against int8, on the bench model's test split,
  or with --model/--data on that file (pass the test split of the data the artifact was trained on).
- One more CPU path against int8: torch.compile of the fp32 model (ONNX Runtime when installed).
  Kept only if at least 10% faster than int8 with no F1 cost.

Results: bench/results/quantize.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.common import REPO, machine, rate, train_bench_model, write_results

if TYPE_CHECKING:
    from training.data import Record

NAME = "quantize"


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def agreement(fp32: Any, int8: Any, texts: Sequence[str]) -> dict:
    """Mean Jaccard of the label sets and the share of identical sets, fp32 against int8."""
    a = fp32.predict(list(texts))
    b = int8.predict(list(texts))
    scores = [jaccard(x.names, y.names) for x, y in zip(a, b, strict=True)]
    return {"docs": len(scores), "mean_jaccard": statistics.fmean(scores),
            "identical_sets": sum(1 for s in scores if s == 1.0) / len(scores)}


def macro_f1(predictor: Any, texts: Sequence[str], labels: Sequence[Sequence[str]]) -> float:
    from fmlc.metrics import evaluate, to_matrix

    y = to_matrix([list(x) for x in labels], predictor.labels)
    return evaluate(y, predictor.scores(predictor.tokenize(list(texts))), predictor.thresholds)["all"]["macro_f1"]


def f1_cost(model_dir: Path, texts: Sequence[str], labels: Sequence[Sequence[str]]) -> dict:
    from fmlc import Predictor

    fp32 = Predictor.load(model_dir, device="cpu")
    int8 = Predictor.load(model_dir, device="cpu", quantize="int8")
    a, b = macro_f1(fp32, texts, labels), macro_f1(int8, texts, labels)
    return {"docs": len(texts), "fp32_macro_f1": a, "int8_macro_f1": b, "cost_points": 100 * (a - b)}


def worker_side_by_side(model_dir: Path, texts: list[str], messages: int, rounds: int, limit_docs: int,
                        log: Callable[[str], None] | None = None) -> dict:
    from bench.worker_ab import run_ab
    from bench.worker_throughput import BenchConfig

    cfg = BenchConfig(model_dir=model_dir, texts=texts, messages=messages, limit_docs=limit_docs,
                      workdir=REPO / "runs" / "bench-quantize")
    if log is not None:
        cfg.log = log
    ab = run_ab(cfg, {"fp32": {"FMLC_QUANTIZE": "none"}, "int8": {"FMLC_QUANTIZE": "int8"}}, rounds)
    fp32 = [r["worker_docs_per_s"] for r in ab["runs"]["fp32"]]
    int8 = [r["worker_docs_per_s"] for r in ab["runs"]["int8"]]
    ratios = [b / a for a, b in zip(fp32, int8, strict=True)]
    return {"rounds": rounds, "messages": messages, "fp32_docs_per_s": fp32, "int8_docs_per_s": int8,
            "int8_over_fp32_per_round": ratios, "int8_over_fp32_median": statistics.median(ratios),
            "fp32_model_stage_ms_per_doc": ab["summary"]["fp32"]["model_stage_ms_per_doc"],
            "int8_model_stage_ms_per_doc": ab["summary"]["int8"]["model_stage_ms_per_doc"],
            "duplicates": sum(r["duplicates"] for rs in ab["runs"].values() for r in rs)}


def other_cpu_path(model_dir: Path, texts: Sequence[str], labels: Sequence[Sequence[str]] | None,
                   batch_size: int = 64, compile_model: bool = True) -> dict:
    """Model-only docs/s of fp32, int8 and torch.compile(fp32) on the same tokens (and F1 where
    labels are given). torch.compile is given dynamic shapes: every batch has another length."""
    from fmlc import Predictor

    fp32 = Predictor.load(model_dir, device="cpu")
    tokens = fp32.tokenize(list(texts))
    rows: dict[str, dict] = {}

    def measure(name: str, p: Any) -> None:
        p.scores(tokens[:batch_size], batch_size)  # warm-up (and, for torch.compile, the compilation)
        rows[name] = {"docs_per_s": rate(lambda: p.scores(tokens, batch_size), len(tokens), repeat=2)}
        if labels is not None:
            from fmlc.metrics import evaluate, to_matrix

            y = to_matrix([list(x) for x in labels], p.labels)
            rows[name]["macro_f1"] = evaluate(y, p.scores(tokens, batch_size), p.thresholds)["all"]["macro_f1"]

    measure("fp32", fp32)
    measure("int8", Predictor.load(model_dir, device="cpu", quantize="int8"))
    compiled = Predictor.load(model_dir, device="cpu")
    t0 = time.perf_counter()
    try:
        if not compile_model:
            raise RuntimeError("not run (--no-compile)")
        compiled.model = torch.compile(compiled.model, dynamic=True)
        measure("fp32 + torch.compile", compiled)
        rows["fp32 + torch.compile"]["first_call_s"] = time.perf_counter() - t0
    except Exception as exc:  # a compiler that cannot handle the model is a result too
        rows["fp32 + torch.compile"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    try:
        import onnxruntime  # noqa: F401
        rows["onnxruntime"] = {"error": "installed but not measured here"}
    except ImportError:
        rows["onnxruntime"] = {"error": "not installed (not measured)"}
    best_other = rows["fp32 + torch.compile"].get("docs_per_s")
    keep = None
    if best_other is not None:
        faster = best_other / rows["int8"]["docs_per_s"]
        no_cost = labels is None or rows["fp32 + torch.compile"]["macro_f1"] >= rows["fp32"]["macro_f1"] - 1e-9
        keep = faster >= 1.10 and no_cost
        rows["fp32 + torch.compile"]["over_int8"] = faster
    return {"docs": len(tokens), "batch_size": batch_size, "rows": rows, "keep_other_path": keep}


def records_to_score(data: Path, test_part: bool) -> list[Record]:
    """The labelled records of `data`, or with `test_part` only the test part of the split `fmlc train`
    makes of them with its default seed (the documents a model trained on `data` never saw)."""
    from training.data import load_path, split_records

    records = load_path(data).records
    return list(split_records(records, seed=0)["test"]) if test_part else list(records)


def markdown(p: dict) -> list[str]:
    lines = [f"# int8 against fp32 (torch {p['machine']['torch']}, 1 thread per worker and for the model alone, "
             f"{p['machine']['when']})", "", f"Model: {p['model']}.", ""]
    w = p.get("worker")
    if w:
        lines += [f"## The worker through the broker ({w['rounds']} interleaved rounds of {w['messages']} "
                  "messages)", "",
                  "| round | fp32 msgs/s | int8 msgs/s | int8 / fp32 |", "|---|---|---|---|"]
        for i, (a, b, r) in enumerate(zip(w["fp32_docs_per_s"], w["int8_docs_per_s"], w["int8_over_fp32_per_round"],
                                          strict=True)):
            lines.append(f"| {i} | {a:.0f} | {b:.0f} | {r:.2f} |")
        lines += ["", f"**Median int8 / fp32: {w['int8_over_fp32_median']:.2f}x** (target >= 1.6x: "
                  f"{'met' if w['int8_over_fp32_median'] >= 1.6 else 'not met'}); model stage ms/doc fp32 "
                  f"{_list(w['fp32_model_stage_ms_per_doc'])}, int8 {_list(w['int8_model_stage_ms_per_doc'])}; "
                  f"duplicates {w['duplicates']}.", ""]
    a = p.get("agreement")
    if a:
        met = "met" if a["mean_jaccard"] >= 0.95 else "not met"
        lines += [f"Label-set agreement on {a['docs']} texts: mean Jaccard **{a['mean_jaccard']:.3f}** "
                  f"(target >= 0.95: {met}), identical sets {100 * a['identical_sets']:.1f}%.", ""]
    for f in p.get("f1", []):
        cost = round(f["cost_points"], 2) + 0.0  # no "-0.00"
        lines.append(f"Macro-F1 on {f['what']} ({f['docs']} docs): fp32 {100 * f['fp32_macro_f1']:.2f}, int8 "
                     f"{100 * f['int8_macro_f1']:.2f}, cost **{cost:+.2f} points** (target <= 0.5).")
    o = p.get("other_path")
    if o:
        lines += ["", f"## One more CPU path (model alone, {o['docs']} docs, batch {o['batch_size']})", "",
                  "| path | docs/s | macro-F1 | note |", "|---|---|---|---|"]
        for name, r in o["rows"].items():
            f1 = f"{100 * r['macro_f1']:.2f}" if "macro_f1" in r else ""
            dps = f"{r['docs_per_s']:.0f}" if "docs_per_s" in r else ""
            note = r.get("error") or (f"{r['over_int8']:.2f}x int8; first call {r['first_call_s']:.0f} s"
                                      if "over_int8" in r else "")
            lines.append(f"| {name} | {dps} | {f1} | {note} |")
        verdict = {True: "kept", False: "not kept (needs >= 1.10x int8 with no F1 cost)",
                   None: "not measured (see its row)"}[o["keep_other_path"]]
        lines += ["", f"torch.compile: {verdict}."]
    if "about" in p:
        lines += ["", p["about"]]
    if "not_measured" in p:
        lines += ["", "Not measured here: " + p["not_measured"]]
    return lines


def _list(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a trained artifact (default: the bench model, trained if missing)")
    ap.add_argument("--data", type=Path, help="with --model: a labelled file to measure the F1 cost on")
    ap.add_argument("--test-part", action="store_true",
                    help="with --data: measure on the test part of the split `fmlc train` makes of it (seed 0)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--limit-docs", type=int, default=600)
    ap.add_argument("--agreement-docs", type=int, default=1000)
    ap.add_argument("--no-worker", action="store_true", help="skip the worker runs (F1 and agreement only)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes to compile on 2 cores)")
    ap.add_argument("--name", default=NAME, help="results file name under bench/results/")
    ap.add_argument("--about", help="a sentence on how --model was trained, written under the results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from bench.common import ccks_texts

    t0 = time.time()
    payload: dict[str, Any] = {"machine": machine(), "f1": []}
    given = bool(args.model and args.data)  # a trained artifact scored on the user's labelled file
    if given:
        records = records_to_score(args.data, args.test_part)
        payload["model"] = str(args.model)
        texts, labels = [r.text for r in records], [r.labels for r in records]
        what = f"the test part of {args.data}'s seed-0 split" if args.test_part else str(args.data)
        payload["f1"].append({"what": what, **f1_cost(args.model, texts, labels)})
        model_dir = args.model
    else:
        model_dir, splits = train_bench_model(args.model or REPO / "runs" / "bench-model")
        payload["model"] = "the bench model (paper dimensions, 2 epochs on 6,000 ccks2019_fin docs)"
        test = splits["test"]
        texts, labels = [r.text for r in test], [r.labels for r in test]
        payload["f1"].append({"what": "its ccks2019_fin test split", **f1_cost(model_dir, texts, labels)})
    from fmlc import Predictor

    # With --data the label sets are compared on the texts the model was trained for.
    pool = texts if given else ccks_texts()
    payload["agreement"] = agreement(Predictor.load(model_dir, device="cpu"),
                                     Predictor.load(model_dir, device="cpu", quantize="int8"),
                                     pool[-args.agreement_docs:])
    payload["other_path"] = other_cpu_path(model_dir, texts, labels, compile_model=not args.no_compile)
    if not args.no_worker:
        payload["worker"] = worker_side_by_side(model_dir, pool, args.messages, args.rounds, args.limit_docs)
    if args.about:
        payload["about"] = args.about
    if not given:
        payload["not_measured"] = ("the F1 cost with paper-dimension models trained to convergence on ccks2019_fin "
                                   "and duee1.0 (`python -m bench.quantize --model DIR --data TEST_FILE` measures it "
                                   "for a given artifact).")
    payload["seconds"] = time.time() - t0
    md = markdown(payload)
    write_results(args.name, payload, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
