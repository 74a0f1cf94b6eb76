"""The model's life after deployment: corrections gathered from a topic (real broker), and the
promotion gate that swaps the served model's symlink."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from training.data import load_path
from worker.corrections import collect, parse_correction
from worker.settings import WorkerSettings


def _topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"corr{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def _send(bootstrap: str, topic: str, values: list[tuple[int, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for partition, value in values:
            producer.send(topic, value=value, partition=partition)
        producer.flush(30)
    finally:
        producer.close(5)


def _corr(cid: str, labels: list[str], text: str = "平台暴力催收，利息太高", source: str = "agent-7") -> bytes:
    return json.dumps({"id": cid, "text": text, "labels": labels, "source": source}, ensure_ascii=False).encode()


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty value"),
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"text": "x", "labels": ["a"]}', "id: missing"),
    (b'{"id": "1", "text": "  \\u200b ", "labels": ["a"]}', "text: must not be empty"),
    (b'{"id": "1", "text": "x", "labels": []}', "labels: must be a non-empty list"),
    (b'{"id": "1", "text": "x", "labels": "a"}', "labels: "),
])
def test_malformed_corrections_say_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_correction(raw)
    assert str(err.value).startswith(reason)


def test_collect_reads_to_the_end_keeps_the_latest_per_id_and_resumes(kafka_broker, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    topic = _topic(kafka_broker.bootstrap)
    settings = WorkerSettings(bootstrap_servers=kafka_broker.bootstrap)
    out = tmp_path / "corrections.jsonl"
    _send(kafka_broker.bootstrap, topic, [
        (0, _corr("c1", ["利率争议"])),
        (1, _corr("c2", ["暴力催收"])),
        (0, b"{broken"),
        (0, _corr("c1", ["利率争议", "违约金计算"])),  # a later correction of c1 wins
        (1, _corr("c3", [])),
    ])
    first = collect(settings, topic, out, group_id=f"g{uuid.uuid4().hex[:6]}-a")
    assert (first.read, first.new_ids, first.updated_ids, first.rows) == (5, 2, 1, 2)
    assert sum(first.malformed.values()) == 2
    rows = {r.id: r for r in load_path(out).records}  # the file is a training file fmlc train accepts
    assert set(rows) == {"c1", "c2"}
    assert rows["c1"].labels == ("利率争议", "违约金计算")

    # Same group again: nothing new is read (offsets were committed) and the file is unchanged.
    group = f"g{uuid.uuid4().hex[:6]}-b"
    collect(settings, topic, out, group_id=group)
    before = out.read_text(encoding="utf-8")
    again = collect(settings, topic, out, group_id=group)
    assert again.read == 0 and out.read_text(encoding="utf-8") == before

    # New corrections after a resume are merged into the existing rows.
    _send(kafka_broker.bootstrap, topic, [(1, _corr("c2", ["提现到账问题"])), (0, _corr("c4", ["暴力催收"]))])
    third = collect(settings, topic, out, group_id=group)
    assert (third.read, third.new_ids, third.updated_ids, third.rows) == (2, 1, 1, 3)
    rows = {r.id: r for r in load_path(out).records}
    assert rows["c2"].labels == ("提现到账问题",) and set(rows) == {"c1", "c2", "c4"}


def test_collect_refuses_a_missing_topic(kafka_broker, tmp_path: Path) -> None:
    settings = WorkerSettings(bootstrap_servers=kafka_broker.bootstrap)
    with pytest.raises(ValueError, match="does not exist"):
        collect(settings, f"missing{uuid.uuid4().hex[:6]}", tmp_path / "c.jsonl", timeout_s=5)
    assert not (tmp_path / "c.jsonl").exists()


def _copy_with_thresholds(src: Path, dst: Path, value: float) -> Path:
    from fmlc import artifact as artifact_io

    art = artifact_io.load(src)
    art.thresholds = art.thresholds * 0 + value
    artifact_io.save(art, dst)
    return dst


def test_promotion_gate_compares_on_the_union_and_refuses_a_worse_model(tiny_model_dir: Path, tiny_splits,
                                                                         tmp_path: Path) -> None:
    from fmlc import Predictor
    from training.promote import Gate, compare, render

    test = tiny_splits["test"]
    texts, label_sets = [d.text for d in test], [d.labels for d in test]
    current = Predictor.load(tiny_model_dir)
    same = compare(Predictor.load(tiny_model_dir), current, texts, label_sets)
    assert same.macro_gain == 0 and same.tail_loss == 0 and same.losers == []
    assert Gate().reasons_to_refuse(same) == []
    assert Gate(min_gain=0.5).reasons_to_refuse(same)  # a required gain the same model cannot show

    mute = Predictor.load(_copy_with_thresholds(tiny_model_dir, tmp_path / "mute", 0.999))
    worse = compare(mute, current, texts, label_sets)
    assert worse.candidate.macro_f1 < worse.current.macro_f1 and worse.losers
    assert all(delta < 0 for _, delta in worse.losers)
    reasons = Gate().reasons_to_refuse(worse)
    assert reasons and "below --min-gain" in reasons[0]
    text = render(worse, reasons)
    assert "labels that lose most" in text and "refused" in text


def test_swap_link_is_atomic_and_only_swaps_links(tmp_path: Path) -> None:
    from training.promote import swap_link

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "models" / "current"
    swap_link(link, a)
    assert link.resolve() == a.resolve()
    swap_link(link, b)
    assert link.resolve() == b.resolve() and link.is_symlink()
    assert os.readlink(link) == "../b"  # relative: the same inside a container mounting tmp_path elsewhere
    assert [p.name for p in link.parent.iterdir()] == ["current"]  # no side link left behind
    with pytest.raises(ValueError, match="not a symlink"):
        swap_link(a, b)


def test_loading_through_a_link_reads_one_directory(tiny_model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The predictor resolves the link once: flipping it after the load started cannot mix files."""
    from fmlc import Predictor
    from fmlc import artifact as artifact_io
    from training.promote import swap_link

    other = _copy_with_thresholds(tiny_model_dir, tmp_path / "other", 0.3)
    link = tmp_path / "current"
    swap_link(link, tiny_model_dir)
    real_load = artifact_io.load

    def flipping_load(path, verify=True):  # the link flips after the load has begun
        swap_link(link, other)
        return real_load(path, verify)

    monkeypatch.setattr(artifact_io, "load", flipping_load)
    predictor = Predictor.load(link)
    tiny = real_load(tiny_model_dir)
    assert predictor.version == artifact_io.read_version(tiny_model_dir)
    assert predictor.thresholds.tolist() == tiny.thresholds.tolist()


