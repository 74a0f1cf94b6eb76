"""Memory of the worker under messages with large metadata: bounded by FMLC_MAX_IN_FLIGHT_BYTES.

    python -m bench.big_messages [--messages 100] [--meta-kb 900] [--budgets-mib 64,16] [--model DIR]

`--messages` complaints, each with about `--meta-kb` KB of `meta` (a JSON object of many small
fields: the shape that costs the most once parsed), are written to the input topic before a
`python -m worker` subprocess starts (tiny-dimension model, no cache), so the whole backlog is there
at once. For each byte budget the worker's RSS is sampled every 20 ms from ready to the last
answer. Passes when every message is answered and the RSS growth (peak - ready) stays within
2 x the budget + 100 MB. Results: bench/results/big_messages.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from pathlib import Path

from bench.common import REPO, TINY_MODEL_DIR, machine, proc_stats, write_results
from worker.kafka import ensure_topics
from worker.testkit import (
    WorkerProcess,
    make_producer,
    read_all,
    tiny_model,
    wait_for,
    worker_settings,
)

NAME = "big_messages"
WORKDIR = REPO / "runs" / "bench-big-messages"
MIB = 1024 * 1024


def big_meta(kb: int) -> dict:
    """About `kb` KB of JSON as many small fields, lists and nested objects."""
    n = kb * 1000 // 45
    return {f"field{i:06d}": [i, f"值{i}", {"x": i % 97}] for i in range(n)}


def run(model: Path, budget_mib: int, messages: int, meta_kb: int) -> dict:
    from training.synth import generate
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(WORKDIR / f"broker-{budget_mib}.log"))
    try:
        s = worker_settings(broker.bootstrap, model, max_in_flight_bytes=budget_mib * MIB, topic_partitions=2,
                            batch_size=16)
        ensure_topics(s)
        meta = big_meta(meta_kb)
        texts = [d["text"] for d in generate(messages, 5)]
        ids = [f"big-{i}" for i in range(messages)]
        producer = make_producer(broker.bootstrap, linger_ms=0, max_request_size=2 * MIB)
        sizes = []
        try:
            for cid, text in zip(ids, texts, strict=True):
                value = json.dumps({"id": cid, "text": text, "meta": meta}, ensure_ascii=False).encode()
                sizes.append(len(value))
                producer.send(s.input_topic, key=cid.encode(), value=value)
            producer.flush(120)
        finally:
            producer.close(5)
        w = WorkerProcess(s, WORKDIR / f"worker-{budget_mib}.log")
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss = proc_stats(w.pid).get("rss_mib")
                if rss:
                    samples.append(rss)
                time.sleep(0.02)

        t0 = time.time()
        # The backlog is there before the worker: it is ready only once it holds partitions, and by
        # then it may have fetched. The baseline is the model-loaded RSS before joining, so the
        # growth counts everything the backlog costs.
        wait_for(lambda: "model " in w.log(), 120, "model loaded", interval=0.05)
        time.sleep(0.2)
        ready_rss = proc_stats(w.pid).get("rss_mib", 0.0)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        w.wait_ready(120)

        def answered() -> int:
            m = w.metrics()
            return int(sum(v for (name, labels), v in m.items() if name == "fmlc_messages_total"))

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: answered() >= messages or not w.alive(), 600, "every message answered", interval=0.5)
        took = time.time() - t0
        stop.set()
        sampler.join()
        alive = w.alive()
        exit_code = w.stop() if alive else w.proc.returncode
        records = read_all(broker.bootstrap, [s.output_topic, s.dlq_topic], committed_only=False)
    finally:
        broker.stop()
    got = {r.key.decode() for r in records if r.topic == s.output_topic}
    peak = max(samples, default=ready_rss)
    growth = peak - ready_rss
    bound = 2 * budget_mib + 100
    checks = {f"all {messages} answered": got >= set(ids),
              f"RSS growth {growth:.0f} MiB <= 2 x {budget_mib} MiB + 100 MiB": growth <= bound,
              "worker alive to the end, exited 0": alive and exit_code == 0}
    return {"checks": checks, "passed": all(checks.values()), "budget_mib": budget_mib, "messages": messages,
            "message_bytes_mean": sum(sizes) / len(sizes), "rss_at_model_loaded_mib": ready_rss, "rss_peak_mib": peak,
            "rss_growth_mib": growth, "bound_mib": bound, "seconds": took, "answered": len(got & set(ids))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--meta-kb", type=int, default=900)
    ap.add_argument("--budgets-mib", default="64,16")
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    model = args.model or tiny_model(TINY_MODEL_DIR)
    runs = [run(model, int(b), args.messages, args.meta_kb) for b in args.budgets_mib.split(",")]
    results = {"machine": machine(), "runs": runs, "passed": all(r["passed"] for r in runs)}
    md = ["# Worker memory under large messages (FMLC_MAX_IN_FLIGHT_BYTES)", "",
          f"{args.messages} messages of {runs[0]['message_bytes_mean'] / 1e3:.0f} KB each (about {args.meta_kb} KB of "
          "`meta` as many small fields), all in the input topic before the worker starts; tiny-dimension model, "
          "no cache. RSS of the worker process sampled every 20 ms. `python -m bench.big_messages` reproduces this.",
          "", "| budget | answered | RSS at model loaded | peak RSS | growth | bound (2 x budget + 100 MiB) | time "
          "| result |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['budget_mib']} MiB | {r['answered']}/{r['messages']} | {r['rss_at_model_loaded_mib']:.0f} MiB | "
           f"{r['rss_peak_mib']:.0f} MiB | {r['rss_growth_mib']:.0f} MiB | {r['bound_mib']} MiB | "
           f"{r['seconds']:.0f} s | "
           f"{'PASS' if r['passed'] else 'FAIL'} |" for r in runs]
    write_results(NAME, results, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
