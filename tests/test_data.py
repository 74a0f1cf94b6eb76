"""Loading, validating and splitting user data (training.data)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from training import synth
from training.data import (
    DataError,
    Record,
    label_counts,
    load_path,
    load_records,
    split_records,
)

DATA = Path(__file__).parents[2] / "shared" / "data"

GOOD = {"id": "a1", "text": "借了钱被收了砍头息", "labels": ["砍头息"]}


def _jsonl(tmp_path: Path, lines: list[object], name: str = "data.jsonl") -> Path:
    """Write lines: dicts as JSON, str as is, bytes as raw bytes."""
    chunks = []
    for line in lines:
        if isinstance(line, bytes):
            chunks.append(line)
        elif isinstance(line, str):
            chunks.append(line.encode("utf-8"))
        else:
            chunks.append(json.dumps(line, ensure_ascii=False).encode("utf-8"))
    path = tmp_path / name
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


def _csv(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_loads_and_normalises_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [
        GOOD,
        "",
        {"id": 7, "text": "提现一直不到账", "labels": [" 提现到账问题 ", "提现到账问题", "客服失联"], "split": "dev"},
        {"text": "没有 id 的记录", "labels": ["x"], "extra": {"ignored": True}},
    ])
    res = load_records(path)
    assert res.skipped == [] and res.duplicates == []
    assert res.records[0] == Record("a1", "借了钱被收了砍头息", ("砍头息",), None)
    assert res.records[1] == Record("7", "提现一直不到账", ("提现到账问题", "客服失联"), "dev")
    assert res.records[2].id == "data:4"  # line-based id
    assert res.labels == sorted(["砍头息", "提现到账问题", "客服失联", "x"])


BAD_JSONL = [
    ('{"id": "b", "text": "x", ', "json", "invalid JSON"),
    ('[1, 2]', "json", "must be a JSON object, not list"),
    (b'{"id": "b", "text": "\xff\xfe bad", "labels": ["a"]}', "encoding", "not valid UTF-8"),
    ({"id": "b", "labels": ["a"]}, "text", "missing"),
    ({"id": "b", "text": "   ", "labels": ["a"]}, "text", "must not be empty"),
    ({"id": "b", "text": "", "labels": ["a"]}, "text", "must not be empty"),
    ({"id": "b", "text": 12, "labels": ["a"]}, "text", "must be a string"),
    ({"id": "b", "text": None, "labels": ["a"]}, "text", "must be a string"),
    ({"id": "b", "text": "t"}, "labels", "missing"),
    ({"id": "b", "text": "t", "labels": "a"}, "labels", "must be a non-empty list of strings"),
    ({"id": "b", "text": "t", "labels": []}, "labels", "must be a non-empty list of strings"),
    ({"id": "b", "text": "t", "labels": [1, 2]}, "labels", "must be a non-empty list of strings"),
    ({"id": "b", "text": "t", "labels": ["a", ""]}, "labels", "must be a non-empty list of strings"),
    ({"id": "b", "text": "t", "labels": {"a": 1}}, "labels", "must be a non-empty list of strings"),
    ({"id": ["b"], "text": "t", "labels": ["a"]}, "id", "must be a string or an integer"),
    ({"id": True, "text": "t", "labels": ["a"]}, "id", "must be a string or an integer"),
    ({"id": "  ", "text": "t", "labels": ["a"]}, "id", "must not be empty"),
    ({"id": "a1", "text": "t", "labels": ["a"]}, "id", "duplicate id 'a1' (first at "),
    ({"id": "b", "text": "t", "labels": ["a"], "split": 3}, "split", "must be a string"),
]


@pytest.mark.parametrize(("line", "field", "what"), BAD_JSONL)
def test_jsonl_errors_name_file_line_and_field(tmp_path: Path, line: object, field: str, what: str) -> None:
    # The bad record is on physical line 3 (a blank line precedes it).
    path = _jsonl(tmp_path, [GOOD, "", line])
    with pytest.raises(DataError) as info:
        load_records(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: {field}: {what}"), message


def test_exact_messages(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [GOOD, {"id": "b", "text": "t", "labels": []}])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:2: labels: must be a non-empty list of strings"
    path = _jsonl(tmp_path, [{"id": "b", "labels": ["a"]}])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:1: text: missing"


def test_custom_field_names_appear_in_errors(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"uid": "1", "content": "文本", "tags": ["a"]}, {"uid": "2", "tags": ["a"]}])
    with pytest.raises(DataError) as info:
        load_records(path, text_field="content", labels_field="tags", id_field="uid")
    assert str(info.value) == f"{path}:2: content: missing"
    res = load_records(path, text_field="content", labels_field="tags", id_field="uid", skip_bad=True)
    assert [r.id for r in res.records] == ["1"]


def test_label_string_split_when_separator_given(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"id": "1", "text": "t", "labels": "a|b"}])
    assert load_records(path, label_sep="|").records[0].labels == ("a", "b")
    with pytest.raises(DataError, match="labels: must be a non-empty list of strings"):
        load_records(path)


def test_skip_bad_counts_and_keeps_good(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [
        GOOD,
        "{not json",
        {"id": "c", "text": "t"},
        b'{"id": "d", "text": "\xc3\x28", "labels": ["a"]}',
        {"id": "e", "text": "另一条", "labels": ["b"]},
        {"id": "f", "text": "t", "labels": []},
    ])
    res = load_records(path, skip_bad=True)
    assert [r.id for r in res.records] == ["a1", "e"]
    assert len(res.skipped) == 4
    assert [m.split(": ")[1] for m in res.skipped] == ["json", "labels", "encoding", "labels"]
    assert [m.split(": ")[0] for m in res.skipped] == [f"{path}:{n}" for n in (2, 3, 4, 6)]


def test_empty_and_all_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_records(empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\n")
    with pytest.raises(DataError, match="empty file"):
        load_records(blank)
    bad = _jsonl(tmp_path, ["{", "}"], name="bad.jsonl")
    with pytest.raises(DataError, match=r"no valid records \(2 skipped"):
        load_records(bad, skip_bad=True)
    with pytest.raises(DataError, match="no such file"):
        load_records(tmp_path / "missing.jsonl")
    other = tmp_path / "data.parquet"
    other.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unknown data format"):
        load_records(other)


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert load_records(path).records[0].id == "a1"


def test_duplicates_are_reported_not_dropped(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [
        {"id": "a", "text": "APP 借款 1000元", "labels": ["x"]},
        {"id": "b", "text": "别的内容", "labels": ["x"]},
        # Same text after normalisation: full-width, case and whitespace differ.
        {"id": "c", "text": "  ａｐｐ   借款 １０００元 ", "labels": ["y"]},
        {"id": "d", "text": "app 借款 1000元", "labels": ["z"]},
    ])
    res = load_records(path)
    assert [r.id for r in res.records] == ["a", "b", "c", "d"]
    assert res.duplicates == [("a", "c"), ("a", "d")]


def test_load_path_directory(tmp_path: Path) -> None:
    _jsonl(tmp_path, [{"id": "t1", "text": "同一段话", "labels": ["a"], "split": "train"}], name="train.jsonl")
    _jsonl(tmp_path, [{"id": "d1", "text": "同一段话", "labels": ["b"], "split": "dev"}], name="dev.jsonl")
    (tmp_path / "notes.txt").write_text("ignored")
    res = load_path(tmp_path)
    assert [r.id for r in res.records] == ["d1", "t1"]  # files in sorted order
    assert res.duplicates == [("d1", "t1")]  # across files
    assert load_path(tmp_path / "train.jsonl").records[0].id == "t1"
    _jsonl(tmp_path, [{"id": "t1", "text": "x", "labels": ["a"]}], name="zz.jsonl")
    with pytest.raises(DataError, match=r"zz\.jsonl:1: id: duplicate id 't1' \(first at .*train\.jsonl:1\)"):
        load_path(tmp_path)
    empty_dir = tmp_path / "none"
    empty_dir.mkdir()
    with pytest.raises(DataError, match="no \\*.jsonl files"):
        load_path(empty_dir)
    with pytest.raises(DataError, match="no such file or directory"):
        load_path(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# CSV


@pytest.mark.parametrize(("cell", "sep"), [("a|b", "|"), ("a;b", ";"), ('"a,b"', ",")])
def test_csv_separator_is_guessed(tmp_path: Path, cell: str, sep: str) -> None:
    path = _csv(tmp_path, f"text,labels\n第一条,{cell}\n第二条,c\n")
    res = load_records(path)
    assert [r.labels for r in res.records] == [("a", "b"), ("c",)]
    assert [r.id for r in res.records] == ["data:2", "data:3"]  # no id column: line-based ids


def test_csv_with_id_split_given_separator_and_json_list(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'id,content,tags,split\n9,"多行\n文本",a/b,train\n10,第二条,"[""x"", ""y""]",\n')
    res = load_records(path, text_field="content", labels_field="tags", label_sep="/")
    assert res.records[0] == Record("9", "多行\n文本", ("a", "b"), "train")
    assert res.records[1] == Record("10", "第二条", ("x", "y"), None)


def test_tsv(tmp_path: Path) -> None:
    path = _csv(tmp_path, "text\tlabels\n文本一\ta|b\n", name="data.tsv")
    assert load_records(path).records[0].labels == ("a", "b")


BAD_CSV = [
    ("text,labels\nok,a\n,b\n", "text", "must not be empty"),
    ("text,labels\nok,a\n  ,b\n", "text", "must not be empty"),
    ("text,labels\nok,a\nx,\n", "labels", "must be a non-empty list of strings"),
    ("text,labels\nok,a\nx,a||b\n", "labels", "must be a non-empty list of strings"),
    ('text,labels\nok,a\nx,"[1, 2]"\n', "labels", "must be a non-empty list of strings"),
    ("id,text,labels\n1,ok,a\n2\n", "text", "missing"),
    ("text,labels\nok,a\nx,a,extra\n", "csv", "row has 3 fields, the header has 2"),
    ("id,text,labels\n1,ok,a\n1,again,a\n", "id", "duplicate id '1'"),
]


@pytest.mark.parametrize(("content", "field", "what"), BAD_CSV)
def test_csv_errors_name_file_line_and_field(tmp_path: Path, content: str, field: str, what: str) -> None:
    path = _csv(tmp_path, content)
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:3: {field}: {what}"), str(info.value)


def test_csv_encoding_error_and_multiline_line_numbers(tmp_path: Path) -> None:
    content = 'text,labels\n"两行\n的文本",a\nok,b\n' .encode() + b"\xff\xfe,c\nlast,d\n"
    path = _csv(tmp_path, content)
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:5: encoding: not valid UTF-8")
    res = load_records(path, skip_bad=True)
    assert [r.id for r in res.records] == ["data:2", "data:4", "data:6"]
    assert len(res.skipped) == 1


def test_csv_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.csv:1: text: column missing \(header: body, labels\)"):
        load_records(_csv(tmp_path, "body,labels\nx,a\n"))
    with pytest.raises(DataError, match="labels: column missing"):
        load_records(_csv(tmp_path, "text,tags\nx,a\n"))
    with pytest.raises(DataError, match="empty file"):
        load_records(_csv(tmp_path, ""))
    with pytest.raises(DataError, match="no records after the header"):
        load_records(_csv(tmp_path, "text,labels\n"))


# ---------------------------------------------------------------------------------------------
# Splitting


def _records(n: int, seed: int = 0) -> list[Record]:
    return [Record(f"r{i}", f"text {i}", tuple(labels))
            for i, labels in enumerate(synth.sample_label_sets(n, seed))]


def test_split_proportions_coverage_and_determinism() -> None:
    records = _records(4000)
    parts = split_records(records, seed=0)
    assert list(parts) == ["train", "valid", "test"]
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == len(records)
    assert abs(sizes["train"] / 4000 - 0.7) < 0.02
    assert abs(sizes["valid"] / 4000 - 0.15) < 0.02
    assert abs(sizes["test"] / 4000 - 0.15) < 0.02
    ids = [r.id for part in parts.values() for r in part]
    assert sorted(ids) == sorted(r.id for r in records)  # disjoint and complete
    # Input order is kept inside each part.
    position = {r.id: i for i, r in enumerate(records)}
    assert all([position[r.id] for r in part] == sorted(position[r.id] for r in part) for part in parts.values())
    # Stratified: every label with enough examples is in every part, in about the right share.
    total = label_counts(records)
    per_part = {k: label_counts(v) for k, v in parts.items()}
    for label, n in total.items():
        if n >= 20:
            assert all(per_part[k][label] > 0 for k in parts), label
            assert abs(per_part["train"][label] / n - 0.7) <= 0.1, label
    again = split_records(records, seed=0)
    assert {k: [r.id for r in v] for k, v in again.items()} == {k: [r.id for r in v] for k, v in parts.items()}
    other = split_records(records, seed=1)
    assert [r.id for r in other["test"]] != [r.id for r in parts["test"]]


def test_split_with_rare_labels_and_tiny_inputs() -> None:
    records = _records(300) + [Record("one", "t", ("孤例",)), Record("two1", "t", ("两例", "利率争议")),
                               Record("two2", "t", ("两例",))]
    parts = split_records(records, seed=3)
    assert sum(len(v) for v in parts.values()) == len(records)
    assert any("fewer than 3 examples" in note for note in parts.notes)
    single = [Record("x", "t", ("a",))]
    assert [len(v) for v in split_records(single).values()] == [1, 0, 0]
    two = [Record("x", "t", ("a",)), Record("y", "t", ("a",))]
    assert sum(len(v) for v in split_records(two).values()) == 2
    assert split_records([]) == {"train": [], "valid": [], "test": []}
    custom = split_records(_records(1000), ratios=(8, 2, 0))
    assert len(custom["test"]) == 0 and abs(len(custom["valid"]) - 200) <= 10
    with pytest.raises(ValueError, match="ratios"):
        split_records(records, ratios=(0, 0.5, 0.5))


def _with_split(records: list[Record], names: list[str | None]) -> list[Record]:
    return [Record(r.id, r.text, r.labels, names[i % len(names)]) for i, r in enumerate(records)]


def test_split_use_given() -> None:
    base = _records(2000)
    given = _with_split(base, ["train"] * 8 + ["dev", "test"])
    parts = split_records(given, use_given=True)
    assert Counter(r.split for r in parts["valid"]) == {"dev": 200}
    assert Counter(r.split for r in parts["test"]) == {"test": 200}
    assert parts.notes == [] or all("fewer than 3" in n for n in parts.notes)

    no_test = _with_split(base, ["train"] * 8 + ["val", "val"])
    parts = split_records(no_test, use_given=True)
    assert len(parts["valid"]) == 400
    assert all(r.split == "train" for r in parts["test"])
    assert abs(len(parts["test"]) - 0.15 / 0.85 * 1600) <= 15
    assert any("no test split given" in n for n in parts.notes)

    only_train = _with_split(base, ["train"])
    parts = split_records(only_train, use_given=True)
    assert abs(len(parts["train"]) - 1400) <= 20
    assert any("carved out of train" in n for n in parts.notes)

    with pytest.raises(DataError, match="no usable split value.*'train\\+eval' x"):
        split_records(_with_split(base, ["train", "train+eval"]), use_given=True)
    with pytest.raises(DataError, match="no usable split value.*None x2000"):
        split_records(base, use_given=True)


# ---------------------------------------------------------------------------------------------
# The real data sets under /work/shared/data


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data set {path} is not present on this machine")
    return path


def test_real_duee_directory() -> None:
    res = load_path(_need(DATA / "duee1.0"))
    assert len(res.records) == 13453 and not res.skipped
    assert len(res.labels) == 65
    assert Counter(r.split for r in res.records) == {"train": 11956, "dev": 1497}
    parts = split_records(res.records, use_given=True)
    assert len(parts["valid"]) == 1497
    assert len(parts["train"]) + len(parts["test"]) == 11956
    assert all(len(v) > 0 for v in parts.values())


def test_real_ccks_file() -> None:
    res = load_records(_need(DATA / "ccks2019_fin" / "data.jsonl"))
    assert len(res.records) == 15084 and not res.skipped
    assert len(res.labels) == 21
    counts = label_counts(res.records)
    assert sum(counts.values()) == sum(len(r.labels) for r in res.records)
    assert min(counts.values()) == 2  # 公司股市异常, per the data set's README


# ---------------------------------------------------------------------------------------------
# Readable errors, repeated texts


@pytest.mark.parametrize("text", ["\u200b", " \u200b\u200c\ufeff ", "\u3000\t", "\u2060"])
def test_invisible_only_text_counts_as_empty(tmp_path: Path, text: str) -> None:
    path = _jsonl(tmp_path, [GOOD, {"id": "b", "text": text, "labels": ["a"]}])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:2: text: must not be empty")


@pytest.mark.parametrize("content, line", [
    ('text,labels\n"借款利息太高,利率争议\n平台催收,暴力催收\n', 2),
    ('text,labels\n借款利息太高,利率争议\n"平台催收,暴力催收\n提现,提现\n', 3),
])
def test_unterminated_csv_quote_is_reported_as_such(tmp_path: Path, content: str, line: int) -> None:
    path = _csv(tmp_path, content)
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:{line}: csv: unterminated quote")


def test_quote_left_open_mid_file_points_at_the_swallowed_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'text,labels\n"借款利息太高,利率争议\n平台催收,"暴力催收"\n提现,提现\n')
    with pytest.raises(DataError, match=r"data\.csv:2: labels: missing \(this row runs over lines 2-3 inside a "
                                        r"quoted field; is a quote left open\?\)"):
        load_records(path)


def test_stray_quote_inside_a_field_is_still_text(tmp_path: Path) -> None:
    res = load_records(_csv(tmp_path, 'text,labels\n借款利息太高,利率争议\n平台"催收,暴力催收\n'))
    assert [r.text for r in res.records] == ["借款利息太高", '平台"催收']


def test_repeated_texts_stay_in_one_split() -> None:
    records = _records(1200)
    # 60 texts repeated once or twice, some with other labels and a different spelling (full-width, case,
    # zero-width), which normalisation makes equal.
    extra = []
    for i in range(60):
        src = records[i * 7]
        text = src.text.replace("text", "ＴＥＸＴ\u200b") if i % 2 else src.text
        extra += [Record(f"dup{i}-{k}", text, src.labels if k else records[i].labels) for k in range(1 + i % 2)]
    parts = split_records(records + extra, seed=0)
    where: dict[str, set[str]] = {}
    for name, recs in parts.items():
        for r in recs:
            where.setdefault(r.text.replace("ＴＥＸＴ\u200b", "text"), set()).add(name)
    assert all(len(names) == 1 for names in where.values())
    assert sum(len(v) for v in parts.values()) == len(records) + len(extra)
    assert any(f"{len(extra)} records repeat an earlier text" in note for note in parts.notes)
    # Without repeats the split is the plain per-record one, as before.
    assert not any("repeat" in note for note in split_records(records, seed=0).notes)


def test_repeats_across_given_splits_are_counted() -> None:
    records = [Record(f"t{i}", f"text {i}", ("a",), "train") for i in range(20)]
    records += [Record("v1", "text 1", ("a",), "valid"), Record("s1", "text 2", ("a",), "test"),
                Record("s2", "other", ("a",), "test")]
    parts = split_records(records, use_given=True)
    assert [r.id for r in parts["test"]] == ["s1", "s2"]  # the user's split is kept
    assert any("2 records repeat an earlier text" in n and "2 texts are in more than one of the given splits" in n
               for n in parts.notes)