def test_review_reasons_and_rate_limit() -> None:
    from fmlc import LabelScore, Prediction
    from worker.review import NEAR_THRESHOLD, NO_LABEL, TokenBucket, review_reason

    sure = Prediction([LabelScore("利率争议", 0.9)], margin=0.4)
    close = Prediction([LabelScore("利率争议", 0.52)], margin=0.02)
    assert review_reason(Prediction([], margin=-0.3), 0.05) == NO_LABEL
    assert review_reason(close, 0.05) == NEAR_THRESHOLD
    assert review_reason(sure, 0.05) is None
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back after half a second at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]


def test_shadow_scores_a_sample_and_survives_its_failures(tiny_model_dir: Path, tiny_splits, tmp_path: Path) -> None:
    from fmlc import Predictor
    from worker.metrics import WorkerMetrics
    from worker.shadow import Sample, ShadowScorer, jaccard, sampled

    assert jaccard([], []) == 1.0 and jaccard(["a"], ["a", "b"]) == 0.5
    ids = [f"c{i}" for i in range(2000)]
    share = sum(sampled(i, 0.25) for i in ids) / len(ids)
    assert 0.2 < share < 0.3 and all(sampled(i, 0.25) == sampled(i, 0.25) for i in ids[:50])

    live = Predictor.load(tiny_model_dir)
    docs = tiny_splits["test"][:40]
    sent: list[tuple[str, bytes, bytes]] = []
    metrics = WorkerMetrics()
    shadow = ShadowScorer(tiny_model_dir, 1.0, "shadow", lambda t, k, v: sent.append((t, k, v)), metrics)
    live_preds = live.predict([d.text for d in docs])
    for doc, pred in zip(docs, live_preds, strict=True):
        shadow.offer(doc.id, doc.text, pred.names, live.version)
    shadow.start()
    deadline = time.monotonic() + 60
    while len(sent) < len(docs) and time.monotonic() < deadline:
        time.sleep(0.05)
    shadow.stop()
    assert len(sent) == len(docs)
    rows = [json.loads(v) for _, _, v in sent]
    assert all(r["jaccard"] == 1.0 for r in rows)  # the same model agrees with itself
    assert metrics.value("fmlc_shadow_agreement_count") == len(docs)
    assert metrics.value("fmlc_shadow_model_info", {"version": live.version}) == 1

    def broken_send(topic: str, key: bytes, value: bytes) -> None:
        raise RuntimeError("broker gone")

    failing = ShadowScorer(tmp_path / "no-model", 1.0, "shadow", broken_send, metrics)
    failing.score([Sample("x", "利息太高", (), "v")])
    assert metrics.value("fmlc_shadow_samples_total", {"result": "error"}) == 1
    working_model_broken_topic = ShadowScorer(tiny_model_dir, 1.0, "shadow", broken_send, metrics)
    working_model_broken_topic.score([Sample("x", "利息太高", (), "v")])
    assert metrics.value("fmlc_shadow_samples_total", {"result": "error"}) == 2


