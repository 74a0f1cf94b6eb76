"""Loading, validating and splitting labelled complaint records (JSONL or CSV).

Every problem with a record is reported as ``FILE:LINE: field: what is wrong`` so that a user
with a 100k-line file can go straight to the line. ``skip_bad=True`` turns those errors into a
list of skipped messages instead.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from fmlc.text import normalize

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Names that datasets use for their splits; "eval" is what e.g. CCKS calls its dev file.
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid", "eval": "valid",
    "test": "test", "testing": "test",
}
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_LABEL_SEPARATORS = ("|", ";", ",")
_LABELS_PROBLEM = "must be a non-empty list of strings"


class DataError(ValueError):
    """A data file that cannot be used; the message names the file (and line and field)."""


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    labels: tuple[str, ...]
    split: str | None = None


@dataclass
class LoadResult:
    records: list[Record] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # (id of the first record, id of the later one) for every normalised text seen before.
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({label for r in self.records for label in r.labels})


class Splits(dict):
    """``{"train", "valid", "test"} -> records``, plus ``notes`` on anything decided for the user."""

    def __init__(self, parts: dict[str, list[Record]], notes: list[str]) -> None:
        super().__init__(parts)
        self.notes = notes


class _Bad(Exception):
    def __init__(self, field_name: str, what: str) -> None:
        super().__init__(f"{field_name}: {what}")
        self.field_name = field_name
        self.what = what


class _RecordModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: StrictStr
    labels: list[StrictStr]
    id: StrictStr | StrictInt | None = None
    split: StrictStr | None = None

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        # normalize() drops zero-width and control characters too: a text of only those is empty.
        if not normalize(v):
            raise PydanticCustomError("fmlc_empty", "must not be empty (nothing but whitespace or invisible "
                                                    "characters)" if v else "must not be empty")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_clean(cls, v: list[str]) -> list[str]:
        cleaned = [label.strip() for label in v]
        if not cleaned or not all(cleaned):
            raise PydanticCustomError("fmlc_labels", _LABELS_PROBLEM)
        return list(dict.fromkeys(cleaned))  # a label repeated within one record counts once


# What to say when a field has the wrong type; pydantic's own wording names Python types.
_TYPE_PROBLEM = {
    "text": "must be a string",
    "labels": _LABELS_PROBLEM,
    "id": "must be a string or an integer",
    "split": "must be a string",
}


def _validate(raw: dict[str, Any], names: dict[str, str]) -> _RecordModel:
    """Validate a record given under our field names; ``names`` maps them to the user's names."""
    try:
        return _RecordModel.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "record"
        if err["type"] == "missing":
            what = "missing"
        elif err["type"].startswith("fmlc_"):
            what = err["msg"]
        else:
            what = _TYPE_PROBLEM.get(key, err["msg"])
        raise _Bad(names.get(key, key), what) from None


