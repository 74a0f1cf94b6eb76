"""Replay a JSONL file of complaints into the FMLC input topic (the compose `demo` profile).

Each line is a training-style record (`{"id", "text", ["labels"], ["split"], ...}`); what is sent is
the worker's input message: `schema_version`, `id`, `text` and, when present, `source`,
`created_at` and `meta`. Gold labels are not sent: the stream should look like production input.

    python deploy/replay.py --bootstrap-servers localhost:29092 --file data/complaints.jsonl --rate 50

Only the standard library and kafka-python (a dependency of the project) are used, so the script
runs both inside the worker image and from a checkout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("fmlc.replay")

INPUT_SCHEMA_VERSION = 1
PASSED_THROUGH = ("source", "created_at", "meta")


def to_message(record: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    """A JSONL record -> the worker's input message (see worker.messages.Complaint)."""
    message: dict[str, Any] = {
        "schema_version": INPUT_SCHEMA_VERSION,
        "id": str(record.get("id") or fallback_id),
        "text": record.get("text", ""),
    }
    for key in PASSED_THROUGH:
        if record.get(key) is not None:
            message[key] = record[key]
    return message


def read_messages(path: Path, loop: bool = False) -> Iterator[dict[str, Any]]:
    """Messages from the file, forever when `loop`. Later passes suffix the id (`-r1`, `-r2`...) so
    every message of a long demo stays distinguishable in the output topic."""
    passes = 0
    while True:
        sent_any = False
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                message = to_message(record, fallback_id=f"{path.stem}-{line_no}")
                if passes:
                    message["id"] = f"{message['id']}-r{passes}"
                sent_any = True
                yield message
        passes += 1
        if not loop or not sent_any:
            return


def connect(bootstrap_servers: str, wait_s: float = 60.0) -> Any:
    """A KafkaProducer, retrying while the broker is still starting."""
    from kafka import KafkaProducer
    from kafka.errors import NoBrokersAvailable

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5,
                                 client_id="fmlc-replay")
        except NoBrokersAvailable:
            if time.monotonic() > deadline:
                raise
            log.info("broker %s not reachable yet, retrying", bootstrap_servers)
            time.sleep(2.0)


def replay(producer: Any, topic: str, messages: Iterable[dict[str, Any]], rate: float = 0.0,
           limit: int | None = None) -> int:
    """Send `messages` keyed by id, at most `rate` per second (0: as fast as the broker takes them).
    Returns how many were sent; every send has been acknowledged when it returns."""
    start = time.monotonic()
    sent = 0
    for message in messages:
        if limit is not None and sent >= limit:
            break
        if rate > 0:
            # Pace against the start time, not the previous send, so that slow sends do not
            # accumulate into a lower rate than asked for.
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        value = json.dumps(message, ensure_ascii=False).encode("utf-8")
        producer.send(topic, key=message["id"].encode("utf-8"), value=value)
        sent += 1
        if sent % 1000 == 0:
            log.info("sent %d messages", sent)
    producer.flush()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default="localhost:29092")
    parser.add_argument("--topic", default="fmlc.complaints")
    parser.add_argument("--file", type=Path, required=True, help="JSONL with id and text per line")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second; 0 = unpaced")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--loop", action="store_true", help="start over at the end of the file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if not args.file.is_file():
        parser.error(f"{args.file} does not exist")
    producer = connect(args.bootstrap_servers)
    try:
        sent = replay(producer, args.topic, read_messages(args.file, loop=args.loop), args.rate, args.limit)
    finally:
        producer.close()
    log.info("done: %d messages sent to %s", sent, args.topic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
