"""The streaming worker against its limit, a naive loop, load levels and a second worker — one run.

    python -m bench.worker_throughput [--model DIR] [--messages N] [--batch-size 64] [--max-wait-ms 25]
                                      [--level-seconds 25] [--no-scaling] [--no-redis]

Everything is measured side by side in one run, on one machine, with the same model and real
ccks2019_fin texts (unique after normalisation, so no message is a cache hit unless meant to be):

- the limit: the model tokenising + predicting an in-memory list at the worker's batch size and at
  batch size 1 (`Predictor.predict(texts, batch_size=B)`); `model_batch_gain` = their ratio;
- the worker end to end through a real Kafka-protocol broker (Tansu): N messages pre-produced, a
  `python -m worker` subprocess started, timed from its /readyz to the last output read back from the
  output topic; `worker_vs_limit` = that rate / the limit at batch size B;
- a naive consumer loop with the same model (poll one, predict, produce + flush, commit);
  `worker_vs_naive`, and `batch_gain_kept` = worker_vs_naive / model_batch_gain;
- the cache, separately: the same texts again under new ids (every one should be a hit);
- latency under load: a paced producer at 25 %, 50 %, 90 % of the measured worker rate; p50/p99 from
  the producer's send to the output being read, against max_wait + the compute time of a full batch;
- scaling: one against two workers in one group on a 2-partition topic (on this machine both share
  its cores), and the paper estimate for N machines and P partitions.

Results: bench/results/worker_throughput.{json,md,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    REPO,
    RESULTS,
    BusyMeter,
    TextPool,
    cpu_seconds,
    machine,
    padded_over_real,
    percentile,
    proc_stats,
    rate,
    write_results,
)
from worker.kafka import ensure_topics
from worker.testkit import (
    ThreadWorker,
    TopicReader,
    WorkerProcess,
    make_producer,
    message,
    metric,
    produce,
    uid,
    wait_for,
    worker_settings,
)

NAME = "worker_throughput"


@dataclass
class BenchConfig:
    model_dir: Path
    texts: list[str]
    messages: int = 6000
    batch_size: int = 64
    max_wait_ms: int = 25
    partitions: int = 2
    limit_docs: int = 1500
    limit_b1_docs: int = 400
    limit_repeat: int = 2
    naive_messages: int = 400
    repeats: int = 5  # extra throughput runs, each between two limit measurements
    load_levels: tuple[float, ...] = (0.25, 0.5, 0.9)
    level_seconds: float = 25.0
    scaling: bool = True
    scaling_messages: int = 3000
    cached_pass: bool = True
    redis: bool = True
    worker_mode: str = "process"  # "process": python -m worker; "thread": a WorkerApp in this process
    bootstrap: str | None = None  # an existing broker; None starts a Tansu of our own
    workdir: Path = REPO / "runs" / "bench-worker"
    log: Callable[[str], None] = field(default=lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}",
                                                                  file=sys.stderr, flush=True))


class Outputs:
    """First read time and record of every output id (duplicates counted), fed by a TopicReader."""

    def __init__(self, output_topic: str, dlq_topic: str) -> None:
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self.read_at: dict[str, float] = {}
        self.record: dict[str, Any] = {}
        self.duplicates = 0
        self.dead_letters = 0
        self.lock = threading.Lock()

    def __call__(self, r: Any, now: float) -> None:
        if r.topic == self.dlq_topic:
            self.dead_letters += 1
            return
        key = r.key.decode()
        if key in self.read_at:
            self.duplicates += 1
            return
        self.read_at[key] = now
        self.record[key] = r

    def have(self, ids: list[str]) -> int:
        return sum(1 for i in ids if i in self.read_at)

    def wait(self, ids: list[str], timeout: float, what: str) -> None:
        wait_for(lambda: self.have(ids) >= len(ids), timeout,
                 f"{what} ({self.have(ids)}/{len(ids)} outputs)", interval=0.02)


def start_worker(cfg: BenchConfig, settings: Any, log_name: str,
                 extra_env: dict[str, str] | None = None) -> WorkerProcess | ThreadWorker:
    if cfg.worker_mode == "thread":
        if extra_env:
            raise ValueError("environment overrides need worker_mode='process'")
        return ThreadWorker(settings).start()
    return WorkerProcess(settings, cfg.workdir / log_name, extra_env=extra_env)


# --- the limit ---------------------------------------------------------------------------------------

def measure_limit(predictor: Any, texts: list[str], cfg: BenchConfig) -> dict:
    """The brief's limit (one `predict` call over the whole list, which sorts all of it by length
    before cutting batches of B) and the limit a streaming worker can reach with the same call: one
    `predict` per consecutive chunk of B texts in arrival order (length sorting only inside a chunk).
    Also, for comparison, a micro-batch padded as one chunk (the predictor before its token budget)."""
    b = cfg.batch_size
    predictor.predict(texts[:8], batch_size=b)  # warm-up: jieba dictionary, kernels

    def whole() -> None:
        predictor.predict(texts, batch_size=b)

    def per_microbatch() -> None:
        for i in range(0, len(texts), b):
            predictor.predict(texts[i : i + b], batch_size=b)

    def timed(fn: Callable[[], None], n: int, repeat: int) -> tuple[float, float]:
        c0 = time.process_time()
        r = rate(fn, n, repeat=repeat)
        return r, (time.process_time() - c0) / (n * repeat)

    r_b, cpu_b = timed(whole, len(texts), cfg.limit_repeat)
    r_mb, cpu_mb = timed(per_microbatch, len(texts), cfg.limit_repeat)
    budget = getattr(predictor, "max_batch_tokens", None)
    r_one = cpu_one = None
    if budget is not None:
        predictor.max_batch_tokens = 10**12  # one padded chunk per micro-batch, as before the token budget
        try:
            r_one, cpu_one = timed(per_microbatch, len(texts), 1)
        finally:
            predictor.max_batch_tokens = budget
    few = texts[: cfg.limit_b1_docs]
    r_1, cpu_1 = timed(lambda: predictor.predict(few, batch_size=1), len(few), 1)
    t0 = time.perf_counter()
    tokens = predictor.tokenize(texts)
    tokenize_rate = len(texts) / (time.perf_counter() - t0)
    lengths = [max(1, len(predictor.artifact.vocab.encode(t, predictor.max_len))) for t in tokens]

    def padded(groups: list[list[int]], max_tokens: int | None) -> float:
        return padded_over_real(lengths, groups, b, max_tokens)

    everything = [list(range(len(lengths)))]
    microbatches = [list(range(i, min(i + b, len(lengths)))) for i in range(0, len(lengths), b)]
    return {"docs_b": len(texts), "docs_b1": len(few), f"limit_b{b}_docs_per_s": r_b, "limit_b1_docs_per_s": r_1,
            "limit_per_microbatch_docs_per_s": r_mb, "limit_per_microbatch_one_chunk_docs_per_s": r_one,
            "predictor_max_batch_tokens": budget, "tokenize_docs_per_s": tokenize_rate,
            "cpu_ms_per_doc_b": 1000 * cpu_b, "cpu_ms_per_doc_per_microbatch": 1000 * cpu_mb,
            "cpu_ms_per_doc_per_microbatch_one_chunk": 1000 * cpu_one if cpu_one is not None else None,
            "cpu_ms_per_doc_b1": 1000 * cpu_1,
            "tokens_per_doc_mean": sum(lengths) / len(lengths), "tokens_per_doc_max": max(lengths),
            "padded_over_real_tokens_whole_list": padded(everything, budget),
            "padded_over_real_tokens_per_microbatch": padded(microbatches, budget),
            "padded_over_real_tokens_per_microbatch_one_chunk": padded(microbatches, None)}


# --- the worker: throughput, cache, latency under load ---------------------------------------------

def backlog(cfg: BenchConfig, bootstrap: str, redis_url: str | None, pool: TextPool,
            prefix: str) -> tuple[Any, Outputs, TopicReader, list[str], list[str]]:
    """Settings with topics of their own, a reader of their outputs, and `cfg.messages` complaints
    (ids, texts) already waiting in the input topic before the worker starts."""
    s = worker_settings(bootstrap, cfg.model_dir, redis_url=redis_url, batch_size=cfg.batch_size,
                        max_wait_ms=cfg.max_wait_ms, topic_partitions=cfg.partitions)
    ensure_topics(s)
    out = Outputs(s.output_topic, s.dlq_topic)
    reader = TopicReader(bootstrap, s.output_topic, s.dlq_topic, committed_only=False)
    reader.on_record = out
    reader.start()
    ids = [f"{prefix}-{i}" for i in range(cfg.messages)]
    texts = pool.take(cfg.messages)
    produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, texts, strict=True)],
            partitions=cfg.partitions)
    return s, out, reader, ids, texts


def repeated_throughput(cfg: BenchConfig, bootstrap: str, redis_url: str | None, pool: TextPool, predictor: Any,
                        limit_texts: list[str]) -> dict:
    """The worker's throughput `cfg.repeats` times, each run between two measurements of the limit.
    This VM's speed drifts by 10-20% within minutes, so a ratio of neighbours is steadier than one of
    measurements minutes apart; each run is divided by the higher of its two neighbours."""
    runs = []
    for k in range(cfg.repeats):
        runs.append(between_limits(cfg, bootstrap, redis_url, pool, predictor, limit_texts, f"r{k}"))
        cfg.log(f"repeat {k}: worker {runs[-1]['worker_docs_per_s']:.1f} docs/s between limits "
                f"{runs[-1]['limit_before_docs_per_s']:.1f} and {runs[-1]['limit_after_docs_per_s']:.1f} "
                f"→ {runs[-1]['worker_vs_limit']:.3f}")
    ratios = [r["worker_vs_limit"] for r in runs]
    return {"runs": runs, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def between_limits(cfg: BenchConfig, bootstrap: str, redis_url: str | None, pool: TextPool, predictor: Any,
                   limit_texts: list[str], prefix: str, extra_env: dict[str, str] | None = None) -> dict:
    """One worker run over a fresh backlog, timed from /readyz to its last output, divided by the
    higher of the limits measured just before and just after it."""
    def limit_now() -> float:
        return rate(lambda: predictor.predict(limit_texts, batch_size=cfg.batch_size), len(limit_texts), repeat=2)

    before = limit_now()
    s, out, reader, ids, _ = backlog(cfg, bootstrap, redis_url, pool, prefix)
    w = start_worker(cfg, s, f"worker-{prefix}.log", extra_env)
    try:
        t_ready = w.wait_ready(120)
        m0 = w.metrics()
        out.wait(ids, max(120.0, 20 * cfg.messages / max(before, 1.0)), f"{prefix} outputs")
        t_done = max(out.read_at[i] for i in ids)
        stages = _stage_totals(m0, w.metrics())
        w.stop()
    finally:
        if w.alive():
            w.kill()
        reader.close()
    after = limit_now()
    dps = len(ids) / (t_done - t_ready)
    # The model stage's own time per document (the worker's inference metric): its bottleneck under a
    # backlog, so the number a change to the model stage should move.
    return {"limit_before_docs_per_s": before, "limit_after_docs_per_s": after, "worker_docs_per_s": dps,
            "worker_vs_limit": dps / max(before, after), "duplicates": out.duplicates,
            "model_stage_ms_per_doc": 1000 * stages["inference_seconds"] / len(ids),
            "model_stage_busy": stages["inference_seconds"] / (t_done - t_ready)}


def worker_runs(cfg: BenchConfig, bootstrap: str, broker_pid: int | None, redis_url: str | None,
                pool: TextPool, limit: dict) -> dict:
    b, p = cfg.batch_size, cfg.partitions
    limit_b = limit[f"limit_b{b}_docs_per_s"]
    s, out, reader, ids, texts = backlog(cfg, bootstrap, redis_url, pool, "m")
    cfg.log(f"pre-produced {len(ids)} messages into {s.input_topic} ({p} partitions); starting the worker")
    t_start = time.time()
    w = start_worker(cfg, s, "worker-main.log")
    result: dict[str, Any] = {"settings": {"batch_size": b, "max_wait_ms": cfg.max_wait_ms, "partitions": p,
                                           "cpu_threads": s.cpu_threads, "cache": bool(redis_url),
                                           "sort_window": s.sort_window, "tokenizer": s.tokenizer,
                                           "worker_mode": cfg.worker_mode}}
    try:
        t_ready = w.wait_ready(120)
        busy = BusyMeter()
        st0 = proc_stats(w.pid)
        m0 = w.metrics()
        broker0 = cpu_seconds(broker_pid) if broker_pid else None
        result["startup_s"] = t_ready - t_start
        out.wait(ids, max(120.0, 20 * cfg.messages / max(limit_b, 1.0)), "throughput outputs")
        st1 = proc_stats(w.pid)
        m1 = w.metrics()
        machine_busy = busy.read()
        broker1 = cpu_seconds(broker_pid) if broker_pid else None
        t_done = max(out.read_at[i] for i in ids)
        stamps = sorted(out.record[i].timestamp / 1000 for i in ids)
        after_first = sum(1 for t in stamps if t > stamps[0])
        cached_main = sum(bool(json.loads(out.record[i].value)["cached"]) for i in ids)
        thr = {
            "messages": len(ids),
            "seconds_ready_to_last_output_read": t_done - t_ready,
            "docs_per_s": len(ids) / (t_done - t_ready),
            # between the first and the last output's own timestamps: start-up and read-back excluded
            "steady_docs_per_s": after_first / max(1e-9, stamps[-1] - stamps[0]),
            "cached_outputs": cached_main,
            "duplicates": out.duplicates,
            "dead_letters": out.dead_letters,
            "machine_cpu_busy_fraction": machine_busy,
            # Where the end-to-end rate loses against the steady one: the first micro-batch (fetch,
            # tokenise, predict before anything comes out) and reading the last output back.
            "seconds_ready_to_first_output": stamps[0] - t_ready,
            "seconds_last_output_to_read": t_done - stamps[-1],
            **_stage_totals(m0, m1),
        }
        if cfg.worker_mode == "process" and "cpu_s" in st0 and "cpu_s" in st1:
            thr["worker_cpu_ms_per_msg"] = 1000 * (st1["cpu_s"] - st0["cpu_s"]) / len(ids)
            thr["worker_cores_used"] = (st1["cpu_s"] - st0["cpu_s"]) / (t_done - t_ready)
        if broker0 is not None and broker1 is not None:
            thr["broker_cpu_ms_per_msg"] = 1000 * (broker1 - broker0) / len(ids)
        result["throughput"] = thr
        cfg.log(f"worker: {thr['docs_per_s']:.1f} docs/s ready→last output ({thr['steady_docs_per_s']:.1f} steady)")

        if cfg.cached_pass and redis_url:
            cids = [f"c-{i}" for i in range(len(ids))]
            t0 = time.time()
            produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(cids, texts, strict=True)],
                    partitions=p)
            out.wait(cids, 120, "cached outputs")
            t1 = max(out.read_at[i] for i in cids)
            hits = sum(bool(json.loads(out.record[i].value)["cached"]) for i in cids)
            result["cache"] = {"messages": len(cids), "hits": hits, "hit_ratio": hits / len(cids),
                               "docs_per_s_first_send_to_last_output": len(cids) / (t1 - t0),
                               "note": "the same texts again under new ids; the producer runs in the timed window"}
            cfg.log(f"cached pass: {hits}/{len(cids)} hits, {len(cids) / (t1 - t0):.0f} docs/s")

        capacity = thr["docs_per_s"]
        # A full micro-batch in arrival order costs what the per-micro-batch limit says (not the sorted
        # whole-list limit, whose batches pad less than any streaming batch can).
        full_batch_ms = 1000 * b / limit["limit_per_microbatch_docs_per_s"]
        levels = []
        for frac in cfg.load_levels:
            levels.append(latency_level(cfg, w, s, bootstrap, out, pool, frac, capacity, full_batch_ms))
        result["latency"] = {"budget_ms_max_wait_plus_full_batch": cfg.max_wait_ms + full_batch_ms,
                             "full_batch_compute_ms": full_batch_ms, "capacity_docs_per_s": capacity,
                             "levels": levels}
        result["worker_exit_code"] = w.stop()
    finally:
        if w.alive():
            w.kill()
        reader.close()
    return result


def _stage_totals(m0: dict, m1: dict) -> dict:
    """Micro-batches and the worker's own tokenise / inference seconds between two metric scrapes."""
    def delta(name: str) -> float:
        return metric(m1, name) - metric(m0, name)

    batches = delta("fmlc_batch_size_count")
    calls = delta("fmlc_model_batch_size_count")
    return {"micro_batches": batches, "mean_micro_batch": delta("fmlc_batch_size_sum") / batches if batches else None,
            "model_calls": calls, "mean_model_batch": delta("fmlc_model_batch_size_sum") / calls if calls else None,
            "tokenize_seconds": delta("fmlc_tokenize_seconds_sum"),
            "inference_seconds": delta("fmlc_inference_seconds_sum")}


