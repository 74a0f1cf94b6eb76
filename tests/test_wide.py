"""FMLC wide & deep: the blend of the linear and the FMLC path, how its weights are chosen on
validation, training it, serving it, and the learning curves built from its runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import TINY, synthetic_splits

from fmlc.metrics import per_label_f1, tune_thresholds
from fmlc.models import ModelConfig, build_model
from training.wide import choose_blend, fit_weights, keeps_rule


def _wide(n_labels: int = 3, vocab: int = 40) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(ModelConfig(model="fmlc-wide", vocab_size=vocab, n_labels=n_labels, embed_dim=8, hidden=8,
                                  attn_dim=8, graph_dim=8))
    with torch.no_grad():  # a fitted-looking wide path: some idf and weights
        net.wide.idf.uniform_(0.5, 2.0)
        net.wide.coef.normal_(0, 3.0)
        net.wide.intercept.normal_(0, 1.0)
    return net.eval()


def test_the_blend_weight_moves_each_label_from_one_path_to_the_other() -> None:
    net = _wide()
    ids = torch.randint(2, 40, (4, 12))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 8:] = False
    with torch.no_grad():
        p_wide = torch.sigmoid(net.wide(ids, mask).logits)
        p_deep = torch.sigmoid(net.deep(ids, mask).logits)
        net.set_blend(torch.tensor([0.0, 1.0, 0.25]))
        out = net(ids, mask)
    p = torch.sigmoid(out.logits)
    torch.testing.assert_close(p[:, 0], p_deep[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, 1], p_wide[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, 2], 0.25 * p_wide[:, 2] + 0.75 * p_deep[:, 2], atol=1e-5, rtol=0)
    # Evidence: one distribution over positions per label, nothing on padding.
    assert out.attention.shape == (4, 3, 12)
    torch.testing.assert_close(out.attention.sum(-1)[0], torch.ones(3), atol=1e-4, rtol=0)
    assert float(out.attention[0, :, 8:].abs().max()) < 1e-6
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        net.set_blend(torch.tensor([0.0, 1.5, 0.0]))


def test_choose_blend_takes_each_label_from_the_path_that_reads_it() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((300, 2)) < 0.3
    noise = rng.random((300, 2))
    wide = np.where(np.arange(2) == 0, y * 0.8 + 0.1, noise)  # label 0: the linear path is right
    deep = np.where(np.arange(2) == 1, y * 0.8 + 0.1, noise)  # label 1: the FMLC path is right
    blend = choose_blend(y, wide.astype(np.float32), deep.astype(np.float32))
    assert blend.strategy == "per-label" and blend.weights[0] > 0.5 and blend.weights[1] < 0.5
    assert keeps_rule(blend.cross_fitted, "per-label")
    with pytest.raises(ValueError, match="shapes differ"):
        choose_blend(y, wide[:, :1], deep)
    with pytest.raises(ValueError, match="at least 10 documents"):
        choose_blend(y[:6], wide[:6], deep[:6])


def test_a_linear_path_of_noise_is_not_blended_in_although_it_helps_in_sample() -> None:
    # Per-label weights fitted and scored on the same small validation set find "help" in noise;
    # cross-fitting sees that it does not carry to unseen documents and keeps FMLC alone.
    rng = np.random.default_rng(3)
    y = rng.random((160, 12)) < 0.15
    deep = np.clip(y * 0.25 + rng.random(y.shape) * 0.75, 0, 1).astype(np.float32)
    wide = rng.random(y.shape).astype(np.float32)
    in_sample = fit_weights("per-label", y, wide, deep)
    assert (in_sample > 0).any()
    blend = choose_blend(y, wide, deep)
    assert blend.strategy == "fmlc" and not blend.weights.any()
    figures = blend.cross_fitted
    assert figures["fmlc"]["macro_f1"] > max(figures["per-label"]["macro_f1"], figures["linear"]["macro_f1"])
    assert choose_blend(y, wide, deep).cross_fitted == figures  # the folds are seeded


def test_one_shared_weight_wins_when_both_paths_carry_the_same_signal_with_independent_noise() -> None:
    rng = np.random.default_rng(5)
    y = rng.random((400, 8)) < 0.2
    wide = np.clip(y * 0.3 + rng.random(y.shape) * 0.7, 0, 1).astype(np.float32)
    deep = np.clip(y * 0.3 + rng.random(y.shape) * 0.7, 0, 1).astype(np.float32)
    blend = choose_blend(y, wide, deep, tail=np.arange(8) < 3)
    assert blend.strategy == "shared" and 0 < blend.shared < 1
    np.testing.assert_array_equal(blend.weights, np.full(8, blend.shared, dtype=np.float32))
    figures = blend.cross_fitted
    # Averaging two independent noisy views beats either alone, out of fold, on both figures.
    for key in ("macro_f1", "tail_macro_f1"):
        assert figures["shared"][key] > max(figures["fmlc"][key], figures["linear"][key])


def test_per_label_weights_are_never_below_either_path_label_by_label_in_sample() -> None:
    rng = np.random.default_rng(1)
    y = rng.random((200, 6)) < 0.2
    wide = np.clip(y * 0.3 + rng.random((200, 6)) * 0.7, 0, 1).astype(np.float32)
    deep = np.clip(y * 0.2 + rng.random((200, 6)) * 0.8, 0, 1).astype(np.float32)
    weights = fit_weights("per-label", y, wide, deep)
    mixed = weights * wide + (1 - weights) * deep
    f1 = per_label_f1(y, mixed >= tune_thresholds(y, mixed))
    for path in (wide, deep):
        assert (f1 >= per_label_f1(y, path >= tune_thresholds(y, path)) - 1e-9).all()
    with pytest.raises(ValueError, match="unknown blend strategy"):
        fit_weights("average", y, wide, deep)


@pytest.fixture(scope="module")
def wide_training(tmp_path_factory: pytest.TempPathFactory):
    from training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "tiny-wide"
    return train(synthetic_splits(1200, seed=4), TrainConfig.of(model="fmlc-wide", **TINY), out)


def test_training_records_both_paths_and_the_blend_keeps_the_default_rule_out_of_fold(wide_training) -> None:
    metrics = wide_training.metrics
    parts = metrics["components"]
    weights = np.asarray(parts["blend"]["weights"])
    assert weights.shape == (metrics["labels"],) and set(np.unique(weights)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    # The rule is kept where it can be judged fairly: on validation documents the blend was not fitted on.
    blend = parts["blend"]
    assert set(blend["cross_fitted"]) == {"fmlc", "linear", "shared", "per-label"}
    assert keeps_rule(blend["cross_fitted"], blend["strategy"])
    if blend["strategy"] in ("fmlc", "linear"):  # one path alone: the model is that path
        assert metrics["valid"]["tuned"]["all"]["macro_f1"] == parts[blend["strategy"]]["valid"]["all"]["macro_f1"]
    saved = json.loads((wide_training.path / "metrics.json").read_text())
    assert saved["components"]["blend"]["weights"] == parts["blend"]["weights"]


def test_the_fmlc_path_of_a_wide_run_is_the_model_fmlc_trains_alone() -> None:
    # What lets the experiment grid take its FMLC/ASL row from the wide & deep run instead of training it twice.
    from training.trainer import TrainConfig, fit, prepare

    tiny = TINY | {"epochs": 2}
    prep = prepare(synthetic_splits(500, seed=6), TrainConfig.of(model="fmlc", **tiny))
    alone = fit(prep, TrainConfig.of(model="fmlc", **tiny))
    path = fit(prep, TrainConfig.of(model="fmlc-wide", **tiny), fmlc_path=True).fmlc_path
    assert path is not None and path.artifact.model_config.model == "fmlc"
    for split in ("valid", "test"):
        for key in ("all", "tail"):
            assert path.metrics[split]["tuned"][key] == alone.metrics[split]["tuned"][key]
    np.testing.assert_array_equal(path.artifact.thresholds, alone.artifact.thresholds)
    def timeless(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert timeless(path.history) == timeless(alone.history)
    for name, tensor in alone.artifact.state_dict.items():
        torch.testing.assert_close(path.artifact.state_dict[name], tensor, rtol=0, atol=0)
    assert fit(prep, TrainConfig.of(model="fmlc-wide", **tiny)).fmlc_path is None  # only when asked for


def test_the_served_wide_model_is_the_blend_of_its_paths(wide_training) -> None:
    from fmlc.predictor import Predictor

    predictor = Predictor.load(wide_training.path)
    net = predictor.model
    texts = ["平台暴力催收，每天打电话骚扰我的家人", "提现三天了还没有到账，客服不回复",
             "利息太高，合同写的年化利率不对"]
    tokens = predictor.tokenize(texts)
    ids = [predictor.artifact.vocab.encode(t, predictor.max_len) for t in tokens]
    from fmlc.batching import pad_batch

    batch, mask = pad_batch(ids, torch.device("cpu"))
    with torch.no_grad():
        expected = (net.blend * torch.sigmoid(net.wide(batch, mask).logits)
                    + (1 - net.blend) * torch.sigmoid(net.deep(batch, mask).logits))
    np.testing.assert_allclose(predictor.scores(tokens), expected.numpy(), atol=1e-5)
    for prediction, doc in zip(predictor.predict(texts), tokens, strict=True):
        for label in prediction.labels:  # evidence tokens come from the text
            assert label.evidence and set(label.evidence) <= set(doc)
    int8 = Predictor.load(wide_training.path, quantize="int8")  # the wide path is left in fp32
    assert np.abs(int8.scores(tokens) - predictor.scores(tokens)).max() < 0.1


def test_curves_write_one_point_per_size_with_three_rows_and_resume(tmp_path: Path) -> None:
    from training.curves import CurvesConfig, parse_sizes, run
    from training.synth import write_jsonl

    data = tmp_path / "synth.jsonl"
    write_jsonl(data, 700, 5)
    base = {k: v for k, v in TINY.items() if k not in ("progress",)} | {"epochs": 2}
    cfg = CurvesConfig(data=str(data), out=str(tmp_path / "curves"), sizes=parse_sizes("150,all"), base=base)
    results = run(cfg)
    points = results["points"]
    assert sorted(p["train_docs"] for p in points.values()) == [150, results["split_sizes"]["train"]]
    for point in points.values():
        for path in ("linear", "fmlc", "fmlc-wide"):
            assert 0 <= point[path]["test"]["macro_f1"] <= 1
        # Refitted on all of validation, a blend is never below either path there (its β grid holds 0
        # and 1); a path kept alone scores what that path scores.
        chosen, valid = point["blend"]["strategy"], point["fmlc-wide"]["valid"]["macro_f1"]
        if chosen in ("fmlc", "linear"):
            assert valid == pytest.approx(point[chosen]["valid"]["macro_f1"], abs=1e-3)
        else:
            assert valid >= max(point["linear"]["valid"]["macro_f1"], point["fmlc"]["valid"]["macro_f1"]) - 1e-9
    for point in points.values():  # each point's probabilities, by split and path, beside the report
        size = point["train_docs"]
        with np.load(tmp_path / "curves" / "split" / "scores" / f"{size}-seed0.npz", allow_pickle=False) as saved:
            assert {"valid", "test", "valid/linear", "valid/fmlc", "test/linear", "test/fmlc", "y/test"} <= set(saved)
            assert saved["test/fmlc"].shape == saved["y/test"].shape == (results["split_sizes"]["test"],
                                                                          point["labels"])
    report = (tmp_path / "curves" / "report.md").read_text()
    assert report.count("| 1 |") == 2 and "FMLC wide & deep" in report
    for point in points.values():  # each point names the blend its cross-fitting kept
        assert f"{point['train_docs']}: {point['blend']['strategy']} (holds)" in report
    assert (tmp_path / "curves" / "curves.png").stat().st_size > 5000
    mtime = (tmp_path / "curves" / "results.json").stat().st_mtime_ns
    assert run(cfg)["points"] == points  # finished points are kept, not trained again
    assert (tmp_path / "curves" / "results.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="comma-separated"):
        parse_sizes("1000,lots")
    from training.curves import write_index

    index = write_index(tmp_path)
    assert index.count("| [curves](curves/report.md) |") == 2 and "holds" in index and "fails" not in index

    # The blend study reads the same saved probabilities: it picks what training picked, and FMLC alone
    # and linear alone score on test exactly what the point recorded for its two paths.
    from training.blend_study import study

    for point in points.values():
        one = study(tmp_path / "curves" / "split" / "scores" / f"{point['train_docs']}-seed0.npz")
        assert one["chosen"] == point["blend"]["strategy"]
        recorded = point["blend"]["cross_fitted"][one["chosen"]]
        figures = one["strategies"][one["chosen"]]
        assert figures["out_of_fold"] == {k: recorded[k] for k in ("macro_f1", "tail_macro_f1")}
        assert len(recorded["fold_macro_f1"]) == 15  # 5 folds, 3 reshuffles
        for path in ("fmlc", "linear"):
            assert one["strategies"][path]["test"]["macro_f1"] == pytest.approx(point[path]["test"]["macro_f1"])
        assert one["strategies"][one["chosen"]]["test"]["macro_f1"] == pytest.approx(
            point["fmlc-wide"]["test"]["macro_f1"], abs=1e-3)
    from typer.testing import CliRunner

    from training.cli import app

    table = CliRunner().invoke(app, ["blend-study", *map(str, sorted((tmp_path / "curves" / "split" / "scores")
                                                                     .glob("*.npz")))])
    assert table.exit_code == 0, table.output
    for point in points.values():
        assert f"/curves {point['train_docs']}-seed0 |" in table.output
    assert "picked the way best on test in" in table.output
    np.savez(tmp_path / "not-wide.npz", valid=np.zeros((3, 2)))
    failed = CliRunner().invoke(app, ["blend-study", str(tmp_path / "not-wide.npz")])
    assert failed.exit_code != 0 and "lacks valid/linear" in failed.output


@pytest.mark.slow
def test_the_worker_serves_the_default_model_with_evidence(kafka_broker, redis_server, wide_training) -> None:
    from training.synth import generate
    from worker.testkit import ThreadWorker, TopicReader, message, produce, worker_settings

    s = worker_settings(kafka_broker.bootstrap, wide_training.path, redis_url=redis_server.url, batch_size=16,
                        max_wait_ms=20)
    items = [(f"w-{i:03d}", d["text"]) for i, d in enumerate(generate(40, 21))]
    with ThreadWorker(s) as w:
        w.wait_ready()
        produce(kafka_broker.bootstrap, s.input_topic, [(cid.encode(), message(cid, text)) for cid, text in items])
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        reader.wait(lambda r: len(r) >= len(items), 60, "40 outputs")
        outs = reader.drain()
        reader.close()
        model = w.app.model
        assert model is not None and model.version == wide_training.version
        served = {json.loads(r.value)["id"]: json.loads(r.value) for r in outs}
        assert set(served) == {cid for cid, _ in items}
        # The worker's labels are the Predictor's, and every label carries evidence from its text.
        # (Other batch shapes can move a score near its threshold by float rounding: allow two texts.)
        texts = [text for _, text in items]
        expected = model.predictor.predict(texts)
        same = sum({lab["label"] for lab in served[cid]["labels"]} == {lab.label for lab in prediction.labels}
                   for (cid, _), prediction in zip(items, expected, strict=True))
        assert same >= len(items) - 2
        for (cid, _), tokens in zip(items, model.predictor.tokenize(texts), strict=True):
            for lab in served[cid]["labels"]:
                assert lab["evidence"] and set(lab["evidence"]) <= set(tokens)
        assert w.stop() == 0


def test_the_default_is_wide_and_deep_and_the_paper_preset_is_the_papers_model() -> None:
    from training.trainer import TrainConfig

    assert TrainConfig().model == "fmlc-wide"
    assert TrainConfig.from_preset("paper").model == "fmlc"
    assert TrainConfig.from_preset("paper", model="fmlc-wide").model == "fmlc-wide"  # an explicit choice wins


def test_the_bench_serves_the_fmlc_path_of_a_wide_model_alone(wide_training) -> None:
    from bench.model_speed import deep_path
    from fmlc.batching import pad_batch
    from fmlc.predictor import Predictor

    wide = Predictor.load(wide_training.path)
    deep = Predictor(deep_path(wide.artifact))
    tokens = wide.tokenize(["平台暴力催收，每天打电话骚扰我的家人", "提现三天了还没有到账"])
    batch, mask = pad_batch([wide.artifact.vocab.encode(t, wide.max_len) for t in tokens], torch.device("cpu"))
    with torch.no_grad():
        expected = torch.sigmoid(wide.model.deep(batch, mask).logits).numpy()
    np.testing.assert_allclose(deep.scores(tokens), expected, atol=1e-6)
    assert type(deep.model).__name__ == "FMLC"
