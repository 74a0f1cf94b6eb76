"""The synthetic complaint generator: taxonomy, determinism, label statistics, text shape."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from fmlc.text import Tokenizer
from training import synth
from training.data import load_records

N_FULL = 120_000


@pytest.fixture(scope="module")
def full_label_sets() -> list[list[str]]:
    # The label stream is independent of the text stream, so the label sets of the full
    # 120k dataset cost a fraction of a second; the statistics are checked at full size.
    return synth.sample_label_sets(N_FULL, seed=0)


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return synth.generate(1500, seed=0)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def test_taxonomy() -> None:
    assert len(synth.LABELS) == 135
    assert len(set(synth.LABELS)) == 135
    assert set(synth.LABEL_GROUPS) == set(synth.LABELS)
    groups = Counter(synth.LABEL_GROUPS.values())
    assert 10 <= len(groups) <= 14
    assert min(groups.values()) >= 8
    for name in ("利率争议", "暴力催收", "违约金计算", "逾期费用", "提现到账问题", "砍头息", "征信异常", "套路贷",
                 "隐私泄露", "通讯录爆破", "自动续费", "强制搭售保险", "客服失联", "平台跑路", "账户冻结", "退款纠纷"):
        assert name in synth.LABEL_GROUPS
    assert synth.LABEL_GROUPS["暴力催收"] == "催收"


def test_label_name_words_occur_in_their_cues(tokenizer: Tokenizer) -> None:
    # The zero-shot baseline embeds a label by the words of its name; those words must be ones
    # that texts carrying the label actually use.
    for spec in synth._SPECS:
        name_words = tokenizer.tokenize(spec.name)
        assert name_words, spec.name
        cue_words = {w for cue in spec.cues for w in tokenizer.tokenize(cue)}
        missing = [w for w in name_words if w not in cue_words]
        assert not missing, f"{spec.name}: {missing} never appear in its cues"


def test_deterministic_and_seed_dependent() -> None:
    a = synth.generate(300, seed=7)
    assert a == synth.generate(300, seed=7)
    assert a != synth.generate(300, seed=8)
    assert [r["id"] for r in a[:3]] == ["syn-000001", "syn-000002", "syn-000003"]
    # A prefix of a longer run is the shorter run.
    assert synth.generate(50, seed=7) == a[:50]


def test_label_sets_match_generate() -> None:
    assert synth.sample_label_sets(400, seed=3) == [r["labels"] for r in synth.generate(400, seed=3)]


def test_one_to_five_labels(full_label_sets: list[list[str]]) -> None:
    sizes = Counter(len(labels) for labels in full_label_sets)
    assert set(sizes) == {1, 2, 3, 4, 5}
    assert all(len(set(labels)) == len(labels) for labels in full_label_sets)
    mean = sum(k * v for k, v in sizes.items()) / N_FULL
    assert 1.8 <= mean <= 2.3
    assert sizes[1] > sizes[3] > sizes[5]


def test_long_tail_at_full_size(full_label_sets: list[list[str]]) -> None:
    counts = Counter(label for labels in full_label_sets for label in labels)
    assert set(counts) == set(synth.LABELS)  # no label without examples
    under_100 = [name for name in synth.LABELS if counts[name] < 100]
    assert 15 <= len(under_100) <= 26, len(under_100)  # about 15% of 135
    assert min(counts.values()) >= 30
    top = counts.most_common(1)[0][1]
    assert 0.08 * N_FULL <= top <= 0.3 * N_FULL
    # Zipf-like: frequencies spread over orders of magnitude, not a few plateaus.
    ordered = sorted(counts.values(), reverse=True)
    assert ordered[0] / ordered[67] > 10
    assert ordered[67] / ordered[-1] > 5


def test_anchor_law_is_a_distribution() -> None:
    probs = synth.anchor_probabilities()
    assert set(probs) == set(synth.LABELS)
    assert sum(probs.values()) == pytest.approx(1.0)
    # The rarest anchor still yields dozens of complaints at N = 120k.
    assert min(probs.values()) * N_FULL > 30


def _conditional(label_sets: list[list[str]], given: str, target: str) -> float:
    with_given = [labels for labels in label_sets if given in labels]
    return sum(target in labels for labels in with_given) / len(with_given)


def test_cooccurrence(full_label_sets: list[list[str]]) -> None:
    counts = Counter(label for labels in full_label_sets for label in labels)

    def base(name: str) -> float:
        return counts[name] / N_FULL

    p = _conditional(full_label_sets, "逾期费用", "违约金计算")
    assert p >= 0.35 and p >= 5 * base("违约金计算")
    assert _conditional(full_label_sets, "通讯录爆破", "暴力催收") >= 0.5
    assert _conditional(full_label_sets, "通讯录爆破", "隐私泄露") >= 3 * base("隐私泄露")
    assert _conditional(full_label_sets, "砍头息", "利率争议") >= 0.4
    assert _conditional(full_label_sets, "利率争议", "暴力催收") >= 2 * base("暴力催收")
    # Weak tail labels nearly always come with their head label: that is what a label graph exploits.
    weak = [s for s in synth._SPECS if s.weak_to]
    assert 15 <= len(weak) <= 25
    for spec in weak:
        assert _conditional(full_label_sets, spec.name, spec.weak_to) >= 0.7, spec.name
        assert counts[spec.name] < 0.01 * N_FULL


def test_text_shape(sample: list[dict], tokenizer: Tokenizer) -> None:
    lengths = [len(tokenizer.tokenize(r["text"])) for r in sample]
    mean = sum(lengths) / len(lengths)
    assert 50 <= mean <= 70, mean
    assert max(lengths) <= 260
    assert min(lengths) >= 3
    texts = [r["text"] for r in sample]
    assert not any("{" in t or "}" in t for t in texts)  # every slot was filled
    assert len(set(texts)) > 0.99 * len(texts)
    # The noise the brief promises is really there.
    assert any(re.search(r"1[3-9]\d\*{4}\d{4}", t) for t in texts)  # masked phone numbers
    assert any(re.search(r"[\uff10-\uff19\uff01-\uff0f]", t) for t in texts)  # full-width
    assert any(re.search(r"[\U0001F300-\U0001FAFF]", t) for t in texts)  # emoji
    assert any("!!!" in t or "！！" in t for t in texts)


def test_cues_are_not_always_present(sample: list[dict]) -> None:
    # The label's own name or cue words are missing from a fair share of its complaints
    # (missing cues, vague cues), and present in some complaints without it (hearsay, side remarks).
    name = "暴力催收"
    with_label = [r["text"] for r in sample if name in r["labels"]]
    without = [r["text"] for r in sample if name not in r["labels"]]
    assert 0.05 < sum("暴力催收" not in t for t in with_label) / len(with_label) < 0.9
    assert any("暴力催收" in t for t in without)


def test_speed() -> None:
    start = time.perf_counter()
    synth.generate(12_000, seed=1)
    # 120k must take well under a minute on one core; allow for a busy shared machine.
    assert time.perf_counter() - start < 12


def test_write_jsonl_round_trips_through_the_loader(tmp_path) -> None:
    path = synth.write_jsonl(tmp_path / "syn" / "data.jsonl", 200, seed=5)
    loaded = load_records(path)
    assert not loaded.skipped
    assert [r.id for r in loaded.records] == [f"syn-{k:06d}" for k in range(1, 201)]
    expected = synth.generate(200, seed=5)
    assert [list(r.labels) for r in loaded.records] == [r["labels"] for r in expected]
    assert [r.text for r in loaded.records] == [r["text"] for r in expected]


def test_the_taxonomy_and_templates_are_package_data() -> None:
    """synth.json under training/resources/ holds every label of the generator, each with cue sentences."""
    import json
    from importlib import resources

    from training.synth import LABELS

    data = json.loads((resources.files("training") / "resources" / "synth.json").read_text(encoding="utf-8"))
    names = [spec["name"] for specs in data["groups"].values() for spec in specs]
    assert names == LABELS and all(spec["cues"] for specs in data["groups"].values() for spec in specs)
    assert {"clusters", "pairs", "head_order", "openers", "fillers", "closings"} <= data.keys()
