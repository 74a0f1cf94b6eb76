"""Worker variants against each other: interleaved throughput runs, each divided by its neighbouring limits.

    python -m bench.worker_ab --variant "window8:FMLC_SORT_WINDOW=8" \\
                              --variant "window4:FMLC_SORT_WINDOW=4" [--rounds 3] [--messages 3000]

Each variant is a name and FMLC_* settings for the worker process (`null`: the setting's None). A
round runs every variant once, in forward order on even rounds and reversed on odd ones, so a drift
of the machine's speed within a round does not favour one side. Each run is the worker draining a
fresh backlog through a real broker (Tansu), divided by the higher of the in-memory limits measured
just before and after it (`bench.worker_throughput.between_limits`). This VM moves 10-20% within
minutes, so compare medians over several rounds, never two single runs.

Results: bench/results/worker_ab.{json,md} (or --name).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import REPO, TextPool, ccks_texts, machine, write_results
from bench.worker_throughput import BenchConfig, between_limits, services


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = spec.partition(":")
    env: dict[str, str] = {}
    for item in filter(None, (a.strip() for a in assignments.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.startswith("FMLC_"):
            raise SystemExit(f"--variant {spec!r}: expected NAME:FMLC_X=value[,FMLC_Y=value]")
        env[key] = value
    if not name:
        raise SystemExit(f"--variant {spec!r}: the name before ':' is missing")
    return name, env


def run_ab(cfg: BenchConfig, variants: dict[str, dict[str, str]], rounds: int) -> dict:
    from fmlc import Predictor

    cfg.workdir.mkdir(parents=True, exist_ok=True)
    pool = TextPool(cfg.texts)
    predictor = Predictor.load(cfg.model_dir, device="cpu", torch_threads=1)
    limit_texts = cfg.texts[: cfg.limit_docs]
    predictor.predict(limit_texts[:16], batch_size=cfg.batch_size)  # warm-up
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    with services(cfg, "broker-ab.log") as (bootstrap, _, redis_url):
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                res = between_limits(cfg, bootstrap, redis_url, pool, predictor,
                                     limit_texts, f"ab{r}-{len(runs[name])}-{name}", variants[name])
                runs[name].append(res)
                cfg.log(f"round {r} {name}: {res['worker_docs_per_s']:.1f} docs/s, limits "
                        f"{res['limit_before_docs_per_s']:.1f}/{res['limit_after_docs_per_s']:.1f} "
                        f"→ {res['worker_vs_limit']:.3f}")
    summary = {}
    for name, rs in runs.items():
        ratios = [x["worker_vs_limit"] for x in rs]
        model_ms = [x["model_stage_ms_per_doc"] for x in rs]
        summary[name] = {"env": variants[name], "median": statistics.median(ratios), "min": min(ratios),
                         "max": max(ratios), "ratios": ratios, "model_stage_ms_per_doc": model_ms,
                         "model_stage_ms_per_doc_median": statistics.median(model_ms)}
    return {"machine": machine(), "messages": cfg.messages, "rounds": rounds, "summary": summary, "runs": runs}


def markdown(p: dict) -> list[str]:
    lines = [f"# Worker A/B ({p['rounds']} interleaved rounds of {p['messages']} messages, {p['machine']['when']})",
             "", "worker_vs_limit per run (each ÷ the higher of the limits just before and after it)", "",
             "| variant | settings | median | min | max | runs | model stage ms/doc (median; runs) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in p["summary"].items():
        env = ", ".join(f"{k}={v}" for k, v in s["env"].items()) or "defaults"
        runs = ", ".join(f"{x:.3f}" for x in s["ratios"])
        model = ", ".join(f"{x:.2f}" for x in s["model_stage_ms_per_doc"])
        lines.append(f"| {name} | {env} | **{s['median']:.3f}** | {s['min']:.3f} | {s['max']:.3f} | {runs} | "
                     f"{s['model_stage_ms_per_doc_median']:.2f}; {model} |")
    lines += ["", "Model stage ms/doc: the worker's time inside model calls (its inference metric) per message; "
              "the model stage is the worker's bottleneck under a backlog."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, help="NAME:FMLC_X=value[,FMLC_Y=value]")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--name", default="worker_ab", help="results file name under bench/results/")
    args = ap.parse_args()
    variants = dict(parse_variant(v) for v in args.variant)
    if len(variants) != len(args.variant):
        raise SystemExit("variant names must be distinct")

    torch.set_num_threads(1)
    from bench.common import train_bench_model

    model_dir, _ = train_bench_model(REPO / "runs" / "bench-model")
    cfg = BenchConfig(model_dir=model_dir, texts=ccks_texts(), messages=args.messages)
    t0 = time.time()
    payload = run_ab(cfg, variants, args.rounds)
    payload["seconds"] = time.time() - t0
    md = markdown(payload)
    write_results(args.name, payload, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
