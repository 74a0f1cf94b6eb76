"""The worker application: builds the parts, runs the consume loop, commits, drains, stops.

The consume loop (the thread that calls `run`) polls, pauses, seeks and commits. It hands records to
the pipeline (worker.pipeline), keeps at most `max_in_flight` unacknowledged records — pausing its
partitions beyond that while it goes on polling, so the group never sees it as dead — and commits
the acknowledged prefix of each partition.

The rebalance listener (`_Rebalance`) is the exception: kafka-python 3 runs the group protocol on
the consumer's own IO thread (`kafka-io-<client id>`), and the listener runs there too, while the
consume loop waits inside `poll()` (or `close()`) for that work to finish. So the commit before
partitions are given up, the seek of kept partitions back to dropped records and the pause of newly
assigned partitions while paused or draining happen on the IO thread — never at the same moment as
a consumer call of the consume loop. What both threads touch (tracker, epochs, assignment) is
guarded by the epochs lock.

On a rebalance, in-flight work of the revoked partitions is invalidated, the delivery stage gets a
moment to finish the batch it is already sending, what is acknowledged is committed, and the rest
is dropped — it will be consumed again by whoever owns the partition next.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError
from kafka.structs import OffsetAndMetadata

from worker.alerts import AlertRules
from worker.cache import LabelCache
from worker.health import HealthServer
from worker.kafka import (
    check_codecs,
    check_transactional_id,
    ensure_topics,
    make_consumer,
    make_lag_probe,
    make_producer,
    make_shadow_producer,
)
from worker.logs import install_secret_filter
from worker.messages import DeadLetterReason, InvalidMessage
from worker.metrics import WorkerMetrics
from worker.model import ModelWatcher, ServedModel, load_model
from worker.offsets import Epochs, OffsetTracker, record_cost
from worker.pipeline import Completion, Job, Pipeline, Rewind
from worker.settings import WorkerSettings, redact_url
from worker.shadow import ShadowScorer

log = logging.getLogger(__name__)

POLL_MS = 50  # also the worst-case delay between an acknowledgement and its commit
LAG_INTERVAL_S = 1.0


class _Rebalance(AsyncConsumerRebalanceListener):
    """Async so that kafka-python awaits it on its IO thread; blocking consumer calls are not
    allowed there, so the commit is awaited as a future instead."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app

    async def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self.app._on_revoked(set(revoked))
        if offsets:
            try:
                await self.app.consumer.commit_async(
                    {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
                log.info("committed %s before giving up partitions", _fmt(offsets))
            except KafkaError as exc:
                self.app.metrics.commit_failures.inc()
                log.warning("commit before rebalance failed (%s); records since the last commit will be "
                            "processed again by the next owner", exc)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.app._on_assigned(set(assigned))

    async def on_partitions_lost(self, lost: Any) -> None:
        self.app._on_lost(set(lost))


class WorkerApp:
    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None,
                 model: ServedModel | None = None) -> None:
        self.s = settings
        self.metrics = metrics or WorkerMetrics()
        self.tracker = OffsetTracker()
        self.epochs = Epochs()
        self._preloaded = model
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._assigned: set[TopicPartition] = set()
        # True once the group has given this member an assignment, even an empty one (see _ready).
        self._joined = False
        self._rewind_on_assign: dict[TopicPartition, int] = {}
        self._paused = False
        self._draining = False
        self._group_md: Any = None
        self._loop_beat = time.monotonic()
        self._lag_at = 0.0
        self._poll_failing_since: float | None = None
        self._lag_series: set[tuple[str, str]] = set()
        self._broker_committed: dict[TopicPartition, int] = {}  # before this worker's first commit
        self._lag_probe: Any = None
        self.consumer: Any = None
        self.producer: Any = None
        self.cache: LabelCache | None = None
        self.health: HealthServer | None = None
        self.pipeline: Pipeline | None = None
        self.models: ModelWatcher | None = None
        self.alerts = AlertRules()
        self.shadow: ShadowScorer | None = None
        self._shadow_producer: Any = None

    # --- public -------------------------------------------------------------------------------------
    def start(self) -> WorkerApp:
        s = self.s
        check_codecs()
        served = self._preloaded or load_model(s.model_path, s.device, s.cpu_threads, s.quantize)
        self.metrics.set_model(served.version, served.device, served.quantize)
        log.info("model %s on %s, %d labels", served.version, served.device, len(served.labels))
        self.alerts = AlertRules.load(s.alert_rules)
        self.alerts.check_labels(served.labels)
        extra_topics = [*self.alerts.topics, *([s.review_topic] if s.review_topic else []),
                        *([s.shadow_topic] if s.shadow_model_path else [])]
        created = ensure_topics(s, extra_topics)
        if created:
            log.info("created topics %s", created)
        redis_url = s.redis_url_value
        if redis_url:
            self.cache = LabelCache(redis_url, s.cache_ttl_s, self.metrics, prefix=s.cache_prefix,
                                    socket_timeout_s=s.cache_socket_timeout_s, retry_s=s.cache_retry_s)
            if not self.cache.ping():
                log.warning("redis at %s does not answer; running without cache until it does",
                            redact_url(redis_url))
        check_transactional_id(s)
        self.producer = make_producer(s)
        self.models = ModelWatcher(s.model_path, s.device, s.cpu_threads, s.model_poll_interval_s, served,
                                   on_swap=self._model_swapped, on_result=self._reload_result,
                                   quantize=s.quantize)
        if s.shadow_model_path is not None:
            self.shadow = self._start_shadow(s, s.shadow_model_path)
        self.pipeline = Pipeline(s, self.metrics, self.models, self.cache, self.alerts, self.producer,
                                 self.epochs, group_metadata=lambda: self._group_md, on_fatal=self.fail,
                                 shadow=self.shadow)
        self.metrics.watch_stages(self.pipeline.progress.stalled_for, self.pipeline.progress.stages)
        self.consumer = make_consumer(s)
        self.consumer.subscribe([s.input_topic], listener=_Rebalance(self))
        self.health = HealthServer(s.metrics_host, s.metrics_port, self.metrics.registry, self._live,
                                   self._ready).start()
        self.pipeline.start()
        self.models.start()
        log.info("worker started: %s -> %s (dlq %s, alerts %s), group %s, %s, metrics on :%d",
                 s.input_topic, s.output_topic, s.dlq_topic, self.alerts.topics or "none", s.group_id,
                 s.delivery, self.health.port)
        return self

    def _start_shadow(self, s: WorkerSettings, path: Path) -> ShadowScorer:
        producer = self._shadow_producer = make_shadow_producer(s)

        def send(topic: str, key: bytes, value: bytes) -> None:
            producer.send(topic, key=key, value=value).add_errback(
                lambda exc: self.metrics.shadow_samples.labels(result="error").inc())

        # On the CPU the shadow shares the cores with the live model; FMLC_SHADOW_SAMPLE is the knob.
        shadow = ShadowScorer(path, s.shadow_sample, s.shadow_topic, send, self.metrics,
                              device="cpu" if not (s.device or "").startswith("cuda") else s.device)
        shadow.start()
        log.info("shadow model from %s scores %.0f%% of the complaints into %s", path, 100 * s.shadow_sample,
                 s.shadow_topic)
        return shadow

    def run(self) -> int:
        """The consume loop; returns when stopped (0) or after a fatal error (1)."""
        try:
            while not self._stop.is_set():
                self._loop_beat = time.monotonic()
                self._handle_done()
                self._commit()
                self._backpressure()
                try:
                    self._poll()
                    self._poll_failing_since = None
                except Exception as exc:  # decoders raise more than KafkaError (lz4: RuntimeError)
                    self._poll_failed(exc)
                self._export_lag()
            self._drain()
        finally:
            self._close()
        if self._fatal is not None:
            log.error("worker stopped on a fatal error: %r", self._fatal)
            return 1
        return 0

    def request_stop(self) -> None:
        """Safe from a signal handler."""
        self._stop.set()

    def request_reload(self) -> None:
        if self.models is not None:
            self.models.request_reload()

    def fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._stop.set()

    @property
    def metrics_port(self) -> int:
        return self.health.port if self.health else 0

    @property
    def model(self) -> ServedModel | None:
        return self.models.current if self.models else self._preloaded

    @property
    def assigned(self) -> set[TopicPartition]:
        return set(self._assigned)

    @property
    def ready(self) -> bool:
        return self._ready()[0]

    @property
    def paused(self) -> bool:
        """Whether fetching is paused for back-pressure."""
        return self._paused

    # --- the consume loop ---------------------------------------------------------------------------
    def _poll(self) -> None:
        room = self.s.in_flight_limit - self.tracker.in_flight
        records = self.consumer.poll(timeout_ms=POLL_MS, max_records=max(1, min(self.s.max_poll_records, room)))
        if not records:
            return
        now = time.monotonic()
        n = 0
        assert self.pipeline is not None
        # Under the epochs lock: the rebalance listener (IO thread) must not bump and drop between
        # our reading an epoch and registering the record with the tracker.
        stray: dict[TopicPartition, int] = {}
        with self.epochs.lock:
            for tp, batch in records.items():
                if tp not in self._assigned:
                    stray[tp] = batch[0].offset  # revoked while this fetch was in flight
                    continue
                epoch = self.epochs.current(tp)
                for r in batch:
                    headers = list(r.headers or [])
                    self.tracker.add(tp, r.offset, record_cost(r.key, r.value, headers))
                    self.pipeline.submit(Job(
                        tp=tp, offset=r.offset, epoch=epoch, arrived=now,
                        timestamp_ms=r.timestamp if r.timestamp and r.timestamp > 0 else None,
                        key=r.key, value=r.value, headers=headers, group_md=self._group_md))
                    n += 1
        for tp, offset in stray.items():
            # Should kafka-python still hold the partition, its position must not stay past records
            # nobody processed; if it does not, there is nothing to seek and nothing is lost.
            with contextlib.suppress(ValueError, KafkaError):
                self.consumer.seek(tp, offset)
        self.metrics.consumed.inc(n)
        self.metrics.queue_depth.set(self.tracker.in_flight)

    def _poll_failed(self, exc: Exception) -> None:
        # kafka-python retries what is retriable inside poll(); what reaches us is a record it cannot
        # decode, a listener error or a broker/authorisation problem.
        kind = poll_error_kind(exc)
        self.metrics.poll_errors.labels(kind=kind).inc()
        if kind == "undecodable":
            self._undecodable(exc)
            return
        if not isinstance(exc, KafkaError):
            # Not the client's and not data: a bug of ours (e.g. in the rebalance listener).
            log.error("poll failed on an unexpected error", exc_info=exc)
            self.fail(exc)
            return
        # Transient broker problems pass; one that lasts is fatal, so that the orchestrator restarts
        # the worker (and the liveness probe says so) instead of it idling.
        now = time.monotonic()
        if self._poll_failing_since is None:
            self._poll_failing_since = now
        failing_s = now - self._poll_failing_since
        log.warning("poll failed (%s: %s), failing for %.0f s", type(exc).__name__, exc, failing_s)
        if failing_s > max(60.0, self.s.max_poll_interval_ms / 1000):
            self.fail(exc)
        time.sleep(0.5)

    def _undecodable(self, exc: Exception) -> None:
        """A record or batch the client cannot decode: dead-letter it and skip past it. kafka-python
        leaves the partition's position on the failed record, and polling again without a seek
        past it never returns from that partition again (nor raises): a silent stall. So: the
        record goes to the dead-letter topic (reason undecodable, no value — the client does not
        hand out the raw bytes), the position moves one past it, and the next poll reads on (a
        whole bad batch costs one dead letter per record). Where the client does not say which
        partition failed, the worker stops with an error (liveness red, exit 1) instead."""
        at = undecodable_position(self.consumer)
        if at is None or at[0] not in self._assigned:
            log.error("poll failed on a record the client cannot decode, and it does not say which "
                      "(%s: %s); stopping rather than stalling", type(exc).__name__, exc)
            self.fail(exc)
            return
        tp, offset = at
        detail = f"{type(exc).__name__}: {exc}"
        log.warning("%s[%d]@%d cannot be decoded (%s); dead-lettered and skipped", tp.topic, tp.partition,
                    offset, detail[:300])
        assert self.pipeline is not None
        with self.epochs.lock:
            self.tracker.add(tp, offset, record_cost(None, None, None))
            self.pipeline.submit(Job(tp=tp, offset=offset, epoch=self.epochs.current(tp), arrived=time.monotonic(),
                                     timestamp_ms=None, key=None, value=None, headers=[],
                                     invalid=InvalidMessage(DeadLetterReason.UNDECODABLE, detail),
                                     group_md=self._group_md))
        self.consumer.seek(tp, offset + 1)
        self.metrics.consumed.inc()
        self.metrics.queue_depth.set(self.tracker.in_flight)

    def _handle_done(self) -> None:
        assert self.pipeline is not None
        while True:
            with self.epochs.lock:
                item = self._apply_one_done()
            if item is None:
                break
            if isinstance(item, Rewind):
                self._rewind(item.partitions)
        self.metrics.queue_depth.set(self.tracker.in_flight)

    def _apply_one_done(self) -> Completion | Rewind | None:
        """Take one pipeline result and apply it; the caller holds the epochs lock."""
        assert self.pipeline is not None
        item = self.pipeline.take_done()
        if item is None:
            return None
        if isinstance(item, Completion):
            by_tp: dict[TopicPartition, list[int]] = defaultdict(list)
            for tp, off, _epoch in item.offsets:
                by_tp[tp].append(off)
            for tp, offs in by_tp.items():
                self.tracker.complete(tp, offs)
                if self.s.exactly_once:
                    # The transaction committed these offsets together with the outputs.
                    pos = self.tracker.position(tp)
                    if pos is not None:
                        self.tracker.mark_committed({tp: pos})
        return item

    def _rewind(self, tps: frozenset[TopicPartition]) -> None:
        with self.epochs.lock:
            self.epochs.bump(tps)  # records polled since the failure are stale too
            positions = self.tracker.drop(tps)
        self.metrics.rewinds.inc(len(positions))
        for tp, off in positions.items():
            if tp in self._assigned:
                try:
                    self.consumer.seek(tp, off)
                except (ValueError, KafkaError) as exc:
                    log.warning("cannot rewind %s to %d: %s", tp, off, exc)
        log.info("rewound %s", _fmt(positions))

    def _commit(self) -> None:
        if self.s.exactly_once:
            return
        offsets = self.tracker.committable(self._assigned)
        if not offsets:
            return
        try:
            # Bounded (kafka-python retries inside commit until its timeout): a commit that cannot
            # get through must not hold the loop anywhere near the liveness limit.
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()},
                                 timeout_ms=self.s.commit_timeout_ms)
        except KafkaError as exc:
            # Usually a rebalance in progress; the revoke listener commits again, or the next owner
            # re-processes from the last commit (duplicates, never losses).
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed: %s", exc)
            return
        self.tracker.mark_committed(offsets)

    def _backpressure(self) -> None:
        # Records and bytes: a hundred 900 KB messages are few records but a lot of memory.
        in_flight, held = self.tracker.in_flight, self.tracker.in_flight_bytes
        if not self._paused and (in_flight >= self.s.in_flight_limit or held >= self.s.max_in_flight_bytes):
            self._set_paused(True)
        elif self._paused and not self._draining and in_flight <= self.s.in_flight_limit // 2 \
                and held <= self.s.max_in_flight_bytes // 2:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        parts = list(self.consumer.assignment())
        if paused:
            self.consumer.pause(*parts)
        else:
            self.consumer.resume(*parts)
        self._paused = paused
        self.metrics.paused.set(1 if paused else 0)
        log.debug("%s %d partitions (in flight %d)", "paused" if paused else "resumed", len(parts),
                  self.tracker.in_flight)

    def _export_lag(self) -> None:
        """Lag = high watermark minus committed offset, per assigned partition, as its help says,
        every LAG_INTERVAL_S. The high watermark comes from the consumer's fetches; a paused
        partition is not fetched, so while paused a side consumer fetches from the committed offset
        to learn it, and the gauge stays fresh (ListOffsets would be simpler, but the test broker
        answers it wrongly). The committed offset is the worker's own (the broker's before its first
        commit). One correction: a partition that is not paused, has nothing in flight and whose
        consumer position has reached the high watermark counts as caught up, since what lies after
        its committed offset is then acknowledged records about to be committed or the commit
        markers of a transactional producer, which are never delivered and would otherwise leave a
        lag of 1 forever."""
        now = time.monotonic()
        if now - self._lag_at < LAG_INTERVAL_S:
            return
        self._lag_at = now
        parts = sorted(self._assigned)
        if not parts:
            self._drop_lag_series(set())
            return
        committed_at = {tp: self._committed_offset(tp) for tp in parts}
        ends = self._probe_highwaters(committed_at) if self._paused else {
            tp: self.consumer.highwater(tp) for tp in parts}
        seen: set[tuple[str, str]] = set()
        for tp in parts:
            key = (tp.topic, str(tp.partition))
            end = ends.get(tp)
            committed = committed_at[tp]
            if end is None or committed is None:
                if key in self._lag_series:
                    seen.add(key)  # keep the last reading rather than a gap
                continue
            if not self._paused and self.tracker.pending(tp) == 0 and committed < end:
                with contextlib.suppress(KafkaError, ValueError, AssertionError):
                    if self.consumer.position(tp, timeout_ms=0) == end:
                        committed = end  # caught up: what is left is commit markers
            self.metrics.consumer_lag.labels(*key).set(max(0, end - committed))
            seen.add(key)
        self._drop_lag_series(seen)

    def _probe_highwaters(self, committed: dict[TopicPartition, int | None]) -> dict[TopicPartition, int | None]:
        """High watermarks of paused partitions, from a fetch of at most one record each at the
        committed offset by a consumer of no group (made on the first pause, kept until close)."""
        parts = [tp for tp, off in committed.items() if off is not None]
        if not parts:
            return {}
        try:
            if self._lag_probe is None:
                self._lag_probe = make_lag_probe(self.s)
            probe = self._lag_probe
            probe.assign(parts)
            for tp in parts:
                probe.seek(tp, committed[tp])
            # poll() returns with the first record of any partition: go on until each has answered
            # once (a value from the previous round may stand in: it is a second old at most).
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and any(probe.highwater(tp) is None for tp in parts):
                probe.poll(timeout_ms=100, max_records=1)
            probe.poll(timeout_ms=0, max_records=1)
            return {tp: probe.highwater(tp) for tp in parts}
        except (KafkaError, ValueError, AssertionError) as exc:
            log.debug("lag probe: %s", exc)
            return {}

    def _committed_offset(self, tp: TopicPartition) -> int | None:
        own = self.tracker.committed(tp)
        if own is not None:
            return own
        if tp not in self._broker_committed:
            try:
                found = self.consumer.committed(tp, timeout_ms=self.s.commit_timeout_ms)
            except (KafkaError, ValueError):
                return None
            if found is None and self.s.auto_offset_reset == "earliest":
                # Never committed: the group starts at the beginning of the log.
                with contextlib.suppress(KafkaError, ValueError):
                    found = self.consumer.beginning_offsets([tp], timeout_ms=self.s.commit_timeout_ms).get(tp)
            elif found is None:
                # ... or at the end as it was when this worker first fetched: its first position.
                with contextlib.suppress(KafkaError, ValueError, AssertionError):
                    found = self.consumer.position(tp, timeout_ms=0)
            if found is None:
                return None
            self._broker_committed[tp] = found
        return self._broker_committed[tp]

    def _drop_lag_series(self, seen: set[tuple[str, str]]) -> None:
        for key in self._lag_series - seen:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(*key)
        self._lag_series = seen

    # --- rebalance callbacks (kafka IO thread) --------------------------------------------------
    def _on_revoked(self, revoked: set[TopicPartition]) -> dict[TopicPartition, int]:
        if not revoked:
            return {}
        assert self.pipeline is not None
        wait = min(5.0, self.s.session_timeout_ms / 3000)
        with self.epochs.lock:
            self.epochs.bump(revoked)
            if not self.pipeline.wait_deliver_idle(wait):
                log.warning("a batch was still being delivered after %.1f s of rebalance", wait)
            rewinds: set[TopicPartition] = set()
            while (item := self._apply_one_done()) is not None:
                if isinstance(item, Rewind):
                    rewinds |= item.partitions
            offsets = {} if self.s.exactly_once else self.tracker.committable(revoked)
            dropped = self.tracker.in_flight
            self._rewind_on_assign = self.tracker.drop(revoked, forget=True)
            dropped -= self.tracker.in_flight
            self._assigned -= revoked
            if rewinds - revoked:
                # Only possible with cooperative assignment: partitions we keep still need their rewind.
                self.pipeline.rewind(frozenset(rewinds - revoked))
        self.metrics.assigned_partitions.set(len(self._assigned))
        self.metrics.queue_depth.set(self.tracker.in_flight)
        self.metrics.rebalances.labels(kind="revoked").inc()
        self.metrics.dropped_on_revoke.inc(dropped)
        log.info("partitions revoked: %s (%d in-flight records dropped)", _fmt_tps(revoked), dropped)
        return offsets

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        with self.epochs.lock:
            rewind, self._rewind_on_assign = self._rewind_on_assign, {}
            self._assigned |= assigned
            for tp in assigned:  # another member may have committed since we last held it
                self._broker_committed.pop(tp, None)
            self._joined = True
        for tp in assigned:
            if tp in rewind:
                # kafka-python keeps the fetch position of a partition it keeps across a rebalance;
                # the dropped in-flight records behind that position must be read again.
                self.consumer.seek(tp, rewind[tp])
        self._group_md = self.consumer.group_metadata()
        if self._paused or self._draining:
            self.consumer.pause(*assigned)
        self.metrics.assigned_partitions.set(len(self._assigned))
        self.metrics.rebalances.labels(kind="assigned").inc()
        log.info("partitions assigned: %s", _fmt_tps(assigned))

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        with self.epochs.lock:
            self.epochs.bump(lost)
            dropped = self.tracker.in_flight
            self.tracker.drop(lost, forget=True)
            dropped -= self.tracker.in_flight
            self._assigned -= lost
            self._joined = False
        self.metrics.assigned_partitions.set(len(self._assigned))
        self.metrics.rebalances.labels(kind="lost").inc()
        self.metrics.dropped_on_revoke.inc(dropped)
        log.warning("partitions lost (membership expired): %s; their in-flight work is dropped",
                    _fmt_tps(lost))

    # --- model -------------------------------------------------------------------------------------
    def _model_swapped(self, new: ServedModel) -> None:
        self.metrics.set_model(new.version, new.device, new.quantize)
        self.alerts.check_labels(new.labels)

    def _reload_result(self, ok: bool) -> None:
        self.metrics.model_reloads.labels(result="ok" if ok else "error").inc()

    # --- health --------------------------------------------------------------------------------------
    def _live(self) -> tuple[bool, dict]:
        """A fixed reason code, never the error itself: the body is for a probe, and an exception's
        text can carry anything (a broker address, a config value). The error is in the log."""
        age = time.monotonic() - self._loop_beat
        stalled = self.pipeline.progress.stalled(self.s.stall_timeout_s) if self.pipeline is not None else []
        if self._fatal is not None:
            reason = "fatal_error"
        elif age >= self.s.stall_timeout_s:
            reason = "consume_loop_stalled"
        elif stalled:
            reason = "stage_stalled"
        else:
            reason = "ok"
        detail: dict = {"reason": reason, "loop_age_s": round(age, 3)}
        if stalled:
            detail["stalled_stages"] = stalled
        return reason == "ok", detail

    def _ready(self) -> tuple[bool, dict]:
        model = self.model
        # Ready means "a working member of the group", not "holds partitions": a replica beyond the
        # partition count is a healthy standby, and counting it not ready would stall a Kubernetes
        # roll-out (the surge pod may get no partition) and block node drains through the
        # PodDisruptionBudget (docs/decisions/0051-readiness-is-group-membership.md). Idle replicas
        # show as fmlc_assigned_partitions == 0.
        detail = {"model_version": model.version if model else None, "joined": self._joined,
                  "assigned_partitions": len(self._assigned), "draining": self._draining}
        if self._fatal is not None:
            reason = "fatal_error"
        elif model is None:
            reason = "no_model"
        elif self._draining:
            reason = "draining"
        elif not self._joined:
            reason = "not_joined"
        else:
            reason = "ok"
        return reason == "ok", {"reason": reason, **detail}

    # --- shutdown ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Stop fetching, let in-flight records finish and commit them, within the shutdown budget."""
        self._draining = True
        started = time.monotonic()
        # The rest of the budget is for leaving the group and closing the producer.
        deadline = started + self.s.shutdown_timeout_s * 0.75
        if self.pipeline is not None:
            self.pipeline.hurry.set()
        if self.consumer is None:
            return
        try:
            self._set_paused(True)
        except KafkaError as exc:
            log.warning("cannot pause for drain: %s", exc)
        log.info("draining %d in-flight records", self.tracker.in_flight)
        while self.tracker.in_flight > 0 and time.monotonic() < deadline and self._fatal is None:
            self._loop_beat = time.monotonic()
            self._handle_done()
            self._commit()
            # Polling the paused consumer keeps the group membership alive while we wait.
            self.consumer.poll(timeout_ms=POLL_MS, max_records=1)
        self._handle_done()
        self._commit()
        left = self.tracker.in_flight
        log.info("drain finished in %.2f s; %d records left uncommitted%s", time.monotonic() - started, left,
                 " (they will be processed again)" if left else "")

    def _close(self) -> None:
        budget_end = time.monotonic() + self.s.shutdown_timeout_s * 0.25
        if self.models is not None:
            self.models.stop()
        if self.pipeline is not None:
            self.pipeline.stop(timeout=1.0)
        if self.shadow is not None:
            self.shadow.stop(timeout=1.0)
        if self._shadow_producer is not None:
            with contextlib.suppress(Exception):
                self._shadow_producer.close(timeout=1.0)
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False, timeout_ms=int(_left(budget_end) * 500) or 100)
            except Exception as exc:
                log.warning("consumer close: %s", exc)
        if self.producer is not None:
            try:
                self.producer.close(timeout=_left(budget_end))
            except Exception as exc:
                log.warning("producer close: %s", exc)
        if self._lag_probe is not None:
            with contextlib.suppress(Exception):
                self._lag_probe.close(autocommit=False, timeout_ms=100)
        if self.cache is not None:
            self.cache.close()
        if self.health is not None:
            self.health.stop()
        self.metrics.assigned_partitions.set(0)


