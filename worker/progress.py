"""Progress of each processing stage, for the liveness probe and the stall metric.

A stage is *busy* while it holds work (a micro-batch being prepared, a request to the tokenizer
child, a model call, a batch waiting for its acks, a transaction being committed) and *stalled*
when it has been busy for longer than the stall timeout without reporting progress. An idle stage
(waiting for work) is never stalled: a quiet stream is not a hung worker.

Stages report with `with progress.working("infer"): ...`, or `beat(stage)` from inside a long
operation that does make progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STAGES = ("prepare", "tokenizer", "infer", "deliver", "transaction")


class StageProgress:
    def __init__(self, stages: tuple[str, ...] = STAGES, clock: Callable[[], float] = time.monotonic) -> None:
        self.stages = stages
        self._clock = clock
        self._lock = threading.Lock()
        # stage -> (nesting depth, monotonic time of the last progress while busy)
        self._busy: dict[str, tuple[int, float]] = {}

    @contextmanager
    def working(self, stage: str) -> Iterator[None]:
        self._enter(stage)
        try:
            yield
        finally:
            self._exit(stage)

    def _enter(self, stage: str) -> None:
        with self._lock:
            depth, _ = self._busy.get(stage, (0, 0.0))
            self._busy[stage] = (depth + 1, self._clock())

    def _exit(self, stage: str) -> None:
        with self._lock:
            depth, _ = self._busy.get(stage, (1, 0.0))
            if depth <= 1:
                self._busy.pop(stage, None)
            else:
                self._busy[stage] = (depth - 1, self._clock())

    def beat(self, stage: str) -> None:
        with self._lock:
            if stage in self._busy:
                self._busy[stage] = (self._busy[stage][0], self._clock())

    def stalled_for(self, stage: str) -> float:
        """Seconds the stage has held work without progress (0 when idle)."""
        with self._lock:
            busy = self._busy.get(stage)
            return 0.0 if busy is None else max(0.0, self._clock() - busy[1])

    def stalled(self, timeout_s: float) -> list[str]:
        """The stages busy without progress for at least `timeout_s`, in pipeline order."""
        return [s for s in self.stages if self.stalled_for(s) >= timeout_s]


__all__ = ["STAGES", "StageProgress"]
