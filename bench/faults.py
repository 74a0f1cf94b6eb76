"""Fault runs against the real worker process, each checking itself (PASS/FAIL with counts).

    python -m bench.faults [--only sigkill,broker_freeze,worker_freeze,redis_restart,soak,hostile,poison,codecs,
                           undecodable,hung_tokenizer,secrets,
                           dlq_at_limit,big_messages,eos_rebalance]
                           [--model DIR] [--soak-messages 100000] [--kills 3]

Every scenario starts its own Tansu broker (memory-only) and runs `python -m worker` subprocesses
with the tiny-dimension model (delivery is the point here, not the model; trained once into
runs/bench-tiny-model by worker.testkit.tiny_model):

- sigkill: a worker SIGKILLed mid-stream `--kills` times and restarted each time: every input id has
  an output; duplicates per kill are within the in-flight bound (max_in_flight records);
- broker_freeze: the broker SIGSTOPped for longer than the session timeout (and the poll interval),
  then SIGCONT: the same worker process recovers on its own and loses nothing;
- worker_freeze: the worker SIGSTOPped past the session timeout while the broker runs on (the group
  expires it), then SIGCONT: it rejoins on its own and loses nothing;
- redis_restart: Redis stopped, then restarted on the same port: processing goes on uncached (the
  cache-error metric counts), then outputs are cached again;
- soak: `--soak-messages` messages (default 100,000; 10 % repeated texts for the cache-hit path):
  RSS, threads and open descriptors of the worker when warm and at the end — flat;
- hostile: invalid JSON and UTF-8, huge texts, control characters, emoji only, whitespace only, wrong
  types, missing and duplicated ids … among good messages: each one ends as an output or a dead
  letter with the expected reason, and inputs = outputs + dead letters exactly;
- poison: inputs that are valid enough to get past the parser's error handling (deep JSON nesting,
  a lone UTF-16 surrogate with and without the cache), each alone with a fresh worker: handled, or
  the worker dies (and dies again on restart — a crash loop);
- codecs: librdkafka producers (confluent-kafka) write none, gzip, lz4, zstd and snappy batches into
  the input topic: every message is answered, no poll fails;
- undecodable: garbage lz4 batches, CRC mismatches and non-UTF-8 header keys among good messages: each bad record is
  a dead letter (reason undecodable) at its offset, the partition reads on, the worker stays live;
- hung_tokenizer: the jieba child SIGSTOPped with a backlog (stall timeout `--stall-timeout-s`, below
  the tokenizer timeout): /healthz red with stage_stalled/tokenizer within the stall timeout, then
  the child is killed and replaced, /healthz green again, every message answered, none dead-lettered;
- secrets: a SASL password, an SSL key password and a Redis URL password planted (a worker at DEBUG
  with the right and with a wrong Redis password, start-ups that fail validation, secrets as flags):
  the value is in no log, stderr, HTTP answer, output or dead letter;
- dlq_at_limit: inputs at the broker's message limit with 4 KB keys and large headers become dead
  letters cut to fit and marked truncated; the messages after them are answered;
- big_messages: 100 messages with ~900 KB of meta each, waiting before the worker starts: all answered,
  RSS growth within 2 x FMLC_MAX_IN_FLIGHT_BYTES + 100 MB (bench/big_messages.py);
- eos_rebalance: exactly-once workers, a second joining and the first leaving mid-stream, and a third
  started with a live worker's instance id: it refuses to start, nobody is fenced, and the
  read_committed output holds every id exactly once.

Results: bench/results/faults.{json,md} (with --only, merged into the existing results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, TINY_MODEL_DIR, machine, proc_stats, write_results
from worker.kafka import ensure_topics
from worker.testkit import (
    TopicReader,
    WorkerProcess,
    committed_and_end,
    http_get,
    make_producer,
    message,
    metric,
    produce,
    read_all,
    tiny_model,
    wait_for,
    worker_settings,
)

NAME = "faults"
WORKDIR = REPO / "runs" / "bench-faults"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synthetic_texts(n: int, seed: int) -> list[str]:
    from training.synth import generate

    return [d["text"] for d in generate(n, seed)]


@dataclass
class Collector:
    """Output and dead-letter records as a TopicReader sees them, in read order (no record kept)."""

    output_topic: str
    dlq_topic: str
    per_id: Counter = field(default_factory=Counter)
    cached: Counter = field(default_factory=Counter)  # id -> outputs with cached=true
    dead: int = 0
    dead_reasons: Counter = field(default_factory=Counter)
    dup_events: list[tuple[float, str]] = field(default_factory=list)
    first_read: dict[str, float] = field(default_factory=dict)
    last_read: float = 0.0

    def __call__(self, r: Any, now: float) -> None:
        self.last_read = now
        if r.topic == self.dlq_topic:
            self.dead += 1
            self.dead_reasons[dict(r.headers or []).get("fmlc.dlq.reason", b"?").decode()] += 1
            return
        key = r.key.decode("utf-8", "replace")
        if self.per_id[key]:
            self.dup_events.append((now, key))
        else:
            self.first_read[key] = now
        self.per_id[key] += 1
        try:
            if json.loads(r.value).get("cached"):
                self.cached[key] += 1
        except ValueError:
            pass

    @property
    def distinct(self) -> int:
        return len(self.per_id)

    def have_all(self, ids: list[str]) -> bool:
        return all(self.per_id[i] for i in ids)

    def missing(self, ids: list[str]) -> int:
        return sum(1 for i in ids if not self.per_id[i])


def start_reader(bootstrap: str, s: Any) -> tuple[TopicReader, Collector]:
    col = Collector(s.output_topic, s.dlq_topic)
    reader = TopicReader(bootstrap, s.output_topic, s.dlq_topic, keep=False, committed_only=False)
    reader.on_record = col
    reader.start()
    return reader, col


def final_counts(bootstrap: str, s: Any, ids: list[str]) -> dict:
    """Read the output topic again from the start with a fresh consumer: the ground truth."""
    records = read_all(bootstrap, [s.output_topic, s.dlq_topic], timeout=120, committed_only=False)
    per_id = Counter(r.key.decode("utf-8", "replace") for r in records if r.topic == s.output_topic)
    want = set(ids)
    missing = [i for i in ids if not per_id[i]]
    return {"inputs": len(ids), "outputs": sum(per_id[i] for i in want), "distinct_outputs": len(want & set(per_id)),
            "missing": len(missing), "missing_sample": missing[:5],
            "duplicates": sum(per_id[i] - 1 for i in want if per_id[i] > 1),
            "dead_letters": sum(1 for r in records if r.topic == s.dlq_topic),
            "unexpected_outputs": len(set(per_id) - want)}


def all_committed(bootstrap: str, s: Any) -> bool:
    ends = committed_and_end(bootstrap, s.group_id, s.input_topic)
    return all(c == e for c, e in ends.values())


def log_lines(w: WorkerProcess, *needles: str, limit: int = 12) -> list[str]:
    lines = [ln for ln in w.log().splitlines() if any(n in ln for n in needles)]
    return lines[:limit]


# --- (a) SIGKILL mid-stream, restarted ---------------------------------------------------------------

def sigkill(args: argparse.Namespace, model: Path) -> dict:
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "sigkill-broker.log"))
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=32, max_in_flight=256, topic_partitions=3)
        ensure_topics(s)
        n = args.kill_messages
        ids = [f"k-{i}" for i in range(n)]
        produce(broker.bootstrap, s.input_topic,
                [(i.encode(), message(i, t)) for i, t in zip(ids, synthetic_texts(n, 11), strict=True)], partitions=3)
        reader, col = start_reader(broker.bootstrap, s)
        kills = []
        for k in range(args.kills):
            w = WorkerProcess(s, WORKDIR / f"sigkill-{k}.log")
            w.wait_ready(120)
            target = int(n * (k + 1) / (args.kills + 1.5))
            wait_for(lambda t=target: col.distinct >= t, 180, f"{target} outputs before kill {k + 1}", interval=0.01)
            at = {"distinct": col.distinct, "records": sum(col.per_id.values())}
            t_kill = time.time()
            w.signal(signal.SIGKILL)
            w.proc.wait(10)
            kills.append({"kill": k + 1, "time": t_kill, "pid": w.pid, "outputs_distinct_at_kill": at["distinct"],
                          "exit": w.proc.returncode})
            log(f"sigkill: kill {k + 1} at {at['distinct']}/{n} distinct outputs (pid {w.pid})")
        w = WorkerProcess(s, WORKDIR / "sigkill-final.log")
        w.wait_ready(120)
        wait_for(lambda: col.have_all(ids), 300, "every input has an output", interval=0.1)
        exit_code = w.stop()
        reader.close()
        truth = final_counts(broker.bootstrap, s, ids)
        committed = all_committed(broker.bootstrap, s)
    finally:
        broker.stop()
    # Each duplicate is charged to the last kill before it was read: the restarted worker re-processes
    # what the killed one had produced but not committed.
    per_kill = Counter()
    for t, _ in col.dup_events:
        before = [kl["kill"] for kl in kills if kl["time"] <= t]
        per_kill[before[-1] if before else 0] += 1
    for kl in kills:
        kl["duplicates"] = per_kill.get(kl["kill"], 0)
        kl.pop("time")
    max_dup = max((kl["duplicates"] for kl in kills), default=0)
    bound = s.in_flight_limit
    checks = {"every input has an output": truth["missing"] == 0,
              f"duplicates per kill <= max_in_flight ({bound})": max_dup <= bound,
              "no duplicates without a kill": per_kill.get(0, 0) == 0,
              "final worker drained and exited 0": exit_code == 0,
              "all input offsets committed at the end": committed}
    return {"checks": checks, "passed": all(checks.values()), "kills": kills, "counts": truth,
            "max_duplicates_per_kill": max_dup, "bound": bound, "batch_size": s.batch_size,
            "max_duplicates_in_batches": max_dup / s.batch_size,
            "bound_note": "a record can be output twice only if its output was produced but its offset not yet "
                          "committed when the worker died; the consume loop never holds more than max_in_flight "
                          "unacknowledged records, and acknowledged ones are committed within one loop turn "
                          "(<= 50 ms poll)",
            "settings": {"batch_size": s.batch_size, "max_in_flight": s.in_flight_limit, "partitions": 3,
                         "messages": n}}


# --- (b) broker frozen beyond the session timeout -------------------------------------------------

def broker_freeze(args: argparse.Namespace, model: Path) -> dict:
    return _freeze(args, model, "broker")


def worker_freeze(args: argparse.Namespace, model: Path) -> dict:
    """The mirror image: the worker stalls (SIGSTOP: a VM pause, a swap storm) past the session timeout
    while the broker runs on, so the group does expire it; on SIGCONT it must rejoin by itself."""
    return _freeze(args, model, "worker")


def _freeze(args: argparse.Namespace, model: Path, what: str) -> dict:
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / f"{what}-freeze-broker.log"))
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=32, topic_partitions=3)
        ensure_topics(s)
        n1, n2 = 3000, 1000
        texts = synthetic_texts(n1 + n2, 21)
        ids1, ids2 = [f"f-{i}" for i in range(n1)], [f"f2-{i}" for i in range(n2)]
        produce(broker.bootstrap, s.input_topic,
                [(i.encode(), message(i, t)) for i, t in zip(ids1, texts[:n1], strict=True)], partitions=3)
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / f"{what}-freeze-worker.log")
        w.wait_ready(120)
        wait_for(lambda: col.distinct >= 300, 120, "the worker under way", interval=0.01)
        at_freeze = col.distinct
        if what == "broker":
            broker.freeze()
        else:
            w.signal(signal.SIGSTOP)
        t_freeze = time.time()
        log(f"{what} frozen at {at_freeze}/{n1} outputs for {args.freeze_s:.0f} s "
            f"(session timeout {s.session_timeout_ms} ms, max poll interval {s.max_poll_interval_ms} ms)")
        time.sleep(args.freeze_s)
        alive_during = w.alive()
        if what == "broker":
            broker.resume()
        else:
            w.signal(signal.SIGCONT)
        t_resume = time.time()
        produce(broker.bootstrap, s.input_topic,
                [(i.encode(), message(i, t)) for i, t in zip(ids2, texts[n1:], strict=True)], partitions=3)
        wait_for(lambda: col.have_all(ids1 + ids2), 240, "every input has an output after the freeze", interval=0.1)
        t_all = time.time()
        first_after = min((t for t in col.first_read.values() if t > t_resume + 0.05), default=None)
        m = w.metrics()
        same_process = w.alive()
        exit_code = w.stop()
        reader.close()
        truth = final_counts(broker.bootstrap, s, ids1 + ids2)
        committed = all_committed(broker.bootstrap, s)
        notes = log_lines(w, "lost", "revoked", "assigned", "poll failed", "delivery of a batch", "commit",
                          "fatal", "Error", "WARNING")
    finally:
        broker.stop()
    rebalanced = any("lost" in ln or "revoked" in ln for ln in notes if "drain" not in ln) and sum(
        "partitions assigned" in ln for ln in notes) > 1
    checks = {"worker process never exited during the outage": alive_during and same_process,
              "every input (before and after the freeze) has an output": truth["missing"] == 0,
              "worker drained and exited 0": exit_code == 0,
              "all input offsets committed at the end": committed}
    return {"checks": checks, "passed": all(checks.values()), "counts": truth, "frozen": what,
            "freeze_s": args.freeze_s, "outputs_at_freeze": at_freeze,
            "first_new_output_after_resume_s": (first_after - t_resume) if first_after else None,
            "resume_to_all_outputs_s": t_all - t_resume, "frozen_at": t_freeze,
            "group_rebalanced": rebalanced,
            "delivery_failures": metric(m, "fmlc_delivery_failures_total"),
            "worker_log": notes,
            "settings": {"session_timeout_ms": s.session_timeout_ms, "max_poll_interval_ms": s.max_poll_interval_ms,
                         "messages_before": n1, "messages_after": n2}}


# --- (c) Redis stopped, then restarted -------------------------------------------------------------

def redis_restart(args: argparse.Namespace, model: Path) -> dict:
    from worker.testkit import free_port, start_broker, start_redis

    broker = start_broker(log_path=str(WORKDIR / "redis-broker.log"))
    port = free_port()
    redis = start_redis(port)
    redis2 = None
    phases: dict[str, dict] = {}
    try:
        s = worker_settings(broker.bootstrap, model, redis_url=redis.url, batch_size=16, max_wait_ms=20,
                            cache_retry_s=0.5, topic_partitions=2)
        ensure_topics(s)
        texts = synthetic_texts(100, 31)
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "redis-worker.log")
        w.wait_ready(120)
        pid = w.pid

        def send(tag: str, chosen: list[str]) -> list[str]:
            ids = [f"{tag}-{i}" for i in range(len(chosen))]
            produce(broker.bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, chosen,
                                                                                                   strict=True)],
                    partitions=2)
            wait_for(lambda: col.have_all(ids), 90, f"outputs of {tag}", interval=0.05)
            return ids

        def phase(name: str, tag: str, chosen: list[str]) -> dict:
            m0 = w.metrics()
            ids = send(tag, chosen)
            m1 = w.metrics()
            res = {"messages": len(ids), "outputs": sum(1 for i in ids if col.per_id[i]),
                   "cached": sum(1 for i in ids if col.cached[i]),
                   "cache_errors": metric(m1, "fmlc_cache_errors_total") - metric(m0, "fmlc_cache_errors_total"),
                   **{f"cache_requests_{r}": metric(m1, "fmlc_cache_requests_total", result=r)
                      - metric(m0, "fmlc_cache_requests_total", result=r) for r in ("hit", "miss", "error")}}
            phases[name] = res
            log(f"redis_restart: {name}: {res}")
            return res

        phase("1 up, new texts", "a", texts)
        phase("2 up, same texts again", "a2", texts)
        redis.stop()
        t_stop = time.time()
        phase("3 redis stopped", "b", texts)
        phase("4 redis still stopped", "b2", texts[:50])
        down_s = time.time() - t_stop
        redis2 = start_redis(port)
        t_restart = time.time()
        # The restarted Redis is empty: a round is cached only once an earlier round was stored, which
        # happens once the worker's back-off lets it try Redis again.
        probe = texts[:20]
        rounds = 0
        recovered_s = None
        while time.time() - t_restart < 120:
            rounds += 1
            ids = send(f"c{rounds}", probe)
            if any(col.cached[i] for i in ids):
                recovered_s = time.time() - t_restart
                break
            time.sleep(1.0)
        phase("5 after restart, cached again", "d", probe)
        same_process = w.alive() and w.pid == pid
        exit_code = w.stop()
        reader.close()
        dead = col.dead
    finally:
        broker.stop()
        redis.stop()
        if redis2 is not None:
            redis2.stop()
    p = phases
    checks = {"every message answered in every phase": all(v["outputs"] == v["messages"] for v in p.values()),
              "texts seen before are cache hits while Redis is up": p["2 up, same texts again"]["cached"] == 100,
              "nothing cached while Redis is down": p["3 redis stopped"]["cached"] == 0
              and p["4 redis still stopped"]["cached"] == 0,
              "the cache-error metric counts the outage": p["3 redis stopped"]["cache_errors"] >= 1,
              "cached again after the restart": recovered_s is not None
              and p["5 after restart, cached again"]["cached"] == len(probe),
              "same worker process throughout, no dead letters": same_process and dead == 0,
              "worker exited 0": exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "phases": phases, "redis_down_s": down_s,
            "restart_to_first_cached_output_s": recovered_s, "probe_rounds": rounds,
            "settings": {"cache_retry_s": s.cache_retry_s, "cache_socket_timeout_s": s.cache_socket_timeout_s}}


# --- (d) soak ------------------------------------------------------------------------------------

def soak(args: argparse.Namespace, model: Path) -> dict:
    from worker.testkit import start_broker, start_redis

    n = args.soak_messages
    broker = start_broker(log_path=str(WORKDIR / "soak-broker.log"))
    redis = start_redis()
    samples: list[dict] = []
    try:
        s = worker_settings(broker.bootstrap, model, redis_url=redis.url, cache_ttl_s=1800, batch_size=64,
                            max_wait_ms=25, topic_partitions=3)
        ensure_topics(s)
        fresh = int(n * 0.9)
        base = synthetic_texts(fresh, 41)
        import random

        rng = random.Random(41)
        texts = base + [base[rng.randrange(fresh)] for _ in range(n - fresh)]
        order = list(range(n))
        tail = order[fresh // 10:]
        rng.shuffle(tail)  # the repeated texts spread over all but the first part of the stream
        order[fresh // 10:] = tail
        ids = [f"s-{i}" for i in range(n)]
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "soak-worker.log")
        w.wait_ready(120)
        ready_stats = proc_stats(w.pid)
        t0 = time.time()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                st = proc_stats(w.pid)
                if st:
                    samples.append({"t": time.time() - t0, "outputs": col.distinct, **st})
                stop.wait(2.0)

        def send_all() -> None:
            producer = make_producer(broker.bootstrap, linger_ms=20, batch_size=65536)
            try:
                for k, j in enumerate(order):
                    producer.send(s.input_topic, key=ids[j].encode(), value=message(ids[j], texts[j]), partition=k % 3)
                    if k % 5000 == 4999:
                        producer.flush(60)
                        # keep the backlog moderate: the stream, not a pre-loaded topic, is the point
                        wait_for(lambda k=k: col.distinct >= k - 20000, 600, "the worker to keep up", interval=0.2)
                producer.flush(60)
            finally:
                producer.close(5)

        sampler = threading.Thread(target=sample, daemon=True)
        sender = threading.Thread(target=send_all, daemon=True)
        sampler.start()
        sender.start()
        wait_for(lambda: col.distinct >= n, args.soak_timeout_s, f"{n} outputs", interval=0.5)
        elapsed = time.time() - t0
        time.sleep(2.5)  # one more sample after the last output
        stop.set()
        sampler.join(5)
        sender.join(5)
        end_stats = proc_stats(w.pid)
        m = w.metrics()
        exit_code = w.stop(60)
        reader.close()
        cached_outputs = sum(col.cached.values())
        dups = sum(c - 1 for c in col.per_id.values() if c > 1)
    finally:
        broker.stop()
        redis.stop()
    warm = next((x for x in samples if x["outputs"] >= n * 0.1), samples[0] if samples else ready_stats)
    second_half = [x for x in samples if x["outputs"] >= n * 0.5]
    slope = None
    if len(second_half) >= 3:
        import numpy as np

        xs = np.array([x["outputs"] for x in second_half], dtype=float)
        ys = np.array([x["rss_mib"] for x in second_half], dtype=float)
        if np.ptp(xs) > 0:
            slope = float(np.polyfit(xs, ys, 1)[0] * 10_000)  # MiB per 10,000 messages
    rss_growth = end_stats["rss_mib"] - warm["rss_mib"]
    rss_allow = max(25.0, 0.10 * warm["rss_mib"])
    checks = {f"all {n} messages answered": col.distinct >= n and col.missing(ids) == 0,
              "threads flat (warm = end)": end_stats["threads"] == warm["threads"],
              "open descriptors flat (|end - warm| <= 2)": abs(end_stats["fds"] - warm["fds"]) <= 2,
              f"RSS growth warm → end <= {rss_allow:.0f} MiB": rss_growth <= rss_allow,
              "worker exited 0": exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "messages": n, "seconds": elapsed,
            "docs_per_s": n / elapsed, "repeated_texts": n - fresh, "cached_outputs": cached_outputs,
            "duplicates": dups, "dead_letters": col.dead,
            "ready": ready_stats, "warm_at_10pct": warm, "end": end_stats,
            "rss_growth_mib_warm_to_end": rss_growth, "rss_growth_mib_ready_to_end": end_stats["rss_mib"]
            - ready_stats["rss_mib"], "rss_slope_mib_per_10k_msgs_second_half": slope,
            "messages_ok_metric": metric(m, "fmlc_messages_total", outcome="ok"),
            "messages_cached_metric": metric(m, "fmlc_messages_total", outcome="cached"),
            "samples": samples[:: max(1, len(samples) // 60)]}


# --- (e) hostile inputs ------------------------------------------------------------------------------

def _j(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def hostile_set(good: list[str]) -> list[dict]:
    """Each case: name, key, value, headers, expect ("out" or "dlq:<reason>"), and the id an output has."""
    huge = "利息太高，暴力催收。" * 95_000  # ~950 KB of UTF-8 as JSON: under the 1 MB message limit
    cases: list[dict] = [
        dict(name="invalid JSON", value=b"{not json", expect="dlq:not_json"),
        dict(name="truncated JSON", value=b'{"id": "t1", "text": "abc', expect="dlq:not_json"),
        dict(name="invalid UTF-8 bytes", value=b"\xff\xfe\x00broken", expect="dlq:not_utf8"),
        dict(name="invalid UTF-8 inside a JSON string", value=b'{"id": "u8", "text": "\xc3\x28"}',
             expect="dlq:not_utf8"),
        dict(name="text over max_text_chars (6,000 chars)", value=_j({"id": "h1", "text": "催" * 6000}),
             expect="dlq:text_too_long"),
        dict(name="text at max_text_chars (5,000 chars)", value=_j({"id": "h2", "text": good[0] * (5000 // len(good[0]))
                                                                     + "催" * (5000 % len(good[0]))}),
             expect="out", id="h2"),
        dict(name="~950 KB message (dead letter truncated to max_dead_letter_bytes)",
             value=_j({"id": "h3", "text": huge[:320_000]}), expect="dlq:text_too_long", truncated=True),
        dict(name="control characters inside text",
             value=_j({"id": "cc1", "text": "借款\x00\x01\x07\x1b[31m利息太高\x7f催收"}), expect="out", id="cc1"),
        dict(name="control characters only", value=_j({"id": "cc2", "text": "\x00\x01\x02\x03\x1b"}), expect="out",
             id="cc2"),
        dict(name="emoji only", value=_j({"id": "em1", "text": "😀😡🔥💰🙏"}), expect="out", id="em1"),
        dict(name="zero-width characters only", value=_j({"id": "zw1", "text": "\u200b\u200c\u200d\ufeff"}),
             expect="out", id="zw1"),
        dict(name="whitespace only (incl. full-width space)", value=_j({"id": "ws1", "text": " \t\n\r\u3000 "}),
             expect="dlq:empty_text"),
        dict(name="empty text", value=_j({"id": "ws2", "text": ""}), expect="dlq:empty_text"),
        dict(name="text is a number", value=_j({"id": "ty1", "text": 12345}), expect="dlq:invalid_schema"),
        dict(name="text is null", value=_j({"id": "ty2", "text": None}), expect="dlq:invalid_schema"),
        dict(name="text is a list", value=_j({"id": "ty3", "text": ["a", "b"]}), expect="dlq:invalid_schema"),
        dict(name="id is a list", value=_j({"id": ["x"], "text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="id is a bool", value=_j({"id": True, "text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="id is a float", value=_j({"id": 1.5, "text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="id is an integer (accepted as text)", value=_j({"id": 4242, "text": good[2]}), expect="out",
             id="4242"),
        dict(name="id empty", value=_j({"id": "", "text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="id of 300 characters", value=_j({"id": "i" * 300, "text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="id missing", value=_j({"text": good[1]}), expect="dlq:invalid_schema"),
        dict(name="text missing", value=_j({"id": "mt1"}), expect="dlq:invalid_schema"),
        dict(name="JSON array", value=b"[1, 2, 3]", expect="dlq:invalid_schema"),
        dict(name="JSON string", value=b'"hello"', expect="dlq:invalid_schema"),
        dict(name="JSON null", value=b"null", expect="dlq:invalid_schema"),
        dict(name="schema_version 2", value=_j({"schema_version": 2, "id": "sv2", "text": good[1]}),
             expect="dlq:unsupported_schema_version"),
        dict(name="schema_version as a string", value=_j({"schema_version": "1", "id": "sv3", "text": good[1]}),
             expect="dlq:invalid_schema"),
        dict(name="created_at not a date", value=_j({"id": "ca1", "text": good[1], "created_at": "yesterday"}),
             expect="dlq:invalid_schema"),
        dict(name="source is a number", value=_j({"id": "so1", "text": good[1], "source": 5}),
             expect="dlq:invalid_schema"),
        dict(name="NaN inside meta",
             value=b'{"id": "nan1", "text": "\xe5\x88\xa9\xe6\x81\xaf\xe5\xa4\xaa\xe9\xab\x98", '
                   b'"meta": {"x": NaN}}', expect="out", id="nan1"),
        dict(name="50-deep nesting in meta", value=b'{"id": "deep50", "text": "abc", "meta": '
                                                   + b'{"a": ' * 50 + b"1" + b"}" * 50 + b"}", expect="out",
             id="deep50"),
        dict(name="extra unknown fields", value=_j({"id": "ex1", "text": good[3], "foo": {"bar": [1, 2]}}),
             expect="out", id="ex1"),
        dict(name="lone surrogate in the id", value=b'{"id": "\\ud800", "text": "abc"}', expect="dlq:not_utf8"),
        dict(name="empty value", value=b"", expect="dlq:empty_message"),
        dict(name="tombstone (null value)", key=b"tomb-1", value=None, expect="dlq:empty_message"),
        dict(name="duplicated id, first", value=_j({"id": "dup-1", "text": good[4]}), expect="out", id="dup-1"),
        dict(name="duplicated id, second (other text)", value=_j({"id": "dup-1", "text": good[5]}), expect="out",
             id="dup-1"),
        dict(name="duplicated id and text, first", value=_j({"id": "dup-2", "text": good[6]}), expect="out",
             id="dup-2"),
        dict(name="duplicated id and text, second", value=_j({"id": "dup-2", "text": good[6]}), expect="out",
             id="dup-2"),
        dict(name="binary key", key=b"\xff\xfe\x00", value=_j({"id": "bk1", "text": good[7]}), expect="out", id="bk1"),
        dict(name="hostile headers on a good message", value=_j({"id": "hh1", "text": good[8]}),
             headers=[("x-bin", b"\xff\xfe"), ("fmlc.dlq.reason", b"forged")], expect="out", id="hh1"),
        dict(name="forged fmlc.dlq.* header on a bad message", value=b"{bad",
             headers=[("trace", b"abc"), ("fmlc.dlq.reason", b"forged")], expect="dlq:not_json", header_check=True),
    ]
    return cases


def hostile(args: argparse.Namespace, model: Path) -> dict:
    from worker.testkit import redis_url_or_start, start_broker

    broker = start_broker(log_path=str(WORKDIR / "hostile-broker.log"))
    redis = redis_url_or_start()
    try:
        s = worker_settings(broker.bootstrap, model, redis_url=redis.url, batch_size=16, max_wait_ms=20,
                            topic_partitions=1)
        ensure_topics(s)
        good = synthetic_texts(200, 51)
        cases = hostile_set(good)
        # Good messages between the hostile ones: a bad message must not harm its batch-mates.
        stream: list[dict] = []
        for k, case in enumerate(cases):
            stream.append(dict(name="good", value=message(f"g-{k}", good[20 + k]), expect="out", id=f"g-{k}"))
            stream.append(case)
        for k in range(len(cases), 150):
            stream.append(dict(name="good", value=message(f"g-{k}", good[20 + k]), expect="out", id=f"g-{k}"))
        producer = make_producer(broker.bootstrap, linger_ms=0, max_request_size=2_000_000)
        try:
            for item in stream:
                fut = producer.send(s.input_topic, key=item.get("key", item.get("id", "").encode() or None),
                                    value=item["value"], headers=item.get("headers"), partition=0)
                item["offset"] = fut.get(30).offset
        finally:
            producer.close(5)
        w = WorkerProcess(s, WORKDIR / "hostile-worker.log")
        w.wait_ready(120)
        n_out_expected = sum(1 for i in stream if i["expect"] == "out")
        n_dlq_expected = len(stream) - n_out_expected

        def enough() -> bool:
            if not w.alive():
                raise RuntimeError(f"worker died (exit {w.proc.returncode}); log:\n{w.log()[-3000:]}")
            ends = committed_and_end(broker.bootstrap, s.group_id, s.input_topic)
            return all(c == e for c, e in ends.values())

        wait_for(enough, 120, "every hostile input committed", interval=1.0)
        m = w.metrics()
        exit_code = w.stop()
        records = read_all(broker.bootstrap, [s.output_topic, s.dlq_topic], committed_only=False)
    finally:
        broker.stop()
        if redis.owned:
            redis.stop()
    outputs = [r for r in records if r.topic == s.output_topic]
    dlq = [r for r in records if r.topic == s.dlq_topic]
    out_by_id = Counter(r.key.decode("utf-8", "replace") for r in outputs)
    dlq_by_offset = {int(dict(r.headers)["fmlc.dlq.source.offset"]): r for r in dlq}
    rows, wrong = [], []
    want_out = Counter(i["id"] for i in stream if i["expect"] == "out")
    for item in stream:
        if item["name"] == "good":
            continue
        got = "?"
        if item["offset"] in dlq_by_offset:
            got = "dlq:" + dict(dlq_by_offset[item["offset"]].headers)["fmlc.dlq.reason"].decode()
        elif item["expect"] == "out" and out_by_id[item["id"]] >= want_out[item["id"]]:
            got = "out"
        ok = got == item["expect"]
        extra = ""
        if item.get("truncated") and item["offset"] in dlq_by_offset:
            h = dict(dlq_by_offset[item["offset"]].headers)
            extra = f"truncated header {h.get('fmlc.dlq.truncated', b'-').decode()}, dead-letter value " \
                    f"{len(dlq_by_offset[item['offset']].value)} bytes"
            ok = ok and "fmlc.dlq.truncated" in h
        if item.get("header_check") and item["offset"] in dlq_by_offset:
            hs = dlq_by_offset[item["offset"]].headers
            reasons = [v for k, v in hs if k == "fmlc.dlq.reason"]
            extra = f"headers kept: {[k for k, _ in hs if not k.startswith('fmlc.dlq.')]}, reason headers {reasons}"
            ok = ok and reasons == [b"not_json"] and ("trace", b"abc") in hs
        rows.append({"case": item["name"], "expected": item["expect"], "got": got, "ok": ok, "note": extra})
        if not ok:
            wrong.append(item["name"])
    good_ids = [i["id"] for i in stream if i["name"] == "good"]
    counts = {"inputs": len(stream), "outputs": len(outputs), "dead_letters": len(dlq),
              "expected_outputs": n_out_expected, "expected_dead_letters": n_dlq_expected,
              "good_messages": len(good_ids), "good_answered": sum(1 for g in good_ids if out_by_id[g] == 1),
              "metric_ok": metric(m, "fmlc_messages_total", outcome="ok"),
              "metric_cached": metric(m, "fmlc_messages_total", outcome="cached"),
              "metric_dead_letter": metric(m, "fmlc_messages_total", outcome="dead_letter")}
    checks = {"inputs = outputs + dead letters": counts["inputs"] == counts["outputs"] + counts["dead_letters"],
              "each hostile case ends as expected": not wrong,
              "every good message between them answered once": counts["good_answered"] == len(good_ids),
              "metrics add up to the inputs": counts["metric_ok"] + counts["metric_cached"]
              + counts["metric_dead_letter"] == counts["inputs"],
              "worker exited 0": exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "counts": counts, "cases": rows, "wrong": wrong,
            "dead_letter_reasons": dict(Counter(dict(r.headers)["fmlc.dlq.reason"].decode() for r in dlq))}


# --- (e') poison probes --------------------------------------------------------------------------

POISON = [
    ("deeply nested JSON (100,000 levels)", ("[" * 100_000 + "]" * 100_000).encode(), False, "dlq:not_json"),
    ("lone UTF-16 surrogate in the text, cache on", b'{"id": "sur1", "text": "\\u501f\\u6b3e\\ud800\\u5229\\u606f"}',
     True, "dlq:not_utf8"),
    ("lone UTF-16 surrogate in the text, no cache", b'{"id": "sur2", "text": "\\u501f\\u6b3e\\ud800\\u5229\\u606f"}',
     False, "dlq:not_utf8"),
    ("lone UTF-16 surrogate in the source field, no cache",
     b'{"id": "sur3", "text": "\\u501f\\u6b3e\\u5229\\u606f", "source": "app\\udc00"}', False, "dlq:not_utf8"),
]


def poison(args: argparse.Namespace, model: Path) -> dict:
    from worker.testkit import redis_url_or_start, start_broker

    broker = start_broker(log_path=str(WORKDIR / "poison-broker.log"))
    redis = redis_url_or_start()
    probes = []
    try:
        good = synthetic_texts(10, 61)
        for k, (name, value, cache, expect) in enumerate(POISON):
            s = worker_settings(broker.bootstrap, model, redis_url=redis.url if cache else None, batch_size=16,
                                max_wait_ms=20, topic_partitions=1)
            ensure_topics(s)
            before, after = f"p{k}-before", f"p{k}-after"
            produce(broker.bootstrap, s.input_topic, [(before.encode(), message(before, good[0])), (None, value),
                                                      (after.encode(), message(after, good[1]))])
            reader, col = start_reader(broker.bootstrap, s)
            runs = []
            for attempt in (1, 2):
                w = WorkerProcess(s, WORKDIR / f"poison-{k}-{attempt}.log")
                with contextlib.suppress(RuntimeError):  # it may die before it is ever ready
                    w.wait_ready(120)
                deadline = time.time() + 40
                while time.time() < deadline and w.alive() and (col.distinct + col.dead) < 3:
                    time.sleep(0.2)
                handled = (col.distinct + col.dead) >= 3
                died = not w.alive()
                code = w.proc.returncode if died else w.stop()
                errors = [ln for ln in w.log().splitlines()
                          if "Error" in ln or "died" in ln or "fatal" in ln][:6]
                runs.append({"attempt": attempt, "handled_all_three": handled, "worker_died": died,
                             "exit_code": code, "log": errors})
                log(f"poison '{name}' attempt {attempt}: handled={handled} died={died} exit={code}")
                if handled or not died:
                    break
            reader.close()
            got = "dlq:" + next(iter(col.dead_reasons)) if col.dead else ("out" if col.distinct >= 3 else "none")
            probes.append({"case": name, "cache": cache, "expected": expect, "got": got,
                           "ok": runs[-1]["handled_all_three"] and not runs[0]["worker_died"] and got == expect,
                           "crash_loop": all(r["worker_died"] for r in runs) and len(runs) == 2, "runs": runs,
                           "outputs": col.distinct, "dead_letters": col.dead})
    finally:
        broker.stop()
        if redis.owned:
            redis.stop()
    checks = {p["case"]: p["ok"] for p in probes}
    return {"checks": checks, "passed": all(checks.values()), "probes": probes}


# --- (h) every compression codec, from an independent client ----------------------------------------

def codecs(args: argparse.Namespace, model: Path) -> dict:
    """librdkafka (confluent-kafka) producers write each codec into the input topic; the worker
    answers every message and produces its own outputs with FMLC_COMPRESSION (default)."""
    import confluent_kafka

    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "codecs-broker.log"))
    names = ("none", "gzip", "lz4", "zstd", "snappy")
    per = args.codec_messages
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=32, topic_partitions=2)
        ensure_topics(s)
        texts = synthetic_texts(per * len(names), 71)
        ids: dict[str, list[str]] = {}
        for k, codec in enumerate(names):
            p = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                                          "linger.ms": 20, "enable.idempotence": True})
            ids[codec] = [f"{codec}-{i}" for i in range(per)]
            for i, cid in enumerate(ids[codec]):
                p.produce(s.input_topic, key=cid.encode(), value=message(cid, texts[k * per + i]))
            left = p.flush(30)
            if left:
                raise RuntimeError(f"{left} {codec} messages not delivered by librdkafka")
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "codecs-worker.log")
        w.wait_ready(120)
        every = [i for group in ids.values() for i in group]
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: col.have_all(every), 120, "every codec answered", interval=0.2)
        m = w.metrics()
        exit_code = w.stop()
        reader.close()
        truth = final_counts(broker.bootstrap, s, every)
    finally:
        broker.stop()
    answered = {codec: sum(1 for i in group if col.per_id[i]) for codec, group in ids.items()}
    undecodable = metric(m, "fmlc_poll_errors_total", kind="undecodable")
    checks = {f"{codec}: {per}/{per} answered": answered[codec] == per for codec in names}
    checks["no poll errors"] = undecodable == 0 and metric(m, "fmlc_poll_errors_total", kind="other") == 0
    checks[f"worker produced with compression={s.compression} and exited 0"] = exit_code == 0
    return {"checks": checks, "passed": all(checks.values()), "answered": answered, "counts": truth,
            "output_compression": s.compression, "settings": {"messages_per_codec": per, "partitions": 2}}


# --- (i) records the client cannot decode ----------------------------------------------------------

class _NotUtf8Key(str):
    """A header key that goes on the wire as bytes that are not UTF-8."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"\xff\xfe-not-utf8"


