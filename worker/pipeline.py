"""The three processing stages between the consume loop and the commit.

    consume loop ──jobs──▶ prepare ──▶ infer ──▶ deliver ──completions──▶ consume loop (commit)
                          (batch, parse,  (model,   (alerts, produce, wait
                           cache, jieba)  OOM split) for acks / transaction, cache store)

Each stage is one thread joined to the next by a short queue, so jieba tokenises the next
micro-batches while the model runs and the producer waits for the acks of the batch before.
Under a backlog the model stage merges up to `sort_window` micro-batches that are already tokenised
and waiting into one call (`merge_waiting`): the model sorts them by length together and computes
less padding, while the first batch after a quiet spell still goes out alone, without delay.
Batches stay in order end to end, which keeps commits (and exactly-once transactions) simple: a
batch's offsets are committed only when everything before it was.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka import KafkaProducer, TopicPartition
from kafka.errors import InvalidProducerEpochError, MessageSizeTooLargeError, ProducerFencedError
from kafka.structs import OffsetAndMetadata

from fmlc import Prediction
from fmlc.drift import Baseline, DriftMonitor
from worker.alerts import AlertRules
from worker.batching import MicroBatcher
from worker.cache import LabelCache
from worker.messages import (
    Classified,
    Complaint,
    DeadLetterReason,
    InvalidMessage,
    LabelOut,
    Outgoing,
    Timings,
    parse_complaint,
    render_dead_letter,
    render_result,
    utcnow,
)
from worker.metrics import WorkerMetrics
from worker.model import (
    PROBE_TEXT,
    ModelWatcher,
    ServedModel,
    default_tokenizer_processes,
    is_out_of_memory,
    usable_cpus,
)
from worker.offsets import Epochs
from worker.progress import StageProgress
from worker.review import TokenBucket, render_review, review_reason
from worker.settings import WorkerSettings
from worker.shadow import ShadowScorer
from worker.tokenizing import TokenizerPool

log = logging.getLogger(__name__)

MIN_DEAD_LETTER_BYTES = 4_096
FENCED = (ProducerFencedError, InvalidProducerEpochError)


@dataclass(eq=False)
class Job:
    """One consumed record and what the stages learn about it."""

    tp: TopicPartition
    offset: int
    epoch: int
    arrived: float  # monotonic clock, when the consume loop handed it over
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    complaint: Complaint | None = None
    invalid: InvalidMessage | None = None
    tokens: list[str] | None = None
    labels: list[LabelOut] | None = None
    cached: bool = False
    cache_key: str | None = None  # set at look-up, reused to store the fresh result
    group_md: Any = None  # the consumer group generation it was consumed under (exactly-once commits)
    prediction: Prediction | None = None  # the model's answer with every label's probability (not for cache hits)
    review: str | None = None  # why a copy went to the review topic, when one did


@dataclass(eq=False)
class Work:
    jobs: list[Job]
    model: ServedModel
    dispatched: float
    cache_s: float = 0.0
    tokenize_s: float = 0.0
    inference_s: float = 0.0


def merge_waiting(first: Work, waiting: queue.Queue[Work], max_jobs: int) -> tuple[Work, Work | None]:
    """`first` plus the micro-batches queued behind it, in order, up to `max_jobs` jobs in all; never
    waits. Returns the merged work and a taken micro-batch that could not join (another model
    version, or too many jobs), which the caller must handle next."""
    works = [first]
    total = len(first.jobs)
    left_over: Work | None = None
    while total < max_jobs:
        try:
            nxt = waiting.get_nowait()
        except queue.Empty:
            break
        if nxt.model is not first.model or total + len(nxt.jobs) > max_jobs:
            left_over = nxt
            break
        works.append(nxt)
        total += len(nxt.jobs)
    if len(works) == 1:
        return first, left_over
    merged = Work(jobs=[j for w in works for j in w.jobs], model=first.model,
                  dispatched=min(w.dispatched for w in works), cache_s=sum(w.cache_s for w in works),
                  tokenize_s=sum(w.tokenize_s for w in works))
    return merged, left_over


@dataclass(frozen=True)
class Completion:
    """A delivered batch: these offsets may be committed (their epoch still has to match)."""

    offsets: list[tuple[TopicPartition, int, int]]  # (partition, offset, epoch)


@dataclass(frozen=True)
class Rewind:
    """Delivery failed: re-consume these partitions from their commit position."""

    partitions: frozenset[TopicPartition]


class FatalError(RuntimeError):
    """The worker cannot go on (fenced producer, a model that fails on everything)."""


class _Stopping(Exception):
    """The pipeline is stopping while a model call waits to be retried: the batch is dropped (not
    delivered, so not committed, so consumed again by the next owner)."""


OOM_FIRST_PAUSE_S = 0.5
OOM_MAX_PAUSE_S = 8.0


class Pipeline:
    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics, models: ModelWatcher,
                 cache: LabelCache | None, alerts: AlertRules, producer: KafkaProducer, epochs: Epochs,
                 group_metadata: Callable[[], Any], on_fatal: Callable[[BaseException], None],
                 shadow: ShadowScorer | None = None) -> None:
        self.s = settings
        self.metrics = metrics
        self.models = models
        self.cache = cache
        self.alerts = alerts
        self.producer = producer
        self.epochs = epochs
        self._group_metadata = group_metadata
        self._on_fatal = on_fatal
        self._jobs: queue.Queue[Job] = queue.Queue()  # bounded by the consume loop's in-flight limit
        self._done: queue.Queue[Completion | Rewind] = queue.Queue()
        # Room for one sort window of prepared micro-batches, so the model always has a full one to merge.
        self._to_infer: queue.Queue[Work] = queue.Queue(maxsize=settings.sort_window)
        self._to_deliver: queue.Queue[Work] = queue.Queue(maxsize=2)
        self._carry: Work | None = None  # taken by merge_waiting but not merged: the model stage's next
        self._batcher = MicroBatcher(self._jobs, settings.batch_size, settings.max_wait_ms / 1000,
                                     arrival=lambda j: j.arrived)
        mode = settings.tokenizer
        if mode == "auto":
            mode = "process" if models.current.device.startswith("cuda") or usable_cpus() > 1 else "inline"
        self.tokenize_ahead = mode == "process"
        # What each stage is doing, for /healthz and fmlc_stage_stall_seconds.
        self.progress = StageProgress()
        processes = settings.tokenizer_processes or default_tokenizer_processes(models.current.device)
        self.tokenizer = TokenizerPool(processes, settings.tokenizer_timeout_s, on_restart=self._tokenizer_restarted) \
            if self.tokenize_ahead else None
        self._stop = threading.Event()
        self.hurry = threading.Event()  # set while draining: batches go out without waiting
        self._deliver_busy = False
        # Lowered when the broker refuses a record as too large (its limit is below the configured
        # one), so that the re-delivered batch fits instead of failing the same way for ever.
        self._dead_letter_limit = settings.dead_letter_limit
        self._threads: list[threading.Thread] = []
        # The model's life: drift against the served model's baseline (infer stage), review copies
        # (deliver stage), and a shadow model fed after the acknowledgements.
        self._drift: DriftMonitor | None = None
        self._drift_version: str | None = None
        self._review_bucket = TokenBucket(settings.review_max_per_s) if settings.review_topic else None
        self.shadow = shadow

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("prepare", self._prepare_loop), ("infer", self._infer_loop),
                             ("deliver", self._deliver_loop)):
            t = threading.Thread(target=self._guard(target), name=f"fmlc-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.tokenizer is not None:
            self.tokenizer.close()

    def _tokenizer_restarted(self, reason: str) -> None:
        self.metrics.tokenizer_restarts.labels(reason=reason).inc()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a dead stage would silently stall the worker
                log.exception("pipeline stage %s died", threading.current_thread().name)
                self._on_fatal(exc)
        return run

    # --- what crosses to and from the consume loop ----------------------------------------------------
    def submit(self, job: Job) -> None:
        """A consumed record, in consumption order; the consume loop bounds how many are in flight."""
        self._jobs.put(job)

    def rewind(self, partitions: frozenset[TopicPartition]) -> None:
        """Ask the consume loop to re-consume `partitions` from their commit position."""
        self._done.put(Rewind(partitions))

    def take_done(self) -> Completion | Rewind | None:
        """The next delivered batch or rewind request for the consume loop, without waiting."""
        try:
            return self._done.get_nowait()
        except queue.Empty:
            return None

    def wait_deliver_idle(self, timeout: float) -> bool:
        """Used by the rebalance listener after bumping epochs: a batch already past its epoch check
        finishes (and is committed) before the partitions change hands."""
        with self.epochs.lock:
            return self.epochs.lock.wait_for(lambda: not self._deliver_busy, timeout)

    def _put(self, q: queue.Queue[Work], work: Work) -> bool:
        while not self._stop.is_set():
            try:
                q.put(work, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Work]) -> Work | None:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            return None

    def _current(self, jobs: list[Job]) -> list[Job]:
        return [j for j in jobs if self.epochs.is_current(j.tp, j.epoch)]

    # --- stage 1: batch, parse, cache, tokenise -----------------------------------------------------
    def _prepare_loop(self) -> None:
        if self.tokenizer is not None:
            # Start the children and load jieba's dictionary now, not inside the first batch's latency.
            predictor = self.models.current.predictor
            try:
                self.tokenizer.warm_up(self.models.current.version, predictor.artifact.tokenizer_config,
                                       predictor.max_len)
            except Exception as exc:
                log.warning("tokenizer process warm-up failed (%r); it is retried with the first batch", exc)
        while not self._stop.is_set():
            batch = self._batcher.next_batch(0.1, hurry=self.hurry.is_set)
            if batch is None:
                continue
            jobs = self._current(batch.items)
            self.metrics.batch_size.observe(len(batch.items))
            self.metrics.batch_fill.observe(min(1.0, len(batch.items) / self.s.batch_size))
            self.metrics.batch_wait.observe(batch.wait_s)
            if not jobs:
                continue
            work = Work(jobs=jobs, model=self.models.current, dispatched=time.monotonic())
            with self.progress.working("prepare"):
                self._prepare(work)
            self._put(self._to_infer, work)

    def _prepare(self, work: Work) -> None:
        for job in work.jobs:
            if job.invalid is not None:  # known bad before it got here (undecodable)
                continue
            try:
                job.complaint = parse_complaint(job.value, self.s.max_text_chars)
            except InvalidMessage as exc:
                job.invalid = exc
        valid = [j for j in work.jobs if j.complaint is not None]
        if self.cache is not None and valid:
            t0 = time.perf_counter()
            for j in valid:
                j.cache_key = self.cache.key(j.complaint.text, work.model.version,  # type: ignore[union-attr]
                                             work.model.quantize)
            hits = self.cache.get_many([j.cache_key for j in valid])  # type: ignore[misc]
            work.cache_s = time.perf_counter() - t0
            for job, labels in zip(valid, hits, strict=True):
                if labels is not None:
                    job.labels, job.cached = labels, True
        if self.tokenize_ahead:
            self._tokenize(work)

    def _tokenize(self, work: Work) -> None:
        todo = [j for j in work.jobs if j.complaint is not None and not j.cached and j.tokens is None]
        if not todo:
            return
        t0 = time.perf_counter()
        predictor = work.model.predictor
        texts = [j.complaint.text for j in todo]  # type: ignore[union-attr]
        try:
            if self.tokenizer is not None:
                with self.progress.working("tokenizer"):
                    tokens = self.tokenizer.tokenize(work.model.version, predictor.artifact.tokenizer_config,
                                                     predictor.max_len, texts)
            else:
                tokens = predictor.tokenize(texts)
            for job, toks in zip(todo, tokens, strict=True):
                job.tokens = toks
        except Exception:
            # One text that breaks the tokenizer must not take its batch-mates down with it.
            for job in todo:
                try:
                    job.tokens = work.model.predictor.tokenize([job.complaint.text])[0]  # type: ignore[union-attr]
                except Exception as exc:
                    job.invalid = InvalidMessage(DeadLetterReason.PROCESSING_ERROR, f"tokenize: {exc!r}")
        elapsed = time.perf_counter() - t0
        work.tokenize_s += elapsed
        self.metrics.tokenize.observe(elapsed)

    # --- stage 2: the model -----------------------------------------------------------------------
    def _infer_loop(self) -> None:
        max_jobs = self.s.batch_size * self.s.sort_window
        while not self._stop.is_set():
            work, self._carry = self._carry, None
            if work is None:
                work = self._get(self._to_infer)
            if work is None:
                continue
            work, self._carry = merge_waiting(work, self._to_infer, max_jobs)
            work.jobs = self._current(work.jobs)
            if not self.tokenize_ahead:
                self._tokenize(work)
            todo = [j for j in work.jobs if j.invalid is None and j.complaint is not None and not j.cached]
            if todo:
                self.metrics.model_batch_size.observe(len(todo))
                t0 = time.perf_counter()
                try:
                    with self.progress.working("infer"):
                        results = self._predict(work.model, [j.tokens or [] for j in todo])
                        failed = [r for r in results if not isinstance(r, Prediction)]
                        if len(failed) == len(todo) and not self._model_answers(work.model):
                            # The model fails on a text every model answers: it is broken, not the
                            # data. Dead-lettering the whole stream would be worse than stopping
                            # (and being restarted). A batch of poison texts alone is not enough
                            # to decide that: it would crash-loop the worker on its own input.
                            raise FatalError(f"model {work.model.version} fails on every input: "
                                             f"{type(failed[0]).__name__}")
                except _Stopping:
                    return
                work.inference_s = time.perf_counter() - t0
                self.metrics.inference.observe(work.inference_s)
                for job, res in zip(todo, results, strict=True):
                    if isinstance(res, Prediction):
                        job.prediction = res
                        job.labels = [LabelOut(label=ls.label, score=round(float(ls.score), 6),
                                               evidence=list(ls.evidence)) for ls in res.labels]
                    else:
                        job.invalid = InvalidMessage(DeadLetterReason.MODEL_ERROR,
                                                     f"inference: {type(res).__name__}: {str(res)[:300]}")
                self._watch_drift(work.model, [r.probs for r in results if isinstance(r, Prediction)
                                               and r.probs is not None])
            self._put(self._to_deliver, work)

    def _watch_drift(self, model: ServedModel, probs: list[np.ndarray]) -> None:
        """Feed the drift window; a new model version starts a new window against its own baseline."""
        if model.version != self._drift_version:
            self._drift_version, self._drift = model.version, None
            self.metrics.drift.clear()
            self.metrics.drift_docs.set(0)
            baseline = model.predictor.artifact.drift_baseline
            if not baseline:
                log.info("model %s has no drift baseline (drift.json); no drift scores for it", model.version)
            else:
                try:
                    self._drift = DriftMonitor(Baseline.from_dict(baseline), self.s.drift_window,
                                               self.s.drift_min_docs)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("model %s: drift baseline unusable (%s); no drift scores for it", model.version, exc)
        if self._drift is None or not probs:
            return
        self._drift.update(np.stack(probs))
        self.metrics.drift_docs.set(self._drift.docs)
        for group, score in self._drift.scores().items():
            self.metrics.drift.labels(group=group).set(score)

    def _predict(self, model: ServedModel, tokens: list[list[str]]) -> list[Prediction | BaseException]:
        def retry(m: ServedModel, single: list[list[str]]) -> Prediction | BaseException:
            return retry_after_oom(m, single, self.s.stall_timeout_s / 3, self._stop, self.metrics)

        # A split is progress: the halves are smaller calls.
        return predict_isolating(model, tokens, self.s.batch_size, self.metrics, retry,
                                 on_split=lambda: self.progress.beat("infer"))

    def _model_answers(self, model: ServedModel) -> bool:
        """Does the model still classify the probe text? (Tells a broken model from poison input.)"""
        try:
            probe = model.predictor.tokenize([PROBE_TEXT])
            return isinstance(model.predictor.predict_tokens(probe, batch_size=1)[0], Prediction)
        except Exception as exc:
            log.error("the model fails on the probe text too (%s)", type(exc).__name__)
            return False

    # --- stage 3: publish, acknowledge, hand back ------------------------------------------------
    def _deliver_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            work = self._get(self._to_deliver)
            if work is None:
                continue
            with self.epochs.lock:
                jobs = self._current(work.jobs)
                self._deliver_busy = bool(jobs)
            if not jobs:
                continue
            try:
                with self.progress.working("deliver"):
                    ok = self._deliver(work, jobs)
            finally:
                with self.epochs.lock:
                    self._deliver_busy = False
                    self.epochs.lock.notify_all()
            if ok:
                backoff = 0.5
            else:
                # The broker is struggling; the rewound records come back soon, so do not spin.
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _render(self, work: Work, jobs: list[Job]) -> tuple[list[Outgoing], list[tuple[str, str]]]:
        """Every message the batch produces, and the (topic, severity) of each alert among them."""
        now = time.monotonic()
        wall = utcnow()
        out: list[Outgoing] = []
        fired: list[tuple[str, str]] = []
        for job in jobs:
            if job.invalid is not None or job.complaint is None or job.labels is None:
                out.append(render_dead_letter(
                    topic=job.tp.topic, partition=job.tp.partition, offset=job.offset, timestamp=job.timestamp_ms,
                    key=job.key, value=job.value, headers=job.headers, invalid=job.invalid, dlq_topic=self.s.dlq_topic,
                    max_bytes=self._dead_letter_limit))
                continue
            c = job.complaint
            result = Classified(
                id=c.id, labels=job.labels, model_version=work.model.version, cached=job.cached,
                source=c.source, created_at=c.created_at, processed_at=wall,
                timings=Timings(queue_ms=round((work.dispatched - job.arrived) * 1000, 3),
                                cache_ms=round(work.cache_s * 1000, 3),
                                tokenize_ms=0.0 if job.cached else round(work.tokenize_s * 1000, 3),
                                inference_ms=0.0 if job.cached else round(work.inference_s * 1000, 3),
                                total_ms=round((now - job.arrived) * 1000, 3)))
            firings = self.alerts.evaluate(job.labels)
            out += render_result(result, self.s.output_topic, firings)
            fired += [(f.rule.topic, f.rule.severity) for f in firings]
            review = self._review(job, work.model)
            if review is not None:
                out.append(review)
        return out, fired

    def _review(self, job: Job, model: ServedModel) -> Outgoing | None:
        """The review copy of a complaint the model was unsure about, within the rate limit."""
        job.review = None
        if self._review_bucket is None or job.prediction is None or job.complaint is None or not self.s.review_topic:
            return None
        reason = review_reason(job.prediction, self.s.review_margin)
        if reason is None:
            return None
        if not self._review_bucket.take():
            self.metrics.review_skipped.inc()
            return None
        job.review = reason
        value = render_review(job.complaint.id, job.complaint.text, job.prediction, model.labels, reason,
                              model.version)
        return (self.s.review_topic, job.key, value, [])

    def _deliver(self, work: Work, jobs: list[Job]) -> bool:
        messages, fired = self._render(work, jobs)
        eos = self.s.exactly_once
        try:
            if eos:
                self.producer.begin_transaction()
            sent_at = time.perf_counter()
            futures = [self.producer.send(topic, key=key, value=value, headers=headers)
                       for topic, key, value, headers in messages]
            if eos:
                last: dict[TopicPartition, int] = {}
                for job in jobs:
                    last[job.tp] = max(last.get(job.tp, -1), job.offset)
                # The offsets go with the generation the records were consumed under, never a later
                # one: should the group have moved on, the coordinator refuses them.
                generation = jobs[0].group_md if jobs[0].group_md is not None else self._group_metadata()
                with self.progress.working("transaction"):
                    self.producer.send_offsets_to_transaction(
                        {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in last.items()}, generation)
                    with self.epochs.lock:
                        revoked = [j for j in jobs if not self.epochs.is_current(j.tp, j.epoch)
                                   or j.group_md is not jobs[0].group_md]
                    if revoked:
                        # Partitions were revoked (or rewound) while this batch was being delivered:
                        # its records belong to the next owner now, so nothing of it may commit.
                        self.producer.abort_transaction()
                        log.info("aborted the transaction of a batch of %d: %s changed hands while it was "
                                 "delivered", len(jobs), sorted({f"{j.tp.topic}[{j.tp.partition}]" for j in revoked}))
                        return True
                    self.producer.commit_transaction()
            else:
                # acks=all for every output, alert and dead letter before the offsets may be committed.
                wait_s = self.producer.config["delivery_timeout_ms"] / 1000 + 5
                for f in futures:
                    f.get(timeout=wait_s)
                    self.progress.beat("deliver")  # an acknowledgement is progress
            self.metrics.produce_ack.observe(time.perf_counter() - sent_at)
        except Exception as exc:
            self._delivery_failed(exc, jobs, eos)
            return False
        self._acknowledged(work, jobs, fired)
        return True

    def _delivery_failed(self, exc: Exception, jobs: list[Job], eos: bool) -> None:
        self.metrics.delivery_failures.inc()
        if isinstance(exc, MessageSizeTooLargeError) and self._dead_letter_limit > MIN_DEAD_LETTER_BYTES:
            self._dead_letter_limit = max(MIN_DEAD_LETTER_BYTES, self._dead_letter_limit // 2)
            log.warning("a record was too large for the producer or the broker; dead letters are cut to %d "
                        "bytes from now on (check FMLC_MAX_MESSAGE_BYTES against the broker's "
                        "message.max.bytes)", self._dead_letter_limit)
        tps = frozenset(j.tp for j in jobs)
        log.warning("delivery of a batch of %d failed (%s: %s); rewinding %s", len(jobs),
                    type(exc).__name__, exc, sorted(f"{tp.topic}[{tp.partition}]" for tp in tps))
        if eos:
            try:
                self.producer.abort_transaction()
            except Exception as abort_exc:
                # A producer that cannot even abort is fenced or broken: only a restart helps.
                if isinstance(exc, FENCED) or isinstance(abort_exc, FENCED):
                    self._on_fatal(FatalError(
                        f"transactional id {self.s.effective_transactional_id()!r} was taken over by another "
                        "producer: a second worker with the same FMLC_INSTANCE_ID / FMLC_TRANSACTIONAL_ID started "
                        "(on restart this worker refuses to start while that one is alive)"))
                else:
                    self._on_fatal(FatalError(f"transactional producer unusable: {abort_exc!r} (after {exc!r})"))
        # Later batches of these partitions are already in the queues; they must not be delivered
        # (and, in exactly-once mode, must not commit offsets past the failed batch).
        self.epochs.bump(tps)
        self.rewind(tps)

    def _acknowledged(self, work: Work, jobs: list[Job], fired: list[tuple[str, str]]) -> None:
        m = self.metrics
        now_wall = time.time()
        fresh: list[tuple[str, list[LabelOut]]] = []
        for job in jobs:
            if job.invalid is not None or job.labels is None or job.complaint is None:
                reason = job.invalid.reason if job.invalid else DeadLetterReason.PROCESSING_ERROR
                m.dead_letters.labels(reason=reason.value).inc()
                m.messages.labels(outcome="dead_letter").inc()
            else:
                m.messages.labels(outcome="cached" if job.cached else "ok").inc()
                for lab in job.labels:
                    m.predicted_labels.labels(label=lab.label).inc()
                if job.review is not None:
                    m.review.labels(reason=job.review).inc()
                if self.shadow is not None and not job.cached:
                    # After the acks: the shadow can neither delay nor change what was delivered.
                    self.shadow.offer(job.complaint.id, job.complaint.text, [lab.label for lab in job.labels],
                                      work.model.version)
                if not job.cached and job.cache_key is not None:
                    fresh.append((job.cache_key, job.labels))
            if job.timestamp_ms and job.timestamp_ms > 0:
                m.end_to_end.observe(max(0.0, now_wall - job.timestamp_ms / 1000))
        for topic, severity in fired:
            m.alerts.labels(topic=topic, severity=severity).inc()
        m.last_processed.set(now_wall)
        self._done.put(Completion([(j.tp, j.offset, j.epoch) for j in jobs]))
        if self.cache is not None and fresh:
            # After the acks: a crash between produce and cache store costs a recomputation only.
            self.cache.put_many(fresh)


def predict_isolating(model: ServedModel, tokens: list[list[str]], batch_size: int, metrics: WorkerMetrics,
                      retry_oom: Callable[[ServedModel, list[list[str]]], Prediction | BaseException],
                      on_split: Callable[[], None] = lambda: None) -> list[Prediction | BaseException]:
    """The model call: one result per text, in order, a Prediction or the error of that text alone.

    On out-of-memory (or any error) the batch is split in halves and each is tried again, down to
    single texts, so one oversized batch or one poisonous text fails alone. A single text that runs
    out of memory is not poison: `retry_oom` decides what becomes of it (see retry_after_oom)."""
    try:
        return list(model.predictor.predict_tokens(tokens, batch_size=batch_size))
    except Exception as exc:
        if is_out_of_memory(exc):
            metrics.oom.inc()
            if len(tokens) == 1:
                return [retry_oom(model, tokens)]
            log.warning("out of memory on %s for %d texts; splitting", model.device, len(tokens))
        elif len(tokens) == 1:
            return [exc]
        else:
            log.warning("inference failed for a batch of %d (%s); splitting to isolate", len(tokens),
                        type(exc).__name__)
    on_split()
    mid = len(tokens) // 2
    return (predict_isolating(model, tokens[:mid], batch_size, metrics, retry_oom, on_split)
            + predict_isolating(model, tokens[mid:], batch_size, metrics, retry_oom, on_split))


def retry_after_oom(model: ServedModel, tokens: list[list[str]], budget_s: float, stop: threading.Event,
                    metrics: WorkerMetrics) -> Prediction | BaseException:
    """One text ran out of memory: the memory is taken by something else (a larger batch just freed,
    another process on the device), not by this text, which is at most max_len tokens. Wait and
    retry, with pauses doubling up to 8 s, for up to `budget_s` (the pipeline gives a third of the
    stall timeout, 10 s by default). If memory does not come back: FatalError, and the worker stops
    with an error (exit 1) rather than dead-letter a valid message: the batch is not committed and is
    processed again after the restart. The retries are not progress, so /healthz goes red meanwhile
    only if the budget is raised past the stall timeout. `stop` set while waiting: _Stopping."""
    deadline = time.monotonic() + budget_s
    pause = OOM_FIRST_PAUSE_S
    attempts = 0
    while True:
        if time.monotonic() + pause > deadline:
            raise FatalError(f"out of memory on {model.device} for a single text, {attempts + 1} times in "
                             f"{budget_s:.0f} s; stopping (the message is not dead-lettered)")
        log.warning("out of memory on %s for a single text; retrying in %.1f s", model.device, pause)
        if stop.wait(pause):
            raise _Stopping
        if model.device.startswith("cuda"):
            torch_cuda_empty_cache()
        attempts += 1
        try:
            return model.predictor.predict_tokens(tokens, batch_size=1)[0]
        except Exception as exc:
            if not is_out_of_memory(exc):
                return exc  # an error of this text's own: a model error, dead-lettered
            metrics.oom.inc()
        pause = min(pause * 2, OOM_MAX_PAUSE_S)


def torch_cuda_empty_cache() -> None:
    import torch

    torch.cuda.empty_cache()


__all__ = ["Completion", "FatalError", "Job", "Pipeline", "Rewind", "Work", "merge_waiting", "predict_isolating",
           "retry_after_oom"]
