"""Drift scores: PSI of the recent group-score histograms against the training baseline."""

from __future__ import annotations

import numpy as np
import pytest

from fmlc.drift import MAX_GROUPS, Baseline, DriftMonitor, build_baseline, label_groups, psi


def test_groups_come_from_the_taxonomy_or_the_parent_name_and_stay_bounded() -> None:
    assert label_groups(["司法行为-起诉", "财经/交易-上市", "盗窃"]) == ["司法行为", "财经", "all"]
    assert label_groups(["利率争议", "x-y"], {"利率争议": "借贷费用"}) == ["借贷费用", "x"]
    many = label_groups([f"g{i}-a" for i in range(40)] + ["g0-b"])
    assert len(set(many)) == MAX_GROUPS and "other" in many and many[-1] == "g0"


def test_psi_is_zero_for_the_same_mix_and_grows_with_the_shift() -> None:
    even = np.full(10, 0.1)
    assert psi(even, even) == pytest.approx(0.0)
    mild = np.array([0.12, 0.08] * 5)
    strong = np.array([0.5] + [0.5 / 9] * 9)
    assert 0 < psi(even, mild) < psi(even, strong)
    assert np.isfinite(psi(even, np.eye(10)[0]))  # empty bins are floored, not infinite


def _probs(rng: np.random.Generator, n: int, hot: int, labels: int = 6) -> np.ndarray:
    probs = rng.uniform(0, 0.2, size=(n, labels))
    probs[:, hot] = rng.uniform(0.6, 1.0, size=n)
    return probs


def test_monitor_reports_nothing_early_stays_low_on_the_same_mix_and_rises_when_it_shifts() -> None:
    rng = np.random.default_rng(0)
    groups = ["a", "a", "a", "b", "b", "b"]
    base = build_baseline(_probs(rng, 1000, hot=0), [50] * 6, 300, groups)
    assert base.groups == ["a", "b"] and base.priors[0] == pytest.approx(50 / 300, abs=1e-6)
    monitor = DriftMonitor(Baseline.from_dict(base.to_dict()), window=400, min_docs=100)
    monitor.update(_probs(rng, 50, hot=0))
    assert monitor.scores() == {}  # fewer than min_docs
    monitor.update(_probs(rng, 400, hot=0))
    same = monitor.scores()
    assert monitor.docs == 400 and max(same.values()) < 0.1
    monitor.update(_probs(rng, 400, hot=4))  # the window now holds only the shifted mix
    shifted = monitor.scores()
    assert shifted["a"] > 1.0 and shifted["b"] > 1.0


def test_monitor_window_forgets_old_documents_exactly() -> None:
    rng = np.random.default_rng(1)
    base = build_baseline(_probs(rng, 200, hot=1), [1] * 6, 10, ["g"] * 6)
    rolling = DriftMonitor(base, window=50, min_docs=1)
    fresh = DriftMonitor(base, window=50, min_docs=1)
    old, recent = _probs(rng, 130, hot=5), _probs(rng, 50, hot=2)
    for chunk in np.array_split(np.vstack([old, recent]), 7):
        rolling.update(chunk)
    fresh.update(recent)
    assert rolling.scores() == pytest.approx(fresh.scores())


def test_a_trained_artifact_carries_its_baseline(tiny_model_dir) -> None:
    from fmlc import artifact as artifact_io

    art = artifact_io.load(tiny_model_dir)
    base = Baseline.from_dict(art.drift_baseline)
    assert len(base.label_group) == len(art.labels) and len(base.priors) == len(art.labels)
    assert set(base.groups) > {"all"} or len(base.groups) > 1  # the synthetic taxonomy's groups
    for hist in base.histograms:
        assert sum(hist) == pytest.approx(1.0, abs=1e-4)
    assert base.label_histograms is not None and len(base.label_histograms) == len(art.labels)
    assert all(sum(h) == pytest.approx(1.0, abs=1e-4) for h in base.label_histograms)