def committed_to(bootstrap: str, s: Any, ends: dict[int, int]) -> bool:
    """Has the group committed every partition up to `ends` (partition -> last offset + 1)? Without
    fetching: committed_and_end reads the topic, and it holds records no client can decode."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=s.group_id, enable_auto_commit=False)
    try:
        return all((consumer.committed(TopicPartition(s.input_topic, p)) or 0) >= end for p, end in ends.items())
    finally:
        consumer.close()


def undecodable(args: argparse.Namespace, model: Path) -> dict:
    """Good messages with, between them, lz4 batches whose frame is garbage (the decompressor
    raises), batches whose CRC does not match and records with a header key that is not UTF-8: every
    good one is answered, every bad record is dead-lettered (reason undecodable, source offset in the
    headers), the worker stays live and commits to the end of the partitions."""
    from kafka.record import default_records

    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "undecodable-broker.log"))
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=16, topic_partitions=2)
        ensure_topics(s)
        texts = synthetic_texts(200, 81)
        good = [f"u-{i}" for i in range(200)]
        plain = make_producer(broker.bootstrap, linger_ms=0)
        lz4 = make_producer(broker.bootstrap, linger_ms=50, compression_type="lz4")
        bad: list[tuple[int, int]] = []  # (partition, offset)
        sent: list = []  # futures of the good messages
        encode = default_records.lz4_encode
        crc = default_records.calc_crc32c
        try:
            for i, cid in enumerate(good):
                sent.append(plain.send(s.input_topic, key=cid.encode(), value=message(cid, texts[i]),
                                       partition=i % 2))
                if i % 40 == 17:  # a garbage lz4 batch of three records
                    default_records.lz4_encode = lambda data: b"\x00not an lz4 frame" + data[:16]
                    futs = [lz4.send(s.input_topic, key=f"lz4-{i}-{k}".encode(), value=message(f"lz4-{i}-{k}", "x"),
                                     partition=i % 2) for k in range(3)]
                    lz4.flush(10)
                    default_records.lz4_encode = encode
                    bad += [(f.get(10).partition, f.get(10).offset) for f in futs]
                if i % 40 == 33:
                    f = plain.send(s.input_topic, key=f"hdr-{i}".encode(), value=message(f"hdr-{i}", "x"),
                                   headers=[(_NotUtf8Key("trace"), b"1")], partition=i % 2)
                    md = f.get(10)
                    bad.append((md.partition, md.offset))
                if i % 40 == 25:  # a batch whose CRC does not match its bytes (and holds nothing else)
                    plain.flush(10)
                    default_records.calc_crc32c = lambda data: (crc(data) + 1) & 0xFFFFFFFF
                    try:
                        md = plain.send(s.input_topic, key=f"crc-{i}".encode(), value=message(f"crc-{i}", "x"),
                                        partition=i % 2).get(10)
                    finally:
                        default_records.calc_crc32c = crc
                    bad.append((md.partition, md.offset))
            plain.flush(30)
            ends: dict[int, int] = {}
            for md in [f.get(10) for f in sent] + [type("At", (), {"partition": p, "offset": o}) for p, o in bad]:
                ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
        finally:
            default_records.lz4_encode = encode
            default_records.calc_crc32c = crc
            plain.close(5)
            lz4.close(5)
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "undecodable-worker.log")
        w.wait_ready(120)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: col.have_all(good) and col.dead >= len(bad), 120, "answers and dead letters",
                     interval=0.2)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: committed_to(broker.bootstrap, s, ends), 30, "commits", interval=0.5)
        committed = committed_to(broker.bootstrap, s, ends)
        m = w.metrics()
        live = http_get(w.port, "/healthz")[0] == 200
        alive = w.alive()
        exit_code = w.stop()
        reader.close()
        records = read_all(broker.bootstrap, [s.dlq_topic], committed_only=False)
        truth = final_counts(broker.bootstrap, s, good)
    finally:
        broker.stop()
    dead_at = sorted((int(dict(r.headers)["fmlc.dlq.source.partition"]), int(dict(r.headers)["fmlc.dlq.source.offset"]))
                     for r in records)
    reasons = Counter(dict(r.headers)["fmlc.dlq.reason"].decode() for r in records)
    checks = {f"every good message answered ({len(good)})": truth["missing"] == 0,
              f"every undecodable record dead-lettered at its offset ({len(bad)})": dead_at == sorted(bad),
              "reason undecodable on all of them": reasons == Counter({"undecodable": len(bad)}),
              "fmlc_poll_errors_total{kind=undecodable} counts them":
                  metric(m, "fmlc_poll_errors_total", kind="undecodable") == len(bad),
              "worker alive and /healthz 200 throughout": alive and live,
              "all input offsets committed": committed, "worker exited 0": exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "counts": truth, "bad_records": len(bad),
            "dead_letter_reasons": dict(reasons), "settings": {"partitions": 2, "good": len(good)}}


# --- (j) a hung tokenizer child: liveness sees it, the worker heals --------------------------------

def child_pids(pid: int) -> list[int]:
    """Direct children of a process, from every thread's /proc children list (Linux)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return sorted(set(out))


