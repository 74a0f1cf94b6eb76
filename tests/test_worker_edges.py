"""The worker at the edges of what a production Kafka sends it: compressed batches from an
independent client (librdkafka via confluent-kafka), records the client cannot decode, messages at
the broker's size limit, and rebalances under exactly-once. Real broker (Tansu), real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_worker import InProcessWorker, TopicReader, complaint, docs, ids_in, settings_for

from bench.streamkit import wait_for
from worker.kafka import ensure_topics
from worker.local_services import Broker, RedisServer

pytestmark = pytest.mark.slow


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
            p.produce(s.input_topic, key=cid.encode(), value=complaint(cid, text),
                      headers=[("codec", codec.encode())])
        assert p.flush(20) == 0
    with InProcessWorker(s) as w:
        w.wait_ready()
        reader = TopicReader(kafka_broker, s.output_topic)
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
