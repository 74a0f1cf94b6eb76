"""Agents' corrections, gathered from a topic into a training file.

A correction is a JSON object `{"id", "text", "labels": [...], "source"}`: the labels a person
decided a complaint should have. `collect` reads the topic from the consumer group's committed
offsets (or the beginning) until it has caught up with the end of every partition, merges what it read into
the output file (one row per id, the latest correction winning), writes the file atomically, and
only then commits the offsets. A crash before the commit re-reads the same corrections next time,
and merging them again changes nothing; so every run can be resumed and none loses a correction.

Malformed corrections are counted by reason and never written: a training file must load in
`fmlc train` without a single bad line.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, field_validator

from fmlc.text import normalize
from worker.kafka import client_config
from worker.settings import WorkerSettings


class Correction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: StrictStr
    text: StrictStr
    labels: list[StrictStr]
    source: StrictStr | None = None

    @field_validator("id")
    @classmethod
    def _id_set(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("text")
    @classmethod
    def _text_set(cls, v: str) -> str:
        if not normalize(v):
            raise ValueError("must not be empty")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_set(cls, v: list[str]) -> list[str]:
        cleaned = list(dict.fromkeys(label.strip() for label in v))
        if not cleaned or not all(cleaned):
            raise ValueError("must be a non-empty list of non-empty label names")
        return cleaned


def parse_correction(raw: bytes | None) -> Correction:
    """The correction in a record's value; ValueError with a short reason when it is not one."""
    if raw is None:
        raise ValueError("empty value")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    try:
        return Correction.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "record"
        problem = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {problem}") from None


@dataclass
class CollectResult:
    read: int = 0
    new_ids: int = 0
    updated_ids: int = 0
    rows: int = 0
    malformed: Counter[str] = field(default_factory=Counter)

    def summary(self, out: Path) -> str:
        bad = sum(self.malformed.values())
        text = (f"read {self.read} corrections: {self.new_ids} new ids, {self.updated_ids} updated, {bad} malformed; "
                f"{out} holds {self.rows} rows")
        if bad:
            text += " (malformed, not written: " + ", ".join(f"{r} ×{n}" for r, n in self.malformed.most_common()) + ")"
        return text


# Each row remembers when its correction was produced, so that a later run can decide which of two
# corrections of one id is the latest even when they came from different partitions.
_ORDER = "_order"


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[str(row["id"])] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{number}: not a row written by `fmlc corrections collect`") from None
    return rows


def write_rows(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows.values():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def merge(rows: dict[str, dict[str, Any]], records: Iterable[tuple[bytes | None, tuple[int, int, int]]],
          result: CollectResult) -> None:
    """Merge (value, (timestamp, partition, offset)) records into `rows`; the latest order wins."""
    for value, order in records:
        result.read += 1
        try:
            correction = parse_correction(value)
        except ValueError as exc:
            result.malformed[str(exc)] += 1
            continue
        old = rows.get(correction.id)
        if old is not None and tuple(old.get(_ORDER, (0, 0, 0))) > order:
            continue
        if old is None:
            result.new_ids += 1
        else:
            result.updated_ids += 1
        rows[correction.id] = {**correction.model_dump(exclude_none=True), _ORDER: list(order)}


def collect(settings: WorkerSettings, topic: str, out: Path, group_id: str = "fmlc-corrections",
            timeout_s: float = 60.0, progress: Callable[[str], None] | None = None) -> CollectResult:
    """Read `topic` up to its current end, merge into `out`, then commit. Raises TimeoutError when the
    end is not reached within `timeout_s` (nothing is written or committed then)."""
    # Assigned, not subscribed: no group join to wait for, and the group still stores the offsets.
    consumer = KafkaConsumer(**{**client_config(settings), "client_id": f"{settings.client_id}-corrections"},
                             group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed", consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        # The end is the larger of the listed end offset and the high watermark of the fetches:
        # some Kafka-protocol brokers (Tansu) list the start of the last batch as the end.
        listed = consumer.end_offsets(tps)
        rows = read_rows(out)
        result = CollectResult()
        deadline = time.monotonic() + timeout_s

        def behind() -> dict[int, int]:
            ends = {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in tps}
            return {tp.partition: ends[tp] - consumer.position(tp) for tp in tps
                    if consumer.highwater(tp) is None or consumer.position(tp) < ends[tp]}

        while behind():
            if time.monotonic() > deadline:
                raise TimeoutError(f"did not reach the end of {topic} within {timeout_s:.0f} s (behind: {behind()})")
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                merge(rows, ((r.value, (r.timestamp, tp.partition, r.offset)) for r in records), result)
            if progress and batch:
                progress(f"read {result.read}")
        result.rows = len(rows)
        write_rows(out, rows)
        # kafka-python 3.0: (offset, metadata, leader epoch); -1 is "epoch unknown".
        consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in tps})
        return result
    finally:
        consumer.close(autocommit=False)


__all__ = ["CollectResult", "Correction", "collect", "merge", "parse_correction", "read_rows", "write_rows"]