def hung_tokenizer(args: argparse.Namespace, model: Path) -> dict:
    """The jieba child SIGSTOPped with a backlog pending. The stall timeout is set below the
    tokenizer timeout so that /healthz must go red before the worker heals itself by killing and
    replacing the child; every message must still be answered, none dead-lettered."""
    import os

    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "hung-tokenizer-broker.log"))
    stopped: int | None = None
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=32, topic_partitions=2, tokenizer="process",
                            stall_timeout_s=args.stall_timeout_s,
                            tokenizer_timeout_s=args.stall_timeout_s + 6)
        ensure_topics(s)
        n = 2000
        ids = [f"h-{i}" for i in range(n)]
        produce(broker.bootstrap, s.input_topic,
                [(i.encode(), message(i, t)) for i, t in zip(ids, synthetic_texts(n, 81), strict=True)], partitions=2)
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "hung-tokenizer-worker.log")
        w.wait_ready(120)
        wait_for(lambda: col.distinct >= 200, 120, "the worker under way", interval=0.01)
        children = child_pids(w.pid)
        if len(children) != 1:
            raise RuntimeError(f"expected one tokenizer child, found {children}")
        stopped = children[0]
        at_stop = col.distinct
        os.kill(stopped, signal.SIGSTOP)
        t0 = time.monotonic()
        red_after: float | None = None
        red_body: dict = {}
        green_after: float | None = None
        alive_at_green = False
        while time.monotonic() - t0 < 120:
            code, body = http_get(w.port, "/healthz")
            now = time.monotonic() - t0
            if code == 503 and red_after is None:
                red_after, red_body = now, json.loads(body)
            if code == 200 and red_after is not None:
                green_after, alive_at_green = now, w.alive()
                break
            time.sleep(0.1)
        old_child_gone = not Path(f"/proc/{stopped}").exists()
        if old_child_gone:
            stopped = None
        wait_for(lambda: col.have_all(ids), 240, "every input has an output", interval=0.1)
        all_after = time.monotonic() - t0
        m = w.metrics()
        new_children = child_pids(w.pid)
        exit_code = w.stop()
        reader.close()
        truth = final_counts(broker.bootstrap, s, ids)
        notes = log_lines(w, "tokenizer process lost", "WARNING")
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
        broker.stop()
    restarts = metric(m, "fmlc_tokenizer_restarts_total", reason="timeout")
    limit = s.stall_timeout_s + 2
    checks = {f"/healthz red within the stall timeout + 2 s ({limit:g} s)":
              red_after is not None and red_after <= limit,
              "/healthz names the stage (stage_stalled, tokenizer)": red_body.get("reason") == "stage_stalled"
              and "tokenizer" in red_body.get("stalled_stages", []),
              "/healthz green again, same worker process": green_after is not None and alive_at_green,
              "the stopped child was killed and replaced, and counted": old_child_gone and restarts >= 1
              and len(new_children) == 1,
              "every input has an output, none dead-lettered": truth["missing"] == 0 and truth["dead_letters"] == 0,
              "worker drained and exited 0": exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "counts": truth, "outputs_at_stop": at_stop,
            "healthz_red_after_s": red_after, "healthz_body": red_body, "healthz_green_after_s": green_after,
            "all_answered_after_s": all_after, "tokenizer_restarts_timeout": restarts, "worker_log": notes,
            "settings": {"stall_timeout_s": s.stall_timeout_s, "tokenizer_timeout_s": s.tokenizer_timeout_s,
                         "messages": n}}


