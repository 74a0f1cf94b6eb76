"""A Redis cache of predictions, keyed by the normalised text, the model version and its quantisation.

The cache is an optimisation, never a dependency: every Redis call has a short socket timeout and
no client-side retries, and after a failure the cache is skipped entirely for a back-off period
(doubling up to a minute) so that an outage costs one timeout per back-off period, not one per
batch. Skipped and failed look-ups count as result="error".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fmlc.text import normalize
from worker.messages import LabelOut
from worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


def text_digest(text: str) -> str:
    # Normalising first makes full-width/half-width, case and whitespace variants of one complaint
    # share an entry — the same normalisation the tokenizer applies, so the prediction is the same.
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


class LabelCache:
    def __init__(self, url: str, ttl_s: int, metrics: WorkerMetrics, prefix: str = "fmlc",
                 socket_timeout_s: float = 0.05, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.metrics = metrics
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._backoff = retry_s
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)

    def key(self, text: str, model_version: str, quantize: str = "none") -> str:
        # An int8 model's labels can differ from its fp32 twin's: each has keys of its own. fp32
        # keys keep the layout they always had, so existing entries stay valid.
        served = model_version if quantize == "none" else f"{model_version}+{quantize}"
        return f"{self.prefix}:labels:{served}:{text_digest(text)}"

    @property
    def available(self) -> bool:
        with self._lock:
            return self._clock() >= self._down_until

    def get_many(self, keys: Sequence[str]) -> list[list[LabelOut] | None]:
        """One MGET for the batch (keys from `key`); a None entry is a miss (or the cache is down)."""
        if not keys:
            return []
        if not self.available:
            self.metrics.cache_requests.labels(result="error").inc(len(keys))
            return [None] * len(keys)
        t0 = time.perf_counter()
        try:
            raw = self._client.mget(list(keys))
        except Exception as exc:  # the cache is an optimisation: any failure means "no cache"
            self.metrics.redis_seconds.labels(op="get").observe(time.perf_counter() - t0)
            self._failed(exc)
            self.metrics.cache_requests.labels(result="error").inc(len(keys))
            return [None] * len(keys)
        self.metrics.redis_seconds.labels(op="get").observe(time.perf_counter() - t0)
        self._succeeded()
        out: list[list[LabelOut] | None] = []
        for value in raw:
            labels = _decode(value) if value is not None else None
            out.append(labels)
        hits = sum(1 for v in out if v is not None)
        self.metrics.cache_requests.labels(result="hit").inc(hits)
        self.metrics.cache_requests.labels(result="miss").inc(len(out) - hits)
        return out

    def put_many(self, entries: Sequence[tuple[str, list[LabelOut]]]) -> None:
        """(key, labels) pairs, the keys those of the look-up (the text is normalised and hashed once)."""
        if not entries or not self.available:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, labels in entries:
            payload = json.dumps([lab.model_dump() for lab in labels], ensure_ascii=False)
            pipe.set(key, payload, ex=self.ttl_s)
        t0 = time.perf_counter()
        try:
            pipe.execute()
        except Exception as exc:  # as in get_many: a cache failure must never stop the stream
            self.metrics.redis_seconds.labels(op="set").observe(time.perf_counter() - t0)
            self._failed(exc)
            return
        self.metrics.redis_seconds.labels(op="set").observe(time.perf_counter() - t0)
        self._succeeded()

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._client.close()

    def _failed(self, exc: BaseException) -> None:
        self.metrics.cache_errors.inc()
        with self._lock:
            wait = self._backoff
            self._down_until = self._clock() + wait
            self._backoff = min(max(self._backoff * 2, 0.1), MAX_BACKOFF_S)
        log.warning("redis cache unavailable (%s: %s); serving without cache for %.1f s",
                    type(exc).__name__, exc, wait)

    def _succeeded(self) -> None:
        with self._lock:
            if self._backoff != self.retry_s:
                log.info("redis cache is back")
            self._backoff = self.retry_s


def _decode(value: bytes | str) -> list[LabelOut] | None:
    # A value this code cannot read (an older layout, a foreign writer) is a miss, not an error.
    try:
        return [LabelOut.model_validate(item) for item in json.loads(value)]
    except (ValueError, TypeError):
        return None


__all__ = ["LabelCache", "text_digest"]
