"""The worker against a real Kafka-protocol broker (Tansu) and a real Redis, with the tiny model.

One broker for the session; every test has its own topics, group and cache prefix. Workers run
in-process (a thread) where that is enough, and as `python -m worker` subprocesses where a signal
is the point (SIGTERM drain, SIGKILL and restart).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from worker.app import WorkerApp
from worker.kafka import MissingTopicsError, ensure_topics
from worker.messages import DeadLetterReason
from worker.settings import WorkerSettings
from worker.testkit import (
    Broker,
    RedisServer,
    Sampler,
    ThreadWorker,
    TopicReader,
    WorkerProcess,
    committed_and_end,
    http_get,
    ids_in,
    message,
    parse_metrics,
    produce,
    start_redis,
    uid,
    wait_for,
    worker_settings,
)

pytestmark = pytest.mark.slow


# --- helpers -----------------------------------------------------------------------------------------

def settings_for(broker: Broker, redis: RedisServer, model_dir: Path, **overrides: Any) -> WorkerSettings:
    """The test kit's settings with three partitions and small, quick micro-batches."""
    base: dict[str, Any] = dict(redis_url=redis.url, topic_partitions=3, batch_size=16, max_wait_ms=20)
    return worker_settings(broker.bootstrap, model_dir, **(base | overrides))


def docs(n: int, seed: int, prefix: str) -> list[tuple[str, str]]:
    from training.synth import generate

    return [(f"{prefix}-{i:04d}", d["text"]) for i, d in enumerate(generate(n, seed))]


# --- tests -------------------------------------------------------------------------------------------

def test_every_message_gets_labels_and_the_metrics_count_exactly(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir)
    items = docs(60, seed=11, prefix="ok")
    with ThreadWorker(s) as w:
        w.wait_ready()
        status, _ = http_get(w.app.metrics_port, "/readyz")
        assert status == 200
        produce(kafka_broker.bootstrap, s.input_topic, [(cid.encode(), message(cid, text, source="app"))
                                              for cid, text in items])
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        outs = reader.wait(lambda r: len(r) >= len(items), 60, "60 outputs")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(items), 10, "ok counter")
        wait_for(lambda: w.metric("fmlc_queue_depth") == 0 and all(
            w.metric("fmlc_consumer_lag", topic=s.input_topic, partition=str(p)) == 0 for p in range(3))
            and len(w.app.metrics.consumer_lag._metrics) == 3, 10, "lag exported and zero")
        outs = reader.drain()
        reader.close()

        assert len(outs) == len(items), "exactly one output per input"
        assert ids_in(outs) == {cid for cid, _ in items}
        model = w.app.model
        assert model is not None
        labels_seen: Counter[str] = Counter()
        for rec in outs:
            body = json.loads(rec.value)
            assert body["id"] == rec.key.decode() and body["schema_version"] == 1
            assert body["model_version"] == model.version and body["cached"] is False
            assert body["source"] == "app" and body["timings"]["total_ms"] >= body["timings"]["inference_ms"]
            scores = [lab["score"] for lab in body["labels"]]
            assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
            assert {lab["label"] for lab in body["labels"]} <= set(model.labels)
            labels_seen.update(lab["label"] for lab in body["labels"])
        assert sum(labels_seen.values()) > 0, "the tiny model predicts labels"

        # The registry counts exactly what happened …
        n = len(items)
        assert w.metric("fmlc_messages_consumed_total") == n
        assert w.metric("fmlc_messages_total", outcome="cached") == 0
        assert w.metric("fmlc_messages_total", outcome="dead_letter") == 0
        assert w.metric("fmlc_batch_size_sum") == n
        # every text went through the model exactly once, in calls that merge micro-batches at most
        assert w.metric("fmlc_model_batch_size_sum") == n
        assert 1 <= w.metric("fmlc_inference_seconds_count") == w.metric("fmlc_model_batch_size_count") \
            <= w.metric("fmlc_batch_size_count")
        assert w.metric("fmlc_end_to_end_seconds_count") == n
        assert w.metric("fmlc_cache_requests_total", result="miss") == n
        assert w.metric("fmlc_assigned_partitions") == 3
        assert w.metric("fmlc_model_info", version=model.version, device="cpu", quantize="none") == 1
        assert time.time() - w.metric("fmlc_last_processed_timestamp_seconds") < 60
        for label, count in labels_seen.items():
            assert w.metric("fmlc_predicted_labels_total", label=label) == count

        # … and /metrics serves the same numbers.
        status, text = http_get(w.app.metrics_port, "/metrics")
        assert status == 200
        scraped = parse_metrics(text)
        assert scraped[("fmlc_messages_total", (("outcome", "ok"),))] == n
        assert scraped[("fmlc_messages_consumed_total", ())] == n
        assert scraped[("fmlc_model_info", (("device", "cpu"), ("quantize", "none"), ("version", model.version)))] == 1
        assert http_get(w.app.metrics_port, "/healthz")[0] == 200
        assert w.stop() == 0
    offsets = committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic, timeout=15)
    assert all(committed == end for committed, end in offsets.values()), offsets
    assert sum(end for _, end in offsets.values()) == len(items)