# --- (k) secrets: planted, then searched for everywhere ---------------------------------------------

PLANTED = "pl4nted-fault-S3CRET"


def secrets(args: argparse.Namespace, model: Path) -> dict:
    """A worker at DEBUG with a SASL password, an SSL key password and a Redis URL with a password
    (a Redis that requires it, so the cache works only if the password is used), then the same with a
    wrong Redis password (its errors get logged), then start-ups that fail validation and a secret
    given as a flag. The planted value is searched for in every log, stderr, HTTP answer, output and
    dead letter."""
    import os
    import subprocess
    import tempfile

    from worker.settings import env_for
    from worker.testkit import free_port, redis_answers, redis_binary, start_broker

    broker = start_broker(log_path=str(WORKDIR / "secrets-broker.log"))
    redis_dir = tempfile.mkdtemp(prefix="fmlc-redis-secret-")
    rport = free_port()
    redis = subprocess.Popen([redis_binary(), "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", redis_dir, "--requirepass", PLANTED],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    texts: dict[str, str] = {}
    found: dict[str, bool] = {}
    try:
        wait_for(lambda: redis_answers(f"redis://:{PLANTED}@127.0.0.1:{rport}/0"), 15, "redis with a password")
        runs: dict[str, dict] = {}
        for name, url in (("right redis password", f"redis://default:{PLANTED}@127.0.0.1:{rport}/0"),
                          ("wrong redis password", f"redis://default:{PLANTED}-wrong@127.0.0.1:{rport}/0")):
            s = worker_settings(broker.bootstrap, model, redis_url=url, batch_size=16, log_level="DEBUG",
                                sasl_username="fmlc", sasl_password=PLANTED, ssl_password=PLANTED)
            ensure_topics(s)
            n = 100
            ids = [f"s-{i}" for i in range(n)] + [f"s-{i}-again" for i in range(n)]
            body = synthetic_texts(n, 91)
            reader, col = start_reader(broker.bootstrap, s)
            w = WorkerProcess(s, WORKDIR / f"secrets-{name.split()[0]}.log")
            w.wait_ready(120)
            produce(broker.bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids[:n], body,
                                                                                                 strict=True)])
            wait_for(lambda ids=ids, col=col, n=n: col.have_all(ids[:n]), 120, "first pass")
            produce(broker.bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids[n:], body,
                                                                                                 strict=True)]
                    + [(b"bad", b"{not json")])
            wait_for(lambda ids=ids, col=col: col.have_all(ids) and col.dead >= 1, 120, "second pass")
            for path in ("/healthz", "/readyz", "/metrics", "/nope"):
                texts[f"{name}: GET {path}"] = http_get(w.port, path)[1]
            exit_code = w.stop()
            reader.close()
            records = read_all(broker.bootstrap, [s.output_topic, s.dlq_topic], timeout=60, committed_only=False)
            texts[f"{name}: outputs and dead letters"] = "\n".join(
                (r.value or b"").decode("utf-8", "replace") + repr(r.headers) for r in records)
            texts[f"{name}: worker log"] = w.log()
            runs[name] = {"cached_outputs": sum(col.cached.values()), "exit_code": exit_code,
                          "log_lines": len(w.log().splitlines()),
                          "debug_lines": sum(" DEBUG " in ln for ln in w.log().splitlines())}
        # Start-ups that fail: whole-config validation with every secret set, a field error, a flag.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("FMLC_")}
        secret_env = {"FMLC_SASL_PASSWORD": PLANTED, "FMLC_SSL_PASSWORD": PLANTED,
                      "FMLC_REDIS_URL": f"redis://u:{PLANTED}@127.0.0.1:{rport}/0"}
        failing = {"SASL_SSL without a user name": ({"FMLC_SECURITY_PROTOCOL": "SASL_SSL"}, []),
                   "redis URL with a wrong scheme": ({"FMLC_REDIS_URL": f"http://u:{PLANTED}@cache:6379"}, []),
                   "redis URL as a flag": ({}, ["--redis-url", f"redis://u:{PLANTED}@cache:6379/0"]),
                   "SASL password as a flag": ({}, [f"--sasl-password={PLANTED}"])}
        starts: dict[str, int] = {}
        for name, (env, argv) in failing.items():
            done = subprocess.run([sys.executable, "-m", "worker", *argv], cwd=REPO, capture_output=True, text=True,
                                  env={**base_env, **secret_env, **env}, timeout=120)
            starts[name] = done.returncode
            texts[f"start-up: {name}"] = done.stdout + done.stderr
        texts["env_for without secrets"] = json.dumps(env_for(s))
    finally:
        redis.terminate()
        redis.wait(10)
        broker.stop()
    found = {k: PLANTED in v for k, v in texts.items()}
    checks = {"the right password was used (second pass answered from the cache)":
              runs["right redis password"]["cached_outputs"] >= 100,
              "the wrong password degraded to no cache, nothing lost": runs["wrong redis password"]["exit_code"] == 0,
              "both workers logged at DEBUG": all(r["debug_lines"] > 0 for r in runs.values()),
              "every failing start-up exited 2": all(c == 2 for c in starts.values())}
    checks.update({f"no secret in: {k}": not v for k, v in found.items()})
    return {"checks": checks, "passed": all(checks.values()), "runs": runs, "failing_start_exit_codes": starts,
            "searched": {k: len(v) for k, v in texts.items()}}


