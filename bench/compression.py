"""What each producer compression codec costs and saves on the worker's own messages.

    python -m bench.compression [--messages 6000] [--batch 32]

The worker produces outputs (label JSON, no complaint text), alerts and dead letters (the original
complaint bytes). For each codec the messages are written into record batches exactly as the
producer writes them (kafka-python's MemoryRecordsBuilder, message format v2, `--batch` records per
batch: a 64-message micro-batch spread over a few output partitions), then read back:

- bytes per message on the wire (batch bytes / records), and the ratio to no compression;
- CPU microseconds per message to build the batches (producer side) and to read them (consumer side).

Outputs are rendered from ccks2019_fin texts (or synthetic ones when the data set is not there)
with the worker's own Classified model, labels and evidence words taken from the text.
Results: bench/results/compression.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timezone

from bench.common import machine, write_results

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
NAME = "compression"


def complaint_texts(n: int) -> list[str]:
    from bench.common import ccks_texts

    try:
        texts = ccks_texts()
    except (FileNotFoundError, OSError):
        texts = []
    if not texts:
        from training.synth import generate

        texts = [d["text"] for d in generate(n, 7)]
    return (texts * (n // max(1, len(texts)) + 1))[:n]


def worker_messages(n: int, seed: int = 0) -> dict[str, list[tuple[bytes, bytes]]]:
    """(key, value) pairs as the worker produces them: outputs and dead letters."""
    import jieba

    from worker.messages import Classified, LabelOut, Timings, to_bytes

    rng = random.Random(seed)
    labels = [f"标签{i:02d}" for i in range(24)]
    outputs, dead = [], []
    now = datetime.now(timezone.utc)
    for i, text in enumerate(complaint_texts(n)):
        cid = f"c-{seed}-{i:07d}"
        words = [w for w in jieba.lcut(text[:200]) if len(w) > 1] or ["借款"]
        outs = [LabelOut(label=lab, score=round(rng.uniform(0.3, 1.0), 6),
                         evidence=rng.sample(words, min(3, len(words))))
                for lab in rng.sample(labels, rng.randint(1, 3))]
        result = Classified(id=cid, labels=outs, model_version="fmlc-0123456789ab", cached=rng.random() < 0.1,
                            source="app", created_at=now, processed_at=now,
                            timings=Timings(queue_ms=rng.uniform(0, 20), cache_ms=0.4, tokenize_ms=3.1,
                                            inference_ms=rng.uniform(5, 40), total_ms=rng.uniform(10, 80)))
        outputs.append((cid.encode(), to_bytes(result)))
        raw = json.dumps({"schema_version": 1, "id": cid, "text": text}, ensure_ascii=False).encode()
        dead.append((cid.encode(), raw))
    return {"outputs": outputs, "dead_letters": dead}


def measure(messages: list[tuple[bytes, bytes]], codec: int, batch: int) -> dict:
    from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

    ts = int(time.time() * 1000)
    t0 = time.process_time()
    buffers = []
    for start in range(0, len(messages), batch):
        b = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=16 * 1024 * 1024)
        for key, value in messages[start:start + batch]:
            b.append(ts, key, value, [])
        b.close()
        buffers.append(b.buffer())
    build_s = time.process_time() - t0
    t0 = time.process_time()
    seen = 0
    for buf in buffers:
        records = MemoryRecords(bytes(buf))
        while (b := records.next_batch()) is not None:
            for rec in b:
                seen += len(rec.value)
    read_s = time.process_time() - t0
    assert seen == sum(len(v) for _, v in messages)
    total = sum(len(buf) for buf in buffers)
    n = len(messages)
    return {"bytes_per_message": total / n, "build_us_per_message": build_s / n * 1e6,
            "read_us_per_message": read_s / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timings per codec")
    args = ap.parse_args()
    kinds = worker_messages(args.messages)
    results: dict = {"machine": machine(), "messages": args.messages, "batch": args.batch, "kinds": {}}
    md = ["# Producer compression on the worker's messages", "",
          f"{args.messages} messages per kind, {args.batch} records per batch (message format v2); CPU times "
          f"best of {args.repeat}. `python -m bench.compression` reproduces this.", ""]
    for kind, messages in kinds.items():
        rows = {}
        for name, codec in CODECS.items():
            runs = [measure(messages, codec, args.batch) for _ in range(args.repeat)]
            rows[name] = {"bytes_per_message": runs[0]["bytes_per_message"],
                          "build_us_per_message": min(r["build_us_per_message"] for r in runs),
                          "read_us_per_message": min(r["read_us_per_message"] for r in runs)}
        base = rows["none"]["bytes_per_message"]
        for r in rows.values():
            r["ratio"] = base / r["bytes_per_message"]
        results["kinds"][kind] = rows
        md += [f"## {kind} ({sum(len(v) for _, v in messages) / len(messages):.0f} bytes of value on average)", "",
               "| codec | bytes/message on the wire | ratio | produce CPU µs/message | consume CPU µs/message |",
               "|---|---|---|---|---|"]
        md += [f"| {name} | {r['bytes_per_message']:.0f} | {r['ratio']:.2f}x | {r['build_us_per_message']:.1f} | "
               f"{r['read_us_per_message']:.1f} |" for name, r in rows.items()]
        md.append("")
    write_results(NAME, results, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
