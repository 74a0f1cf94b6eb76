"""Latency under load with a cheap load generator: p50 / p99 at 25%, 50% and 80% of a capacity
measured in the same run, and the CPU the load generator itself used.

    python -m bench.latency [--messages 3000] [--level-seconds 20] [--levels 0.25 0.5 0.8]

1. Capacity: `python -m worker` drains a backlog of real ccks2019_fin texts produced beforehand
   (messages/s from /readyz to the last output read back).
2. Each level: the same worker, a paced load at that fraction of the capacity. The generator is
   librdkafka (confluent-kafka: sending and receiving run in its C threads), every message is
   serialised before the clock starts, and outputs are read back by a librdkafka consumer. Latency
   is from a message's send to its output (a) being read back and (b) being produced by the worker
   (the output record's timestamp, which the reader's own delay does not touch).
3. The load generator's CPU: this process's user + system seconds (producer, reader, pacing) per
   second of the level, beside the worker's own and the whole machine's busy share.

The throughput bench's paced producer (kafka-python, pure Python) shared the 2 cores with the worker
and its reader; this one is meant to leave them to the worker. Results: bench/results/latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO, BusyMeter, TextPool, machine, percentile, proc_stats, write_results

NAME = "latency"


class LibrdkafkaReader:
    """Output ids with the time each was first read, and each output's own timestamp (ms), read by
    a librdkafka consumer from the beginning of its topic (manual assignment, no group commits)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"latency-{os.getpid()}",
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                   "fetch.wait.max.ms": 10, "isolation.level": "read_uncommitted"})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.read_at: dict[str, float] = {}
        self.produced_ms: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="latency-reader", daemon=True)

    def start(self) -> LibrdkafkaReader:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.consume(num_messages=1000, timeout=0.05)
            now = time.time()
            for msg in batch:
                if msg.error() or msg.key() is None:
                    continue
                key = msg.key().decode()
                if key not in self.read_at:
                    self.read_at[key] = now
                    self.produced_ms[key] = msg.timestamp()[1]

    def wait(self, ids: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.read_at for i in ids):
                return
            time.sleep(0.02)
        got = sum(1 for i in ids if i in self.read_at)
        raise TimeoutError(f"{got} of {len(ids)} outputs within {timeout:.0f} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def paced_send(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]], rate: float,
               partitions: int) -> list[float]:
    """Send pre-serialised (key, value) pairs at `rate` per second through librdkafka; returns each
    one's send time (time.time())."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    sent: list[float] = []
    t0 = time.time() + 0.05
    for k, (key, value) in enumerate(messages):
        delay = t0 + k / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        sent.append(time.time())
        producer.produce(topic, value=value, key=key, partition=k % partitions)
        producer.poll(0)
    producer.flush(30)
    return sent


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def level(bootstrap: str, s: Any, worker_pid: int, reader: LibrdkafkaReader, pool: TextPool, frac: float,
          capacity: float, seconds: float, partitions: int) -> dict:
    from worker.testkit import message

    rate = frac * capacity
    n = max(2, int(rate * seconds))
    tag = f"l{int(round(frac * 100))}-{time.time_ns()}"
    ids = [f"{tag}-{i}" for i in range(n)]
    payload = [(i.encode(), message(i, t)) for i, t in zip(ids, pool.take(n), strict=True)]  # before the clock
    busy = BusyMeter()
    gen0, w0 = own_cpu_seconds(), proc_stats(worker_pid).get("cpu_s")
    t_start = time.time()
    sent = paced_send(bootstrap, s.input_topic, payload, rate, partitions)
    reader.wait(ids, 60 + 3 * seconds)
    wall = time.time() - t_start
    gen1, w1 = own_cpu_seconds(), proc_stats(worker_pid).get("cpu_s")
    read_ms = [1000 * (reader.read_at[i] - t) for i, t in zip(ids, sent, strict=True)]
    produced_ms = [reader.produced_ms[i] - 1000 * t for i, t in zip(ids, sent, strict=True)]
    return {"load_fraction": frac, "target_msgs_per_s": rate, "messages": n,
            "sent_msgs_per_s": (n - 1) / max(1e-9, sent[-1] - sent[0]),
            "p50_ms": percentile(read_ms, 50), "p99_ms": percentile(read_ms, 99), "max_ms": max(read_ms),
            "p50_ms_to_output_produced": percentile(produced_ms, 50),
            "p99_ms_to_output_produced": percentile(produced_ms, 99),
            "load_generator_cores": (gen1 - gen0) / wall,
            "worker_cores": (w1 - w0) / wall if w0 is not None and w1 is not None else None,
            "machine_busy_fraction": busy.read(), "seconds": wall}


def run(model_dir: Path, texts: list[str], messages: int, levels: Sequence[float], level_seconds: float,
        bootstrap: str | None = None, batch_size: int = 64, max_wait_ms: int = 25, partitions: int = 2,
        workdir: Path = REPO / "runs" / "bench-latency") -> dict:
    from bench.worker_throughput import Outputs
    from worker.kafka import ensure_topics
    from worker.testkit import TopicReader, WorkerProcess, message, produce, start_broker, worker_settings

    workdir.mkdir(parents=True, exist_ok=True)
    broker = start_broker(log_path=workdir / "broker.log") if bootstrap is None else None
    bootstrap = broker.bootstrap if broker is not None else bootstrap
    assert bootstrap is not None
    pool = TextPool(texts)
    s = worker_settings(bootstrap, model_dir, redis_url=None, batch_size=batch_size, max_wait_ms=max_wait_ms,
                        topic_partitions=partitions)
    ensure_topics(s)
    # Capacity: a backlog produced before the worker starts, read back by the kafka-python reader the
    # throughput bench uses (the rate is the worker's, the reader only has to keep up).
    out = Outputs(s.output_topic, s.dlq_topic)
    backlog_reader = TopicReader(bootstrap, s.output_topic, committed_only=False)
    backlog_reader.on_record = out
    backlog_reader.start()
    ids = [f"cap-{i}" for i in range(messages)]
    produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, pool.take(messages),
                                                                                   strict=True)],
            partitions=partitions)
    w = WorkerProcess(s, workdir / "worker.log")
    result: dict[str, Any] = {"machine": machine(), "messages": messages, "batch_size": batch_size,
                              "max_wait_ms": max_wait_ms, "partitions": partitions, "levels": []}
    try:
        t_ready = w.wait_ready(120)
        out.wait(ids, 600, "capacity outputs")
        capacity = len(ids) / (max(out.read_at[i] for i in ids) - t_ready)
        backlog_reader.close()
        result["capacity_msgs_per_s"] = capacity
        reader = LibrdkafkaReader(bootstrap, s.output_topic, partitions).start()
        try:
            reader.wait(ids, 60)  # caught up with the backlog's outputs before the first level
            for frac in levels:
                result["levels"].append(level(bootstrap, s, w.pid, reader, pool, frac, capacity, level_seconds,
                                              partitions))
        finally:
            reader.close()
        result["worker_exit_code"] = w.stop()
    finally:
        if w.alive():
            w.kill()
        backlog_reader.close()
        if broker is not None:
            broker.stop()
    return result


def markdown(p: dict) -> list[str]:
    lines = [f"# Latency under load ({p['machine']['when']}, batch {p['batch_size']}, max wait {p['max_wait_ms']} ms, "
             f"{p['partitions']} partitions)", "",
             f"Capacity measured in this run on a backlog: **{p['capacity_msgs_per_s']:.0f} msgs/s**. Load generator: "
             "librdkafka producer and consumer, messages serialised beforehand.", "",
             "| load | sent/s | p50 / p99 read back (ms) | p50 / p99 to output produced (ms) | load generator "
             "cores | worker cores | machine busy |", "|---|---|---|---|---|---|---|"]
    for lv in p["levels"]:
        worker = f"{lv['worker_cores']:.2f}" if lv["worker_cores"] is not None else ""
        lines.append(f"| {100 * lv['load_fraction']:.0f}% | {lv['sent_msgs_per_s']:.0f} | {lv['p50_ms']:.0f} / "
                     f"{lv['p99_ms']:.0f} | {lv['p50_ms_to_output_produced']:.0f} / "
                     f"{lv['p99_ms_to_output_produced']:.0f} | {lv['load_generator_cores']:.2f} | {worker} | "
                     f"{100 * lv['machine_busy_fraction']:.0f}% |")
    lines += ["", "Load generator cores: this process's CPU seconds (producer, reader, pacing) per second of the "
              "level; worker cores: the worker process and its tokenizer children."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "runs" / "bench-model")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 0.8])
    ap.add_argument("--level-seconds", type=float, default=20.0)
    args = ap.parse_args()
    from bench.common import ccks_texts, train_bench_model

    model_dir, _ = train_bench_model(args.model)
    payload = run(model_dir, ccks_texts(), args.messages, args.levels, args.level_seconds)
    md = markdown(payload)
    write_results(NAME, payload, md)
    print("\n".join(md))
    print(json.dumps({k: v for k, v in payload.items() if k != "levels"}, default=str)[:300])


if __name__ == "__main__":
    main()
