import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from fmlc.metrics import evaluate, precision_at_k, to_matrix, tune_thresholds


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 12)) < 0.2).astype(int)
    y[:, 11] = 0  # a label absent from the evaluated data
    scores = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    return y, scores


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_prf_agree_with_sklearn(data: tuple[np.ndarray, np.ndarray], average: str) -> None:
    y, scores = data
    pred = (scores >= 0.5).astype(int)
    result = evaluate(y, scores, 0.5)["all"]
    kw = {"average": average, "zero_division": 0}
    assert result[f"{average}_f1"] == pytest.approx(f1_score(y, pred, **kw))
    assert result[f"{average}_p"] == pytest.approx(precision_score(y, pred, **kw))
    assert result[f"{average}_r"] == pytest.approx(recall_score(y, pred, **kw))
    assert result["labels"] == 12 and result["labels_with_support"] == 11


def test_tail_block_uses_train_counts(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, scores = data
    counts = [500] * 6 + [10] * 6
    result = evaluate(y, scores, 0.5, counts, tail_below=100)
    pred = (scores >= 0.5).astype(int)
    assert result["tail"]["labels"] == 6
    assert result["tail"]["macro_f1"] == pytest.approx(f1_score(y[:, 6:], pred[:, 6:], average="macro",
                                                                 zero_division=0))


def test_precision_at_k_by_hand() -> None:
    y = np.array([[1, 0, 0, 1], [0, 1, 0, 0]])
    s = np.array([[0.9, 0.8, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    assert precision_at_k(y, s, 1) == pytest.approx(0.5)
    assert precision_at_k(y, s, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_tuned_thresholds_never_lower_validation_f1(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, scores = data
    tuned = tune_thresholds(y, scores)
    assert tuned[11] == pytest.approx(0.5)  # no positives: left at the default
    assert evaluate(y, scores, tuned)["all"]["macro_f1"] >= evaluate(y, scores, 0.5)["all"]["macro_f1"]


def test_min_f1_keeps_the_default_for_a_label_tuning_cannot_separate() -> None:
    # Label 0: its one positive scores below most negatives (an SVM margin through a sigmoid), so the
    # best F1 on the grid is a tiny one bought by marking nearly everything positive.
    rng = np.random.default_rng(0)
    scores = np.column_stack([rng.uniform(0.2, 0.3, 500), rng.uniform(0.0, 0.4, 500)])
    y = np.zeros((500, 2), dtype=bool)
    y[0, 0], scores[0, 0] = True, 0.16
    y[:50, 1] = True
    scores[:50, 1] = 0.9  # label 1 separates cleanly
    free = tune_thresholds(y, scores)
    assert free[0] <= 0.16  # the flood: every document is above it
    guarded = tune_thresholds(y, scores, min_f1=0.1)
    assert guarded[0] == pytest.approx(0.5)
    assert guarded[1] == pytest.approx(free[1]) and 0.4 < guarded[1] <= 0.9


def test_to_matrix_ignores_unknown_labels() -> None:
    m = to_matrix([["a", "zz"], ["b"]], ["a", "b"])
    np.testing.assert_array_equal(m, [[1, 0], [0, 1]])


def test_precision_at_k_ties_rank_in_label_order() -> None:
    y = np.array([[0, 1, 0], [1, 0, 0]])
    flat = np.full((2, 3), 0.5)
    # Equal scores: label 0 ranks first, then 1, then 2.
    assert precision_at_k(y, flat, 1) == pytest.approx(0.5)  # doc 1 hits (label 0), doc 0 misses
    assert precision_at_k(y, flat, 2) == pytest.approx(0.5)
    assert precision_at_k(y[:, ::-1].copy(), flat, 1) == pytest.approx(0.0)


def test_unknown_labels_count_the_positives_to_matrix_leaves_out() -> None:
    from fmlc.metrics import unknown_labels

    sets = [["a", "x"], ["x", "x"], ["b"], ["y"]]
    assert unknown_labels(sets, ["a", "b"]) == {"x": 2, "y": 1}
    assert to_matrix(sets, ["a", "b"]).sum() == 2  # the 3 unknown positives are gone