def test_runbook_commands_collect_retrain_and_promote(kafka_broker, tiny_model_dir: Path, tiny_splits,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runbook's path through the CLI: corrections collected from the topic, merged into training
    with --corrections, and the promotion gate refusing (exit 3) and promoting (exit 0)."""
    from typer.testing import CliRunner

    from fmlc.cli import build_app

    app, runner = build_app(), CliRunner()
    topic = _topic(kafka_broker.bootstrap)
    doc = tiny_splits["train"][0]
    _send(kafka_broker.bootstrap, topic, [(0, _corr(doc.id, ["利率争议"], text=doc.text)), (1, b"{bad")])
    monkeypatch.setenv("FMLC_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    out = tmp_path / "corrections.jsonl"
    res = runner.invoke(app, ["corrections", "collect", "--from-topic", topic, "--out", str(out),
                              "--group", f"g{uuid.uuid4().hex[:6]}"])
    assert res.exit_code == 0, res.output
    assert "1 new ids" in res.output and "1 malformed" in res.output

    from training.data import Record, apply_corrections

    base = [Record(d.id, d.text, d.labels) for d in tiny_splits["train"][:50]]
    merged, counts = apply_corrections(base, load_path(out).records)
    assert counts == {"replaced": 1, "added": 1, "corrections": 1} and len(merged) == 50
    assert [r.labels for r in merged if r.id == doc.id] == [("利率争议",)]

    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"id": d.id, "text": d.text, "labels": list(d.labels)}, ensure_ascii=False)
                               + "\n" for d in tiny_splits["test"]), encoding="utf-8")
    link = tmp_path / "models" / "current"
    link.parent.mkdir()
    link.symlink_to(tiny_model_dir.resolve())
    mute = _copy_with_thresholds(tiny_model_dir, tmp_path / "models" / "mute", 0.999)
    args = ["promote", "--current", str(link), "--data", str(heldout), "--link", str(link)]
    refused = runner.invoke(app, [*args, "--candidate", str(mute)])
    assert refused.exit_code == 3, refused.output
    assert "refused" in refused.output and link.resolve() == tiny_model_dir.resolve()
    same = _copy_with_thresholds(tiny_model_dir, tmp_path / "models" / "same", 0.5)
    promoted = runner.invoke(app, [*args, "--candidate", str(same), "--min-gain", "-100", "--max-tail-loss", "100"])
    assert promoted.exit_code == 0, promoted.output
    assert link.resolve() == same.resolve()
    broken = runner.invoke(app, [*args, "--candidate", str(tmp_path / "missing")])
    assert broken.exit_code not in (0, 3)
