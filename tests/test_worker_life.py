"""The model's life in the running worker, through the real broker: drift scores that rise when the
input mix shifts, review copies beside unchanged outputs, and a shadow model that scores a sample
without touching the outputs (and whose failures do not stop the worker)."""

from __future__ import annotations

import json
from pathlib import Path

from training.synth import LABEL_GROUPS, generate
from worker.review import REASONS
from worker.testkit import (
    Broker,
    ThreadWorker,
    TopicReader,
    message,
    produce,
    uid,
    wait_for,
    worker_settings,
)


def _texts(n: int, seed: int, group: str | None = None) -> list[str]:
    """Synthetic complaints; with `group`, only those whose labels all belong to that group."""
    out = []
    for doc in generate(n * (8 if group else 1), seed):
        if group is None or all(LABEL_GROUPS.get(lab) == group for lab in doc["labels"]):
            out.append(doc["text"])
    return out[:n]


def test_drift_rises_on_a_shifted_mix_review_copies_and_shadow_agree(kafka_broker: Broker,
                                                                       worker_model_dir: Path) -> None:
    u = uid()
    s = worker_settings(kafka_broker.bootstrap, worker_model_dir, drift_window=120, drift_min_docs=60,
                        review_topic=f"t{u}.review", review_margin=0.15, review_max_per_s=1000,
                        shadow_model_path=worker_model_dir, shadow_sample=1.0, shadow_topic=f"t{u}.shadow")
    usual = _texts(120, seed=21)
    groups = sorted({g for g in LABEL_GROUPS.values()})
    shifted = max((_texts(120, seed=22, group=g) for g in groups), key=len)
    assert len(shifted) >= 60
    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic,
                [(f"u{i}".encode(), message(f"u{i}", text)) for i, text in enumerate(usual)])
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(usual), 60, "usual mix answered")
        groups_seen = w.app.metrics.drift._metrics
        assert groups_seen, "drift scores exported once the window held min_docs"
        before = max(w.metric("fmlc_drift_score", group=g[0]) for g in groups_seen)
        assert w.metric("fmlc_drift_window_docs") == len(usual)

        produce(kafka_broker.bootstrap, s.input_topic,
                [(f"s{i}".encode(), message(f"s{i}", text)) for i, text in enumerate(shifted)])
        total = len(usual) + len(shifted)
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == total, 60, "shifted mix answered")
        after = max(w.metric("fmlc_drift_score", group=g[0]) for g in w.app.metrics.drift._metrics)
        assert after > 0.25 and after > 2 * before, (before, after)

        outs = TopicReader(kafka_broker.bootstrap, s.output_topic).drain()
        assert len(outs) == total, "review copies and the shadow leave the outputs as they were"
        reviews = TopicReader(kafka_broker.bootstrap, s.review_topic).drain()
        assert reviews
        wait_for(lambda: sum(w.metric("fmlc_review_total", reason=r) for r in REASONS) == len(reviews), 10,
                 "every review copy counted")
        by_id = {json.loads(r.value)["id"]: json.loads(r.value) for r in outs}
        for rec in reviews:
            copy = json.loads(rec.value)
            assert copy["reason"] in REASONS and copy["labels"] == [lab["label"] for lab in by_id[copy["id"]]["labels"]]
            assert len(copy["candidates"]) == 3

        wait_for(lambda: w.metric("fmlc_shadow_samples_total", result="scored") == total, 60, "shadow scored all")
        shadow = TopicReader(kafka_broker.bootstrap, s.shadow_topic, committed_only=False).drain()
        assert len(shadow) == total
        assert all(json.loads(r.value)["jaccard"] == 1.0 for r in shadow)  # the same model agrees with itself
        assert w.metric("fmlc_shadow_agreement_count") == total


def test_a_shadow_that_cannot_load_never_stops_the_worker(kafka_broker: Broker, worker_model_dir: Path,
                                                          tmp_path: Path) -> None:
    s = worker_settings(kafka_broker.bootstrap, worker_model_dir, shadow_model_path=tmp_path / "missing",
                        shadow_sample=1.0, shadow_topic=f"t{uid()}.shadow")
    texts = _texts(30, seed=23)
    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic, [(f"m{i}".encode(), message(f"m{i}", t))
                                                        for i, t in enumerate(texts)])
        wait_for(lambda: w.metric("fmlc_messages_total", outcome="ok") == len(texts), 60, "answered")
        wait_for(lambda: w.metric("fmlc_shadow_samples_total", result="error") == len(texts), 30, "shadow errors")
        assert w.alive
