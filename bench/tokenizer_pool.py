"""jieba throughput against the number of tokenizer processes (worker.tokenizing.TokenizerPool).

    python -m bench.tokenizer_pool [--texts 4000] [--batch 256] [--processes 1 2 3]

Real ccks2019_fin texts, tokenised in micro-batches of `--batch` (a GPU worker's batch) through a
pool of N children, the way the worker's prepare stage calls it; best of `--repeat` runs per N, and
jieba in this process alone (one core, no pipes) as the per-core reference. The load average is
recorded beside: on a shared machine the other processes take cores from the pool.

Results: bench/results/tokenizer_pool.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from bench.common import machine, write_results

NAME = "tokenizer_pool"


def in_process_rate(texts: Sequence[str], max_len: int = 256) -> float:
    """jieba texts/s in this process: what one core gives with no pipe in between."""
    from fmlc.text import Tokenizer

    tok = Tokenizer()
    tok.tokenize(texts[0])  # loads the dictionary
    t0 = time.perf_counter()
    for text in texts:
        tok.tokenize(text, max_len)
    return len(texts) / (time.perf_counter() - t0)


def pool_rate(texts: Sequence[str], processes: int, batch: int = 256, repeat: int = 2, max_len: int = 256) -> dict:
    """Texts/s through a pool of `processes` children, in calls of `batch` texts (best of `repeat`)."""
    from fmlc.text import Tokenizer
    from worker.tokenizing import TokenizerPool

    config = Tokenizer().to_config()
    pool = TokenizerPool(processes)
    try:
        pool.warm_up("bench", config, max_len)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for i in range(0, len(texts), batch):
                pool.tokenize("bench", config, max_len, list(texts[i:i + batch]))
            best = min(best, time.perf_counter() - t0)
    finally:
        pool.close()
    return {"processes": processes, "texts_per_s": len(texts) / best, "seconds": best}


def feeding_model(per_process: float, cores: int, model_docs_per_s: float) -> dict:
    """How many tokenizer processes a model stage running at `model_docs_per_s` needs, and whether a
    host of `cores` cores (one left to the worker's own threads) can give them."""
    needed = model_docs_per_s / per_process
    available = max(1, cores - 1)
    return {"model_docs_per_s": model_docs_per_s, "processes_needed": needed, "processes_available": available,
            "fed": needed <= available, "feed_ceiling_texts_per_s": available * per_process}


def markdown(p: dict) -> list[str]:
    m = p["machine"]
    lines = [f"# Tokenizer processes ({p['texts']} ccks2019_fin texts in calls of {p['batch']}, "
             f"{p['usable_cpus']} usable CPUs, load average {p['load_before'][0]:.1f} before / "
             f"{p['load_after'][0]:.1f} after, {m['when']})", "",
             f"jieba in one process, no pipe: **{p['in_process_texts_per_s']:.0f} texts/s per core**.", "",
             "| processes | texts/s | per process | vs 1 process |", "|---|---|---|---|"]
    base = p["rows"][0]["texts_per_s"]
    for r in p["rows"]:
        lines.append(f"| {r['processes']} | {r['texts_per_s']:.0f} | {r['texts_per_s'] / r['processes']:.0f} | "
                     f"{r['texts_per_s'] / base:.2f}x |")
    lines += ["", "A 16-core host feeding a model stage at batch 256 (one core left to the worker's threads, "
              "jieba at the per-core rate above):", "",
              "| model stage | docs/s | tokenizer processes needed | fed by 15? |", "|---|---|---|---|"]
    for name, f in p["sixteen_cores"].items():
        fed = "yes" if f["fed"] else f"no (ceiling {f['feed_ceiling_texts_per_s']:.0f} texts/s)"
        lines.append(f"| {name} | {f['model_docs_per_s']:.0f} | {f['processes_needed']:.2f} | {fed} |")
    lines += ["", "GPU: not measured here; `bash bench/gpu_check.sh` measures the model alone at batch 256 on a "
              "GPU (bench/results/gpu.md), and processes needed = that rate / the per-core rate above."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--processes", type=int, nargs="+")
    args = ap.parse_args()
    import json

    from bench.common import RESULTS, ccks_texts
    from worker.model import usable_cpus

    texts = ccks_texts()[: args.texts]
    cpus = usable_cpus()
    counts = args.processes or list(range(1, cpus + 2))  # one past the cores: what oversubscription costs
    load_before = os.getloadavg()
    per_core = in_process_rate(texts)
    rows = [pool_rate(texts, n, args.batch, args.repeat) for n in counts]
    load_after = os.getloadavg()
    model_speed = json.loads((RESULTS / "model_speed.json").read_text())["rows"]
    sixteen = {f"CPU fp32, {machine()['cpu_threads']} threads here": feeding_model(
                   per_core, 16, model_speed["model only, length-aware"]["docs_per_s"]),
               f"CPU int8, {machine()['cpu_threads']} threads here": feeding_model(
                   per_core, 16, model_speed["model only, int8 dynamic"]["docs_per_s"])}
    payload = {"machine": machine(), "usable_cpus": cpus, "texts": len(texts), "batch": args.batch,
               "in_process_texts_per_s": per_core, "rows": rows, "load_before": load_before,
               "load_after": load_after, "sixteen_cores": sixteen,
               "gpu": "not measured here (bench/gpu_check.sh)"}
    md = markdown(payload)
    write_results(NAME, payload, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