class _Collector:
    """Accumulates records over one or more files: ids, duplicates, skips."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.result = LoadResult()
        self._id_at: dict[str, str] = {}
        self._text_owner: dict[str, str] = {}

    def bad(self, where: str, problem: _Bad) -> None:
        message = f"{where}: {problem.field_name}: {problem.what}"
        if not self.skip_bad:
            raise DataError(message)
        self.result.skipped.append(message)

    def add(self, where: str, model: _RecordModel, default_id: str, id_name: str) -> None:
        rid = str(model.id).strip() if model.id is not None else default_id
        if not rid:
            raise _Bad(id_name, "must not be empty")
        if rid in self._id_at:
            raise _Bad(id_name, f"duplicate id {rid!r} (first at {self._id_at[rid]})")
        self._id_at[rid] = where
        split = model.split.strip() if model.split is not None else None
        record = Record(id=rid, text=model.text, labels=tuple(model.labels), split=split or None)
        key = normalize(record.text)
        if key in self._text_owner:
            self.result.duplicates.append((self._text_owner[key], rid))
        else:
            self._text_owner[key] = rid
        self.result.records.append(record)


def _decode_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, encoding problem or None) for every physical line of a file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for lineno, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            yield lineno, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
            yield lineno, raw.decode("utf-8", errors="replace"), problem


def _split_label_string(value: str, sep: str | None) -> list[str] | str:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed
    if not value:
        return []
    return value.split(sep) if sep else [value]


def _load_jsonl(path: Path, col: _Collector, text_field: str, labels_field: str, id_field: str,
                label_sep: str | None) -> None:
    names = {"text": text_field, "labels": labels_field, "id": id_field, "split": "split"}
    seen_content = False
    for lineno, line, enc_problem in _decode_lines(path):
        if not line.strip():
            continue
        seen_content = True
        where = f"{path}:{lineno}"
        try:
            if enc_problem:
                raise _Bad("encoding", enc_problem)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _Bad("json", f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise _Bad("json", f"must be a JSON object, not {type(obj).__name__}")
            raw = {ours: obj[theirs] for ours, theirs in names.items() if theirs in obj}
            if label_sep and isinstance(raw.get("labels"), str):
                raw["labels"] = _split_label_string(raw["labels"], label_sep)
            model = _validate(raw, names)
            col.add(where, model, f"{path.stem}:{lineno}", id_field)
        except _Bad as problem:
            col.bad(where, problem)
    if not seen_content:
        raise DataError(f"{path}: empty file, no records")


def _guess_separator(cells: Iterable[str]) -> str | None:
    hits = Counter(sep for cell in cells for sep in _LABEL_SEPARATORS if sep in cell)
    if not hits:
        return None
    # Most cells win; ties go to the least ambiguous separator, "|" before ";" before ",".
    return max(_LABEL_SEPARATORS, key=lambda sep: (hits[sep], -_LABEL_SEPARATORS.index(sep)))


def _load_csv(path: Path, col: _Collector, text_field: str, labels_field: str, id_field: str,
              label_sep: str | None) -> None:
    lines = list(_decode_lines(path))
    bad_encoding = {n: p for n, _, p in lines if p}
    reader = csv.reader((text for _, text, _ in lines), delimiter=_CSV_DELIMITERS[path.suffix.lower()])
    rows: list[tuple[int, int, list[str]]] = []  # (first line, last line, cells)
    last = 0
    try:
        for cells in reader:
            first, last = last + 1, reader.line_num
            if any(c.strip() for c in cells):
                rows.append((first, last, cells))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: csv: {exc}") from None
    if rows and rows[-1][1] == len(lines) and _runs_off_the_end(text for _, text, _ in lines[rows[-1][0] - 1:]):
        start = rows[-1][0]
        raise DataError(f"{path}:{start}: csv: unterminated quote: a quoted field opens on this line and is never "
                        f"closed, so everything to the end of the file (line {len(lines)}) would be one field")
    if not rows:
        raise DataError(f"{path}: empty file, no records")
    header_line, _, header = rows[0]
    header = [h.strip() for h in header]
    for needed in (text_field, labels_field):
        if needed not in header:
            raise DataError(f"{path}:{header_line}: {needed}: column missing (header: {', '.join(header)})")
    if len(rows) == 1:
        raise DataError(f"{path}: no records after the header")
    pos = {name: i for i, name in enumerate(header)}
    sep = label_sep or _guess_separator(
        cells[pos[labels_field]] for _, _, cells in rows[1:] if len(cells) > pos[labels_field])
    names = {"text": text_field, "labels": labels_field, "id": id_field, "split": "split"}
    for first, end, cells in rows[1:]:
        where = f"{path}:{first}"
        try:
            enc = next((bad_encoding[n] for n in range(first, end + 1) if n in bad_encoding), None)
            if enc:
                raise _Bad("encoding", enc)
            if len(cells) > len(header):
                raise _Bad("csv", f"row has {len(cells)} fields, the header has {len(header)}")
            raw: dict[str, Any] = {}
            for ours, theirs in names.items():
                if theirs in pos and pos[theirs] < len(cells):
                    raw[ours] = cells[pos[theirs]]
            if "labels" in raw:
                raw["labels"] = _split_label_string(raw["labels"], sep)
            if raw.get("id") == "":
                del raw["id"]
            if raw.get("split") == "":
                del raw["split"]
            model = _validate(raw, names)
            col.add(where, model, f"{path.stem}:{first}", id_field)
        except _Bad as problem:
            if end > first:  # a quote left open mid-file swallows the following lines into this row
                problem = _Bad(problem.field_name, f"{problem.what} (this row runs over lines {first}-{end} inside "
                                                   "a quoted field; is a quote left open?)")
            col.bad(where, problem)


def _runs_off_the_end(row_lines: Iterable[str]) -> bool:
    """Whether these lines (the last row of a file) end inside a quoted field. The lenient reader
    accepts that silently; a strict one calls it "unexpected end of data"."""
    try:
        for _ in csv.reader(row_lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _load_into(path: Path, col: _Collector, **fields: Any) -> None:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        _load_jsonl(path, col, **fields)
    elif suffix in _CSV_DELIMITERS:
        _load_csv(path, col, **fields)
    else:
        raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'}; use .jsonl, .csv or .tsv")


def _finish(col: _Collector, what: str) -> LoadResult:
    res = col.result
    if not res.records:
        first = f"; first problem: {res.skipped[0]}" if res.skipped else ""
        raise DataError(f"{what}: no valid records ({len(res.skipped)} skipped{first})")
    if res.skipped:
        log.warning("%s: skipped %d bad records; first: %s", what, len(res.skipped), res.skipped[0])
    if res.duplicates:
        log.info("%s: %d records repeat an earlier text (after normalisation)", what, len(res.duplicates))
    return res


def load_records(path: str | Path, *, skip_bad: bool = False, text_field: str = "text",
                 labels_field: str = "labels", id_field: str = "id",
                 label_sep: str | None = None) -> LoadResult:
    """Load one JSONL or CSV/TSV file.

    JSONL: one object per line with ``text``, ``labels`` (list of strings), optional ``id`` and
    ``split``. CSV: a header with a text and a labels column (labels joined by ``label_sep``,
    guessed among ``|``, ``;``, ``,`` when not given), optional id and split columns. A missing
    id becomes ``<file stem>:<line>``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    col = _Collector(skip_bad)
    _load_into(path, col, text_field=text_field, labels_field=labels_field, id_field=id_field,
               label_sep=label_sep)
    return _finish(col, str(path))


