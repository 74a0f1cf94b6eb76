"""The tokenizer pool: several jieba children tokenise one micro-batch together, in order, and a
child that dies fails one call only (the worker path with two processes is in test_worker.py)."""

from __future__ import annotations

import os
import signal

import pytest

from fmlc.text import Tokenizer
from worker.tokenizing import TokenizerPool


def texts(n: int) -> list[str]:
    from training.synth import generate

    return [d["text"] for d in generate(n, 4)]


def test_two_processes_split_a_batch_and_keep_its_order() -> None:
    local = Tokenizer()
    restarts: list[str] = []
    pool = TokenizerPool(2, on_restart=restarts.append, min_slice=4)
    try:
        pool.warm_up("a", local.to_config(), 256)
        assert None not in pool.pids and len(set(pool.pids)) == 2, "both children started by the warm-up"
        batch = texts(40)
        assert pool.tokenize("a", local.to_config(), 256, batch) == [local.tokenize(t, 256) for t in batch]
        assert pool.tokenize("a", local.to_config(), 256, batch[:5]) == [local.tokenize(t, 256) for t in batch[:5]]
        assert pool.tokenize("a", local.to_config(), 256, []) == []
        # One child killed. If the pool sees it gone before sending, it starts a new one and the call
        # succeeds; if the request went out first, the call fails (the caller tokenises itself) and
        # the other's reply is still read. Which one happens is the scheduler's, so both are allowed;
        # either way one restart is recorded and the next call has a new child and the right tokens.
        first, second = pool.pids
        os.kill(second, signal.SIGKILL)  # type: ignore[arg-type]
        try:
            assert pool.tokenize("a", local.to_config(), 256, batch) == [local.tokenize(t, 256) for t in batch]
        except RuntimeError as exc:
            assert "tokenizer process" in str(exc)
        assert restarts == ["exited"]
        assert pool.tokenize("a", local.to_config(), 256, batch) == [local.tokenize(t, 256) for t in batch]
        assert pool.pids[0] == first and pool.pids[1] not in (None, second)
    finally:
        pool.close()
    assert pool.pids == [None, None]


def test_a_small_batch_uses_one_child_and_a_pool_needs_one() -> None:
    local = Tokenizer()
    pool = TokenizerPool(3, min_slice=16)
    try:
        assert pool.tokenize("a", local.to_config(), 256, texts(20)) == [local.tokenize(t, 256) for t in texts(20)]
        assert pool.pids[0] is not None and pool.pids[1:] == [None, None], "20 texts: one slice of at least 16"
    finally:
        pool.close()
    with pytest.raises(ValueError, match="at least one process"):
        TokenizerPool(0)


def test_the_pool_bench_helpers() -> None:
    from bench import tokenizer_pool as bt
    from bench.common import machine

    batch = texts(60)
    assert bt.in_process_rate(batch) > 0
    rows = [bt.pool_rate(batch, n, batch=32, repeat=1) for n in (1, 2)]
    assert [r["processes"] for r in rows] == [1, 2] and all(r["texts_per_s"] > 0 for r in rows)
    f = bt.feeding_model(per_process=3000.0, cores=16, model_docs_per_s=60000.0)
    assert f["processes_needed"] == pytest.approx(20.0) and f["processes_available"] == 15 and not f["fed"]
    assert f["feed_ceiling_texts_per_s"] == pytest.approx(45000.0)
    assert bt.feeding_model(3000.0, 16, 600.0)["fed"]
    payload = {"machine": machine(), "usable_cpus": 2, "texts": 60, "batch": 32, "in_process_texts_per_s": 3000.0,
               "rows": [{"processes": 1, "texts_per_s": 2000.0}, {"processes": 2, "texts_per_s": 3000.0}],
               "load_before": (1.0, 1.0, 1.0), "load_after": (2.0, 1.0, 1.0), "sixteen_cores": {"GPU x": f}}
    md = "\n".join(bt.markdown(payload))
    assert "| 2 | 3000 | 1500 | 1.50x |" in md and "| GPU x | 60000 | 20.00 | no (ceiling 45000 texts/s) |" in md


def test_a_worker_with_two_tokenizer_processes_answers_every_message_as_the_model_does(
        kafka_broker, worker_model_dir) -> None:
    import json

    from fmlc import Predictor
    from worker.kafka import ensure_topics
    from worker.testkit import ThreadWorker, TopicReader, message, produce, wait_for, worker_settings

    s = worker_settings(kafka_broker.bootstrap, worker_model_dir, tokenizer="process", tokenizer_processes=2,
                        batch_size=32, max_wait_ms=20)
    ensure_topics(s)
    batch = texts(150)
    produce(kafka_broker.bootstrap, s.input_topic,
            [(f"p{i}".encode(), message(f"p{i}", t)) for i, t in enumerate(batch)], partitions=2)
    reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic, committed_only=False).start()
    w = ThreadWorker(s).start()
    try:
        w.wait_ready(60)
        pool = w.app.pipeline.tokenizer  # type: ignore[union-attr]
        assert pool is not None and pool.size == 2 and None not in pool.pids, "both children up after the warm-up"
        wait_for(lambda: len(reader.records) >= len(batch), 90, "outputs")
    finally:
        w.stop()
        reader.close()
    records = list(reader.records)
    got = {json.loads(r.value)["id"]: [lab["label"] for lab in json.loads(r.value)["labels"]] for r in records
           if r.topic == s.output_topic}
    expected = Predictor.load(worker_model_dir, device="cpu").predict(batch)
    assert got == {f"p{i}": p.names for i, p in enumerate(expected)}, "every text answered with its own tokens"


def test_the_number_of_tokenizer_processes_follows_the_device_unless_set() -> None:
    from worker.model import default_tokenizer_processes, usable_cpus
    from worker.settings import SettingsError, load_settings

    assert default_tokenizer_processes("cpu") == 1, "on the CPU the model needs the cores"
    assert default_tokenizer_processes("cuda:0") == max(1, usable_cpus() - 1)
    assert load_settings().tokenizer_processes is None
    assert load_settings(tokenizer_processes="3").tokenizer_processes == 3
    with pytest.raises(SettingsError, match="FMLC_TOKENIZER_PROCESSES"):
        load_settings(tokenizer_processes=0)