# --- (j) dead letters at the broker's size limit -----------------------------------------------------

def dlq_at_limit(args: argparse.Namespace, model: Path) -> dict:
    """Inputs at the broker's message limit, with 4 KB keys and large headers, that must become
    dead letters (text too long, not JSON), between good messages: each dead letter is cut to fit
    (value first, then headers, then key), marked as truncated, and every good message after it is
    answered — no delivery failure, no loop."""
    from worker.messages import record_size
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "dlq_at_limit-broker.log"))
    try:
        s = worker_settings(broker.bootstrap, model, batch_size=16, topic_partitions=1, max_text_chars=2000)
        ensure_topics(s)
        limit = s.max_message_bytes
        texts = synthetic_texts(60, 91)
        good = [f"g-{i}" for i in range(60)]
        key = b"k" * 4096
        cases = {
            "text too long, 300 KB of headers": (key, [(f"trace-{i}", b"t" * 100_000) for i in range(3)], "长"),
            "not JSON, 300 KB of headers": (key, [(f"trace-{i}", b"t" * 100_000) for i in range(3)], None),
            "text too long, 900 KB of headers": (key, [(f"trace-{i}", b"t" * 300_000) for i in range(3)], "长"),
        }
        producer = make_producer(broker.bootstrap, linger_ms=0, max_request_size=2_000_000)
        sent: dict[int, dict] = {}
        try:
            for i, cid in enumerate(good):
                producer.send(s.input_topic, key=cid.encode(), value=message(cid, texts[i]), partition=0)
                if i % 15 == 7 and i // 15 < len(cases):
                    name, (k, headers, char) = list(cases.items())[i // 15]
                    room = limit - record_size(k, b"", headers) - 200
                    value = message(f"big-{i}", char * (room // 3 - 40)) if char else b"{" * room
                    md = producer.send(s.input_topic, key=k, value=value, headers=headers, partition=0).get(30)
                    sent[md.offset] = {"case": name, "input_bytes": record_size(k, value, headers)}
            producer.flush(30)
        finally:
            producer.close(5)
        reader, col = start_reader(broker.bootstrap, s)
        w = WorkerProcess(s, WORKDIR / "dlq_at_limit-worker.log")
        w.wait_ready(120)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: col.have_all(good) and col.dead >= len(sent), 90, "answers and dead letters",
                     interval=0.2)
        m = w.metrics()
        exit_code = w.stop()
        reader.close()
        dead = read_all(broker.bootstrap, [s.dlq_topic], committed_only=False)
        truth = final_counts(broker.bootstrap, s, good)
        committed = all_committed(broker.bootstrap, s)
    finally:
        broker.stop()
    letters = []
    for r in dead:
        h = dict(r.headers)
        off = int(h["fmlc.dlq.source.offset"])
        letters.append({**sent.get(off, {"case": "?"}), "offset": off, "reason": h["fmlc.dlq.reason"].decode(),
                        "dead_letter_bytes": record_size(r.key, r.value, r.headers),
                        "value_bytes": len(r.value or b""),
                        "truncated_from": int(h.get("fmlc.dlq.truncated", b"0")),
                        "headers_dropped": int(h.get("fmlc.dlq.truncated.headers", b"0")),
                        "key_bytes": len(r.key or b"")})
    checks = {f"every good message answered ({len(good)})": truth["missing"] == 0,
              f"one dead letter per oversized input ({len(sent)})":
                  sorted(x["offset"] for x in letters) == sorted(sent),
              f"every dead letter within the limit ({s.dead_letter_limit} bytes)":
                  all(x["dead_letter_bytes"] <= s.dead_letter_limit for x in letters),
              "every one marked as truncated": all(x["truncated_from"] > 0 for x in letters),
              "no delivery failure": metric(m, "fmlc_delivery_failures_total") == 0,
              "all offsets committed, worker exited 0": committed and exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "counts": truth, "dead_letters": letters,
            "limit": s.dead_letter_limit, "settings": {"max_message_bytes": limit,
                                                       "max_dead_letter_bytes": s.max_dead_letter_bytes}}


# --- (k) large messages against the in-flight byte budget -------------------------------------------

def big_messages(args: argparse.Namespace, model: Path) -> dict:
    """100 messages with ~900 KB of meta each, all waiting before the worker starts: every one is
    answered and the worker's RSS grows by at most 2 x FMLC_MAX_IN_FLIGHT_BYTES + 100 MB
    (bench/big_messages.py, at the default budget)."""
    from bench.big_messages import run

    return run(model, 64, 100, 900)


# --- (l) exactly-once under rebalance ----------------------------------------------------------------

def eos_rebalance(args: argparse.Namespace, model: Path) -> dict:
    """Exactly-once workers (transactional id = group + FMLC_INSTANCE_ID): a second one joins
    mid-stream, then the first leaves mid-stream (two rebalances with batches in flight); a third
    started with the second one's instance id must refuse to start (exit 2, a clear error) while the
    second goes on unfenced. read_committed output: every id exactly once."""
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / "eos_rebalance-broker.log"))
    try:
        base = worker_settings(broker.bootstrap, model, delivery="exactly_once", transactional_id=None,
                               batch_size=16, topic_partitions=4)
        s1, s2 = (base.model_copy(update={"instance_id": name}) for name in ("worker-1", "worker-2"))
        ensure_topics(s1)
        n = args.eos_messages
        ids = [f"e-{i}" for i in range(n)]
        produce(broker.bootstrap, s1.input_topic,
                [(i.encode(), message(i, t)) for i, t in zip(ids, synthetic_texts(n, 101), strict=True)], partitions=4)
        reader, col = start_reader(broker.bootstrap, s1)
        w1 = WorkerProcess(s1, WORKDIR / "eos_rebalance-1.log")
        w1.wait_ready(120)
        wait_for(lambda: col.distinct >= n // 10, 180, "a tenth of the outputs", interval=0.05)
        joined_at = col.distinct
        w2 = WorkerProcess(s2, WORKDIR / "eos_rebalance-2.log")
        w2.wait_ready(120)
        both_at = col.distinct
        wait_for(lambda: col.distinct >= both_at + n // 10, 180, "both workers at work", interval=0.05)
        left_at = col.distinct
        exit1 = w1.stop()
        twin = WorkerProcess(s2, WORKDIR / "eos_rebalance-twin.log")
        twin_exit = twin.proc.wait(120)
        twin_log = log_lines(twin, "TransactionalIdInUse", "another live worker", limit=3)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: col.have_all(ids), 300, "every input has a committed output", interval=0.2)
        w2_alive = w2.alive()
        exit2 = w2.stop()
        reader.close()
        truth = final_counts(broker.bootstrap, s1, ids)
        committed = all_committed(broker.bootstrap, s1)
        lines = [ln for w in (w1, w2) for ln in w.log().splitlines()]
        aborted = sum(1 for ln in lines if "aborted the transaction" in ln)
        # Records in aborted transactions: Tansu (memory-only test broker) shows them to read_committed
        # readers too (no aborted-transaction list in its fetch responses), so they are discounted.
        in_aborted = sum(int(m.group(1)) for ln in lines
                         if (m := re.search(r"(?:aborted the transaction of|delivery of) a batch of (\d+)", ln)))
    finally:
        broker.stop()
    checks = {f"every id once among committed transactions ({n}; duplicates <= records of aborted ones)":
                  truth["missing"] == 0 and truth["duplicates"] <= in_aborted,
              "a worker with a live worker's instance id refused to start (exit 2) with a clear error":
                  twin_exit == 2 and bool(twin_log),
              "the live worker was not fenced (still running, exited 0)": w2_alive and exit2 == 0,
              "the first worker left cleanly (exit 0)": exit1 == 0,
              "all input offsets committed": committed}
    return {"checks": checks, "passed": all(checks.values()), "counts": truth, "joined_at_outputs": joined_at,
            "left_at_outputs": left_at, "transactions_aborted_on_revoke": aborted,
            "records_in_aborted_transactions": in_aborted, "twin_log": twin_log,
            "settings": {"messages": n, "partitions": 4, "batch_size": 16}}


# --- driver --------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "sigkill": sigkill, "broker_freeze": broker_freeze, "worker_freeze": worker_freeze,
    "redis_restart": redis_restart, "soak": soak, "hostile": hostile, "poison": poison, "codecs": codecs,
    "undecodable": undecodable,
    "hung_tokenizer": hung_tokenizer, "secrets": secrets,
    "dlq_at_limit": dlq_at_limit, "big_messages": big_messages,
    "eos_rebalance": eos_rebalance,
}