def latency_level(cfg: BenchConfig, w: Any, s: Any, bootstrap: str, out: Outputs, pool: TextPool, frac: float,
                  capacity: float, full_batch_ms: float) -> dict:
    r = frac * capacity
    n = max(1, int(r * cfg.level_seconds))
    texts = pool.take(n)
    tag = f"l{int(round(frac * 100))}-{uid()}"
    ids = [f"{tag}-{i}" for i in range(n)]
    values = [message(i, t) for i, t in zip(ids, texts, strict=True)]
    m0 = w.metrics()
    cpu0 = proc_stats(w.pid).get("cpu_s")
    busy = BusyMeter()
    producer = make_producer(bootstrap, linger_ms=0)
    sent: dict[str, float] = {}
    try:
        t0 = time.time() + 0.1
        for k, (mid, value) in enumerate(zip(ids, values, strict=True)):
            delay = t0 + k / r - time.time()
            if delay > 0:
                time.sleep(delay)
            sent[mid] = time.time()
            producer.send(s.input_topic, key=mid.encode(), value=value, partition=k % cfg.partitions)
        producer.flush(30)
    finally:
        producer.close(5)
    send_span = max(1e-9, sent[ids[-1]] - sent[ids[0]])
    out.wait(ids, 60 + 3 * cfg.level_seconds, f"outputs at {frac:.0%} load")
    m1 = w.metrics()
    machine_busy = busy.read()
    cpu1 = proc_stats(w.pid).get("cpu_s")
    lat = [1000 * (out.read_at[i] - sent[i]) for i in ids]
    lat_produced = [out.record[i].timestamp - 1000 * sent[i] for i in ids]
    timings = [json.loads(out.record[i].value)["timings"] for i in ids]
    in_worker = [t["total_ms"] for t in timings]
    batches = metric(m1, "fmlc_batch_size_count") - metric(m0, "fmlc_batch_size_count")
    batch_docs = metric(m1, "fmlc_batch_size_sum") - metric(m0, "fmlc_batch_size_sum")
    inf_n = metric(m1, "fmlc_inference_seconds_count") - metric(m0, "fmlc_inference_seconds_count")
    inf_s = metric(m1, "fmlc_inference_seconds_sum") - metric(m0, "fmlc_inference_seconds_sum")
    tok_n = metric(m1, "fmlc_tokenize_seconds_count") - metric(m0, "fmlc_tokenize_seconds_count")
    tok_s = metric(m1, "fmlc_tokenize_seconds_sum") - metric(m0, "fmlc_tokenize_seconds_sum")
    compute_ms = (1000 * inf_s / inf_n if inf_n else 0.0) + (1000 * tok_s / tok_n if tok_n else 0.0)
    budget = cfg.max_wait_ms + full_batch_ms
    last_out = max(out.read_at[i] for i in ids)
    level = {
        "load_fraction": frac, "target_docs_per_s": r, "sent_docs_per_s": (n - 1) / send_span if n > 1 else None,
        "messages": n, "seconds": send_span,
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "p50_ms_to_output_produced": percentile(lat_produced, 50),
        "p99_ms_to_output_produced": percentile(lat_produced, 99),
        "in_worker_p50_ms": percentile(in_worker, 50), "in_worker_p99_ms": percentile(in_worker, 99),
        "mean_batch_size": batch_docs / batches if batches else None,
        "mean_inference_ms_per_batch": 1000 * inf_s / inf_n if inf_n else None,
        "mean_tokenize_ms_per_batch": 1000 * tok_s / tok_n if tok_n else None,
        "output_docs_per_s": n / max(1e-9, last_out - sent[ids[0]]),
        "machine_cpu_busy_fraction": machine_busy,
        "worker_cores_used": (cpu1 - cpu0) / max(1e-9, last_out - sent[ids[0]])
        if cfg.worker_mode == "process" and cpu0 is not None and cpu1 is not None else None,
        "budget_ms": budget,
        # the same budget at the batch size that actually formed at this load
        "budget_at_observed_batch_ms": cfg.max_wait_ms + compute_ms,
        "p50_over_budget_at_observed_batch": percentile(lat, 50) / (cfg.max_wait_ms + compute_ms),
        "p50_over_budget": percentile(lat, 50) / budget,
        "p99_over_budget": percentile(lat, 99) / budget,
    }
    cfg.log(f"load {frac:.0%} ({r:.0f}/s, {n} msgs): p50 {level['p50_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms "
            f"(budget {budget:.0f} ms), mean batch {level['mean_batch_size'] or 0:.1f}")
    return level


