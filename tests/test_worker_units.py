"""Worker parts on their own: message validation, dead-letter headers, batching, alert rules,
settings, offset bookkeeping, the Redis cache against a real redis-server (and its outage), and
the out-of-memory split. No broker needed; these run in a few seconds."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest
from kafka import TopicPartition

from worker.alerts import AlertRule, AlertRules
from worker.batching import MicroBatcher
from worker.messages import (
    DeadLetterReason,
    InvalidMessage,
    LabelOut,
    dead_letter,
    parse_complaint,
    record_size,
)
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker, record_cost
from worker.pipeline import Job, Work, merge_waiting
from worker.settings import WorkerSettings, env_for, load_settings

ROOT = Path(__file__).resolve().parents[1]

# (raw bytes, expected dead-letter reason) — the malformed inputs the integration test also sends.
MALFORMED: list[tuple[bytes | None, DeadLetterReason]] = [
    (b"", DeadLetterReason.EMPTY_MESSAGE),
    (b"\xff\xfe\x00bad", DeadLetterReason.NOT_UTF8),
    ('{"id": "a", "text": "半截'.encode(), DeadLetterReason.NOT_JSON),
    (b"just words", DeadLetterReason.NOT_JSON),
    (b'["id", "text"]', DeadLetterReason.INVALID_SCHEMA),
    (b'{"text": "\xe6\xb2\xa1\xe6\x9c\x89 id"}', DeadLetterReason.INVALID_SCHEMA),
    (b'{"id": "m1"}', DeadLetterReason.INVALID_SCHEMA),
    (b'{"id": "m2", "text": 12345}', DeadLetterReason.INVALID_SCHEMA),
    (b'{"id": true, "text": "id is a bool"}', DeadLetterReason.INVALID_SCHEMA),
    (b'{"id": "m3", "text": "ok", "created_at": "not a date"}', DeadLetterReason.INVALID_SCHEMA),
    (b'{"id": "m4", "text": ""}', DeadLetterReason.EMPTY_TEXT),
    (b'{"id": "m5", "text": " \\t\\n\\u3000 "}', DeadLetterReason.EMPTY_TEXT),
    (json.dumps({"id": "m6", "text": "长" * 101}).encode(), DeadLetterReason.TEXT_TOO_LONG),
    (b'{"schema_version": 2, "id": "m7", "text": "future"}', DeadLetterReason.UNSUPPORTED_VERSION),
    # poison found by bench/faults.py: each crash-looped the worker before it was refused here
    (b"[" * 100_000 + b"]" * 100_000, DeadLetterReason.NOT_JSON),
    (b'{"id": "m8", "text": "lone surrogate \\ud800 here"}', DeadLetterReason.NOT_UTF8),
    (b'{"id": "m9", "text": "fine", "source": "\\udfff"}', DeadLetterReason.NOT_UTF8),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED, ids=[r.value + str(i) for i, (_, r) in enumerate(MALFORMED)])
def test_malformed_input_gets_its_reason(raw: bytes, reason: DeadLetterReason) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_complaint(raw, max_text_chars=100)
    assert info.value.reason is reason


def test_valid_input_parses_with_optional_fields() -> None:
    c = parse_complaint(json.dumps({"id": 42, "text": "平台暴力催收", "source": "app", "created_at":
                                    "2024-05-01T08:00:00+08:00", "meta": {"channel": "12378"},
                                    "extra": "ignored"}, ensure_ascii=False).encode(), 100)
    assert (c.id, c.text, c.source) == ("42", "平台暴力催收", "app")
    assert c.created_at is not None and c.created_at.utcoffset() is not None


def test_meta_is_checked_but_not_kept_and_in_flight_bytes_are_counted() -> None:
    import sys

    meta = {f"k{i}": [i, f"值{i}", {"x": i / 3}] for i in range(20_000)}  # ~0.9 MB of JSON
    raw = json.dumps({"id": "m", "text": "借款", "meta": meta}, ensure_ascii=False).encode()
    assert len(raw) > 800_000
    c = parse_complaint(raw, 100)
    assert "meta" not in c.model_dump() and sum(sys.getsizeof(v) for v in c.__dict__.values()) < 10_000
    with pytest.raises(InvalidMessage) as info:
        parse_complaint(b'{"id": "m", "text": "t", "meta": [1, 2]}', 100)
    assert info.value.reason is DeadLetterReason.INVALID_SCHEMA

    t = OffsetTracker()
    tp = TopicPartition("in", 0)
    cost = record_cost(b"k", raw, [("h", b"vv")])
    assert cost == 2 * len(raw) + 1 + 3 + 1024
    t.add(tp, 0, cost)
    t.add(tp, 1, 100)
    t.add(tp, 2, 10)
    assert t.in_flight_bytes == cost + 110
    t.complete(tp, [1])  # not yet contiguous: nothing released
    assert t.in_flight_bytes == cost + 110
    t.complete(tp, [0])
    assert t.in_flight_bytes == 10 and t.in_flight == 1
    t.drop([tp])
    assert t.in_flight_bytes == 0 and t.in_flight == 0
    assert WorkerSettings().max_in_flight_bytes == 64 * 1024 * 1024


def test_dead_letter_keeps_bytes_and_headers_and_cuts_only_oversized() -> None:
    dl = dead_letter(topic="in", partition=2, offset=77, timestamp=1700000000000, key=b"k", value=b"\xff" * 10,
                     headers=[("trace", b"abc"), ("fmlc.dlq.reason", b"old")], reason=DeadLetterReason.NOT_UTF8,
                     error="bad byte", max_bytes=1024)
    h = dict(dl.headers)
    assert dl.key == b"k" and dl.value == b"\xff" * 10
    assert h["trace"] == b"abc" and h["fmlc.dlq.reason"] == b"not_utf8"
    assert (h["fmlc.dlq.source.topic"], h["fmlc.dlq.source.partition"], h["fmlc.dlq.source.offset"]) == (
        b"in", b"2", b"77")
    assert [k for k, _ in dl.headers].count("fmlc.dlq.reason") == 1
    big = dead_letter(topic="in", partition=0, offset=1, timestamp=None, key=None, value=b"x" * 5000, headers=None,
                      reason=DeadLetterReason.TEXT_TOO_LONG, error="e" * 5000, max_bytes=2048)
    # max_bytes bounds the whole record, so the value gets what the headers leave.
    assert record_size(big.key, big.value, big.headers) <= 2048 < record_size(None, b"x" * 5000, big.headers)
    assert 0 < len(big.value or b"") < 2048 and dict(big.headers)["fmlc.dlq.truncated"] == b"5000"
    assert len(dict(big.headers)["fmlc.dlq.error"]) <= 1000


def test_a_dead_letter_always_fits_however_big_its_key_and_headers() -> None:
    limit = WorkerSettings().dead_letter_limit
    assert limit <= 1_048_588 and limit <= WorkerSettings().max_request_size
    assert WorkerSettings(max_message_bytes=500_000).dead_letter_limit == 500_000
    key, headers = b"k" * 4096, [(f"h{i}", b"v" * 100_000) for i in range(3)]
    value = b"x" * (1_048_588 - 4096 - 300_000 - 200)  # the input itself was at the broker's limit
    assert record_size(key, value, headers) <= 1_048_588
    dl = dead_letter(topic="in", partition=0, offset=5, timestamp=1, key=key, value=value, headers=headers,
                     reason=DeadLetterReason.TEXT_TOO_LONG, error="too long", max_bytes=limit)
    h = dict(dl.headers)
    assert record_size(dl.key, dl.value, dl.headers) <= limit
    assert h["fmlc.dlq.truncated"] == str(len(value)).encode() and dl.key == key and h["h0"] == headers[0][1]
    # Headers alone over the limit: they go (counted), then the key is cut too.
    huge = [(f"h{i}", b"v" * 400_000) for i in range(3)]
    dl = dead_letter(topic="in", partition=0, offset=6, timestamp=1, key=b"k" * 20_000, value=b"{}", headers=huge,
                     reason=DeadLetterReason.NOT_JSON, error="e", max_bytes=8_192)
    h = dict(dl.headers)
    assert record_size(dl.key, dl.value, dl.headers) <= 8_192
    assert h["fmlc.dlq.truncated.headers"] == b"3" and h["fmlc.dlq.truncated.key"] == b"20000"
    assert "h0" not in h and h["fmlc.dlq.reason"] == b"not_json" and h["fmlc.dlq.source.offset"] == b"6"


def test_micro_batches_close_on_size_or_wait() -> None:
    q: queue.Queue[tuple[int, float]] = queue.Queue()
    batcher = MicroBatcher(q, batch_size=4, max_wait_s=0.15, arrival=lambda item: item[1])
    for i in range(6):
        q.put((i, time.monotonic()))
    full = batcher.next_batch()
    assert full is not None and [i for i, _ in full.items] == [0, 1, 2, 3] and full.full
    t0 = time.monotonic()
    partial = batcher.next_batch()
    assert partial is not None and [i for i, _ in partial.items] == [4, 5] and not partial.full
    assert 0.1 <= time.monotonic() - t0 < 0.5, "a partial batch waits max_wait from its first arrival"
    assert batcher.next_batch(idle_timeout_s=0.05) is None
    # An item that already waited longer than max_wait goes out at once, with what is there.
    q.put((9, time.monotonic() - 1.0))
    t0 = time.monotonic()
    late = batcher.next_batch()
    assert late is not None and len(late.items) == 1 and time.monotonic() - t0 < 0.05
    # hurry (draining) also skips the wait
    q.put((10, time.monotonic()))
    t0 = time.monotonic()
    assert batcher.next_batch(hurry=lambda: True) is not None and time.monotonic() - t0 < 0.05


def test_the_model_stage_merges_waiting_micro_batches_in_order() -> None:
    model_a, model_b = object(), object()  # stand-ins for two ServedModel versions: only identity matters

    def work(ids: range, model: object, dispatched: float) -> Work:
        jobs = [Job(tp=TopicPartition("in", 0), offset=i, epoch=0, arrived=0.0, timestamp_ms=None, key=None,
                    value=None, headers=[]) for i in ids]
        return Work(jobs=jobs, model=model, dispatched=dispatched, cache_s=0.01, tokenize_s=0.1)  # type: ignore[arg-type]

    waiting: queue.Queue[Work] = queue.Queue()
    # Nothing waiting: the first micro-batch goes alone and untouched (no delay after a quiet spell).
    first = work(range(0, 4), model_a, 1.0)
    alone, left = merge_waiting(first, waiting, max_jobs=16)
    assert alone is first and left is None

    for w in (work(range(4, 8), model_a, 2.0), work(range(8, 12), model_a, 3.0), work(range(12, 16), model_a, 4.0),
              work(range(16, 20), model_a, 5.0)):
        waiting.put(w)
    merged, left = merge_waiting(first, waiting, max_jobs=12)
    # In arrival order, up to max_jobs; a full window takes nothing more from the queue.
    assert [j.offset for j in merged.jobs] == list(range(12)) and left is None
    assert merged.dispatched == 1.0
    assert merged.tokenize_s == pytest.approx(0.3) and merged.cache_s == pytest.approx(0.03)
    # One that does not fit is handed back, not lost or reordered.
    merged, left = merge_waiting(waiting.get_nowait(), waiting, max_jobs=6)
    assert [j.offset for j in merged.jobs] == list(range(12, 16))
    assert left is not None and [j.offset for j in left.jobs] == list(range(16, 20)) and waiting.empty()

    # A micro-batch for another model version (a reload) is never merged into the old one's call.
    waiting.put(work(range(20, 24), model_b, 6.0))
    merged, left = merge_waiting(work(range(16, 20), model_a, 5.0), waiting, max_jobs=100)
    assert [j.offset for j in merged.jobs] == list(range(16, 20)) and left is not None and left.model is model_b


def test_in_flight_limit_follows_the_window_unless_set() -> None:
    assert WorkerSettings(batch_size=64, sort_window=4).in_flight_limit == 6 * 64 * 4
    assert WorkerSettings(batch_size=32, sort_window=1).in_flight_limit == 6 * 32
    assert WorkerSettings(max_in_flight=100).in_flight_limit == 100


def _lab(name: str, score: float) -> LabelOut:
    return LabelOut(label=name, score=score, evidence=[])


def test_alert_rules_single_any_all_and_min_score(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("""
rules:
  - {name: a, label: 暴力催收, min_score: 0.6, topic: t.collect, severity: high}
  - {name: b, all_of: [利率争议, 砍头息], topic: t.lend, severity: high}
  - {name: c, any_of: [隐私泄露, 通讯录爆破], topic: t.priv}