def test_malformed_inputs_become_dead_letters_and_good_ones_are_unharmed(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    from test_worker_units import MALFORMED

    s = settings_for(kafka_broker, redis_server, worker_model_dir, max_text_chars=600)
    bad = [(raw, reason) for raw, reason in MALFORMED if reason is not DeadLetterReason.TEXT_TOO_LONG]
    bad += [(None, DeadLetterReason.EMPTY_MESSAGE),
            (message("too-long", "长" * 601), DeadLetterReason.TEXT_TOO_LONG)]
    good = docs(len(bad) + 1, seed=5, prefix="good")
    messages: list[tuple[bytes | None, bytes | None]] = []
    expected_reason: dict[bytes | None, str] = {}
    for i, (raw, reason) in enumerate(bad):  # good, bad, good, bad, …, good
        cid, text = good[i]
        messages.append((cid.encode(), message(cid, text)))
        key = f"bad-{i}".encode()
        messages.append((key, raw))
        expected_reason[key] = reason.value
    messages.append((good[-1][0].encode(), message(*good[-1])))
    trace = {1: [("trace-id", b"t-1")]}  # the first bad message carries a header that must survive

    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic, messages, headers=trace)
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic, s.input_topic)
        reader.wait(lambda r: len(ids_in(r, s.output_topic)) >= len(good) and len(
            [x for x in r if x.topic == s.dlq_topic]) >= len(bad), 60, "outputs and dead letters")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="dead_letter") == len(bad), 10, "dlq counter")
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert ids_in(reader.of(s.output_topic)) == {cid for cid, _ in good}
    assert len(reader.of(s.output_topic)) == len(good)
    originals = {(r.partition, r.offset): r for r in reader.of(s.input_topic)}
    dead = reader.of(s.dlq_topic)
    assert len(dead) == len(bad)
    for rec in dead:
        h = dict(rec.headers)
        assert h["fmlc.dlq.reason"].decode() == expected_reason[rec.key], (rec.key, h)
        assert h["fmlc.dlq.error"] and h["fmlc.dlq.source.topic"].decode() == s.input_topic
        source = originals[(int(h["fmlc.dlq.source.partition"]), int(h["fmlc.dlq.source.offset"]))]
        assert source.key == rec.key and source.value == rec.value, "the dead letter carries the original bytes"
        if rec.key == b"bad-0":
            assert h["trace-id"] == b"t-1"
    by_reason = Counter(expected_reason.values())
    for reason, count in by_reason.items():
        assert w.metric("fmlc_dead_letters_total", reason=reason) == count
    assert w.metric("fmlc_messages_total", outcome="ok") == len(good)


