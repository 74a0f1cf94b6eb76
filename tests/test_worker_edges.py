"""The worker at the edges of what a production Kafka sends it: compressed batches from an
independent client (librdkafka via confluent-kafka), records the client cannot decode, messages at
the broker's size limit, and rebalances under exactly-once. Real broker (Tansu), real Redis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_worker import docs, settings_for

from worker.kafka import ensure_topics
from worker.testkit import Broker, RedisServer, Sampler, ThreadWorker, TopicReader, ids_in, message, wait_for

pytestmark = pytest.mark.slow


def record_aborted_keys(producer: Any, topic: str) -> Counter[str]:
    """Keys the producer sent to `topic` in transactions it then aborted. Tansu, the test broker,
    hands records of aborted transactions to read_committed readers as well (its fetch responses
    carry no aborted-transaction list; librdkafka sees them too), so a test reading the output
    discounts them. The real producer calls go through unchanged."""
    aborted: Counter[str] = Counter()
    current: list[str] = []
    begin, send, abort = producer.begin_transaction, producer.send, producer.abort_transaction

    def _begin() -> Any:
        current.clear()
        return begin()

    def _send(to: str, *args: Any, key: bytes | None = None, **kwargs: Any) -> Any:
        if to == topic and key is not None:
            current.append(key.decode())
        return send(to, *args, key=key, **kwargs)

    def _abort() -> Any:
        aborted.update(current)
        current.clear()
        return abort()

    producer.begin_transaction, producer.send, producer.abort_transaction = _begin, _send, _abort
    return aborted


def test_every_codec_from_a_librdkafka_producer_is_answered(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    s = settings_for(kafka_broker, redis_server, worker_model_dir, compression="lz4")
    ensure_topics(s)
    codecs = ("none", "gzip", "lz4", "zstd", "snappy")
    items = docs(10 * len(codecs), seed=111, prefix="codec")
    for k, codec in enumerate(codecs):
        # One producer per codec, as the clients in the field are: each batch carries its codec.
        p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap, "compression.type": codec,
                                      "linger.ms": 20, "enable.idempotence": True})
        for cid, text in items[10 * k:10 * (k + 1)]:
            p.produce(s.input_topic, key=cid.encode(), value=message(cid, text),
                      headers=[("codec", codec.encode())])
        assert p.flush(20) == 0
    with ThreadWorker(s) as w:
        w.wait_ready()
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        reader.wait(lambda r: ids_in(r) >= {c for c, _ in items}, 60, "an output for every codec")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(items), 10, "ok counter")
        assert w.metric("fmlc_poll_errors_total", kind="undecodable") == 0
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert len(reader.records) == len(items)
    assert all(json.loads(r.value)["labels"] is not None for r in reader.records)
    # The worker's own lz4 output reads back in an independent client too.
    c = confluent_kafka.Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": s.group_id + "-check",
                                  "isolation.level": "read_committed", "fetch.wait.max.ms": 50})
    try:
        c.assign([confluent_kafka.TopicPartition(s.output_topic, p, confluent_kafka.OFFSET_BEGINNING)
                  for p in range(s.topic_partitions)])
        got: set[str] = set()

        def read_some() -> bool:
            got.update(m.key().decode() for m in c.consume(50, 0.5) if m.error() is None)
            return len(got) >= len(items)

        wait_for(read_some, 60, "outputs read by librdkafka")
    finally:
        c.close()
    assert got == {c for c, _ in items}


class _NotUtf8(str):
    """A header key that encodes to bytes no client can decode as the UTF-8 the protocol promises."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"\xff\xfe-not-utf8"


