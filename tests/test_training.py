import numpy as np
import pytest

from fmlc.metrics import evaluate, tune_thresholds
from training.trainer import TrainConfig


def test_tiny_fmlc_clearly_beats_a_frequency_baseline(tiny_training) -> None:
    art = tiny_training.artifact
    prior = np.asarray(art.train_counts, dtype=np.float64) / max(art.train_counts)
    # The baseline gets the same advantage as the model: thresholds tuned on validation.
    from model_fixtures import synthetic_splits

    splits = synthetic_splits()
    from fmlc.metrics import to_matrix

    y_valid = to_matrix([d.labels for d in splits["valid"]], art.labels)
    y_test = to_matrix([d.labels for d in splits["test"]], art.labels)
    base_valid = np.tile(prior, (len(y_valid), 1))
    base_test = np.tile(prior, (len(y_test), 1))
    baseline = evaluate(y_test, base_test, tune_thresholds(y_valid, base_valid))["all"]
    model = tiny_training.metrics["test"]["tuned"]["all"]
    assert model["micro_f1"] > baseline["micro_f1"] + 0.2, (model, baseline)
    assert model["macro_f1"] > baseline["macro_f1"] + 0.1, (model, baseline)


def test_training_history_and_metrics_are_recorded(tiny_training) -> None:
    m = tiny_training.metrics
    assert [h["epoch"] for h in m["history"]][0] == 1
    assert sum(h["best"] for h in m["history"]) == 1
    for split in ("valid", "test"):
        for key in ("threshold_0.5", "tuned"):
            assert {"all", "tail", "p@1", "p@3", "p@5"} <= set(m[split][key])
    assert m["test"]["tuned"]["tail"]["below"] == 100


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig.of(model="svm")
    with pytest.raises(ValueError, match="asl"):
        TrainConfig.of(loss="hinge")
    with pytest.raises(ValueError, match="graph mode"):
        TrainConfig.of(graph="dense")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.of(embedding_dim=64)


def test_train_config_holds_the_network_and_graph_configs() -> None:
    from fmlc.graph import GraphConfig
    from fmlc.models import ModelConfig

    cfg = TrainConfig.of(model="caml", embed_dim=64, filters=32, graph="identity", graph_threshold=0.1, lr=3e-3)
    assert isinstance(cfg.network, ModelConfig) and isinstance(cfg.graph, GraphConfig)
    assert (cfg.model, cfg.network.embed_dim, cfg.network.filters) == ("caml", 64, 32)
    assert (cfg.graph.mode, cfg.graph.threshold, cfg.lr) == ("identity", 0.1, 3e-3)
    assert TrainConfig.of(**cfg.settings()) == cfg  # the flat names round-trip
    # One source: the network's and the graph's defaults are those classes' own.
    default = TrainConfig()
    assert default.graph == GraphConfig()
    assert all(getattr(default.network, f) == getattr(ModelConfig, f) for f in ("embed_dim", "hidden", "graph_dim"))


def test_embedding_init_random_drops_the_word2vec_vectors(tiny_splits) -> None:
    from model_fixtures import TINY

    from training.trainer import _init_model, prepare

    splits = {k: v[:300] for k, v in tiny_splits.items()}
    prep = prepare(splits, TrainConfig.of(model="bigru-lwan", **TINY))
    known = [i for i, tok in enumerate(prep.vocab.tokens) if tok in prep.vectors]
    assert len(known) > 20
    for init, same in (("word2vec", True), ("random", False)):
        net, _ = _init_model(TrainConfig.of(model="bigru-lwan", embedding_init=init, **TINY), prep)
        table = net.embed.table.weight.detach().numpy()
        assert np.allclose(table[known], prep.embeddings[known]) is same, init
        assert not table[0].any()  # padding stays zero either way
        assert 0.05 < table[2:].std() < 1.0, (init, table[2:].std())  # same scale: only the vectors differ
    with pytest.raises(ValueError, match="embedding_init"):
        TrainConfig.of(embedding_init="glove")
