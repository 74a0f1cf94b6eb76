"""Capacity model: from messages per second to partitions, replicas, CPU and memory per replica,
Redis memory and broker traffic, built on measured per-replica figures.

    python -m bench.capacity                 # measure sizes and memory, then plan (needs Redis)
    python -m bench.capacity --plan-only     # re-plan from the committed bench/results/capacity.json

Measured here, with the paper-dimension bench model on ccks2019_fin texts (the model and texts of
bench/results/worker_throughput.json):
- input and output message sizes: real complaint JSON and the worker's own output message
  (worker.messages.Classified) around real predictions;
- Redis bytes per cache entry: the worker's LabelCache writes the entries into a real Redis, which
  reports MEMORY USAGE per key and its used_memory growth;
- peak RSS of a process that holds the model and has tokenised and predicted the texts.
Read from committed results: the per-replica throughput, the cores it used and the latency at each
load level (bench/results/worker_throughput.json). Writes bench/results/capacity.{json,md};
docs/operations.md's capacity table is this file's table (tests/test_capacity.py checks it).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.common import DEFAULT_DATA, REPO, RESULTS, machine, write_results

THROUGHPUT = RESULTS / "worker_throughput.json"
CAPACITY = RESULTS / "capacity.json"
# The latency the alert rules hold the workers to (FmlcEndToEndLatencyHigh: p99 above 1 s).
LATENCY_BUDGET_MS = 1000.0
# Partitions: room for growth and uneven assignment over the replicas needed, rounded up to a
# multiple of 6 so that 1, 2, 3 or 6 replicas (and their multiples) split them evenly.
PARTITION_HEADROOM = 1.5
PARTITION_STEP = 6
REPLICATION = 3  # the topic Job's replication factor (deploy/k8s/render.py)
CPU_REQUEST = 1.5  # cores per CPU replica (deploy/k8s/render.py); the measured use is below
DAY_S = 86_400
# The worked case: 10 million complaints a day, the busiest time of day at 10x the daily mean.
WORKED_PER_DAY = 10_000_000
WORKED_PEAK_FACTOR = 10
TABLE_RATES = (50, 200, 500, 1000, 2000, 5000)


# --- measurement -------------------------------------------------------------------------------------

def measure(model_dir: Path, data: Path, n_texts: int, redis_url: str) -> dict:
    import redis as redis_lib

    from bench.common import train_bench_model
    from fmlc import Predictor
    from worker.cache import LabelCache
    from worker.messages import Classified, Complaint, LabelOut, Timings, to_bytes
    from worker.metrics import WorkerMetrics

    model_dir, splits = train_bench_model(model_dir, data)
    texts = [r.text for r in splits["test"] + splits["valid"] + splits["train"]][:n_texts]
    predictor = Predictor.load(model_dir, device="cpu")
    t0 = time.perf_counter()
    preds = predictor.predict(texts, batch_size=64)
    predict_s = time.perf_counter() - t0
    now = datetime.now(timezone.utc)
    inputs, outputs, labels = [], [], []
    for i, (text, pred) in enumerate(zip(texts, preds, strict=True)):
        cid = f"c-{i:08d}"
        complaint = Complaint(id=cid, text=text, source="app", created_at=now)
        inputs.append(len(complaint.model_dump_json(exclude_defaults=True).encode("utf-8")))
        outs = [LabelOut(label=ls.label, score=round(float(ls.score), 6), evidence=list(ls.evidence))
                for ls in pred.labels]
        labels.append(outs)
        out = Classified(id=cid, labels=outs, model_version=predictor.version, cached=False, source="app",
                         created_at=now, processed_at=now,
                         timings=Timings(queue_ms=12.5, cache_ms=0.4, tokenize_ms=3.1, inference_ms=41.7,
                                         total_ms=58.2))
        outputs.append(len(to_bytes(out)))
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    client = redis_lib.Redis.from_url(redis_url)
    prefix = f"capacity{uuid.uuid4().hex[:8]}"
    cache = LabelCache(redis_url, ttl_s=7 * DAY_S, metrics=WorkerMetrics(), prefix=prefix, socket_timeout_s=5.0)
    keys = [cache.key(t, predictor.version) for t in texts]
    before = int(client.info("memory")["used_memory"])
    cache.put_many(list(zip(keys, labels, strict=True)))
    after = int(client.info("memory")["used_memory"])
    usage = [int(client.memory_usage(k, samples=0) or 0) for k in keys]
    value_bytes = [len(client.get(k) or b"") for k in keys]
    stored = sum(1 for u in usage if u > 0)
    client.delete(*keys)
    cache.close()
    assert stored == len(keys), f"only {stored} of {len(keys)} entries were stored"
    return {
        "model_version": predictor.version, "model_dir": str(model_dir), "data": str(data), "texts": len(texts),
        "predict_docs_per_s_here": len(texts) / predict_s,
        "labels_per_output_mean": sum(len(x) for x in labels) / len(labels),
        "input_bytes_mean": sum(inputs) / len(inputs), "input_bytes_max": max(inputs),
        "output_bytes_mean": sum(outputs) / len(outputs), "output_bytes_max": max(outputs),
        "redis_key_bytes": len(keys[0]),
        "redis_value_bytes_mean": sum(value_bytes) / len(value_bytes),
        "redis_memory_usage_per_key_mean": sum(usage) / len(usage),
        "redis_used_memory_per_entry": (after - before) / len(keys),
        "peak_rss_mib": peak_rss_mib,
        "machine": machine(),
    }


# --- the model ---------------------------------------------------------------------------------------

def per_replica(throughput: dict) -> dict:
    """The measured figures for one CPU replica and the load it is planned at."""
    w = throughput["worker"]["throughput"]
    levels = throughput["latency_levels"]
    within = [lv for lv in levels if lv["p99_ms"] <= LATENCY_BUDGET_MS]
    if not within:
        raise ValueError("no measured load level met the latency budget")
    best = max(within, key=lambda lv: lv["load_fraction"])
    rate = float(w["docs_per_s"])
    return {
        "docs_per_s": rate,
        "cores_used": float(w["worker_cores_used"]),
        "cpu_threads": throughput["worker"]["settings"]["cpu_threads"],
        "planned_load": float(best["load_fraction"]),
        "planned_load_p99_ms": float(best["p99_ms"]),
        "planned_docs_per_s": rate * float(best["load_fraction"]),
    }


def partitions_for(replicas: int) -> int:
    return PARTITION_STEP * math.ceil(replicas * PARTITION_HEADROOM / PARTITION_STEP)


def plan(rate: float, replica: dict, sizes: dict, ttl_s: float, mean_rate: float | None = None) -> dict:
    """One row: what `rate` messages per second need. Redis holds what arrives within one TTL at the
    mean rate (every text distinct: an upper bound; repeated texts share an entry)."""
    replicas = max(2, math.ceil(rate / replica["planned_docs_per_s"]))
    entries = (mean_rate if mean_rate is not None else rate) * ttl_s
    per_entry = max(sizes["redis_used_memory_per_entry"], sizes["redis_memory_usage_per_key_mean"])
    write_bytes = rate * (sizes["input_bytes_mean"] + sizes["output_bytes_mean"])
    busy = min(1.0, rate / (replicas * replica["docs_per_s"]))  # of each replica's measured maximum
    return {
        "msgs_per_s": rate,
        "replicas": replicas,
        "partitions": partitions_for(replicas),
        "cpu_cores_requested": replicas * CPU_REQUEST,
        "cpu_cores_used_at_plan": replicas * replica["cores_used"] * busy,
        "memory_gib_requested": replicas * memory_request_mib(sizes) / 1024,
        "redis_entries": entries,
        "redis_gib": entries * per_entry / 2**30,
        "broker_write_mb_s": write_bytes / 1e6,
        "broker_write_mb_s_replicated": write_bytes * REPLICATION / 1e6,
        "broker_read_mb_s": write_bytes / 1e6,  # the workers read the input, one downstream group the output
    }


def memory_request_mib(sizes: dict) -> int:
    # The model process's peak RSS, doubled for the tokenizer child, Kafka buffers, a model reload
    # (the new model is loaded beside the old one) and in-flight records, in 512 MiB steps.
    return 512 * math.ceil(2 * sizes["peak_rss_mib"] / 512)


def build(throughput: dict, sizes: dict, ttl_s: float = 7 * DAY_S) -> dict:
    replica = per_replica(throughput)
    mean = WORKED_PER_DAY / DAY_S
    peak = mean * WORKED_PEAK_FACTOR
    return {
        "replica": replica,
        "memory_request_mib": memory_request_mib(sizes),
        "ttl_s": ttl_s,
        "table": [plan(r, replica, sizes, ttl_s) for r in TABLE_RATES],
        "worked": {
            "per_day": WORKED_PER_DAY, "peak_factor": WORKED_PEAK_FACTOR,
            "mean_msgs_per_s": mean, "peak_msgs_per_s": peak,
            "at_mean": plan(mean, replica, sizes, ttl_s),
            "at_peak": plan(peak, replica, sizes, ttl_s, mean_rate=mean),
            "at_peak_ttl_1d": plan(peak, replica, sizes, DAY_S, mean_rate=mean),
        },
    }


def table_markdown(model: dict) -> list[str]:
    rows = ["| msgs/s | CPU replicas | partitions | CPU cores requested (used) | memory requested | "
            "Redis entries / memory (7-day TTL, every text distinct) | broker writes MB/s (x3 replicated) | "
            "broker reads MB/s |",
            "|---|---|---|---|---|---|---|---|"]
    for r in model["table"]:
        rows.append(f"| {r['msgs_per_s']:,.0f} | {r['replicas']} | {r['partitions']} | "
                    f"{r['cpu_cores_requested']:.1f} ({r['cpu_cores_used_at_plan']:.1f}) | "
                    f"{r['memory_gib_requested']:.1f} GiB | {r['redis_entries'] / 1e6:,.0f} M / "
                    f"{r['redis_gib']:,.1f} GiB | {r['broker_write_mb_s']:.2f} "
                    f"({r['broker_write_mb_s_replicated']:.2f}) | {r['broker_read_mb_s']:.2f} |")
    return rows


def markdown(model: dict, sizes: dict) -> list[str]:
    rep = model["replica"]
    w = model["worked"]
    md = ["# Capacity model (CPU replicas; `python -m bench.capacity`)", "",
          "Per CPU replica, from `bench/results/worker_throughput.json`: "
          f"{rep['docs_per_s']:.1f} msgs/s end to end with torch {rep['cpu_threads']} thread, "
          f"{rep['cores_used']:.2f} cores used (worker process and its tokenizer child); planned at "
          f"{rep['planned_load']:.0%} of that ({rep['planned_docs_per_s']:.1f} msgs/s), the highest measured "
          f"load whose p99 latency ({rep['planned_load_p99_ms']:.0f} ms) met the 1 s alert threshold.", "",
          f"Measured here ({sizes['texts']} ccks2019_fin texts, bench model {sizes['model_version']}): input "
          f"{sizes['input_bytes_mean']:.0f} bytes mean (max {sizes['input_bytes_max']}), output "
          f"{sizes['output_bytes_mean']:.0f} bytes mean (max {sizes['output_bytes_max']}, "
          f"{sizes['labels_per_output_mean']:.2f} labels); Redis entry: key {sizes['redis_key_bytes']} bytes, value "
          f"{sizes['redis_value_bytes_mean']:.0f} bytes, MEMORY USAGE {sizes['redis_memory_usage_per_key_mean']:.0f}"
          f" bytes, used_memory growth {sizes['redis_used_memory_per_entry']:.0f} bytes per entry; peak RSS of the "
          f"model process {sizes['peak_rss_mib']:.0f} MiB -> memory request {model['memory_request_mib']} MiB.", "",
          *table_markdown(model), "",
          f"Worked case: {w['per_day']:,} complaints a day = {w['mean_msgs_per_s']:.0f} msgs/s on average, "
          f"{w['peak_msgs_per_s']:.0f} msgs/s at a {w['peak_factor']}x peak: "
          f"{w['at_peak']['replicas']} replicas and {w['at_peak']['partitions']} partitions at the peak, "
          f"{w['at_mean']['replicas']} (the minimum) at the mean; Redis {w['at_peak']['redis_gib']:.1f} GiB with "
          f"the 7-day TTL, {w['at_peak_ttl_1d']['redis_gib']:.1f} GiB with 1 day.", ""]
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "runs" / "bench-model")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--plan-only", action="store_true", help="reuse the sizes measured in bench/results/capacity.json")
    args = ap.parse_args()
    throughput = json.loads(THROUGHPUT.read_text())
    if args.plan_only:
        sizes = json.loads(CAPACITY.read_text())["measured"]
    else:
        import torch

        torch.set_num_threads(1)
        sizes = measure(args.model, args.data, args.texts, args.redis_url)
    model = build(throughput, sizes)
    write_results("capacity", {"measured": sizes, "sources": {"throughput": str(THROUGHPUT.relative_to(REPO))},
                               "model": model}, markdown(model, sizes))
    print("\n".join(markdown(model, sizes)))


if __name__ == "__main__":
    main()