def markdown(results: dict) -> list[str]:
    md = ["# Fault runs (worker subprocesses, Tansu broker, tiny-dimension model)", "",
          "| scenario | result | key numbers |", "|---|---|---|"]
    for name, r in results["scenarios"].items():
        md.append(f"| {name} | {'PASS' if r.get('passed') else 'FAIL'} | {summary(name, r)} |")
    for name, r in results["scenarios"].items():
        md += ["", f"## {name}: {'PASS' if r.get('passed') else 'FAIL'}", ""]
        if "error" in r:
            md.append(f"error: `{r['error']}`")
        for check, ok in (r.get("checks") or {}).items():
            md.append(f"- [{'x' if ok else ' '}] {check}")
        if name == "hostile" and r.get("cases"):
            md += ["", "| case | expected | got | note |", "|---|---|---|---|"]
            md += [f"| {c['case']} | {c['expected']} | {c['got']}{'' if c['ok'] else ' **WRONG**'} | {c['note']} |"
                   for c in r["cases"]]
        if name == "poison" and r.get("probes"):
            md += ["", "| probe | expected | got | first worker | restarted worker |", "|---|---|---|---|---|"]
            for p in r["probes"]:
                runs = p["runs"]

                def fmt(x: dict) -> str:
                    return f"died (exit {x['exit_code']})" if x["worker_died"] else (
                        "handled" if x["handled_all_three"] else "stalled")

                md.append(f"| {p['case']} | {p['expected']} | {p['got']} | {fmt(runs[0])} | "
                          f"{fmt(runs[1]) if len(runs) > 1 else '-'} |")
            for p in r["probes"]:
                if not p["ok"]:
                    md += ["", f"`{p['case']}` — worker log:", "```", *p["runs"][0]["log"], "```"]
        if name == "dlq_at_limit" and r.get("dead_letters"):
            md += ["", "| input | input bytes | reason | dead letter bytes | value kept / original | headers dropped |",
                   "|---|---|---|---|---|---|"]
            md += [f"| {x['case']} | {x.get('input_bytes', '?')} | {x['reason']} | {x['dead_letter_bytes']} | "
                   f"{x['value_bytes']} / {x['truncated_from']} | {x['headers_dropped']} |" for x in r["dead_letters"]]
        if name == "sigkill" and r.get("kills"):
            md += ["", "| kill | distinct outputs at kill | duplicates after it |", "|---|---|---|"]
            md += [f"| {k['kill']} | {k['outputs_distinct_at_kill']} | {k['duplicates']} |" for k in r["kills"]]
        if name == "soak" and r.get("end"):
            md += ["", "| when | RSS MiB | threads | fds |", "|---|---|---|---|"]
            for label, st in (("ready", r["ready"]), ("warm (10 %)", r["warm_at_10pct"]), ("end", r["end"])):
                md.append(f"| {label} | {st.get('rss_mib', 0):.1f} | {st.get('threads')} | {st.get('fds')} |")
        if name == "redis_restart" and r.get("phases"):
            md += ["", "| phase | messages | outputs | cached | cache errors | requests hit / miss / error |",
                   "|---|---|---|---|---|---|"]
            md += [f"| {k} | {v['messages']} | {v['outputs']} | {v['cached']} | {v['cache_errors']:.0f} | "
                   f"{v['cache_requests_hit']:.0f} / {v['cache_requests_miss']:.0f} / {v['cache_requests_error']:.0f} |"
                   for k, v in r["phases"].items()]
        if name in ("broker_freeze", "worker_freeze") and r.get("worker_log"):
            md += ["", "Worker log around the outage:", "```", *r["worker_log"], "```"]
    return md