def test_repeated_texts_are_served_from_the_cache(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir)
    first = docs(20, seed=21, prefix="first")
    # the same complaints again under new ids, five of them with full-width / spacing variants
    variants = {0: lambda t: "  " + t + "\u3000", 1: lambda t: t.replace("，", ","), 2: lambda t: t + "\n",
                3: lambda t: " ".join(t.split()), 4: lambda t: "\t" + t}
    again = [(f"again-{i:02d}", variants.get(i, lambda t: t)(text)) for i, (_, text) in enumerate(first)]
    with ThreadWorker(s) as w:
        w.wait_ready()
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in first])
        reader.wait(lambda r: len(r) >= 20, 60, "first round")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == 20, 10, "first round counted")
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in again])
        reader.wait(lambda r: len(r) >= 40, 60, "second round")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="cached") == 20, 10, "cached counter")
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert len(reader.records) == 40
    by_id = {r.key.decode(): json.loads(r.value) for r in reader.records}
    for i, (cid, _) in enumerate(first):
        fresh, cached = by_id[cid], by_id[f"again-{i:02d}"]
        assert fresh["cached"] is False and cached["cached"] is True
        assert cached["labels"] == fresh["labels"] and cached["model_version"] == fresh["model_version"]
        assert cached["timings"]["inference_ms"] == 0
    assert w.metric("fmlc_cache_requests_total", result="hit") == 20
    assert w.metric("fmlc_cache_requests_total", result="miss") == 20
    assert w.metric("fmlc_messages_total", outcome="ok") == 20


def _pick_alert_labels(model_dir: Path, texts: list[str]) -> tuple[str, str]:
    """A label the tiny model predicts for some texts but not all, and one that often comes with it."""
    from fmlc import Predictor

    preds = [set(p.names) for p in Predictor.load(model_dir, device="cpu").predict(texts)]
    counts = Counter(name for names in preds for name in names)
    first = min(counts, key=lambda name: abs(counts[name] - len(texts) / 2))
    with_first = Counter(name for names in preds if first in names for name in names if name != first)
    second = min(with_first, key=lambda name: abs(with_first[name] - counts[first] / 2))
    return first, second


def test_alerts_go_to_the_rule_topics(kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path,
                                      tmp_path: Path) -> None:
    items = docs(40, seed=31, prefix="al")
    one, two = _pick_alert_labels(worker_model_dir, [t for _, t in items])
    u = uid()
    topic_one, topic_both, topic_none = f"a{u}.one", f"a{u}.both", f"a{u}.none"
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""rules:
  - name: single
    label: {one}
    topic: {topic_one}
    severity: high
  - name: combination
    all_of: [{one}, {two}]
    topic: {topic_both}
    severity: critical
  - name: unknown-label
    label: 模型里没有的标签
    topic: {topic_none}
    severity: low
