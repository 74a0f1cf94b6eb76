"""Micro-batches: up to `batch_size` items or `max_wait` after the first item arrived, whichever first.

(Under a backlog the model stage merges several micro-batches that are already waiting into one
call: see worker.pipeline.merge_waiting.)

The wait is measured from when the first item *entered the queue*, not from when the batcher got
round to it: when the pipeline is behind, items have already waited and the batch goes out with
whatever is there instead of adding another max_wait on top.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    items: list[T]
    wait_s: float  # first item's arrival → dispatch
    full: bool  # closed by size rather than by time


class MicroBatcher(Generic[T]):
    def __init__(self, source: queue.Queue[T], batch_size: int, max_wait_s: float,
                 arrival: Callable[[T], float], clock: Callable[[], float] = time.monotonic) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.source = source
        self.batch_size = batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self._arrival = arrival
        self._clock = clock

    def next_batch(self, idle_timeout_s: float = 0.1, hurry: Callable[[], bool] | None = None) -> Batch[T] | None:
        """The next batch, or None when nothing arrived within idle_timeout_s (so the caller can
        look at its stop flag). `hurry()` true (e.g. while draining for shutdown) skips the wait."""
        try:
            first = self.source.get(timeout=idle_timeout_s)
        except queue.Empty:
            return None
        items = [first]
        deadline = self._arrival(first) + self.max_wait_s
        while len(items) < self.batch_size:
            try:
                items.append(self.source.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - self._clock()
            if remaining <= 0 or (hurry is not None and hurry()):
                break
            try:
                # Short slices so a hurry() that turns true mid-wait is seen promptly.
                items.append(self.source.get(timeout=min(remaining, 0.05)))
            except queue.Empty:
                continue
        now = self._clock()
        return Batch(items=items, wait_s=max(0.0, now - self._arrival(first)), full=len(items) >= self.batch_size)


__all__ = ["Batch", "MicroBatcher"]