def test_records_the_client_cannot_decode_become_dead_letters_and_the_partition_reads_on(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka import KafkaProducer
    from kafka.record import default_records

    s = settings_for(kafka_broker, redis_server, worker_model_dir, topic_partitions=1)
    ensure_topics(s)
    good = docs(3, seed=121, prefix="dec")
    plain = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=0)
    lz4 = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=100, compression_type="lz4")
    bad_offsets: list[int] = []
    try:
        def send_good(i: int) -> None:
            plain.send(s.input_topic, key=good[i][0].encode(), value=message(*good[i])).get(10)

        send_good(0)
        # A batch whose lz4 frame is garbage (two records in it): the decompressor raises.
        with monkeypatch.context() as m:
            m.setattr(default_records, "lz4_encode", lambda data: b"\x00not an lz4 frame" + data[:16])
            futures = [lz4.send(s.input_topic, key=b"lz4-%d" % i, value=message(f"lz4-{i}", "借款")) for i in (0, 1)]
            lz4.flush(10)
            bad_offsets += [f.get(10).offset for f in futures]
        send_good(1)
        bad_offsets.append(plain.send(s.input_topic, key=b"hdr", value=message("hdr", "借款"),
                                      headers=[(_NotUtf8("x"), b"v")]).get(10).offset)
        # A batch whose CRC does not match its bytes (the broker stores it as it came).
        with monkeypatch.context() as m:
            crc = default_records.calc_crc32c
            m.setattr(default_records, "calc_crc32c", lambda data: (crc(data) + 1) & 0xFFFFFFFF)
            bad_offsets.append(plain.send(s.input_topic, key=b"crc", value=message("crc", "借款")).get(10).offset)
        send_good(2)
    finally:
        plain.close(5)
        lz4.close(5)

    with ThreadWorker(s) as w:
        w.wait_ready()
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic)
        reader.wait(lambda r: len(ids_in(r, s.output_topic)) >= 3 and len(reader.of(s.dlq_topic)) >= 4, 40,
                    "good messages answered and bad ones dead-lettered")
        wait_for(lambda: w.metric("fmlc_dead_letters_total", reason="undecodable") == 4, 10, "dlq counter")
        assert w.metric("fmlc_poll_errors_total", kind="undecodable") == 4
        assert w.app._live()[0], "the worker stays live"
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert ids_in(reader.of(s.output_topic)) == {c for c, _ in good}
    dead = reader.of(s.dlq_topic)
    assert sorted(int(dict(r.headers)["fmlc.dlq.source.offset"]) for r in dead) == sorted(bad_offsets)
    for r in dead:
        h = dict(r.headers)
        assert h["fmlc.dlq.reason"] == b"undecodable" and h["fmlc.dlq.source.topic"] == s.input_topic.encode()
        assert h["fmlc.dlq.source.partition"] == b"0" and h["fmlc.dlq.error"]
    from worker.testkit import committed_and_end

    (committed, end), = committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic).values()
    assert committed == end


def test_a_dead_letter_at_the_broker_limit_is_cut_to_fit_and_the_next_message_is_answered(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    from kafka import KafkaProducer

    from worker.messages import record_size

    s = settings_for(kafka_broker, redis_server, worker_model_dir, topic_partitions=1, max_text_chars=1000)
    ensure_topics(s)
    key = b"k" * 4096
    headers = [(f"trace-{i}", b"t" * 100_000) for i in range(3)]
    # text_too_long, so it becomes a dead letter; with its key and headers it is at the broker's limit
    text = "长" * ((s.max_message_bytes - 4096 - 300_000 - 1_000) // 3)
    value = message("at-limit", text)
    assert s.max_message_bytes - 2_000 < record_size(key, value, headers) <= s.max_message_bytes
    nxt = docs(1, seed=131, prefix="next")[0]
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=2_000_000, linger_ms=0)
    try:
        at = p.send(s.input_topic, key=key, value=value, headers=headers).get(10).offset
        p.send(s.input_topic, key=nxt[0].encode(), value=message(*nxt)).get(10)
    finally:
        p.close(5)
    with ThreadWorker(s) as w:
        w.wait_ready()
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic)
        reader.wait(lambda r: ids_in(r, s.output_topic) == {nxt[0]} and len(reader.of(s.dlq_topic)) == 1, 40,
                    "the dead letter and the next message's output")
        assert w.metric("fmlc_delivery_failures_total") == 0
        assert w.stop() == 0
    reader.close()
    dead, = reader.of(s.dlq_topic)
    h = dict(dead.headers)
    assert h["fmlc.dlq.reason"] == b"text_too_long" and h["fmlc.dlq.source.offset"] == str(at).encode()
    assert h["fmlc.dlq.truncated"] == str(len(value)).encode(), "marked as truncated, with the original size"
    assert dead.key == key and h["trace-0"] == headers[0][1], "key and headers kept, the value cut"
    assert value.startswith(dead.value) and record_size(dead.key, dead.value, dead.headers) <= s.dead_letter_limit