""", encoding="utf-8")
    s = settings_for(kafka_broker, redis_server, worker_model_dir, alert_rules=rules)
    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, topic_one, topic_both, topic_none)
        reader.wait(lambda r: len(ids_in(r, s.output_topic)) >= len(items), 60, "outputs")
        outputs = {r.key.decode(): json.loads(r.value) for r in reader.of(s.output_topic)}
        expect_one = {cid for cid, o in outputs.items() if one in {lab["label"] for lab in o["labels"]}}
        expect_both = {cid for cid, o in outputs.items() if {one, two} <= {lab["label"] for lab in o["labels"]}}
        assert expect_one and expect_both, "the chosen labels fire on this data"
        reader.wait(lambda r: len(ids_in(r, topic_one)) >= len(expect_one)
                    and len(ids_in(r, topic_both)) >= len(expect_both), 30, "alerts")
        wait_for(lambda: w.metric("fmlc_alerts_total", topic=topic_one, severity="high") == len(expect_one),
                 10, "alert counter")
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert ids_in(reader.of(topic_one)) == expect_one and len(reader.of(topic_one)) == len(expect_one)
    assert ids_in(reader.of(topic_both)) == expect_both and len(reader.of(topic_both)) == len(expect_both)
    assert reader.of(topic_none) == []
    for rec in reader.of(topic_both):
        alert = json.loads(rec.value)
        assert alert["id"] == rec.key.decode() and alert["rule"] == "combination"
        assert alert["severity"] == "critical" and {lab["label"] for lab in alert["labels"]} == {one, two}
        assert alert["model_version"] == outputs[alert["id"]]["model_version"]
    assert w.metric("fmlc_alerts_total", topic=topic_both, severity="critical") == len(expect_both)


def test_exactly_once_commits_outputs_and_offsets_together(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir, delivery="exactly_once")
    items = docs(40, seed=41, prefix="eos")
    messages = [(c.encode(), message(c, t)) for c, t in items] + [(b"junk", b"not json")]
    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic, messages)
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic)
        reader.wait(lambda r: len(r) >= len(messages), 60, "committed outputs")
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(items), 10, "counter")
        assert w.stop() == 0
    reader.drain()
    reader.close()
    assert len(reader.of(s.output_topic)) == len(items) and ids_in(reader.of(s.output_topic)) == {
        c for c, _ in items}
    assert [r.key for r in reader.of(s.dlq_topic)] == [b"junk"]
    offsets = committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic, timeout=15)
    assert all(committed == end for committed, end in offsets.values()), offsets


def test_backpressure_bounds_in_flight_work_and_loses_nothing(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir, max_in_flight=8, batch_size=4)
    items = docs(120, seed=51, prefix="bp")
    with ThreadWorker(s) as w:
        with Sampler(lambda: (w.app.tracker.in_flight, w.app.paused)) as sampler:
            w.wait_ready()
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
            reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
            reader.wait(lambda r: len(r) >= len(items), 90, "all outputs")
            wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(items), 10, "counter")
        wait_for(lambda: w.metric("fmlc_consumer_paused") == 0, 5, "resumed")
        assert w.stop() == 0
    seen_in_flight = [in_flight for in_flight, _ in sampler.values]
    seen_paused = [paused for _, paused in sampler.values]
    reader.drain()
    reader.close()
    assert ids_in(reader.records) == {c for c, _ in items} and len(reader.records) == len(items)
    assert max(seen_in_flight) <= 8, max(seen_in_flight)
    assert any(seen_paused), "fetching was paused while the queue was full"


def test_model_reload_on_version_change_and_failed_reload_keeps_serving(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path, tmp_path: Path) -> None:
    from fmlc.artifact import load, save

    model_dir = tmp_path / "model"
    shutil.copytree(worker_model_dir, model_dir)
    s = settings_for(kafka_broker, redis_server, worker_model_dir, model_path=model_dir, model_poll_interval_s=0.3)
    items = docs(30, seed=61, prefix="rl")
    with ThreadWorker(s) as w:
        w.wait_ready()
        assert w.app.model is not None
        old = w.app.model.version
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[:10]])
        reader.wait(lambda r: len(r) >= 10, 60, "outputs of the first model")

        art = load(model_dir)
        art.thresholds = art.thresholds * 0.9  # a retrained model, as far as the version is concerned
        new = save(art, model_dir)
        assert new != old
        wait_for(lambda: w.metric("fmlc_model_info", version=new, device="cpu", quantize="none") == 1, 30, "reload")
        assert w.metric("fmlc_model_info", version=old, device="cpu", quantize="none") == 0, \
            "one model_info series at a time"
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[10:20]])
        reader.wait(lambda r: len(r) >= 20, 60, "outputs of the new model")

        # A broken artifact (contents do not match VERSION) is refused; the worker keeps serving.
        (model_dir / "VERSION").write_text("fmlc-broken000000\n")
        wait_for(lambda: w.metric("fmlc_model_reloads_total", result="error") >= 1, 30, "failed reload")
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[20:]])
        reader.wait(lambda r: len(r) >= 30, 60, "outputs after the failed reload")
        assert w.stop() == 0
    reader.close()
    versions = {r.key.decode(): json.loads(r.value)["model_version"] for r in reader.records}
    assert {versions[c] for c, _ in items[:10]} == {old}
    assert {versions[c] for c, _ in items[10:]} == {new}
    assert w.metric("fmlc_model_reloads_total", result="ok") == 1


def test_missing_topics_are_created_only_when_asked(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir, create_topics=False)
    with pytest.raises(MissingTopicsError, match="FMLC_CREATE_TOPICS"):
        WorkerApp(s).start()
    created = ensure_topics(s.model_copy(update={"create_topics": True}), ["extra.alerts"])
    assert set(created) == {s.input_topic, s.output_topic, s.dlq_topic, "extra.alerts"}
    assert ensure_topics(s) == [], "now they exist, nothing is missing"


def test_sigterm_drains_in_flight_work_and_commits_it(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path, tmp_path: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir, batch_size=8, max_in_flight=100)
    ensure_topics(s)
    items = docs(1000, seed=71, prefix="term")
    reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.input_topic)
    with WorkerProcess(s, tmp_path / "worker.log") as proc:
        wait_for(lambda: "partitions assigned" in proc.log(), 60, "the worker in its group")
        proc.signal(signal.SIGHUP)  # same artifact: a forced reload that changes nothing
        wait_for(lambda: "unchanged" in proc.log(), 30, "the SIGHUP reload")
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
        reader.wait(lambda r: len(ids_in(r, s.output_topic)) >= 24, 60, "the worker under way")
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(s.shutdown_timeout_s + 5) == 0
        took = time.monotonic() - t0
        log = proc.log()
    assert took < s.shutdown_timeout_s, took
    assert "drain finished" in log and " 0 records left uncommitted" in log, log[-3000:]
    reader.drain()
    reader.close()
    offsets = committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic, timeout=15)
    committed_inputs = {r.key.decode() for r in reader.of(s.input_topic) if r.offset < offsets[r.partition][0]}
    outputs = ids_in(reader.of(s.output_topic))
    assert committed_inputs, "the worker committed progress"
    # Nothing lost: every committed input has its output. Drained: nothing was output that was
    # not committed (it would be processed again by the next worker).
    assert outputs == committed_inputs
    assert len(committed_inputs) < len(items), "SIGTERM came mid-stream"


def test_sigkill_mid_stream_then_restart_loses_nothing(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path, tmp_path: Path) -> None:
    s = settings_for(kafka_broker, redis_server, worker_model_dir, batch_size=8)
    ensure_topics(s)
    items = docs(300, seed=81, prefix="kill")
    produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
    reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
    with WorkerProcess(s, tmp_path / "first.log") as first:
        reader.wait(lambda r: len(r) >= 24, 90, "the first worker under way")
        first.signal(signal.SIGKILL)
        first.wait(10)
    before = len(ids_in(reader.poll()))
    assert before < len(items), "SIGKILL came mid-stream"
    with WorkerProcess(s, tmp_path / "second.log") as second:
        reader.wait(lambda r: ids_in(r) >= {c for c, _ in items}, 120, "every input has an output")
        second.signal(signal.SIGTERM)
        assert second.wait(s.shutdown_timeout_s + 5) == 0
    reader.close()
    assert ids_in(reader.records) == {c for c, _ in items}


def test_two_workers_split_the_partitions_and_together_lose_nothing(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    s1 = settings_for(kafka_broker, redis_server, worker_model_dir, topic_partitions=4, batch_size=8)
    s2 = s1.model_copy(update={"transactional_id": s1.transactional_id + "-2"})
    ensure_topics(s1)
    early = docs(1200, seed=91, prefix="early")
    late = docs(100, seed=92, prefix="late")
    reader = TopicReader(kafka_broker.bootstrap, s1.output_topic)
    caplog.set_level("INFO", logger="worker.app")
    with ThreadWorker(s1) as w1:
        w1.wait_ready()
        # The first worker is busy with `early` when the second joins: its in-flight records of the
        # revoked partitions are dropped and consumed again by their new owner — duplicates are
        # allowed, losses are not.
        produce(kafka_broker.bootstrap, s1.input_topic, [(c.encode(), message(c, t)) for c, t in early])
        wait_for(lambda: w1.metric("fmlc_messages_total", outcome="ok") > 0, 30, "the first worker busy")
        with ThreadWorker(s2) as w2:
            wait_for(lambda: w1.app.ready and w2.app.ready and len(w1.app.assigned | w2.app.assigned) == 4,
                     45, "both workers holding partitions")
            a1, a2 = w1.app.assigned, w2.app.assigned
            assert a1 and a2 and not (a1 & a2)
            before = (w1.metric("fmlc_messages_total", outcome="ok"), w2.metric("fmlc_messages_total", outcome="ok"))
            produce(kafka_broker.bootstrap, s1.input_topic, [(c.encode(), message(c, t)) for c, t in late])
            want = {c for c, _ in early + late}
            reader.wait(lambda r: ids_in(r) >= want, 120, "every input has an output")
            wait_for(lambda: w1.metric("fmlc_messages_total", outcome="ok") > before[0]
                     and w2.metric("fmlc_messages_total", outcome="ok") > before[1], 10, "both worked")
            assert w2.stop() == 0
        assert w1.stop() == 0
    reader.close()
    assert ids_in(reader.records) == want
    revokes = [r.getMessage() for r in caplog.records if "partitions revoked" in r.getMessage()]
    assert revokes, "the second worker's arrival made the first give partitions up"
    print("revocations:", revokes)


def test_a_replica_beyond_the_partition_count_is_a_ready_standby(
        kafka_broker: Broker, redis_server: RedisServer, worker_model_dir: Path) -> None:
    """/readyz is group membership, not partition ownership: an idle replica must not block a
    Kubernetes roll-out or a PodDisruptionBudget (docs/decisions/0051-readiness-is-group-membership.md)."""
    s1 = settings_for(kafka_broker, redis_server, worker_model_dir, topic_partitions=1)
    s2 = s1.model_copy(update={"transactional_id": s1.transactional_id + "-2"})
    ensure_topics(s1)
    with ThreadWorker(s1) as w1, ThreadWorker(s2) as w2:
        wait_for(lambda: w1.app.ready and w2.app.ready and len(w1.app.assigned) + len(w2.app.assigned) == 1,
                 45, "both replicas ready, one of them holding the only partition")
        idle = w1 if not w1.app.assigned else w2
        status, body = http_get(idle.app.metrics_port, "/readyz")
        detail = json.loads(body)
        assert (status, detail["ok"], detail["assigned_partitions"], detail["joined"]) == (200, True, 0, True), body
        assert idle.metric("fmlc_assigned_partitions") == 0, "the standby shows as idle in the metrics"
        busy = w2 if idle is w1 else w1
        assert http_get(busy.app.metrics_port, "/readyz")[0] == 200


def test_redis_outage_costs_no_message(kafka_broker: Broker, worker_model_dir: Path) -> None:
    own = start_redis()  # this test stops its Redis; the shared one is left alone
    try:
        s = settings_for(kafka_broker, own, worker_model_dir, cache_retry_s=0.5)
        items = docs(60, seed=101, prefix="rd")
        with ThreadWorker(s) as w:
            w.wait_ready()
            reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[:20]])
            reader.wait(lambda r: len(r) >= 20, 60, "outputs with Redis up")

            assert own.process is not None
            own.process.send_signal(signal.SIGSTOP)  # Redis hangs: every call would time out
            repeats = [(f"rep-{c}", t) for c, t in items[:10]]  # would be cache hits if Redis answered
            wave2 = items[20:40] + repeats
            t0 = time.monotonic()
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in wave2])
            reader.wait(lambda r: len(r) >= 50, 60, "outputs with Redis frozen")
            frozen_s = time.monotonic() - t0

            own.process.send_signal(signal.SIGCONT)
            own.stop()  # and now gone altogether
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[40:]])
            reader.wait(lambda r: len(r) >= 70, 60, "outputs with Redis stopped")
            wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == 70, 10, "counter")
            assert w.stop() == 0
        reader.drain()
        reader.close()
    finally:
        own.stop()
    assert ids_in(reader.records) == {c for c, _ in items} | {c for c, _ in repeats}
    assert len(reader.records) == 70
    assert not any(json.loads(r.value)["cached"] for r in reader.records)
    assert w.metric("fmlc_cache_errors_total") >= 1
    assert w.metric("fmlc_cache_requests_total", result="error") >= 1
    assert frozen_s < 30, frozen_s
