import numpy as np
import pytest

from fmlc.graph import (
    GraphConfig,
    build_adjacency,
    conditional_probabilities,
    cooccurrence_counts,
    label_statistics,
)


def _toy() -> np.ndarray:
    # labels: 0 逾期费用, 1 违约金计算, 2 暴力催收, 3 rare
    rows = [[1, 1, 0, 0]] * 6 + [[1, 0, 0, 0]] * 2 + [[0, 0, 1, 0]] * 5 + [[0, 1, 1, 1]] * 1 + [[0, 1, 0, 0]] * 2
    return np.array(rows, dtype=np.float32)


def test_conditional_probabilities_on_toy_table() -> None:
    counts = cooccurrence_counts(_toy())
    assert counts[0, 0] == 8 and counts[1, 1] == 9 and counts[0, 1] == 6
    probs = conditional_probabilities(counts)
    assert probs[0, 1] == pytest.approx(6 / 8)  # P(违约金 | 逾期)
    assert probs[1, 0] == pytest.approx(6 / 9)
    assert probs[3, 2] == pytest.approx(1.0)  # one shared document


def test_threshold_min_count_and_reweighting() -> None:
    adj = build_adjacency(_toy(), GraphConfig(threshold=0.4, min_count=2, neighbour_weight=0.25))
    np.testing.assert_allclose(adj.sum(axis=1), 1.0, rtol=1e-6)
    assert adj[0, 1] == pytest.approx(0.25) and adj[0, 0] == pytest.approx(0.75)
    assert adj[1, 0] == pytest.approx(0.25)
    # rare label 3 co-occurs with 2 once: P = 1.0 but a single document is not an edge
    assert adj[3, 2] == 0.0 and adj[3, 3] == 1.0
    # P(暴力催收 | 违约金) = 1/9 is below the threshold
    assert adj[1, 2] == 0.0


def test_label_statistics_on_toy_table() -> None:
    y = _toy()
    stats = label_statistics(y, build_adjacency(y, GraphConfig(threshold=0.4, min_count=2)), tail_below=3)
    # edges 0->1 and 1->0 only; label 3 (1 document) is the one tail label and has no neighbour
    assert stats["edges"] == 2 and stats["labels_with_neighbours"] == 2
    assert stats["tail_labels"] == 1 and stats["tail_labels_with_neighbours"] == 0
    assert stats["multi_label_docs"] == pytest.approx(7 / 16)
    assert stats["mean_labels_per_doc"] == pytest.approx(round(24 / 16, 3))
    assert label_statistics(y, np.eye(4, dtype=np.float32), tail_below=3)["edges"] == 0


def test_identity_mode() -> None:
    np.testing.assert_array_equal(build_adjacency(_toy(), GraphConfig(mode="identity")), np.eye(4))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="graph mode"):
        GraphConfig(mode="full")
    with pytest.raises(ValueError, match="threshold"):
        GraphConfig(threshold=1.5)
