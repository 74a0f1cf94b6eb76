"""Shadow scoring: a candidate model labels a sample of live traffic beside the served one.

The shadow sees complaints only after their real outputs were acknowledged, in its own thread,
through a bounded queue it never waits on: when it falls behind, samples are dropped and counted.
It publishes its labels to `FMLC_SHADOW_TOPIC` with its own fire-and-forget producer and records
its agreement with the live model (Jaccard of the two label sets) in a histogram. It never touches
the outputs, alerts, cache or offsets, and every failure (a model that does not load, a produce
error, an exception in predict) is logged and counted, never raised.

Sampling is by complaint id, so a complaint that comes back is sampled again or not at all, and two
workers sample the same complaints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmlc import Predictor

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 10.0
RETRY_LOAD_S = 30.0


def sampled(complaint_id: str, share: float) -> bool:
    if share <= 0:
        return False
    if share >= 1:
        return True
    digest = hashlib.blake2b(complaint_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class Sample:
    complaint_id: str
    text: str
    live_labels: tuple[str, ...]
    live_version: str


class ShadowScorer:
    """`offer` from any thread; `run` in the shadow's own thread (`start`)."""

    def __init__(self, model_path: Path, share: float, topic: str, send: Callable[[str, bytes, bytes], Any],
                 metrics: Any, queue_size: int = 512, batch_size: int = 32, device: str | None = "cpu") -> None:
        if not 0 < share <= 1:
            raise ValueError("the shadow sample share must be in (0, 1]")
        self.model_path = model_path
        self.share = share
        self.topic = topic
        self.batch_size = batch_size
        self.device = device
        self._send = send  # (topic, key, value) -> None; the shadow's own producer
        self._m = metrics
        self._queue: queue.Queue[Sample] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.predictor: Predictor | None = None
        self._next_load = 0.0
        self._next_check = 0.0

    def offer(self, complaint_id: str, text: str, live_labels: Sequence[str], live_version: str) -> None:
        if not sampled(complaint_id, self.share):
            return
        try:
            self._queue.put_nowait(Sample(complaint_id, text, tuple(live_labels), live_version))
        except queue.Full:
            self._m.shadow_samples.labels(result="dropped").inc()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="fmlc-shadow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.score(batch)
            except Exception:  # the shadow must never take the worker down
                log.exception("shadow scoring failed for a batch of %d", len(batch))
                self._m.shadow_samples.labels(result="error").inc(len(batch))

    def _model(self) -> Predictor | None:
        now = time.monotonic()
        if self.predictor is not None and now >= self._next_check:
            self._next_check = now + RELOAD_CHECK_S
            try:
                if Predictor.artifact_version(self.model_path) != self.predictor.version:
                    self.predictor = None  # reloaded below
            except Exception as exc:
                log.warning("cannot read the shadow model's version at %s: %s", self.model_path, exc)
        if self.predictor is None and now >= self._next_load:
            try:
                self.predictor = Predictor.load(self.model_path, device=self.device)
                self._m.shadow_info.clear()
                self._m.shadow_info.labels(version=self.predictor.version).set(1)
                log.info("shadow model %s loaded from %s", self.predictor.version, self.model_path)
            except Exception as exc:
                self._next_load = now + RETRY_LOAD_S
                log.error("shadow model at %s does not load (retrying in %.0f s): %s", self.model_path,
                          RETRY_LOAD_S, exc)
        return self.predictor

    def score(self, batch: list[Sample]) -> None:
        predictor = self._model()
        if predictor is None:
            self._m.shadow_samples.labels(result="error").inc(len(batch))
            return
        predictions = predictor.predict([s.text for s in batch], batch_size=self.batch_size)
        for sample, prediction in zip(batch, predictions, strict=True):
            agreement = jaccard(sample.live_labels, prediction.names)
            self._m.shadow_agreement.observe(agreement)
            value = json.dumps({"id": sample.complaint_id, "labels": prediction.to_dict()["labels"],
                                "model_version": predictor.version, "live_labels": list(sample.live_labels),
                                "live_model_version": sample.live_version, "jaccard": round(agreement, 4)},
                               ensure_ascii=False).encode()
            try:
                self._send(self.topic, sample.complaint_id.encode(), value)
                self._m.shadow_samples.labels(result="scored").inc()
            except Exception as exc:
                log.warning("shadow output not produced: %s", exc)
                self._m.shadow_samples.labels(result="error").inc()


__all__ = ["Sample", "ShadowScorer", "jaccard", "sampled"]