def summary(name: str, r: dict) -> str:
    if "error" in r:
        return "error: " + r["error"][:120]
    c = r.get("counts", {})
    if name == "sigkill":
        return (f"{len(r['kills'])} kills, {c['inputs']} inputs, missing {c['missing']}, duplicates {c['duplicates']}, "
                f"max per kill {r['max_duplicates_per_kill']} ({r['max_duplicates_in_batches']:.1f} batches of "
                f"{r['batch_size']}; bound {r['bound']})")
    if name in ("broker_freeze", "worker_freeze"):
        return (f"{r['frozen']} frozen {r['freeze_s']:.0f} s "
                f"(session timeout {r['settings']['session_timeout_ms'] / 1000:.0f} s), "
                f"{c['inputs']} inputs, missing {c['missing']}, duplicates {c['duplicates']}, first output "
                f"{r['first_new_output_after_resume_s'] or float('nan'):.1f} s after resume; group rebalanced: "
                f"{'yes' if r['group_rebalanced'] else 'no'}")
    if name == "redis_restart":
        ph = r["phases"]
        return (f"down: {ph['3 redis stopped']['outputs']}/{ph['3 redis stopped']['messages']} answered, "
                f"{ph['3 redis stopped']['cached']} cached, cache errors {ph['3 redis stopped']['cache_errors']:.0f}; "
                f"cached again {r['restart_to_first_cached_output_s'] or float('nan'):.1f} s after restart")
    if name == "soak":
        return (f"{r['messages']} msgs at {r['docs_per_s']:.0f}/s; RSS {r['warm_at_10pct']['rss_mib']:.0f} → "
                f"{r['end']['rss_mib']:.0f} MiB, threads {r['warm_at_10pct']['threads']} → {r['end']['threads']}, "
                f"fds {r['warm_at_10pct']['fds']} → {r['end']['fds']}")
    if name == "hostile":
        return (f"inputs {c['inputs']} = outputs {c['outputs']} + dead letters {c['dead_letters']}; "
                f"{len(r['cases']) - len(r['wrong'])}/{len(r['cases'])} cases as expected")
    if name == "codecs":
        return (f"librdkafka producers, {r['settings']['messages_per_codec']} messages per codec: " +
                ", ".join(f"{k} {v}" for k, v in r["answered"].items()) +
                f" answered; outputs produced with {r['output_compression']}")
    if name == "eos_rebalance":
        return (f"{c['inputs']} inputs, second worker joined at {r['joined_at_outputs']} outputs, first left at "
                f"{r['left_at_outputs']}: outputs {c['outputs']}, missing {c['missing']}, duplicates "
                f"{c['duplicates']} (read_committed); {r['transactions_aborted_on_revoke']} transactions aborted on "
                "revoke; a twin instance id refused at start-up")
    if name == "big_messages":
        return (f"{r['answered']}/{r['messages']} messages of {r['message_bytes_mean'] / 1e3:.0f} KB answered; RSS "
                f"{r['rss_at_model_loaded_mib']:.0f} → peak {r['rss_peak_mib']:.0f} MiB (growth "
                f"{r['rss_growth_mib']:.0f} MiB, bound {r['bound_mib']} MiB at a {r['budget_mib']} MiB budget)")
    if name == "dlq_at_limit":
        return (f"{len(r['dead_letters'])} inputs at the broker limit with 4 KB keys and 300-900 KB of headers: "
                f"dead letters of {max((x['dead_letter_bytes'] for x in r['dead_letters']), default=0)} bytes at most "
                f"(limit {r['limit']}), all marked truncated; {r['counts']['inputs']} good messages, missing "
                f"{r['counts']['missing']}")
    if name == "undecodable":
        return (f"{r['settings']['good']} good messages answered (missing {c['missing']}); {r['bad_records']} "
                f"undecodable records (garbage lz4 batches, CRC mismatches, non-UTF-8 header keys) dead-lettered: "
                f"{r['dead_letter_reasons']}")
    if name == "hung_tokenizer":
        return (f"tokenizer child SIGSTOPped with a backlog: /healthz red after {r['healthz_red_after_s'] or 0:.1f} s "
                f"(stall timeout {r['settings']['stall_timeout_s']:g} s), green again after "
                f"{r['healthz_green_after_s'] or 0:.1f} s "
                f"(tokenizer timeout {r['settings']['tokenizer_timeout_s']:g} s), "
                f"{c['inputs']} inputs, missing {c['missing']}, dead letters {c['dead_letters']}, "
                f"restarts {r['tokenizer_restarts_timeout']:.0f}")
    if name == "secrets":
        return (f"planted secret searched in {len(r['searched'])} logs, errors and responses "
                f"({sum(r['searched'].values())} characters): found in "
                f"{sum(1 for k, ok in r['checks'].items() if k.startswith('no secret') and not ok)}; "
                f"cached outputs with the password {r['runs']['right redis password']['cached_outputs']}")
    if name == "poison":
        return "; ".join(f"{p['case']}: {'ok' if p['ok'] else ('CRASH LOOP' if p['crash_loop'] else 'FAIL')}"
                         for p in r["probes"])
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list from {', '.join(SCENARIOS)}")
    ap.add_argument("--model", type=Path, default=None, help="artifact (default: the tiny model, trained once)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--kill-messages", type=int, default=6000)
    ap.add_argument("--freeze-s", type=float, default=15.0)
    ap.add_argument("--soak-messages", type=int, default=100_000)
    ap.add_argument("--soak-timeout-s", type=float, default=1500)
    ap.add_argument("--codec-messages", type=int, default=200)
    ap.add_argument("--eos-messages", type=int, default=15000)
    ap.add_argument("--stall-timeout-s", type=float, default=5.0, help="hung_tokenizer: FMLC_STALL_TIMEOUT_S")
    args = ap.parse_args()
    chosen = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}")
    import torch

    torch.set_num_threads(1)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    model = args.model or tiny_model(TINY_MODEL_DIR)
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.exists() else {"scenarios": {}}
    results["machine"] = machine()
    results["model_dir"] = str(model)
    for name in chosen:
        log(f"=== {name}")
        t0 = time.time()
        try:
            r = SCENARIOS[name](args, model)
        except Exception as exc:  # a scenario that cannot finish is a FAIL with its reason
            import traceback

            traceback.print_exc()
            r = {"passed": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        r["wall_s"] = time.time() - t0
        r["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["scenarios"][name] = r
        verdict = "PASS" if r.get("passed") else "FAIL"
        print(f"{verdict} {name}: {summary(name, r)}", flush=True)
        for check, ok in (r.get("checks") or {}).items():
            print(f"    [{'ok' if ok else 'FAILED'}] {check}", flush=True)
        order = [k for k in SCENARIOS if k in results["scenarios"]]
        results["scenarios"] = {k: results["scenarios"][k] for k in order}
        write_results(NAME, results, markdown(results))
    failed = [n for n in chosen if not results["scenarios"][n].get("passed")]
    print(f"{len(chosen) - len(failed)}/{len(chosen)} scenarios passed" + (f"; FAILED: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