""", encoding="utf-8")
    rules = AlertRules.load(path)
    assert rules.topics == ["t.collect", "t.lend", "t.priv"]

    def fired(*labels: LabelOut) -> list[str]:
        return [f.rule.name for f in rules.evaluate(list(labels))]

    assert fired(_lab("暴力催收", 0.9)) == ["a"]
    assert fired(_lab("暴力催收", 0.55)) == [], "below the rule's min_score"
    assert fired(_lab("利率争议", 0.9)) == [], "all_of needs every label"
    assert fired(_lab("利率争议", 0.9), _lab("砍头息", 0.7)) == ["b"]
    assert fired(_lab("通讯录爆破", 0.5), _lab("暴力催收", 0.8)) == ["a", "c"]
    json_path = tmp_path / "rules.json"
    json_path.write_text(json.dumps({"rules": [{"name": "x", "label": "平台跑路", "topic": "t.p",
                                                "severity": "critical"}]}, ensure_ascii=False), encoding="utf-8")
    assert AlertRules.load(json_path).rules[0].severity == "critical"


def test_alert_rules_reject_bad_files(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AlertRule(name="x", topic="t")  # no condition
    with pytest.raises(ValidationError):
        AlertRule(name="x", label="a", all_of=("b",), topic="t")
    bad = tmp_path / "dupe.yaml"
    bad.write_text("rules:\n  - {name: x, label: a, topic: t}\n  - {name: x, label: b, topic: t}\n")
    with pytest.raises(ValidationError):
        AlertRules.load(bad)


def test_shipped_rules_file_loads_and_unknown_labels_only_warn(caplog: pytest.LogCaptureFixture) -> None:
    from training.synth import LABELS

    rules = AlertRules.load(ROOT / "deploy" / "alert_rules.yaml")
    assert {"fmlc.alerts.collection", "fmlc.alerts.platform", "fmlc.alerts.lending",
            "fmlc.alerts.privacy"} <= set(rules.topics)
    by_name = {r.name: r for r in rules.rules}
    assert any(r.label == "暴力催收" and r.topic == "fmlc.alerts.collection" and r.severity == "high"
               for r in by_name.values())
    assert any(r.label == "平台跑路" and r.severity == "critical" for r in by_name.values())
    assert any(set(r.all_of) == {"利率争议", "砍头息"} and r.topic == "fmlc.alerts.lending" for r in by_name.values())
    assert rules.check_labels(LABELS) == [], "the default rules name labels of the synthetic taxonomy"
    with caplog.at_level("WARNING"):
        problems = rules.check_labels(["暴力催收"])  # a model that knows only one label
    assert problems and "can never fire" in caplog.text
    assert [f.rule.topic for f in rules.evaluate([_lab("暴力催收", 0.99)])] == ["fmlc.alerts.collection"]


def test_settings_from_env_flags_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().create_topics is False, "topics are never created silently by default"
    assert WorkerSettings().dlq_topic == "fmlc.dead-letter"
    monkeypatch.setenv("FMLC_BATCH_SIZE", "12")
    monkeypatch.setenv("FMLC_CREATE_TOPICS", "true")
    monkeypatch.setenv("FMLC_REDIS_URL", "")
    monkeypatch.setenv("FMLC_SASL_PASSWORD", "s3cret")
    s = load_settings(max_wait_ms="7", delivery="exactly_once", batch_size=None)
    assert (s.batch_size, s.max_wait_ms, s.create_topics, s.redis_url, s.delivery) == (12, 7, True, None,
                                                                                       "exactly_once")
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in json.dumps(s.redacted()) and "s3cret" not in repr(s)
    assert "FMLC_SASL_PASSWORD" not in env_for(s)
    # A child started from env_for(s) must see the same settings, None included (no cache stays no cache).
    for key, value in env_for(s).items():
        monkeypatch.setenv(key, value)
    child = WorkerSettings()
    assert child.redis_url is None and child.cpu_threads == s.cpu_threads and child.batch_size == 12
    with pytest.raises(ValueError, match="environment"):
        load_settings(sasl_password="on-the-command-line")
    with pytest.raises(ValueError):
        WorkerSettings(security_protocol="SASL_SSL")  # SASL without credentials


def test_offset_tracker_commits_only_contiguous_acknowledged_offsets() -> None:
    tp = TopicPartition("t", 0)
    tr = OffsetTracker()
    for off in (5, 6, 7, 9):  # 8 is a transaction marker: never delivered, never owed
        tr.add(tp, off)
    assert tr.committable() == {tp: 5} and tr.in_flight == 4
    tr.complete(tp, [6, 7])
    assert tr.committable() == {tp: 5}, "6 and 7 wait for 5"
    tr.complete(tp, [5])
    assert tr.committable() == {tp: 8} and tr.in_flight == 1
    tr.mark_committed({tp: 8})
    assert tr.committable() == {}
    tr.complete(tp, [9])
    assert tr.committable() == {tp: 10}
    tr.add(tp, 10)
    tr.add(tp, 11)
    assert tr.drop([tp]) == {tp: 10} and tr.in_flight == 0
    tr.complete(tp, [10, 11])  # a late acknowledgement of dropped records changes nothing
    assert tr.position(tp) == 10
    assert tr.drop([tp], forget=True) == {tp: 10} and tr.partitions() == []


def test_cache_round_trip_normalised_key_and_outage_backoff() -> None:
    from worker.cache import LabelCache
    from worker.testkit import start_redis

    server = start_redis()
    metrics = WorkerMetrics()
    try:
        cache = LabelCache(server.url, ttl_s=60, metrics=metrics, prefix="unit", socket_timeout_s=0.05, retry_s=0.3)
        labels = [LabelOut(label="暴力催收", score=0.9, evidence=["催收"])]
        key = cache.key("平台暴力催收", "v1")
        assert cache.get_many([key]) == [None]
        cache.put_many([(key, labels)])
        # full-width letters / case / spacing variants share the entry; another model version does not
        assert cache.get_many([cache.key("  平台暴力催收 ", "v1"), key]) == [labels, labels]
        assert cache.get_many([cache.key("平台暴力催收", "v2")]) == [None]
        assert cache.key("ＡＢＣ 借款", "v1") == cache.key("abc   借款", "v1")
        assert metrics.value("fmlc_cache_requests_total", {"result": "hit"}) == 2
        assert metrics.value("fmlc_cache_requests_total", {"result": "miss"}) == 2

        server.process.send_signal(19)  # SIGSTOP: Redis hangs instead of refusing — the worse case
        t0 = time.monotonic()
        assert cache.get_many([key]) == [None]
        assert cache.get_many([key]) == [None]  # in back-off: no network call at all
        cache.put_many([(cache.key("x", "v1"), labels)])
        assert time.monotonic() - t0 < 0.5, "an outage costs one short timeout, then nothing"
        assert metrics.value("fmlc_cache_errors_total") == 1
        assert metrics.value("fmlc_cache_requests_total", {"result": "error"}) == 2
        server.process.send_signal(18)  # SIGCONT
        time.sleep(0.35)
        assert cache.get_many([key]) == [labels], "the cache comes back after the back-off"
    finally:
        server.stop()


class _OomPredictor:
    """Stands in for fmlc.Predictor on CUDA: batches above `limit` run out of memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[int] = []

    def predict_tokens(self, tokens: list[list[str]], batch_size: int | None = None) -> list:
        from fmlc import LabelScore, OutOfMemoryError, Prediction

        self.calls.append(len(tokens))
        if len(tokens) > self.limit:
            raise OutOfMemoryError(f"{len(tokens)} > {self.limit}")
        return [Prediction([LabelScore("暴力催收", 0.9, [t[0]])]) for t in tokens]