def test_in_flight_work_is_bounded_in_bytes_and_every_big_message_is_answered(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    from kafka import KafkaProducer

    from worker.offsets import record_cost

    budget = 2 * 1024 * 1024
    s = settings_for(kafka_broker, redis_server, worker_model_dir, max_in_flight_bytes=budget, max_in_flight=200,
                     batch_size=4)
    ensure_topics(s)
    meta = {f"k{i}": [i, f"值{i}", {"x": i}] for i in range(7_000)}  # ~300 KB of JSON
    items = docs(24, seed=141, prefix="big")
    values = [message(c, t, meta=meta) for c, t in items]
    biggest = max(record_cost(c.encode(), v, []) for (c, _), v in zip(items, values, strict=True))
    assert 24 * biggest > 4 * budget, "all of them at once would be far over the budget"
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=2_000_000, linger_ms=0)
    try:
        for (cid, _), value in zip(items, values, strict=True):
            p.send(s.input_topic, key=cid.encode(), value=value)
        p.flush(30)
    finally:
        p.close(5)
    with ThreadWorker(s) as w:
        with Sampler(lambda: (w.app.tracker.in_flight_bytes, w.app.paused)) as sampler:
            reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
            reader.wait(lambda r: ids_in(r) >= {c for c, _ in items}, 60, "every big message answered")
        assert w.stop() == 0
    held = [in_flight_bytes for in_flight_bytes, _ in sampler.values]
    paused = [p for _, p in sampler.values]
    reader.close()
    # Past the budget by at most what one poll brought before the pause took hold: one batch per
    # partition (each record is its own batch here).
    assert max(held) <= budget + s.topic_partitions * biggest, (max(held), budget)
    assert any(paused), "fetching paused on bytes (the record limit of 200 was never reached)"


