"""Synthetic Chinese internet-finance complaints: the project's embedded default dataset.

Every complaint is built in two independent random streams, so that the label sets can be
sampled (and checked) without paying for the text:

1. labels: a *scenario* is drawn first. A scenario is anchored on one label, drawn from a
   Zipf-like law over the label popularity ranks, and brings its partners with it: curated
   strong pairs (逾期费用 → 违约金计算, 通讯录爆破 → 暴力催收 …) and looser members of the
   same thematic cluster. Sometimes a second, unrelated scenario joins (people complain about
   several things at once). At most five labels are kept.
2. text: colloquial complaint prose made of an opener, one or two cue sentences per label,
   filler, a demand, and noise (typos, full-width characters, emoji, repeated punctuation).

The task is kept deliberately imperfect. About twenty tail labels are *weak*: their own cue is
often missing or replaced by a vague sentence that also appears in complaints about their
partner head label, while they almost always co-occur with that head label. Every label's cue
is sometimes missing or only hinted at, related problems are mentioned in passing without being
labelled (as annotators do), and label names turn up as hearsay. Text alone therefore cannot
reach a perfect score (a TF-IDF linear model gets about 0.8 micro-F1); label co-occurrence helps
on the tail.

``fmlc synth --n 120000 --seed 0 --out data.jsonl --stats`` writes and describes it.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fmlc.text import Tokenizer


@dataclass(frozen=True)
class _Spec:
    name: str
    tier: int  # 1 = head … 4 = tail; orders the Zipf ranks
    cues: tuple[str, ...]  # sentences that say the label (slots in braces)
    weak_to: str | None = None  # the head label a weak tail label leans on
    vague: tuple[str, ...] = ()  # weak labels only: sentences that do not tell the label apart


# The taxonomy (groups, labels and their cue sentences, clusters, strong pairs, the head labels) and
# the text templates, as data.
_DATA = json.loads((resources.files("training") / "resources" / "synth.json").read_text(encoding="utf-8"))

# The taxonomy, by group. Label names are short phrases made of ordinary words that jieba keeps
# whole, and each label's cue sentences use those words, because a zero-shot baseline builds a
# label's vector from the word vectors of its name.
_TABLE: dict[str, list[_Spec]] = {
    group: [_Spec(s["name"], s["tier"], tuple(s["cues"]), s.get("weak_to"), tuple(s.get("vague", ()))) for s in specs]
    for group, specs in _DATA["groups"].items()}

GROUPS: list[str] = list(_TABLE)
_SPECS: list[_Spec] = [s for specs in _TABLE.values() for s in specs]
LABELS: list[str] = [s.name for s in _SPECS]
LABEL_GROUPS: dict[str, str] = {s.name: g for g, specs in _TABLE.items() for s in specs}
_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

# Thematic clusters across groups: a scenario may pull in any member of its anchor's clusters.
_CLUSTERS: list[tuple[str, ...]] = [tuple(cluster) for cluster in _DATA["clusters"]]

# Curated strong pairs: (anchor, partner, P(partner in the scenario | anchor)). Directional,
# because real dependence is: 违约金计算 almost always comes with 逾期费用, not the reverse.
_PAIRS: list[tuple[str, str, float]] = [(anchor, partner, float(p)) for anchor, partner, p in _DATA["pairs"]]

# The most common complaints, most common first (the rest are ranked by tier).
_HEAD_ORDER: tuple[str, ...] = tuple(_DATA["head_order"])
_TIER_FACTOR = {1: 1.0, 2: 0.55, 3: 0.25, 4: 0.015}
_CLUSTER_PARTNERS = 0.3  # expected number of loose cluster partners per scenario
# Anchor law: Zipf with an exponential cut-off, w(r) = r^-a * exp(-r / tau). A pure power law
# cannot give both a head of ~10% of complaints and a tail that ends below 100 at N = 120k.
_ZIPF_A = 0.5
_ZIPF_TAU = 44.0
_SECOND_SCENARIO = 0.15  # chance that a complaint mixes in a second, unrelated scenario
_WEAK_PAIR = 0.85  # P(head | weak tail label)
MAX_LABELS = 5


def _zipf_ranks() -> list[int]:
    """Popularity rank per label: by tier, and within a tier round-robin over the groups."""
    order: list[tuple[int, int, int]] = []
    for g, specs in enumerate(_TABLE.values()):
        seen: Counter[int] = Counter()
        for spec in specs:
            within = _HEAD_ORDER.index(spec.name) if spec.tier == 1 else seen[spec.tier]
            order.append((spec.tier, within, g))
            seen[spec.tier] += 1
    keyed = sorted(range(len(order)), key=lambda i: order[i])
    ranks = [0] * len(order)
    for rank, i in enumerate(keyed, start=1):
        ranks[i] = rank
    return ranks


def _build_scenarios() -> list[list[tuple[int, float]]]:
    partners: list[dict[int, float]] = [{} for _ in LABELS]
    for cluster in _CLUSTERS:
        for a in cluster:
            others = [b for b in cluster if b != a]
            norm = sum(_TIER_FACTOR[_SPECS[_INDEX[b]].tier] for b in others)
            for b in others:
                p = _CLUSTER_PARTNERS * _TIER_FACTOR[_SPECS[_INDEX[b]].tier] / norm
                ia, ib = _INDEX[a], _INDEX[b]
                partners[ia][ib] = max(partners[ia].get(ib, 0.0), p)
    for a, b, p in _PAIRS:
        partners[_INDEX[a]][_INDEX[b]] = max(partners[_INDEX[a]].get(_INDEX[b], 0.0), p)
    for spec in _SPECS:
        if spec.weak_to:
            partners[_INDEX[spec.name]][_INDEX[spec.weak_to]] = _WEAK_PAIR
    return [sorted(p.items()) for p in partners]


def _check_table() -> None:
    if len(LABELS) != 135 or len(set(LABELS)) != 135:
        raise AssertionError(f"taxonomy must have 135 distinct labels, has {len(set(LABELS))}")
    heads = {s.name for s in _SPECS if s.tier == 1}
    if heads != set(_HEAD_ORDER):
        raise AssertionError(f"_HEAD_ORDER must list the tier-1 labels: {sorted(heads ^ set(_HEAD_ORDER))}")
    named = {n for c in _CLUSTERS for n in c} | {n for a, b, _ in _PAIRS for n in (a, b)}
    named |= {s.weak_to for s in _SPECS if s.weak_to}
    unknown = named - set(LABELS)
    if unknown:
        raise AssertionError(f"unknown labels in clusters/pairs: {sorted(unknown)}")


_check_table()
_RANKS = _zipf_ranks()
_ANCHOR_WEIGHTS = [r ** -_ZIPF_A * math.exp(-r / _ZIPF_TAU) for r in _RANKS]
_ANCHOR_CUM = list(itertools.accumulate(_ANCHOR_WEIGHTS))
_SCENARIOS = _build_scenarios()
_WEAK_HEAD: dict[int, int] = {_INDEX[s.name]: _INDEX[s.weak_to] for s in _SPECS if s.weak_to}
_WEAK_OF: dict[str, list[int]] = {}
for _weak, _head in _WEAK_HEAD.items():
    _WEAK_OF.setdefault(LABELS[_head], []).append(_weak)


def _draw_anchor(rng: random.Random) -> int:
    return bisect.bisect_right(_ANCHOR_CUM, rng.random() * _ANCHOR_CUM[-1])


def _sample_one(rng: random.Random) -> list[int]:
    anchor = _draw_anchor(rng)
    chosen = [anchor]
    for j, p in _SCENARIOS[anchor]:
        if rng.random() < p:
            chosen.append(j)
    if rng.random() < _SECOND_SCENARIO:
        second = _draw_anchor(rng)
        extra = [second] + [j for j, p in _SCENARIOS[second] if rng.random() < p]
        chosen.extend(j for j in extra if j not in chosen)
    # A weak tail label pulled in as someone else's partner still brings its head label.
    for j in chosen[1:]:
        head = _WEAK_HEAD.get(j)
        if head is not None and head not in chosen and rng.random() < _WEAK_PAIR:
            chosen.append(head)
    if len(chosen) > MAX_LABELS:
        # The anchor stays; which of the rest survive is random so no partner is favoured.
        rest = chosen[1:]
        rng.shuffle(rest)
        chosen = [anchor] + rest[: MAX_LABELS - 1]
    return chosen


def _label_rng(seed: int) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random, so they are stable across runs
    # and independent of PYTHONHASHSEED.
    return random.Random(f"fmlc-synth/labels/{seed}")


def _text_rng(seed: int) -> random.Random:
    return random.Random(f"fmlc-synth/text/{seed}")


def sample_label_sets(n: int, seed: int) -> list[list[str]]:
    """The label sets that ``generate(n, seed)`` produces, without building the texts."""
    rng = _label_rng(seed)
    return [[LABELS[i] for i in _sample_one(rng)] for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Text

_APPS: tuple[str, ...] = tuple(_DATA["apps"])
_BANKS: tuple[str, ...] = tuple(_DATA["banks"])
_INSURERS: tuple[str, ...] = tuple(_DATA["insurers"])


def _amount(rng: random.Random) -> int:
    return rng.choice((500, 800, 1000, 1500, 2000, 3000, 5000, 6000, 8000, 10000, 20000, 30000, 50000))


_SLOT_MAKERS = {
    "app": lambda r, s: r.choice(_APPS),
    "app2": lambda r, s: r.choice([a for a in _APPS if a != s["app"]]),
    "amt": lambda r, s: _amount(r),
    "amt2": lambda r, s: int(s["amt"] * r.uniform(0.6, 0.85)) // 10 * 10,
    "amt3": lambda r, s: int(s["amt"] * r.uniform(1.3, 1.9)) // 10 * 10,
    "fee": lambda r, s: r.choice((29, 39, 68, 99, 128, 199, 240, 300, 388, 450, 600, 880, 1200)),
    "pct": lambda r, s: r.randint(8, 45),
    "apr": lambda r, s: r.choice((36, 48, 60, 72, 98, 120, 150, 200)),
    "days": lambda r, s: r.choice((1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90)),
    "months": lambda r, s: r.choice((3, 6, 9, 12, 18, 24, 36)),
    "n": lambda r, s: r.choice((3, 5, 8, 10, 20, 30, 50, 100)),
    "phone": lambda r, s: f"1{r.choice('3456789')}{r.randint(0, 9)}****{r.randint(0, 9999):04d}",
    "tail4": lambda r, s: f"{r.randint(0, 9999):04d}",
    "bank": lambda r, s: r.choice(_BANKS),
    "ins": lambda r, s: r.choice(_INSURERS),
    "date": lambda r, s: r.choice((
        f"{r.randint(2019, 2024)}年{r.randint(1, 12)}月{r.randint(1, 28)}日",
        f"{r.randint(1, 12)}月{r.randint(1, 28)}号",
        f"{r.randint(2019, 2024)}.{r.randint(1, 12)}.{r.randint(1, 28)}",
        "上个月", "去年年底", "今年年初", "前几天", "上周",
    )),
}


class _Slots(dict):
    """Slot values drawn on first use, so one complaint keeps one platform, one amount …"""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def __missing__(self, key: str) -> object:
        value = _SLOT_MAKERS[key](self._rng, self)
        self[key] = value
        return value


_OPENERS: dict[str, tuple[str, ...]] = {kind: tuple(texts) for kind, texts in _DATA["openers"].items()}
_GROUP_OPENER: dict[str, str] = _DATA["group_opener"]

# Sentences that belong to a topic but do not tell its labels apart.
_GROUP_CONTEXT: dict[str, tuple[str, ...]] = {group: tuple(texts) for group, texts in _DATA["group_context"].items()}

_FILLERS: tuple[str, ...] = tuple(_DATA["fillers"])
_BACKGROUND: tuple[str, ...] = tuple(_DATA["background"])
# What the complainant did about it: complaint narratives nearly always tell this part.
_PROCESS: tuple[str, ...] = tuple(_DATA["process"])
_CLOSINGS: tuple[str, ...] = tuple(_DATA["closings"])
_CONNECTORS: tuple[str, ...] = tuple(_DATA["connectors"])
_ENDS: tuple[str, ...] = tuple(_DATA["ends"])
_HEARSAY: tuple[str, ...] = tuple(_DATA["hearsay"])
_TYPOS: tuple[tuple[str, str], ...] = tuple((wrong, right) for wrong, right in _DATA["typos"])
_FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


def _sentence(rng: random.Random, body: str, slots: _Slots, connect: bool = True) -> str:
    head = rng.choice(_CONNECTORS) if connect else ""
    return head + body.format_map(slots) + rng.choice(_ENDS)


def _render(rng: random.Random, label_idx: list[int]) -> str:
    slots = _Slots(rng)
    specs = [_SPECS[i] for i in label_idx]
    parts: list[str] = []
    rant = rng.random() < 0.05

    if rng.random() < 0.85:
        pool = _OPENERS[_GROUP_OPENER[LABEL_GROUPS[specs[0].name]]]
        if rng.random() < 0.25:
            pool = _OPENERS["any"]
        parts.append(rng.choice(pool).format_map(slots))
    if rng.random() < 0.65:
        parts.append(_sentence(rng, rng.choice(_BACKGROUND), slots, connect=False))

    if rng.random() < 0.1:
        other = rng.choice(LABELS)
        if other not in {s.name for s in specs}:
            parts.append(rng.choice(_HEARSAY).format(label=other))

    order = specs[:]
    if len(order) > 1 and rng.random() < 0.5:
        rng.shuffle(order)
    first = True
    for spec in order:
        if spec.weak_to:
            u = rng.random()
            if u < 0.45:
                bodies = [rng.choice(spec.cues)]
            elif u < 0.8:
                bodies = [rng.choice(spec.vague)]
            else:
                bodies = []
        else:
            u = rng.random()
            if u < 0.1:
                bodies = []
            elif u < 0.2:
                bodies = [rng.choice(_GROUP_CONTEXT[LABEL_GROUPS[spec.name]])]
            else:
                bodies = [rng.choice(spec.cues)]
                if rant or rng.random() < 0.4:
                    second = rng.choice(spec.cues)
                    if second != bodies[0]:
                        bodies.append(second)
        for body in bodies:
            parts.append(_sentence(rng, body, slots, connect=not first))
            first = False
        # A weak label's vague sentences also show up without it, next to its head label,
        # so that they are evidence for the pair rather than for the tail label alone.
        for weak in _WEAK_OF.get(spec.name, ()):
            if weak not in label_idx and rng.random() < 0.08:
                parts.append(_sentence(rng, rng.choice(_SPECS[weak].vague), slots))

    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
        parts.append(_sentence(rng, rng.choice(_PROCESS), slots, connect=rng.random() < 0.3))
    # Side remarks: people mention a related problem in passing without it being what the
    # complaint is about, and annotators leave it out. Such remarks follow the anchor's
    # scenario, so they look like the labels that usually co-occur.
    if rng.random() < 0.2:
        partners = [(j, p) for j, p in _SCENARIOS[label_idx[0]] if j not in label_idx]
        if partners:
            side = rng.choices([j for j, _ in partners], weights=[p for _, p in partners])[0]
            parts.append(_sentence(rng, rng.choice(_SPECS[side].cues), slots))
    n_fill = rng.choice((0, 1, 2, 2, 2, 3, 3, 3, 4, 5))
    if rant:
        n_fill += rng.randint(4, 9)
    for _ in range(n_fill):
        if rng.random() < 0.3:
            body = rng.choice(_GROUP_CONTEXT[LABEL_GROUPS[rng.choice(specs).name]])
        else:
            body = rng.choice(_FILLERS)
        parts.insert(rng.randint(1 if parts else 0, len(parts)), _sentence(rng, body, slots, connect=False))

    if rng.random() < 0.85:
        parts.append(rng.choice(_CLOSINGS).format_map(slots))
    if not parts:
        parts.append(_sentence(rng, rng.choice(specs[0].cues), slots, connect=False))
    return _noise(rng, "".join(parts))


def _noise(rng: random.Random, text: str) -> str:
    if rng.random() < 0.15:
        right, wrong = rng.choice(_TYPOS)
        text = text.replace(right, wrong, 1)
    if rng.random() < 0.08:
        text = text.translate(_FULLWIDTH)
    if rng.random() < 0.05:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice((" ", "  ", "\u3000", "\u200b")) + text[cut:]
    return text


def iter_records(n: int, seed: int) -> Iterator[dict]:
    """Yield ``n`` complaints ``{"id", "text", "labels"}``; the same ``(n, seed)`` gives the same data."""
    if n < 0:
        raise ValueError("n must be >= 0")
    label_rng, text_rng = _label_rng(seed), _text_rng(seed)
    for k in range(1, n + 1):
        idx = _sample_one(label_rng)
        yield {"id": f"syn-{k:06d}", "text": _render(text_rng, idx), "labels": [LABELS[i] for i in idx]}


def generate(n: int, seed: int) -> list[dict]:
    return list(iter_records(n, seed))


def write_jsonl(path: str | Path, n: int, seed: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in iter_records(n, seed):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def anchor_probabilities() -> dict[str, float]:
    """P(label is the scenario anchor), the Zipf part of the label law."""
    total = _ANCHOR_CUM[-1]
    return {name: w / total for name, w in zip(LABELS, _ANCHOR_WEIGHTS, strict=True)}


def describe(records: list[dict], tokenizer: Tokenizer | None = None) -> dict:
    """Summary statistics of a generated (or any labelled) set of records."""
    counts = Counter(label for r in records for label in r["labels"])
    sizes = Counter(len(r["labels"]) for r in records)
    out: dict = {
        "docs": len(records),
        "labels_used": len(counts),
        "labels_per_doc": dict(sorted(sizes.items())),
        "mean_labels": sum(k * v for k, v in sizes.items()) / max(1, len(records)),
        "labels_lt_100": sum(1 for name in LABELS if counts[name] < 100),
        "labels_zero": sum(1 for name in LABELS if counts[name] == 0),
        "min_count": min(counts[name] for name in LABELS),
        "max_count": max(counts.values(), default=0),
    }
    if tokenizer is not None:
        lengths = sorted(len(tokenizer.tokenize(r["text"])) for r in records)
        out["mean_tokens"] = sum(lengths) / max(1, len(lengths))
        out["p50_tokens"] = lengths[len(lengths) // 2]
        out["p99_tokens"] = lengths[min(len(lengths) - 1, math.ceil(0.99 * len(lengths)))]
        out["max_tokens"] = lengths[-1]
    return out


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("synth")
