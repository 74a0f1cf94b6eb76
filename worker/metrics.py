"""Prometheus metrics with the names fixed in docs/contracts.md.

Each worker owns a CollectorRegistry (not the process-global one) so that two workers in one
process — as in the tests — count separately, and so a test can read exact values back.
Label values come from bounded sets only: outcomes, dead-letter reasons, model labels, rule topics
and severities, assigned partitions. Complaint ids or texts never become label values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# The latency target is about one second end to end, so the buckets are dense around it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Redis answers in well under a millisecond on a LAN; the socket timeout (50 ms by default) caps it.
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
ACK_BUCKETS = STAGE_BUCKETS + (10.0, 30.0, 120.0)
POLL_ERROR_KINDS = ("undecodable", "other")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("fmlc_messages_consumed_total", "Records polled from the input topic "
                                "(re-deliveries after a rebalance or restart count again).", registry=r)
        self.messages = Counter("fmlc_messages_total", "Messages finished and acknowledged, by outcome.",
                                ["outcome"], registry=r)
        self.dead_letters = Counter("fmlc_dead_letters_total", "Messages sent to the dead-letter topic.",
                                    ["reason"], registry=r)
        self.batch_size = Histogram("fmlc_batch_size", "Messages per micro-batch.", buckets=SIZE_BUCKETS,
                                    registry=r)
        self.batch_fill = Histogram("fmlc_batch_fill_ratio", "Micro-batch size / configured batch size.",
                                    buckets=RATIO_BUCKETS, registry=r)
        self.batch_wait = Histogram("fmlc_batch_wait_seconds", "Time from a batch's first message to its "
                                    "dispatch.", buckets=STAGE_BUCKETS, registry=r)
        self.model_batch_size = Histogram("fmlc_model_batch_size", "Texts per model call (cache hits and "
                                          "dead letters excluded); under a backlog up to sort_window "
                                          "micro-batches are merged into one call.",
                                          buckets=SIZE_BUCKETS + (1024, 2048, 4096), registry=r)
        self.inference = Histogram("fmlc_inference_seconds", "Model time per model call (tokenisation "
                                   "excluded).", buckets=STAGE_BUCKETS, registry=r)
        self.tokenize = Histogram("fmlc_tokenize_seconds", "jieba tokenisation time per micro-batch.",
                                  buckets=STAGE_BUCKETS, registry=r)
        self.end_to_end = Histogram("fmlc_end_to_end_seconds", "Kafka message timestamp to output "
                                    "acknowledged.", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("fmlc_queue_depth", "Messages consumed and not yet acknowledged.", registry=r)
        self.consumer_lag = Gauge("fmlc_consumer_lag", "Records on the broker after the committed offset "
                                  "(end offset, read_committed, minus committed offset).",
                                  ["topic", "partition"], registry=r)
        self.cache_requests = Counter("fmlc_cache_requests_total", "Cache look-ups by result (error: Redis "
                                      "failed or is in back-off after a failure).", ["result"], registry=r)
        self.cache_errors = Counter("fmlc_cache_errors_total", "Redis operations that failed.", registry=r)
        self.alerts = Counter("fmlc_alerts_total", "Alerts published.", ["topic", "severity"], registry=r)
        self.predicted_labels = Counter("fmlc_predicted_labels_total", "Labels in published outputs.",
                                        ["label"], registry=r)
        self.oom = Counter("fmlc_oom_total", "Accelerator out-of-memory errors (the batch was split).",
                           registry=r)
        self.last_processed = Gauge("fmlc_last_processed_timestamp_seconds", "Unix time of the last "
                                    "acknowledged batch.", registry=r)
        self.model_info = Gauge("fmlc_model_info", "The model being served (value 1); quantize: none or int8.",
                                ["version", "device", "quantize"], registry=r)
        self.assigned_partitions = Gauge("fmlc_assigned_partitions", "Input partitions assigned to this "
                                         "worker.", registry=r)
        self.paused = Gauge("fmlc_consumer_paused", "1 while fetching is paused for back-pressure.", registry=r)
        self.model_reloads = Counter("fmlc_model_reloads_total", "Model reload attempts.", ["result"],
                                     registry=r)
        self.delivery_failures = Counter("fmlc_delivery_failures_total", "Batches whose produce or "
                                         "transaction failed (their partitions were rewound).", registry=r)
        self.poll_errors = Counter("fmlc_poll_errors_total", "Consumer polls that raised, by kind: "
                                   "undecodable (a record or batch the client cannot decode: corrupt, "
                                   "unknown codec, bad header), other (any other poll error).", ["kind"],
                                   registry=r)
        # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ... of this
        # process: the worker's registry is not the global one, so the collector is added here.
        self.process = ProcessCollector(registry=r)
        self.rebalances = Counter("fmlc_rebalances_total", "Rebalance events this worker took part in, by "
                                  "kind (assigned, revoked, lost).", ["kind"], registry=r)
        self.rewinds = Counter("fmlc_rewinds_total", "Partitions rewound to their last commit after a failed "
                               "delivery (their records are consumed again).", registry=r)
        self.commit_failures = Counter("fmlc_commit_failures_total", "Offset commits that failed (in the "
                                       "consume loop or before giving up partitions).", registry=r)
        self.dropped_on_revoke = Counter("fmlc_records_dropped_on_revoke_total", "In-flight records dropped "
                                         "because their partitions were revoked or lost (the next owner "
                                         "processes them again).", registry=r)
        self.redis_seconds = Histogram("fmlc_redis_seconds", "Redis round trips by operation (get: a batch's "
                                       "look-up, set: a batch's store), failures included.", ["op"],
                                       buckets=REDIS_BUCKETS, registry=r)
        self.produce_ack = Histogram("fmlc_produce_ack_seconds", "From sending a batch's messages to the "
                                     "broker's last acknowledgement (exactly-once: to the transaction's "
                                     "commit).", buckets=ACK_BUCKETS, registry=r)
        self.tokenizer_restarts = Counter("fmlc_tokenizer_restarts_total", "Tokenizer child processes "
                                          "killed and replaced, by reason (timeout, exited, protocol).",
                                          ["reason"], registry=r)
        self.stage_stall = Gauge("fmlc_stage_stall_seconds", "Seconds a pipeline stage has held work "
                                 "without progress (0 while idle or progressing); /healthz fails at "
                                 "FMLC_STALL_TIMEOUT_S.", ["stage"], registry=r)
        # The model's life after deployment: drift, review copies, shadow scoring.
        self.drift = Gauge("fmlc_drift_score", "Population stability index of the recent window's group "
                           "scores against the training baseline, by label group (0.1: moderate, 0.25: "
                           "significant shift).", ["group"], registry=r)
        self.drift_docs = Gauge("fmlc_drift_window_docs", "Model-scored documents in the drift window.",
                                registry=r)
        self.review = Counter("fmlc_review_total", "Complaints copied to the review topic, by reason.",
                              ["reason"], registry=r)
        self.review_skipped = Counter("fmlc_review_skipped_total", "Complaints that qualified for review "
                                      "but were held back by the rate limit.", registry=r)
        self.shadow_samples = Counter("fmlc_shadow_samples_total", "Sampled complaints by what the shadow "
                                      "model did with them (scored, dropped: its queue was full, error).",
                                      ["result"], registry=r)
        self.shadow_agreement = Histogram("fmlc_shadow_agreement", "Jaccard similarity of the shadow "
                                          "model's and the live model's label sets.",
                                          buckets=(0.0, *RATIO_BUCKETS), registry=r)
        self.shadow_info = Gauge("fmlc_shadow_model_info", "The shadow model (value 1).", ["version"],
                                 registry=r)
        # Pre-create the bounded series so dashboards and rate() see zeros rather than gaps.
        for reason in ("no_label", "near_threshold"):
            self.review.labels(reason=reason)
        for result in ("scored", "dropped", "error"):
            self.shadow_samples.labels(result=result)
        for reason in ("timeout", "exited", "protocol"):
            self.tokenizer_restarts.labels(reason=reason)
        for kind in ("assigned", "revoked", "lost"):
            self.rebalances.labels(kind=kind)
        for op in ("get", "set"):
            self.redis_seconds.labels(op=op)
        for outcome in ("ok", "cached", "dead_letter"):
            self.messages.labels(outcome=outcome)
        for result in ("hit", "miss", "error"):
            self.cache_requests.labels(result=result)
        for result in ("ok", "error"):
            self.model_reloads.labels(result=result)
        for kind in POLL_ERROR_KINDS:
            self.poll_errors.labels(kind=kind)

    def watch_stages(self, stall_for: Callable[[str], float], stages: Iterable[str]) -> None:
        """Export each stage's stall time, computed at scrape time."""
        for stage in stages:
            self.stage_stall.labels(stage=stage).set_function(functools.partial(stall_for, stage))

    def set_model(self, version: str, device: str, quantize: str = "none") -> None:
        # Exactly one series at a time: the old version's series goes when the new one comes.
        self.model_info.clear()
        self.model_info.labels(version=version, device=device, quantize=quantize).set(1)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current sample value (0 when absent) — for tests and the CLI's status output."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else got


__all__ = ["LATENCY_BUCKETS", "POLL_ERROR_KINDS", "WorkerMetrics"]