def test_a_second_live_worker_with_the_same_transactional_id_gets_a_clear_start_up_error(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    from worker.app import WorkerApp
    from worker.kafka import TransactionalIdInUseError

    s = settings_for(kafka_broker, redis_server, worker_model_dir, delivery="exactly_once", transactional_id=None,
                     instance_id="pod-a", topic_partitions=1)
    assert s.effective_transactional_id() == f"{s.group_id}-pod-a"
    items = docs(2, seed=151, prefix="txid")
    with ThreadWorker(s) as w:
        w.wait_ready()
        twin = WorkerApp(s)
        try:
            with pytest.raises(TransactionalIdInUseError, match="FMLC_INSTANCE_ID"):
                twin.start()
        finally:
            twin._close()
        # The first worker was not fenced: it still commits transactions.
        from worker.testkit import produce

        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        reader.wait(lambda r: ids_in(r) == {c for c, _ in items}, 30, "outputs of the first worker")
        reader.close()
        assert w.app._fatal is None
        assert w.stop() == 0


def test_exactly_once_holds_when_a_second_worker_joins_mid_stream(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    from collections import Counter

    from worker.testkit import produce

    s1 = settings_for(kafka_broker, redis_server, worker_model_dir, delivery="exactly_once", transactional_id=None,
                      instance_id="one", topic_partitions=4, batch_size=8)
    s2 = s1.model_copy(update={"instance_id": "two"})
    ensure_topics(s1)
    early, late = docs(600, seed=161, prefix="eosj"), docs(100, seed=162, prefix="eosl")
    items = early + late
    with ThreadWorker(s1) as w1:
        aborted = record_aborted_keys(w1.app.producer, s1.output_topic)
        w1.wait_ready()
        produce(kafka_broker.bootstrap, s1.input_topic, [(c.encode(), message(c, t)) for c, t in early])
        wait_for(lambda: w1.metric("fmlc_messages_total", outcome="ok") >= 40, 30, "the first worker busy")
        with ThreadWorker(s2) as w2:
            aborted2 = record_aborted_keys(w2.app.producer, s1.output_topic)
            # It joins while the first one is delivering: partitions are revoked mid-batch.
            wait_for(lambda: w1.app.ready and w2.app.ready and len(w1.app.assigned | w2.app.assigned) == 4,
                     45, "both workers holding partitions")
            assert w1.app.assigned and w2.app.assigned
            produce(kafka_broker.bootstrap, s1.input_topic, [(c.encode(), message(c, t)) for c, t in late])
            reader = TopicReader(kafka_broker.bootstrap, s1.output_topic)
            reader.wait(lambda r: ids_in(r) >= {c for c, _ in items}, 120, "every input has a committed output")
            assert w2.stop() == 0
        assert w1.stop() == 0
    outs = reader.drain()  # read_committed
    reader.close()
    per_id = Counter(r.key.decode() for r in outs)
    assert set(per_id) == {c for c, _ in items}
    # Exactly once among committed transactions (see record_aborted_keys for what Tansu shows besides).
    over = {k: n for k, n in per_id.items() if n - (aborted[k] + aborted2[k]) > 1}
    assert not over, list(over.items())[:10]


def test_a_batch_whose_partition_changes_hands_during_delivery_never_commits(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    """The rebalance listener bumps a revoked partition's epoch while a batch of it sits between
    send_offsets_to_transaction and commit_transaction; here the bump is made at exactly that point
    (and the partition comes back, to be read again from its committed offset). The batch must be
    aborted: committed, its outputs would be read twice."""
    from worker.testkit import produce

    s = settings_for(kafka_broker, redis_server, worker_model_dir, delivery="exactly_once", topic_partitions=1,
                     batch_size=8)
    items = docs(40, seed=171, prefix="rev")
    fired: list[dict] = []
    with ThreadWorker(s) as w:
        w.wait_ready()
        producer = w.app.producer
        send_offsets = producer.send_offsets_to_transaction

        def revoked_during_delivery(offsets: dict, group_metadata: object) -> None:
            send_offsets(offsets, group_metadata)
            if not fired:
                fired.append(dict(offsets))
                tps = frozenset(offsets)
                w.app.epochs.bump(tps)  # what the listener does on revocation
                w.app.pipeline.rewind(tps)  # assigned back: read again from the commit

        producer.send_offsets_to_transaction = revoked_during_delivery
        aborted = record_aborted_keys(producer, s.output_topic)
        ends: list[str] = []  # how each transaction ended, in order
        commit, abort = producer.commit_transaction, producer.abort_transaction
        producer.commit_transaction = lambda: (ends.append("commit"), commit())[1]
        producer.abort_transaction = lambda: (ends.append("abort"), abort())[1]
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        reader.wait(lambda r: ids_in(r) >= {c for c, _ in items}, 60, "every input has a committed output")
        assert w.stop() == 0
    outs = reader.drain()  # read_committed
    reader.close()
    assert fired, "a batch was caught mid-delivery"
    assert ends[0] == "abort", f"the batch that changed hands was committed: {ends[:3]}"
    assert "abort" not in ends[1:], ends
    per_id = Counter(r.key.decode() for r in outs)
    assert set(per_id) == {c for c, _ in items}
    # Once each among committed transactions (Tansu also shows the aborted batch: record_aborted_keys).
    assert sum(aborted.values()) >= 1
    assert all(1 <= n <= 1 + aborted[k] for k, n in per_id.items()), per_id.most_common(3)