def load_path(path: str | Path, **kwargs: Any) -> LoadResult:
    """A file, or a directory whose ``*.jsonl`` files (sorted by name) are loaded together."""
    path = Path(path)
    if path.is_file():
        return load_records(path, **kwargs)
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
    if not files:
        raise DataError(f"{path}: directory has no *.jsonl files")
    col = _Collector(kwargs.pop("skip_bad", False))
    fields = {"text_field": "text", "labels_field": "labels", "id_field": "id", "label_sep": None}
    unknown = set(kwargs) - set(fields)
    if unknown:
        raise TypeError(f"unexpected arguments: {sorted(unknown)}")
    fields.update(kwargs)
    for file in files:
        _load_into(file, col, **fields)
    return _finish(col, str(path))


def label_counts(records: Iterable[Record]) -> Counter[str]:
    return Counter(label for r in records for label in r.labels)


# --------------------------------------------------------------------------------------------
# Splitting


def _label_matrix(records: Sequence[Record]) -> np.ndarray:
    index = {label: i for i, label in enumerate(sorted(label_counts(records)))}
    y = np.zeros((len(records), max(2, len(index))), dtype=np.uint8)
    for row, r in enumerate(records):
        for label in r.labels:
            y[row, index[label]] = 1
    # iterstrat wants a multilabel indicator, which needs two columns; an unused one is harmless.
    return y