def test_out_of_memory_splits_the_batch_and_counts() -> None:
    from worker.model import ServedModel
    from worker.pipeline import predict_isolating, retry_after_oom

    metrics = WorkerMetrics()
    stop = threading.Event()

    def predict(model: ServedModel, tokens: list[list[str]]) -> list:
        # a batch of 8 and a third of a 3 s stall timeout for retrying a single text, as the pipeline gives
        return predict_isolating(model, tokens, 8, metrics, lambda m, t: retry_after_oom(m, t, 1.0, stop, metrics))

    fake = _OomPredictor(limit=2)
    model = ServedModel(predictor=fake, version="v", device="cuda:0", labels=("暴力催收",))  # type: ignore[arg-type]
    results = predict(model, [[f"w{i}"] for i in range(7)])
    assert [r.labels[0].evidence for r in results] == [[f"w{i}"] for i in range(7)], "order is kept"
    assert metrics.value("fmlc_oom_total") == 3  # 7 → 3+4, 3 → 1+2, 4 → 2+2
    assert sum(n for n in fake.calls if n <= 2) == 7, "every text predicted once, in batches that fit"
    # A single text that never fits is retried for a third of the stall timeout, then the worker
    # stops: it is never dead-lettered (tests/test_worker_ops.py has the retry that succeeds).
    from worker.pipeline import FatalError

    one = _OomPredictor(limit=0)
    with pytest.raises(FatalError, match="out of memory"):
        predict(ServedModel(one, "v", "cuda:0", ()), [["x"]])  # type: ignore[arg-type]
    assert len(one.calls) >= 2, "retried after a pause"