# --- the naive loop -------------------------------------------------------------------------------------

def naive_run(cfg: BenchConfig, bootstrap: str, predictor: Any, pool: TextPool) -> dict:
    """One message at a time: poll 1, predict (batch of 1), produce + flush, commit."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata

    s = worker_settings(bootstrap, cfg.model_dir, topic_partitions=cfg.partitions)
    ensure_topics(s)
    n = cfg.naive_messages
    texts = pool.take(n)
    ids = [f"n-{i}" for i in range(n)]
    produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, texts, strict=True)],
            partitions=cfg.partitions)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=s.group_id, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=6000, max_poll_interval_ms=10000,
                             heartbeat_interval_ms=2000, fetch_max_wait_ms=100)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    consumer.subscribe([s.input_topic])
    done, t_first = 0, None
    spent = {"predict_s": 0.0, "produce_flush_s": 0.0, "commit_s": 0.0}
    deadline = time.monotonic() + 120 + 10 * n / 20
    try:
        while done < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"naive loop: {done}/{n} after its deadline")
            polled = consumer.poll(timeout_ms=100, max_records=1)
            for tp, records in polled.items():
                for r in records:
                    if t_first is None:
                        t_first = time.perf_counter()
                    a = time.perf_counter()
                    obj = json.loads(r.value)
                    pred = predictor.predict([obj["text"]], batch_size=1)[0]
                    b = time.perf_counter()
                    producer.send(s.output_topic, key=r.key,
                                  value=json.dumps({"id": obj["id"], **pred.to_dict()}, ensure_ascii=False).encode())
                    producer.flush()
                    c = time.perf_counter()
                    consumer.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1)})
                    d = time.perf_counter()
                    spent["predict_s"] += b - a
                    spent["produce_flush_s"] += c - b
                    spent["commit_s"] += d - c
                    done += 1
        elapsed = time.perf_counter() - (t_first or time.perf_counter())
    finally:
        consumer.close()
        producer.close(5)
    res = {"messages": n, "seconds_first_record_to_last_commit": elapsed, "docs_per_s": n / elapsed,
           **{f"ms_per_msg_{k[:-2]}": 1000 * v / n for k, v in spent.items()}}
    cfg.log(f"naive loop: {res['docs_per_s']:.1f} docs/s (predict {res['ms_per_msg_predict']:.1f} ms, "
            f"produce+flush {res['ms_per_msg_produce_flush']:.1f} ms, "
            f"commit {res['ms_per_msg_commit']:.1f} ms per msg)")
    return res


# --- scaling ---------------------------------------------------------------------------------------------

def scaling_run(cfg: BenchConfig, bootstrap: str, redis_url: str | None, pool: TextPool, workers: int) -> dict:
    """`workers` workers in one group, settled on a 2-partition topic, then a burst of messages."""
    p = max(2, cfg.partitions)
    s = worker_settings(bootstrap, cfg.model_dir, redis_url=redis_url, batch_size=cfg.batch_size,
                        max_wait_ms=cfg.max_wait_ms, topic_partitions=p)
    ensure_topics(s)
    procs = [start_worker(cfg, s.model_copy(update={"transactional_id": f"{s.transactional_id}-{k}",
                                                    "client_id": f"bench-worker-{k}"}),
                          f"worker-scale{workers}-{k}.log")
             for k in range(workers)]
    out = Outputs(s.output_topic, s.dlq_topic)
    reader = TopicReader(bootstrap, s.output_topic, committed_only=False)
    reader.on_record = out
    try:
        def settled() -> bool:
            shares = [w.assigned() if w.ready() else 0 for w in procs]
            return sum(shares) == p and all(x >= 1 for x in shares)

        wait_for(settled, 120, f"{workers} worker(s) holding the {p} partitions", interval=0.2)
        time.sleep(2.0)
        wait_for(settled, 60, "a settled group", interval=0.2)
        shares = [w.assigned() for w in procs]
        reader.start()
        m = cfg.scaling_messages
        texts = pool.take(m)
        ids = [f"s{workers}-{i}" for i in range(m)]
        cpu0 = [proc_stats(w.pid).get("cpu_s", 0.0) for w in procs]
        busy = BusyMeter()
        t0 = time.time()
        produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, texts, strict=True)],
                partitions=p)
        out.wait(ids, max(120.0, 30 * m / 100), f"outputs with {workers} worker(s)")
        t1 = max(out.read_at[i] for i in ids)
        per_worker = [metric(w.metrics(), "fmlc_messages_total", outcome="ok") for w in procs]
        cpu1 = [proc_stats(w.pid).get("cpu_s", 0.0) for w in procs]
        res = {"workers": workers, "partitions": p, "partitions_per_worker": shares, "messages": m,
               "seconds_first_send_to_last_output": t1 - t0, "docs_per_s": m / (t1 - t0),
               "messages_per_worker": per_worker, "duplicates": out.duplicates,
               "worker_cpu_s": [b - a for a, b in zip(cpu0, cpu1, strict=True)],
               "machine_cpu_busy_fraction": busy.read()}
        cfg.log(f"scaling, {workers} worker(s): {res['docs_per_s']:.1f} docs/s, split {per_worker}")
        return res
    finally:
        for w in procs:
            w.stop()
        reader.close()


# --- the whole run ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def services(cfg: BenchConfig, broker_log: str) -> Iterator[tuple[str, int | None, str | None]]:
    """The broker (a Tansu of our own unless `cfg.bootstrap` names one) and Redis (when `cfg.redis`),
    stopped again on the way out: (bootstrap, broker pid or None, Redis URL or None)."""
    from worker.testkit import redis_url_or_start, start_broker

    broker = redis = None
    try:
        if cfg.bootstrap is None:
            broker = start_broker(log_path=str(cfg.workdir / broker_log))
        if cfg.redis:
            redis = redis_url_or_start()
        yield (broker.bootstrap if broker is not None else cfg.bootstrap,  # type: ignore[misc]
               broker.process.pid if broker is not None else None, redis.url if redis is not None else None)
    finally:
        if broker is not None:
            broker.stop()
        if redis is not None and redis.owned:
            redis.stop()


def run_bench(cfg: BenchConfig) -> dict:
    from fmlc import Predictor

    torch.set_num_threads(1)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    need = cfg.messages * (2 if cfg.cached_pass else 1) + cfg.naive_messages + cfg.scaling_messages * 2
    if len(cfg.texts) < cfg.messages:
        raise ValueError(f"need at least {cfg.messages} distinct texts, got {len(cfg.texts)}")
    pool = TextPool(cfg.texts)
    predictor = Predictor.load(cfg.model_dir, device="cpu", torch_threads=1)
    t_begin = time.time()
    load_before = os.getloadavg()
    with services(cfg, "broker.log") as (bootstrap, broker_pid, redis_url):
        limit_texts = cfg.texts[: cfg.limit_docs]
        cfg.log(f"limit on {len(limit_texts)} docs (b={cfg.batch_size}) and {cfg.limit_b1_docs} docs (b=1)")
        limit = measure_limit(predictor, limit_texts, cfg)
        limit_b = limit[f"limit_b{cfg.batch_size}_docs_per_s"]
        cfg.log(f"limit b={cfg.batch_size}: {limit_b:.1f} docs/s, b=1: {limit['limit_b1_docs_per_s']:.1f} docs/s")
        worker = worker_runs(cfg, bootstrap, broker_pid, redis_url, pool, limit)
        repeated = repeated_throughput(cfg, bootstrap, redis_url, pool, predictor, limit_texts) if cfg.repeats \
            else None
        naive = naive_run(cfg, bootstrap, predictor, pool)
        scaling = None
        if cfg.scaling and cfg.worker_mode == "process":
            one = scaling_run(cfg, bootstrap, redis_url, pool, 1)
            two = scaling_run(cfg, bootstrap, redis_url, pool, 2)
            scaling = {"one": one, "two": two, "two_over_one": two["docs_per_s"] / one["docs_per_s"]}
        # The limit once more at the end: the machine is shared, so the best of both is the limit.
        again = rate(lambda: predictor.predict(limit_texts, batch_size=cfg.batch_size), len(limit_texts), repeat=1)
        limit["limit_b_again_docs_per_s"] = again
        limit_b = max(limit_b, again)

    thr = worker["throughput"]["docs_per_s"]
    gain = limit_b / limit["limit_b1_docs_per_s"]
    vs_naive = thr / naive["docs_per_s"]
    payload: dict[str, Any] = {
        "machine": machine() | {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                                "torch_threads_everywhere": 1},
        "model_dir": str(cfg.model_dir), "model_version": predictor.version,
        "texts": "ccks2019_fin (unique after normalisation)" if cfg.texts and len(cfg.texts) > 5000 else "given",
        "texts_reused_with_suffix": pool.suffixed, "texts_needed_estimate": need,
        "batch_size": cfg.batch_size, "max_wait_ms": cfg.max_wait_ms,
        "limit": limit | {"limit_b_best_docs_per_s": limit_b},
        "worker": worker, "naive": naive, "scaling": scaling,
        "model_batch_gain": gain,
        # The median of the runs measured between two limit measurements each, where there are any;
        # the first run's ratio (against the best limit of the whole bench) is kept beside it.
        "worker_vs_limit": repeated["median"] if repeated else thr / limit_b,
        "worker_vs_limit_first_run": thr / limit_b,
        "repeated": repeated,
        "worker_steady_vs_limit": worker["throughput"]["steady_docs_per_s"] / limit_b,
        "worker_vs_limit_per_microbatch": thr / limit["limit_per_microbatch_docs_per_s"],
        "worker_vs_naive": vs_naive,
        "naive_vs_limit_b1": naive["docs_per_s"] / limit["limit_b1_docs_per_s"],
        "batch_gain_kept": vs_naive / gain,
        "targets": {"worker_vs_limit_at_least": 0.9, "batch_gain_kept_at_least": 0.9},
        "wall_s": time.time() - t_begin,
    }
    wcpu = worker["throughput"].get("worker_cpu_ms_per_msg")
    if wcpu:
        # CPU per message does not depend on how busy the rest of the machine was during each part.
        payload["worker_vs_limit_cpu"] = limit["cpu_ms_per_doc_b"] / wcpu
        payload["worker_vs_limit_per_microbatch_cpu"] = limit["cpu_ms_per_doc_per_microbatch"] / wcpu
    payload["meets"] = {"worker_vs_limit": payload["worker_vs_limit"] >= 0.9,
                        "batch_gain_kept": payload["batch_gain_kept"] >= 0.9}
    payload["latency_levels"] = [{k: lv[k] for k in ("load_fraction", "target_docs_per_s", "p50_ms", "p99_ms",
                                                     "budget_ms")} for lv in worker["latency"]["levels"]]
    per_worker = thr
    payload["scaling_on_paper"] = {
        "rule": "throughput ≈ min(N machines, P partitions) × per-worker rate, while the broker is not the "
                "bottleneck (one worker per machine, each with its own cores)",
        "per_worker_docs_per_s": per_worker,
        "table": [{"machines": n, "partitions": p, "docs_per_s": min(n, p) * per_worker}
                  for p in (3, 6, 12) for n in (1, 2, 4, 8)],
    }
    bcpu = worker["throughput"].get("broker_cpu_ms_per_msg")
    if bcpu:
        payload["scaling_on_paper"]["broker_ceiling_docs_per_s_per_core_estimate"] = 1000 / bcpu
        payload["scaling_on_paper"]["broker_note"] = (
            "Tansu's CPU per end-to-end message (input produce + fetch, output produce + the bench's read) "
            "measured here; a real Kafka cluster is sized separately")
    return payload


def markdown(p: dict) -> list[str]:
    lim, w, nv = p["limit"], p["worker"], p["naive"]
    thr = w["throughput"]
    b = p["batch_size"]
    md = [f"# Streaming worker throughput and latency ({p['machine'].get('cpus')} CPUs, shared; torch 1 thread "
          "everywhere)", "",
          f"Model `{p['model_dir']}` (version {p['model_version']}), batch size {b}, max wait {p['max_wait_ms']} ms, "
          f"{w['settings']['partitions']} input partitions, "
          f"cache {'on (fresh prefix)' if w['settings']['cache'] else 'off'}, "
          f"worker as {w['settings']['worker_mode']}. Load average before/after: "
          f"{', '.join(f'{x:.2f}' for x in p['machine']['loadavg_before'])} / "
          f"{', '.join(f'{x:.2f}' for x in p['machine']['loadavg_after'])}.", "",
          "| run | docs/s |", "|---|---|",
          f"| limit: tokenise + predict in memory, b={b} (best of start/end) | {lim['limit_b_best_docs_per_s']:.1f} |",
          f"| limit: b=1 | {lim['limit_b1_docs_per_s']:.1f} |",
          f"| limit per micro-batch: one predict() per consecutive {b} texts, arrival order | "
          f"{lim['limit_per_microbatch_docs_per_s']:.1f} |",
          f"| worker end to end ({thr['messages']} msgs, /readyz → last output read) | {thr['docs_per_s']:.1f} |",
          f"| worker steady state (first → last output timestamp) | {thr['steady_docs_per_s']:.1f} |",
          f"| naive loop (poll 1, predict, produce + flush, commit; {nv['messages']} msgs) | {nv['docs_per_s']:.1f} |"]
    if w.get("cache"):
        md.append(f"| worker, every text a cache hit ({w['cache']['hits']}/{w['cache']['messages']} hits; producer "
                  f"inside the window) | {w['cache']['docs_per_s_first_send_to_last_output']:.1f} |")
    if p.get("scaling"):
        sc = p["scaling"]
        md += [f"| 1 worker, {sc['one']['partitions']} partitions (burst of {sc['one']['messages']}) | "
               f"{sc['one']['docs_per_s']:.1f} |",
               f"| 2 workers, one group (split {sc['two']['messages_per_worker']}) | {sc['two']['docs_per_s']:.1f} |"]
    md += ["", "| ratio | value | target |", "|---|---|---|",
           f"| model_batch_gain (limit b={b} / b=1) | {p['model_batch_gain']:.2f}x | |",
           f"| worker_vs_limit{_how(p)} | {p['worker_vs_limit']:.3f} | ≥ 0.9 "
           f"({'met' if p['meets']['worker_vs_limit'] else 'NOT met'}) |",
           *([f"| worker_vs_limit, first run ÷ the best limit of the whole bench | "
              f"{p['worker_vs_limit_first_run']:.3f} | |"] if p.get("repeated") else []),
           f"| worker_steady_vs_limit (first run) | {p['worker_steady_vs_limit']:.3f} | |",
           f"| worker_vs_limit_per_microbatch | {p['worker_vs_limit_per_microbatch']:.3f} | |",
           *([f"| worker_vs_limit_cpu (limit CPU-ms/doc ÷ worker CPU-ms/msg) | {p['worker_vs_limit_cpu']:.3f} | |",
              f"| worker_vs_limit_per_microbatch_cpu | {p['worker_vs_limit_per_microbatch_cpu']:.3f} | |"]
             if "worker_vs_limit_cpu" in p else []),
           f"| worker_vs_naive | {p['worker_vs_naive']:.2f}x | |",
           f"| batch_gain_kept (worker_vs_naive / model_batch_gain) | {p['batch_gain_kept']:.3f} | ≥ 0.9 "
           f"({'met' if p['meets']['batch_gain_kept'] else 'NOT met'}) |",
           f"| naive_vs_limit_b1 | {p['naive_vs_limit_b1']:.3f} | |"]
    md += ["", f"Whole list against micro-batches: `predict(texts, batch_size={b})` over {lim['docs_b']} texts sorts "
           "them all by length before cutting chunks; a streaming worker can only sort what one model call "
           f"holds: {_merged(w)}. Padded / real tokens (tokens per doc: mean {lim['tokens_per_doc_mean']:.0f}, max "
           f"{lim['tokens_per_doc_max']}; predictor token budget per chunk {lim['predictor_max_batch_tokens']}): "
           f"whole list {lim['padded_over_real_tokens_whole_list']:.2f}x, per micro-batch "
           f"{lim['padded_over_real_tokens_per_microbatch']:.2f}x, per micro-batch padded as one chunk "
           f"{lim['padded_over_real_tokens_per_microbatch_one_chunk']:.2f}x. CPU per doc: "
           f"{lim['cpu_ms_per_doc_b']:.2f} ms whole list, {lim['cpu_ms_per_doc_per_microbatch']:.2f} ms per "
           f"micro-batch, {_num(lim['cpu_ms_per_doc_per_microbatch_one_chunk'])} ms per micro-batch as one chunk "
           f"({_num(lim['limit_per_microbatch_one_chunk_docs_per_s'], 0)} docs/s), "
           f"{lim['cpu_ms_per_doc_b1']:.2f} ms at b=1."]
    md += ["", f"Naive loop per message: predict {nv['ms_per_msg_predict']:.1f} ms, produce + flush "
           f"{nv['ms_per_msg_produce_flush']:.1f} ms, commit {nv['ms_per_msg_commit']:.1f} ms."]
    md.append(f"During the worker's throughput run the whole machine's CPU was {thr['machine_cpu_busy_fraction']:.0%} "
              "busy (2 cores, all processes); the worker process "
              f"used {_num(thr.get('worker_cores_used'))} cores.")
    if "worker_cpu_ms_per_msg" in thr:
        md.append(f"CPU per message: worker process {thr['worker_cpu_ms_per_msg']:.2f} ms (all its threads) against "
                  f"{lim['cpu_ms_per_doc_b']:.2f} ms for the in-memory limit; broker "
                  f"{thr.get('broker_cpu_ms_per_msg', float('nan')):.2f} ms.")
    lat = w["latency"]
    md += ["", f"## Latency under load (send → output read; capacity {lat['capacity_docs_per_s']:.0f} docs/s)", "",
           f"Budget = max wait {p['max_wait_ms']} ms + compute of a full arrival-order batch of {b} "
           f"({lat['full_batch_compute_ms']:.0f} ms, from the per-micro-batch limit) = "
           f"{lat['budget_ms_max_wait_plus_full_batch']:.0f} ms; 'budget at batch' = max wait + the tokenise + "
           "inference time per batch the worker reported at that load.", "",
           "| load | sent/s | out/s | p50 ms | p90 ms | p99 ms | max ms | p50 / p99 to output produced "
           "| in-worker p50 / p99 | mean batch | tokenise + inference ms/batch | budget at batch ms | p99 / budget "
           "| worker cores used | machine CPU busy |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in lat["levels"]:
        md.append(f"| {lv['load_fraction']:.0%} | {lv['sent_docs_per_s'] or 0:.0f} | {lv['output_docs_per_s']:.0f} | "
                  f"{lv['p50_ms']:.0f} | {lv['p90_ms']:.0f} | {lv['p99_ms']:.0f} | {lv['max_ms']:.0f} | "
                  f"{lv['p50_ms_to_output_produced']:.0f} / {lv['p99_ms_to_output_produced']:.0f} | "
                  f"{lv['in_worker_p50_ms']:.0f} / {lv['in_worker_p99_ms']:.0f} | {lv['mean_batch_size'] or 0:.1f} | "
                  f"{(lv['mean_tokenize_ms_per_batch'] or 0) + (lv['mean_inference_ms_per_batch'] or 0):.0f} | "
                  f"{lv['budget_at_observed_batch_ms']:.0f} | {lv['p99_over_budget']:.2f} | "
                  f"{_num(lv.get('worker_cores_used'))} | {lv['machine_cpu_busy_fraction']:.0%} |")
    sp = p["scaling_on_paper"]
    md += ["", "## Scaling", ""]
    if p.get("scaling"):
        sc = p["scaling"]
        md.append(f"Measured on this machine: two workers / one worker = **{sc['two_over_one']:.2f}x** (machine CPU "
                  f"busy {sc['one']['machine_cpu_busy_fraction']:.0%} with one worker, "
                  f"{sc['two']['machine_cpu_busy_fraction']:.0%} with two). Both workers, "
                  "the broker, the bench's producer and reader and the other jobs on this machine share its "
                  f"{p['machine'].get('cpus')} cores (load average {p['machine']['loadavg_after'][0]:.1f}), so this "
                  "says nothing about scaling across machines beyond 'no loss from the group split'; each worker "
                  "needs about one core of its own (torch 1 thread + consume/produce threads).")
    md += ["", f"On paper: {sp['rule']}. Per-worker rate {sp['per_worker_docs_per_s']:.0f} docs/s "
           "(measured above):", "",
           "| partitions \\ machines | 1 | 2 | 4 | 8 |", "|---|---|---|---|---|"]
    for part in (3, 6, 12):
        row = [r for r in sp["table"] if r["partitions"] == part]
        md.append(f"| {part} | " + " | ".join(f"{r['docs_per_s']:.0f}" for r in row) + " |")
    if "broker_ceiling_docs_per_s_per_core_estimate" in sp:
        md.append(f"\nBroker: {thr['broker_cpu_ms_per_msg']:.2f} CPU-ms per end-to-end message here, i.e. one "
                  f"broker core would carry about {sp['broker_ceiling_docs_per_s_per_core_estimate']:.0f} docs/s "
                  f"of this traffic ({sp['broker_note']}).")
    md += ["", f"![throughput and latency]({NAME}.png)"]
    return md


def _how(p: dict) -> str:
    rep = p.get("repeated")
    if not rep:
        return ""
    each = ", ".join(f"{r['worker_vs_limit']:.3f}" for r in rep["runs"])
    return (f" (median of {len(rep['runs'])} runs of {p['worker']['throughput']['messages']} messages, each ÷ the "
            f"higher of the limits measured just before and after it: {each})")


def _merged(w: dict) -> str:
    thr, window = w["throughput"], w["settings"].get("sort_window")
    if not thr.get("model_calls"):
        return f"one micro-batch of up to {w['settings']['batch_size']}"
    return (f"under the backlog of the throughput run {thr['micro_batches']:.0f} micro-batches (mean "
            f"{thr['mean_micro_batch']:.0f}) went through {thr['model_calls']:.0f} model calls (mean "
            f"{thr['mean_model_batch']:.0f} texts; at most sort_window {window} micro-batches merged per call); "
            f"the first output came {thr['seconds_ready_to_first_output']:.2f} s after the worker was ready")


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def plot(p: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = p["worker"]
    bars = {f"limit b={p['batch_size']}": p["limit"]["limit_b_best_docs_per_s"],
            "limit b=1": p["limit"]["limit_b1_docs_per_s"],
            "worker e2e": w["throughput"]["docs_per_s"], "naive loop": p["naive"]["docs_per_s"]}
    if w.get("cache"):
        bars["worker, cached"] = w["cache"]["docs_per_s_first_send_to_last_output"]
    if p.get("scaling"):
        bars["1 worker (burst)"] = p["scaling"]["one"]["docs_per_s"]
        bars["2 workers (burst)"] = p["scaling"]["two"]["docs_per_s"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    a.barh(list(bars), list(bars.values()))
    a.set_xlabel("docs/s")
    a.set_title("throughput")
    a.invert_yaxis()
    levels = w["latency"]["levels"]
    x = [lv["load_fraction"] * 100 for lv in levels]
    b.plot(x, [lv["p50_ms"] for lv in levels], "o-", label="p50")
    b.plot(x, [lv["p99_ms"] for lv in levels], "s-", label="p99")
    b.axhline(w["latency"]["budget_ms_max_wait_plus_full_batch"], color="grey", ls="--",
              label="max wait + full-batch compute")
    b.set_yscale("log")
    b.set_xlabel("load, % of measured worker capacity")
    b.set_ylabel("ms, send → output read")
    b.set_title("latency under load")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "runs" / "bench-model")
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=int, default=25)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--level-seconds", type=float, default=25.0)
    ap.add_argument("--naive-messages", type=int, default=400)
    ap.add_argument("--scaling-messages", type=int, default=3000)
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--repeats", type=int, default=5, help="throughput runs between two limit measurements each")
    ap.add_argument("--no-redis", action="store_true", help="no cache at all (and no cached pass)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    from bench.common import ccks_texts, train_bench_model

    model_dir, _ = train_bench_model(args.model)  # trained once (on ccks2019_fin) and reused
    cfg = BenchConfig(model_dir=model_dir, texts=ccks_texts(), messages=args.messages, batch_size=args.batch_size,
                      max_wait_ms=args.max_wait_ms, partitions=args.partitions, level_seconds=args.level_seconds,
                      naive_messages=args.naive_messages, scaling=not args.no_scaling,
                      scaling_messages=args.scaling_messages, redis=not args.no_redis, repeats=args.repeats)
    payload = run_bench(cfg)
    md = markdown(payload)
    write_results(NAME, payload, md)
    plot(payload, RESULTS / f"{NAME}.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