def _stratified_take(records: Sequence[Record], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions (kept, taken) with about ``share`` of the records taken, label-stratified."""
    n = len(records)
    n_take = int(round(n * share))
    if n_take <= 0 or n < 2:
        return list(range(n)), []
    if n_take >= n:
        return [], list(range(n))
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    y = _label_matrix(records)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_take, random_state=seed)
    kept, taken = next(splitter.split(np.zeros((n, 1)), y))
    return sorted(kept.tolist()), sorted(taken.tolist())


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ValueError(f"ratios must be three non-negative numbers with train > 0, got {tuple(ratios)}")
    total = float(sum(ratios))
    return ratios[0] / total, ratios[1] / total, ratios[2] / total


def _text_groups(records: Sequence[Record]) -> list[list[int]]:
    """Positions of the records, grouped by normalised text, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(normalize(r.text), []).append(i)
    return list(groups.values())


def _carve(records: list[Record], share: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Stratified carve in which records with the same (normalised) text go to the same side, so no
    text is both trained and tested on. Without repeats this is the plain per-record carve."""
    groups = _text_groups(records)
    if len(groups) == len(records):
        kept, taken = _stratified_take(records, share, seed)
        return [records[i] for i in kept], [records[i] for i in taken]
    # One stand-in per text, carrying the union of its records' labels, is what gets stratified.
    stand_ins = [Record(id=records[g[0]].id, text=records[g[0]].text,
                        labels=tuple(dict.fromkeys(lab for i in g for lab in records[i].labels))) for g in groups]
    kept_g, taken_g = _stratified_take(stand_ins, share, seed)
    kept = sorted(i for gi in kept_g for i in groups[gi])
    taken = sorted(i for gi in taken_g for i in groups[gi])
    return [records[i] for i in kept], [records[i] for i in taken]


def split_records(records: Sequence[Record], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                  use_given: bool = False) -> Splits:
    """Split into train / valid / test with iterative multi-label stratification.

    Records keep their input order inside each split, and the same input, ratios and seed
    always give the same split. With ``use_given`` the records' own ``split`` field decides
    (train; dev, valid or val; test); a missing valid or test part is carved out of train,
    stratified, and ``Splits.notes`` (also logged) says so.
    """
    r_train, r_valid, r_test = _check_ratios(ratios)
    records = list(records)
    notes: list[str] = []
    few = [label for label, c in label_counts(records).items() if c < 3]
    if few:
        notes.append(f"{len(few)} labels have fewer than 3 examples and cannot be in every split")
    repeats = len(records) - len(_text_groups(records))

    if repeats and not use_given:
        notes.append(f"{repeats} records repeat an earlier text (after normalisation); each repeated text is kept "
                     "in one split")
    if not use_given:
        train, rest = _carve(records, r_valid + r_test, seed)
        valid, test = _carve(rest, r_test / (r_valid + r_test) if rest else 0.0, seed)
        return _done({"train": train, "valid": valid, "test": test}, notes)

    parts: dict[str, list[Record]] = {name: [] for name in SPLITS}
    unusable: Counter[str] = Counter()
    for r in records:
        name = _SPLIT_ALIASES.get((r.split or "").strip().lower())
        if name is None:
            unusable[repr(r.split)] += 1
        else:
            parts[name].append(r)
    if unusable:
        shown = ", ".join(f"{value} x{n}" for value, n in unusable.most_common(5))
        raise DataError(f"split: {sum(unusable.values())} records have no usable split value ({shown}); "
                        "use train, valid (dev, val) or test, or split with use_given=False")
    if not parts["train"]:
        raise DataError("split: no records are marked train")
    if not parts["valid"] and not parts["test"]:
        train, rest = _carve(parts["train"], r_valid + r_test, seed)
        valid, test = _carve(rest, r_test / (r_valid + r_test) if rest else 0.0, seed)
        parts = {"train": train, "valid": valid, "test": test}
        notes.append("no valid or test split given: both were carved out of train, stratified")
    elif not parts["test"]:
        share = r_test / (r_train + r_test)
        parts["train"], parts["test"] = _carve(parts["train"], share, seed)
        notes.append(f"no test split given: test ({len(parts['test'])} records, {share:.0%} of train) "
                     "was carved out of train, stratified; the given valid split is kept as is")
    elif not parts["valid"]:
        share = r_valid / (r_train + r_valid)
        parts["train"], parts["valid"] = _carve(parts["train"], share, seed)
        notes.append(f"no valid split given: valid ({len(parts['valid'])} records, {share:.0%} of train) "
                     "was carved out of train, stratified")
    if repeats:
        # Carved parts keep repeated texts together; the given ones are the user's and stay as given.
        where: dict[str, set[str]] = {}
        for name, recs in parts.items():
            for r in recs:
                where.setdefault(normalize(r.text), set()).add(name)
        across = sum(1 for names in where.values() if len(names) > 1)
        notes.append(f"{repeats} records repeat an earlier text (after normalisation)"
                     + (f"; {across} texts are in more than one of the given splits (kept as given)" if across
                        else "; none is in two splits"))
    return _done(parts, notes)


def _done(parts: dict[str, list[Record]], notes: list[str]) -> Splits:
    for note in notes:
        log.warning("split: %s", note)
    return Splits({name: parts[name] for name in SPLITS}, notes)


def apply_corrections(records: Sequence[Record], corrections: Sequence[Record]) -> tuple[list[Record], dict[str, int]]:
    """The training records with agents' corrections applied: a correction replaces every record with
    the same id or the same normalised text (a person's labels beat the original ones), and the rest
    are added. Returns the records and counts of what happened, for the user to see."""
    by_id = {c.id: c for c in corrections}
    by_text = {normalize(c.text): c for c in corrections}
    kept: list[Record] = []
    replaced = 0
    for record in records:
        if record.id in by_id or normalize(record.text) in by_text:
            replaced += 1
            continue
        kept.append(record)
    merged = kept + list(by_id.values())
    return merged, {"replaced": replaced, "added": len(by_id), "corrections": len(corrections)}