def test_local_services_start_and_stop() -> None:
    from worker.testkit import redis_answers, redis_url_or_start

    own = redis_url_or_start("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        assert own.owned and redis_answers(own.url)
        reused = redis_url_or_start(own.url)
        assert not reused.owned and reused.url == own.url
        reused.stop()
        assert redis_answers(own.url), "stop() leaves a Redis it did not start alone"
    finally:
        own.stop()
    assert not redis_answers(own.url)


def test_health_endpoints_answer(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from worker.health import HealthServer

    metrics = WorkerMetrics()
    metrics.messages.labels(outcome="ok").inc(3)
    ready = threading.Event()
    server = HealthServer("127.0.0.1", 0, metrics.registry, live=lambda: (True, {}),
                          ready=lambda: (ready.is_set(), {"why": "test"})).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert 'fmlc_messages_total{outcome="ok"} 3.0' in body
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert err.value.code == 503
        ready.set()
        assert json.loads(urllib.request.urlopen(base + "/readyz", timeout=5).read())["ok"] is True
    finally:
        server.stop()


def test_tokenizer_process_matches_the_models_tokenizer_and_survives_its_child() -> None:
    from fmlc.text import Tokenizer
    from worker.tokenizing import TokenizerProcess

    texts = ["借款平台客服电话打不通，利息太高！！", "", "   ", "😀😀", "提现一直不到账，已经三天了"]
    local = Tokenizer()
    proc = TokenizerProcess()
    try:
        assert proc.tokenize("a", local.to_config(), 256, texts) == [local.tokenize(t) for t in texts]
        assert proc.tokenize("a", local.to_config(), 2, texts[:1]) == [local.tokenize(texts[0])[:2]]
        # Another config in the same child: its own stop words apply.
        other = Tokenizer(stopwords=frozenset({"利息"}))
        assert "利息" not in proc.tokenize("b", other.to_config(), 256, texts[:1])[0]
        # A request the child cannot serve fails alone; the child stays.
        assert proc._proc is not None
        pid = proc._proc.pid
        with pytest.raises(RuntimeError, match="tokenizer process"):
            proc.tokenize("a", local.to_config(), "x", texts[:1])  # type: ignore[arg-type]
        assert proc._proc.pid == pid
        # A child that died is replaced by the next call (the new one is sent the config again).
        proc._proc.kill()
        proc._proc.wait()
        assert proc.tokenize("a", local.to_config(), 256, texts[:1]) == [local.tokenize(texts[0])]
        assert proc._proc.pid != pid
    finally:
        proc.close()
    assert proc._proc is None


def test_tokenizer_setting_is_one_choice_and_defaults_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from worker.settings import WorkerSettings

    assert WorkerSettings().tokenizer == "auto"
    monkeypatch.setenv("FMLC_TOKENIZER", "inline")
    assert WorkerSettings().tokenizer == "inline"
    monkeypatch.setenv("FMLC_TOKENIZER", "thread")
    with pytest.raises(ValidationError, match="tokenizer"):
        WorkerSettings()


def test_poll_errors_are_counted_by_kind() -> None:
    from kafka.errors import CorruptRecordError, KafkaConnectionError, UnsupportedCodecError

    from worker.app import poll_error_kind

    m = WorkerMetrics()
    # Both series exist from the start, so alert rules on rate() see zeros, not gaps.
    for kind in ("undecodable", "other"):
        assert m.registry.get_sample_value("fmlc_poll_errors_total", {"kind": kind}) == 0
    assert poll_error_kind(UnsupportedCodecError("lz4")) == "undecodable"
    assert poll_error_kind(CorruptRecordError("crc")) == "undecodable"
    assert poll_error_kind(KafkaConnectionError()) == "other"


def test_start_up_refuses_a_missing_codec_and_the_producer_compresses(monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka import codec

    from worker.kafka import check_codecs, producer_config

    check_codecs()  # the worker's dependencies bring every codec
    monkeypatch.setattr(codec, "has_lz4", lambda: False)
    from worker import kafka as wk

    monkeypatch.setitem(wk.CODEC_LIBRARIES, "lz4", (codec.has_lz4, "lz4"))
    with pytest.raises(RuntimeError, match=r"lz4 \(pip install lz4\)"):
        check_codecs()
    monkeypatch.undo()

    assert WorkerSettings().compression == "zstd"
    with pytest.raises(ValueError, match="compression"):
        WorkerSettings(compression="brotli")
    for name, expected in (("none", None), ("lz4", "lz4"), ("zstd", "zstd"), ("snappy", "snappy")):
        assert producer_config(WorkerSettings(compression=name))["compression_type"] == expected


def test_an_undecodable_record_nobody_can_locate_stops_the_worker_loudly() -> None:
    from worker.app import WorkerApp

    app = WorkerApp(WorkerSettings())
    app.consumer = object()  # a client that does not say where decoding failed
    app._poll_failed(RuntimeError("LZ4F_decompress failed"))
    live, detail = app._live()
    assert not live and detail["reason"] == "fatal_error"
    assert app.metrics.value("fmlc_poll_errors_total", {"kind": "undecodable"}) == 1


def test_a_dead_letter_of_nothing_is_still_writable() -> None:
    # A tombstone (no key, no value) or an undecodable record: producers refuse key=None, value=None.
    dl = dead_letter(topic="in", partition=0, offset=7, timestamp=None, key=None, value=None, headers=None,
                     reason=DeadLetterReason.UNDECODABLE, error="lz4", max_bytes=1_000)
    assert dl.key is None and dl.value == b""
    assert dict(dl.headers)["fmlc.dlq.reason"] == b"undecodable"


def test_transactional_id_is_group_plus_instance_and_the_consumer_carries_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from worker.kafka import consumer_client_id

    monkeypatch.setenv("FMLC_INSTANCE_ID", "fmlc-worker-7d9f-abcde")
    s = load_settings(group_id="g", delivery="exactly_once")
    assert s.effective_transactional_id() == "g-fmlc-worker-7d9f-abcde"
    assert consumer_client_id(s) == "fmlc-worker.g-fmlc-worker-7d9f-abcde"
    monkeypatch.delenv("FMLC_INSTANCE_ID")
    assert load_settings(group_id="g").effective_transactional_id() == f"g-{socket.gethostname()}"
    assert load_settings(group_id="g", transactional_id="tx").effective_transactional_id() == "tx"
    assert consumer_client_id(load_settings(group_id="g")) == "fmlc-worker", "unchanged without transactions"


# --- rendering and the model call, as plain functions ---------------------------------------------------

def test_render_result_gives_the_output_then_one_alert_per_rule_that_fired() -> None:
    from datetime import datetime, timezone

    from worker.messages import Classified, Timings, render_result, to_bytes

    labels = [LabelOut(label="暴力催收", score=0.91, evidence=["催收"]), LabelOut(label="提现困难", score=0.4)]
    processed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    result = Classified(id="c-1", labels=labels, model_version="fmlc-v1", cached=False, source="app",
                        processed_at=processed, timings=Timings(queue_ms=1.0, total_ms=2.0))
    rules = AlertRules([AlertRule(name="collection", label="暴力催收", topic="alerts.collection", severity="high"),
                        AlertRule(name="both", all_of=("暴力催收", "提现困难"), topic="alerts.both",
                                  severity="critical"),
                        AlertRule(name="unmatched", label="其他", topic="alerts.none", severity="low")])

    out = render_result(result, "labels", rules.evaluate(labels))
    assert out[0] == ("labels", b"c-1", to_bytes(result), [])
    assert [(topic, key, headers) for topic, key, _, headers in out[1:]] == [
        ("alerts.collection", b"c-1", [("fmlc.alert.severity", b"high")]),
        ("alerts.both", b"c-1", [("fmlc.alert.severity", b"critical")])]
    first, both = (json.loads(value) for _, _, value, _ in out[1:])
    assert first["rule"] == "collection" and [lab["label"] for lab in first["labels"]] == ["暴力催收"]
    assert {lab["label"] for lab in both["labels"]} == {"暴力催收", "提现困难"}
    assert first["fired_at"] == json.loads(to_bytes(result))["processed_at"], "fired when it was processed"
    assert first["model_version"] == "fmlc-v1" and first["source"] == "app" and first["id"] == "c-1"
    assert render_result(result, "labels") == out[:1], "no rule fired: the output alone"


def test_render_dead_letter_keeps_the_original_and_says_why() -> None:
    from worker.messages import render_dead_letter

    source = dict(topic="in", partition=2, offset=41, timestamp=1_700_000_000_000, key=b"k",
                  value=b"{not json", headers=[("trace-id", b"t-1")])
    topic, key, value, headers = render_dead_letter(
        **source, invalid=InvalidMessage(DeadLetterReason.NOT_JSON, "line 1"), dlq_topic="dlq", max_bytes=100_000)
    h = dict(headers)
    assert (topic, key, value) == ("dlq", b"k", b"{not json")
    assert h["trace-id"] == b"t-1" and h["fmlc.dlq.reason"] == b"not_json" and h["fmlc.dlq.error"] == b"line 1"
    assert (h["fmlc.dlq.source.topic"], h["fmlc.dlq.source.partition"], h["fmlc.dlq.source.offset"]) == (
        b"in", b"2", b"41")
    # No result and no known reason: a processing error.
    _, _, _, headers = render_dead_letter(**source, invalid=None, dlq_topic="dlq", max_bytes=100_000)
    assert dict(headers)["fmlc.dlq.reason"] == b"processing_error" and dict(headers)["fmlc.dlq.error"] == b"no result"


class _PoisonPredictor:
    """Raises, like a model bug on odd input would, on any batch holding a text 'poison'."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_tokens(self, tokens: list[list[str]], batch_size: int | None = None) -> list:
        from fmlc import LabelScore, Prediction

        self.calls.append(len(tokens))
        if ["poison"] in tokens:
            raise IndexError("index out of range in self")
        return [Prediction([LabelScore("暴力催收", 0.9, [t[0]])]) for t in tokens]


def test_predict_isolating_fails_a_poison_text_alone_without_counting_oom() -> None:
    from fmlc import Prediction
    from worker.model import ServedModel
    from worker.pipeline import predict_isolating

    metrics = WorkerMetrics()
    splits: list[int] = []

    def never(model: ServedModel, tokens: list[list[str]]) -> Prediction | BaseException:
        raise AssertionError("no out-of-memory here: nothing to retry")

    fake = _PoisonPredictor()
    model = ServedModel(predictor=fake, version="v", device="cpu", labels=("暴力催收",))  # type: ignore[arg-type]
    tokens = [["a"], ["b"], ["poison"], ["c"], ["d"]]
    results = predict_isolating(model, tokens, 8, metrics, never, on_split=lambda: splits.append(1))
    assert [type(r).__name__ for r in results] == ["Prediction", "Prediction", "IndexError", "Prediction",
                                                    "Prediction"], "one result per text, in order"
    assert [r.labels[0].evidence for r in results if isinstance(r, Prediction)] == [["a"], ["b"], ["c"], ["d"]]
    assert splits and metrics.value("fmlc_oom_total") == 0
    assert predict_isolating(model, [["a"], ["b"]], 8, metrics, never) and fake.calls[-1] == 2, \
        "one call when all is well"
