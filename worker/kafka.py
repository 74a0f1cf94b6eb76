"""Kafka clients as the worker needs them, and the topic check done at start-up.

Delivery guarantees:
- at_least_once: idempotent producer with acks=all; the consumer commits an offset only after
  every message derived from the records before it (output, alerts, dead letters) is acknowledged.
- exactly_once: a transactional producer; outputs, alerts, dead letters and the consumed offsets
  (send_offsets_to_transaction with the consumer's group metadata, so a stale member is fenced)
  commit atomically. Readers of the output topics must use isolation_level=read_committed; the
  worker itself always reads read_committed so it never classifies an aborted input.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, codec
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class MissingTopicsError(RuntimeError):
    pass


# The codecs a Kafka producer may use, and the library kafka-python needs to read each one.
CODEC_LIBRARIES = {"gzip": (codec.has_gzip, "(built in)"), "snappy": (codec.has_snappy, "python-snappy"),
                   "lz4": (codec.has_lz4, "lz4"), "zstd": (codec.has_zstd, "zstandard")}


def check_codecs() -> None:
    """Refuse to start without every codec: kafka-python fails a whole fetch on one batch it cannot
    decompress, so a single lz4 producer would otherwise stall the partition (and, through the
    failed polls, the whole consumer)."""
    missing = [f"{name} (pip install {lib})" for name, (has, lib) in CODEC_LIBRARIES.items() if not has()]
    if missing:
        raise RuntimeError("kafka-python cannot decompress " + ", ".join(missing) +
                           "; install the worker's dependencies (pip install 'fmlc')")


def client_config(s: WorkerSettings) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in s.bootstrap_servers.split(",") if h.strip()],
        "client_id": s.client_id,
        "security_protocol": s.security_protocol,
    }
    if s.security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = s.sasl_mechanism
        cfg["sasl_plain_username"] = s.sasl_username
        cfg["sasl_plain_password"] = s.sasl_password.get_secret_value() if s.sasl_password else None
    if s.security_protocol.endswith("SSL"):
        cfg["ssl_check_hostname"] = s.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(s, name)
            if value is not None:
                cfg[name] = str(value)
        if s.ssl_password is not None:
            cfg["ssl_password"] = s.ssl_password.get_secret_value()
    return cfg


def make_consumer(s: WorkerSettings) -> KafkaConsumer:
    """Not yet subscribed: the application subscribes with its rebalance listener."""
    return KafkaConsumer(
        **{**client_config(s), "client_id": consumer_client_id(s)},
        group_id=s.group_id,
        enable_auto_commit=False,  # offsets are committed by the app, after acknowledgement
        auto_offset_reset=s.auto_offset_reset,
        isolation_level="read_committed",
        session_timeout_ms=s.session_timeout_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms or max(100, s.session_timeout_ms // 3),
        max_poll_interval_ms=s.max_poll_interval_ms,
        max_poll_records=s.max_poll_records,
        # A short broker-side fetch wait keeps the idle-to-first-message latency low; the default
        # 500 ms alone would eat half of the one-second end-to-end target.
        fetch_max_wait_ms=100,
        # What one fetch may bring (beyond the in-flight budget, before the pause takes hold).
        fetch_max_bytes=max(1024 * 1024, s.max_in_flight_bytes // 4),
        max_partition_fetch_bytes=min(1024 * 1024, max(64 * 1024, s.max_in_flight_bytes // 16)),
        allow_auto_create_topics=False,
    )


def producer_config(s: WorkerSettings) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        **client_config(s),
        "acks": "all",
        "enable_idempotence": True,  # producer retries must not duplicate outputs
        "linger_ms": 2,
        "max_request_size": s.max_request_size,
        "compression_type": None if s.compression == "none" else s.compression,
        "allow_auto_create_topics": False,
    }
    if s.exactly_once:
        cfg["transactional_id"] = s.effective_transactional_id()
        cfg["transaction_timeout_ms"] = s.transaction_timeout_ms
    return cfg


def make_lag_probe(s: WorkerSettings) -> KafkaConsumer:
    """A consumer of no group for the lag gauge: it fetches paused partitions (at most a byte's worth
    of records) only to read their high watermark."""
    return KafkaConsumer(**{**client_config(s), "client_id": f"{s.client_id}-lag"}, group_id=None,
                         enable_auto_commit=False, isolation_level="read_committed", fetch_max_wait_ms=100,
                         max_partition_fetch_bytes=1, fetch_max_bytes=1, allow_auto_create_topics=False)


def make_shadow_producer(s: WorkerSettings) -> KafkaProducer:
    """The shadow's own producer: never transactional and never waited on, so that nothing the
    shadow does can hold back or fail a delivery of the live outputs."""
    cfg = {k: v for k, v in producer_config(s).items() if not k.startswith("transaction")}
    return KafkaProducer(**{**cfg, "client_id": f"{s.client_id}-shadow", "enable_idempotence": False, "acks": 1})


def make_producer(s: WorkerSettings) -> KafkaProducer:
    producer = KafkaProducer(**producer_config(s))
    if s.exactly_once:
        # Fences an earlier incarnation with the same transactional id and aborts what it left open.
        producer.init_transactions()
    return producer


class TransactionalIdInUseError(RuntimeError):
    pass


def consumer_client_id(s: WorkerSettings) -> str:
    """In exactly-once mode the consumer's client id carries the transactional id, so that a worker
    starting up can see whether a live member of its group already uses that id."""
    return f"{s.client_id}.{s.effective_transactional_id()}" if s.exactly_once else s.client_id


# Kafka's member ids are "<client id>-<UUID>".
_MEMBER_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class _Admin(KafkaAdminClient):
    def _process_acl_operations(self, obj: dict) -> dict:
        # kafka-python 3.0 fails on authorized-operation bits it does not know (Tansu sends some);
        # they are not needed here.
        obj.pop("authorized_operations", None)
        return obj


def members_using(s: WorkerSettings) -> list[str]:
    """Member ids of the live members of the group whose consumer client id is ours."""
    ours = consumer_client_id(s)
    admin = _Admin(**client_config(s))
    try:
        group = admin.describe_groups([s.group_id]).get(s.group_id) or {}
    finally:
        admin.close()
    found = []
    for m in group.get("members") or []:
        member_id, client = m.get("member_id") or "", m.get("client_id") or ""
        # Some brokers leave client_id empty in DescribeGroups; the member id starts with it anyway.
        if client == ours or (member_id.startswith(ours) and _MEMBER_SUFFIX.fullmatch(member_id[len(ours):])):
            found.append(member_id)
    return found


def check_transactional_id(s: WorkerSettings, wait_s: float | None = None) -> None:
    """Before init_transactions: refuse to start while another live worker of the group uses our
    transactional id. init_transactions would fence it, its restart would fence us, and the two
    would take turns for ever. A predecessor that died without leaving the group is waited for
    (up to the session timeout, after which the coordinator drops it); one that is still there
    after that is alive."""
    if not s.exactly_once:
        return
    wait_s = s.session_timeout_ms / 1000 + 2 if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            found = members_using(s)
        except KafkaError as exc:
            log.warning("cannot describe group %s (%s); not checking that transactional id %s is free",
                        s.group_id, exc, s.effective_transactional_id())
            return
        if not found:
            return
        if time.monotonic() >= deadline:
            raise TransactionalIdInUseError(
                f"another live worker in group {s.group_id} uses transactional id "
                f"{s.effective_transactional_id()!r} (member {found[0]}); give every exactly-once worker its "
                "own FMLC_INSTANCE_ID (or FMLC_TRANSACTIONAL_ID)")
        log.info("a member with transactional id %s is still in group %s; waiting up to %.0f s for it to "
                 "leave", s.effective_transactional_id(), s.group_id, deadline - time.monotonic())
        time.sleep(0.5)


def ensure_topics(s: WorkerSettings, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Check that every topic the worker reads or writes exists; create the missing ones only when
    create_topics is set. Returns the topics created. Raises MissingTopicsError otherwise, because a
    worker whose output topic is missing would stall on its first batch instead of failing clearly."""
    wanted = sorted({s.input_topic, s.output_topic, s.dlq_topic, *extra})
    try:
        admin = KafkaAdminClient(**client_config(s))
    except KafkaError as exc:
        raise MissingTopicsError(f"cannot reach Kafka at {s.bootstrap_servers}: {exc}") from exc
    try:
        try:
            existing = set(admin.list_topics())
        except KafkaError as exc:
            # A principal without Describe on the cluster cannot list topics; trust the deployment.
            log.warning("cannot list topics (%s); assuming %s exist", exc, wanted)
            return []
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        if not s.create_topics:
            raise MissingTopicsError(
                f"topics missing on {s.bootstrap_servers}: {missing}. Create them, or set "
                "FMLC_CREATE_TOPICS=true for local runs")
        log.info("creating topics %s (%d partitions, replication %d)", missing, s.topic_partitions,
                 s.topic_replication)
        for topic in missing:  # one by one: another worker may be creating some of them right now
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, s.topic_partitions, s.topic_replication)],
                                    wait_for_metadata=True)
        return missing
    finally:
        admin.close()


__all__ = ["CODEC_LIBRARIES", "MissingTopicsError", "TransactionalIdInUseError", "check_codecs",
           "check_transactional_id", "consumer_client_id", "members_using", "client_config", "ensure_topics",
           "make_consumer", "make_producer", "producer_config"]
