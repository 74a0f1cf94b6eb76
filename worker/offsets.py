"""Which offsets may be committed, and which in-flight work is still wanted.

`OffsetTracker` follows every consumed record until its results are acknowledged. The commit
position of a partition only moves over a contiguous run of acknowledged offsets, so a slow
message never lets a later one commit past it.

`Epochs` invalidates in-flight work: each record carries its partition's epoch from when it was
consumed; a rebalance or a failed delivery bumps the epoch and every pipeline stage drops work
whose epoch is no longer current (it will be consumed again from the commit position).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import TopicPartition


@dataclass
class _Partition:
    next_commit: int  # every offset below this is acknowledged
    committed: int | None = None  # what the group coordinator holds, as far as we know
    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    sizes: dict[int, int] = field(default_factory=dict)  # offset -> bytes it holds while in flight


class OffsetTracker:
    """Thread-safe: the consume loop adds and commits, the rebalance listener (on the Kafka IO
    thread) reads and drops. Never call into the consumer while holding the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._in_flight = 0
        self._in_flight_bytes = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight_bytes

    def add(self, tp: TopicPartition, offset: int, size: int = 0) -> None:
        """`size`: the bytes the record holds until it is acknowledged (see record_cost)."""
        with self._lock:
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition(next_commit=offset)
            elif not part.pending and offset > part.next_commit:
                # Offsets jump over transaction markers and compacted records; nothing in between
                # is owed, so the commit position may follow.
                part.next_commit = offset
            part.pending.append(offset)
            part.sizes[offset] = size
            self._in_flight += 1
            self._in_flight_bytes += size

    def complete(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        with self._lock:
            part = self._parts.get(tp)
            if part is None:
                return
            part.done.update(offsets)
            while part.pending and part.pending[0] in part.done:
                off = part.pending.popleft()
                part.done.discard(off)
                part.next_commit = off + 1
                self._in_flight -= 1
                self._in_flight_bytes -= part.sizes.pop(off, 0)

    def committable(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Partitions whose acknowledged position is ahead of the last commit."""
        with self._lock:
            chosen = self._parts if tps is None else {tp: self._parts[tp] for tp in tps if tp in self._parts}
            return {tp: p.next_commit for tp, p in chosen.items()
                    if p.committed is None or p.next_commit > p.committed}

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            for tp, off in offsets.items():
                part = self._parts.get(tp)
                if part is not None and (part.committed is None or off > part.committed):
                    part.committed = off

    def position(self, tp: TopicPartition) -> int | None:
        """The first offset not yet acknowledged (where a rewind resumes), if the partition is known."""
        with self._lock:
            part = self._parts.get(tp)
            return None if part is None else part.next_commit

    def pending(self, tp: TopicPartition) -> int:
        with self._lock:
            part = self._parts.get(tp)
            return 0 if part is None else len(part.pending)

    def committed(self, tp: TopicPartition) -> int | None:
        with self._lock:
            part = self._parts.get(tp)
            return None if part is None else part.committed

    def drop(self, tps: Iterable[TopicPartition], forget: bool = False) -> dict[TopicPartition, int]:
        """Forget in-flight records of these partitions; returns their rewind positions. With
        forget=True the partition's state goes entirely (it belongs to another member now)."""
        out: dict[TopicPartition, int] = {}
        with self._lock:
            for tp in tps:
                part = self._parts.get(tp)
                if part is None:
                    continue
                out[tp] = part.next_commit
                self._in_flight -= len(part.pending)
                self._in_flight_bytes -= sum(part.sizes.values())
                part.pending.clear()
                part.done.clear()
                part.sizes.clear()
                if forget:
                    del self._parts[tp]
        return out

    def partitions(self) -> list[TopicPartition]:
        with self._lock:
            return list(self._parts)


def record_cost(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """What one in-flight record holds, for FMLC_MAX_IN_FLIGHT_BYTES: its raw key, value and headers
    (kept for a dead letter until it is acknowledged) plus what is kept parsed — the complaint's text
    and fields, never more than the raw value (meta is not kept at all) — and a fixed 1 KiB for the
    objects around them."""
    raw = len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers or [])
    return raw + len(value or b"") + 1024


class Epochs:
    """Per-partition generation counters. `lock` is shared with the delivery stage so that its
    "is this batch still wanted" check and a bump cannot interleave."""

    def __init__(self, lock: threading.Condition | None = None) -> None:
        self.lock = lock or threading.Condition()
        self._epochs: dict[TopicPartition, int] = {}

    def current(self, tp: TopicPartition) -> int:
        return self._epochs.get(tp, 0)

    def is_current(self, tp: TopicPartition, epoch: int) -> bool:
        return self._epochs.get(tp, 0) == epoch

    def bump(self, tps: Iterable[TopicPartition]) -> None:
        with self.lock:
            for tp in tps:
                self._epochs[tp] = self._epochs.get(tp, 0) + 1


__all__ = ["Epochs", "OffsetTracker", "record_cost"]