def poll_error_kind(exc: BaseException) -> str:
    """The `kind` label of fmlc_poll_errors_total: can the client not decode what it fetched?
    Decompressors and decoders raise their own errors (lz4: RuntimeError, zstd: ZstdError, ...)
    straight through poll(), so anything that is not a KafkaError counts as undecodable too."""
    if isinstance(exc, (UnsupportedCodecError, CorruptRecordError)) or not isinstance(exc, KafkaError):
        return "undecodable"
    return "other"


def undecodable_position(consumer: Any) -> tuple[TopicPartition, int] | None:
    """The partition and offset of the record a failed poll() could not decode, or None.

    kafka-python 3.0 does not say which partition an exception in poll() came from; its fetcher
    keeps the partition whose records it was reading when decoding failed, and that partition's
    position is the failed record (records before it were returned). This reads that private
    state — checked against the public position — and gives None whenever it does not match."""
    part = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    tp = getattr(part, "topic_partition", None)
    offset = getattr(part, "next_fetch_offset", None)
    if not isinstance(tp, TopicPartition) or not isinstance(offset, int):
        return None
    try:
        position = consumer.position(tp, timeout_ms=1000)
    except (KafkaError, ValueError, AssertionError):
        return None
    return (tp, offset) if position == offset else None


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _fmt(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in sorted(offsets.items()))


def _fmt_tps(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"


def run_worker(settings: WorkerSettings) -> int:
    """Run a worker in this process until SIGTERM/SIGINT; SIGHUP reloads the model. Returns the exit
    code (0 after a clean drain, 1 after a fatal error). Must be called from the main thread."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        logging.getLogger("kafka").setLevel(logging.WARNING)
    install_secret_filter(settings.secret_values())
    log.info("settings: %s", settings.redacted())
    app = WorkerApp(settings)
    stops = 0

    def on_stop(signum: int, _frame: object) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            # A second signal means "now": skip the drain (uncommitted records are re-delivered).
            os._exit(128 + signum)
        app.request_stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: app.request_reload())
    try:
        app.start()
    except Exception:
        log.exception("worker failed to start")
        app._close()
        return 2
    return app.run()


__all__ = ["WorkerApp", "poll_error_kind", "run_worker", "undecodable_position"]
