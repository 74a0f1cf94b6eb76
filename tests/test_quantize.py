"""FMLC_QUANTIZE=int8: the setting, the CUDA refusal, the cache key, fmlc_model_info, and int8
predictions against fp32 on the tiny model; one worker run through the real broker and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import SettingsError, WorkerSettings, load_settings


def test_the_setting_accepts_none_and_int8_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().quantize == "none"
    assert load_settings(quantize="INT8 ").quantize == "int8"
    with pytest.raises(SettingsError, match="FMLC_QUANTIZE"):
        load_settings(quantize="fp16")
    monkeypatch.setenv("FMLC_QUANTIZE", "int8")
    assert load_settings().quantize == "int8"
    from worker.__main__ import build_parser

    args = build_parser().parse_args(["--quantize", "none"])
    assert load_settings(**vars(args)).quantize == "none", "the flag overrides the environment"


@pytest.mark.parametrize("device", ["cuda", "cuda:1", " CUDA:0"])
def test_int8_on_a_cuda_device_is_refused_at_settings_validation(device: str) -> None:
    with pytest.raises(SettingsError, match="FMLC_QUANTIZE=int8 runs on the CPU only"):
        load_settings(quantize="int8", device=device)
    assert load_settings(quantize="none", device=device).device == device


def test_int8_on_cuda_is_refused_at_model_load_too() -> None:
    # FMLC_DEVICE unset ("auto") resolves only at model load; the predictor checks the resolved device.
    from fmlc.predictor import check_quantize

    with pytest.raises(ValueError, match="int8 quantisation runs on the CPU only, and the device is cuda"):
        check_quantize("int8", "cuda")
    with pytest.raises(ValueError, match="quantize must be one of none, int8"):
        check_quantize("int4", "cpu")
    assert check_quantize(None, "cuda") == "none"
    assert check_quantize("int8", "cpu") == "int8"


def test_the_cache_key_keeps_fp32_and_int8_apart() -> None:
    from worker.cache import LabelCache, text_digest
    from worker.metrics import WorkerMetrics

    cache = LabelCache("redis://127.0.0.1:1/0", 60, WorkerMetrics(), prefix="p")  # never connected here
    text = "平台暴力催收"
    fp32 = cache.key(text, "fmlc-abc")
    assert fp32 == f"p:labels:fmlc-abc:{text_digest(text)}", "fp32 keys keep their layout: old entries stay valid"
    assert cache.key(text, "fmlc-abc", "none") == fp32
    int8 = cache.key(text, "fmlc-abc", "int8")
    assert int8 != fp32 and "fmlc-abc+int8" in int8


def test_model_info_carries_the_quantisation() -> None:
    from worker.metrics import WorkerMetrics

    m = WorkerMetrics()
    m.set_model("v1", "cpu", "int8")
    assert m.value("fmlc_model_info", {"version": "v1", "device": "cpu", "quantize": "int8"}) == 1
    m.set_model("v2", "cpu")
    assert m.value("fmlc_model_info", {"version": "v1", "device": "cpu", "quantize": "int8"}) == 0
    assert m.value("fmlc_model_info", {"version": "v2", "device": "cpu", "quantize": "none"}) == 1


def jaccard(a: list[str], b: list[str]) -> float:
    return 1.0 if not a and not b else len(set(a) & set(b)) / len(set(a) | set(b))


def test_int8_predictions_agree_with_fp32_on_the_tiny_model(tiny_model_dir: Path, tiny_splits) -> None:
    import torch

    from worker.model import load_model

    fp32 = load_model(tiny_model_dir, "cpu", 1)
    int8 = load_model(tiny_model_dir, "cpu", 1, "int8")
    assert (fp32.quantize, int8.quantize) == ("none", "int8")
    assert any(isinstance(mod, torch.ao.nn.quantized.dynamic.GRU) for mod in int8.predictor.model.modules())
    assert not any(isinstance(mod, torch.ao.nn.quantized.dynamic.GRU) for mod in fp32.predictor.model.modules())
    texts = [d.text for d in tiny_splits["test"]]
    a = fp32.predictor.predict(texts)
    b = int8.predictor.predict(texts)
    scores = [jaccard(x.names, y.names) for x, y in zip(a, b, strict=True)]
    assert sum(scores) / len(scores) >= 0.95, sum(scores) / len(scores)
    assert any(x.to_dict() != y.to_dict() for x, y in zip(a, b, strict=True)), "int8 is not the fp32 model"


def test_an_int8_worker_serves_through_the_broker_with_its_own_cache_keys(
        kafka_broker, redis_server, tiny_model_dir: Path) -> None:
    import redis

    from worker.kafka import ensure_topics
    from worker.testkit import ThreadWorker, TopicReader, message, metric, produce, wait_for, worker_settings

    s = worker_settings(kafka_broker.bootstrap, tiny_model_dir, redis_url=redis_server.url, quantize="int8",
                        batch_size=8)
    ensure_topics(s)
    texts = ["平台暴力催收，天天打电话", "提现一直不到账", "利息太高"]
    produce(kafka_broker.bootstrap, s.input_topic,
            [(f"q{i}".encode(), message(f"q{i}", t)) for i, t in enumerate(texts)])
    reader = TopicReader(kafka_broker.bootstrap, s.output_topic, committed_only=False).start()
    w = ThreadWorker(s).start()
    try:
        w.wait_ready(60)
        wait_for(lambda: len(reader.records) >= 3, 60, "int8 outputs")
        assert metric(w.metrics(), "fmlc_model_info", version=w.app.models.current.version, device="cpu",
                      quantize="int8") == 1
    finally:
        w.stop()
        reader.close()
    keys = redis.Redis.from_url(redis_server.url).keys(f"{s.cache_prefix}:labels:*")
    assert len(keys) == 3 and all(b"+int8:" in k for k in keys), keys


def test_the_quantize_bench_helpers_on_the_tiny_model(tiny_model_dir: Path, tiny_splits) -> None:
    from bench import quantize as bq
    from bench.common import machine
    from fmlc import Predictor

    assert bq.jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3) and bq.jaccard([], []) == 1.0
    test = tiny_splits["test"][:120]
    texts, labels = [d.text for d in test], [d.labels for d in test]
    fp32 = Predictor.load(tiny_model_dir, device="cpu")
    same = bq.agreement(fp32, fp32, texts)
    assert same["mean_jaccard"] == 1.0 and same["identical_sets"] == 1.0, "a model agrees with itself"
    agree = bq.agreement(fp32, Predictor.load(tiny_model_dir, device="cpu", quantize="int8"), texts)
    assert 0.9 <= agree["mean_jaccard"] <= 1.0
    cost = bq.f1_cost(tiny_model_dir, texts, labels)
    assert cost["cost_points"] == pytest.approx(100 * (cost["fp32_macro_f1"] - cost["int8_macro_f1"]))
    assert cost["fp32_macro_f1"] == pytest.approx(bq.macro_f1(fp32, texts, labels))
    other = bq.other_cpu_path(tiny_model_dir, texts, labels, batch_size=16, compile_model=False)
    assert other["rows"]["fp32"]["docs_per_s"] > 0 and other["rows"]["int8"]["docs_per_s"] > 0
    assert other["keep_other_path"] is None and "error" in other["rows"]["fp32 + torch.compile"]
    payload = {"machine": machine(), "model": "tiny", "f1": [{"what": "tiny test", **cost}], "agreement": agree,
               "other_path": other, "not_measured": "nothing",
               "worker": {"rounds": 2, "messages": 10, "fp32_docs_per_s": [100.0, 110.0],
                          "int8_docs_per_s": [180.0, 170.0],
                          "int8_over_fp32_per_round": [1.8, 170 / 110], "int8_over_fp32_median": 1.6727,
                          "fp32_model_stage_ms_per_doc": [4.0, 4.2], "int8_model_stage_ms_per_doc": [2.0, 2.1],
                          "duplicates": 0}}
    md = "\n".join(bq.markdown(payload))
    assert "Median int8 / fp32: 1.67x** (target >= 1.6x: met)" in md and "| 1 | 110 | 170 | 1.55 |" in md
    assert "Not measured here: nothing" in md
    del payload["not_measured"]
    payload["about"] = "Model: trained to early stopping."
    md = "\n".join(bq.markdown(payload))
    assert "Not measured" not in md and md.endswith("Model: trained to early stopping.")


def test_fmlc_predict_takes_quantize_and_refuses_an_unknown_mode(tiny_model_dir: Path) -> None:
    import json

    from typer.testing import CliRunner

    from fmlc.cli import build_app

    runner, app = CliRunner(), build_app()
    text = "平台暴力催收，天天打电话骚扰我家人"
    ok = runner.invoke(app, ["predict", "--model", str(tiny_model_dir), "--quantize", "int8", "--device", "cpu", text])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output.splitlines()[0])["text"] == text
    bad = runner.invoke(app, ["predict", "--model", str(tiny_model_dir), "--quantize", "int4", text])
    assert bad.exit_code == 2 and "quantize must be one of none, int8" in bad.output


def test_the_quantize_bench_scores_the_test_part_fmlc_train_holds_out(tmp_path: Path) -> None:
    import json

    from bench.quantize import records_to_score
    from training.data import load_path, split_records

    data = tmp_path / "data.jsonl"
    rows = [{"id": str(i), "text": f"第{i}条投诉 利息太高 催收", "labels": ["利率争议" if i % 2 else "暴力催收"]}
            for i in range(60)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    everything = records_to_score(data, test_part=False)
    held_out = records_to_score(data, test_part=True)
    assert len(everything) == 60
    expected = split_records(load_path(data).records, seed=0)["test"]
    assert [r.id for r in held_out] == [r.id for r in expected] and 0 < len(held_out) < 60
