"""Wire formats: the complaint that comes in, the labels that go out, alerts and dead letters.

Everything on the wire is UTF-8 JSON (non-ASCII kept as is, so Chinese stays readable in tools).
Input is validated strictly: a message the worker cannot classify becomes a dead letter with a
reason from a small fixed set (the reason is also a metric label, so the set must stay bounded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

SCHEMA_VERSION: Final = 1
SUPPORTED_INPUT_VERSIONS = frozenset({1})
_ERROR_HEADER_CHARS = 1_000


class DeadLetterReason(str, Enum):
    EMPTY_MESSAGE = "empty_message"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    INVALID_SCHEMA = "invalid_schema"
    UNSUPPORTED_VERSION = "unsupported_schema_version"
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    PROCESSING_ERROR = "processing_error"
    UNDECODABLE = "undecodable"  # the Kafka client could not decode the record (corrupt, codec, header)
    MODEL_ERROR = "model_error"  # the model raised on this text alone (not out of memory)


class InvalidMessage(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Complaint(BaseModel):
    """One complaint as producers send it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: StrictInt = SCHEMA_VERSION
    id: str = Field(min_length=1, max_length=256)
    text: StrictStr
    source: StrictStr | None = Field(None, max_length=256)
    created_at: datetime | None = None
    # `meta` (any JSON object) is accepted and checked to be an object, but not kept: nothing
    # downstream reads it, and parsed it costs ~24x its bytes for as long as the message is in
    # flight (a 900 KB meta: about 21 MB).

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # Numeric ids are common in upstream systems; they are kept as their decimal text so the
        # output key is the same bytes whichever form the producer used. Bools are not ids.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValueError("id must be a string or an integer")
        return value


def parse_complaint(raw: bytes | None, max_text_chars: int) -> Complaint:
    """Bytes → Complaint, or InvalidMessage with the dead-letter reason."""
    if raw is None or len(raw) == 0:
        raise InvalidMessage(DeadLetterReason.EMPTY_MESSAGE, "message value is empty")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(DeadLetterReason.NOT_UTF8, str(exc)) from None
    try:
        obj = json.loads(decoded)
    except ValueError as exc:
        raise InvalidMessage(DeadLetterReason.NOT_JSON, str(exc)) from None
    except RecursionError:
        # Thousands of nested brackets: the parser's recursion limit is not the worker's problem.
        raise InvalidMessage(DeadLetterReason.NOT_JSON, "JSON nested too deeply") from None
    try:
        # JSON escapes can smuggle lone UTF-16 surrogates ("\ud800") into valid UTF-8 bytes; such a
        # string cannot be encoded again (cache key, output, headers), so it is refused here.
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage(DeadLetterReason.NOT_UTF8, f"lone surrogate in a string: {exc.reason}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(DeadLetterReason.INVALID_SCHEMA, f"expected a JSON object, got {type(obj).__name__}")
    meta = obj.pop("meta", None)
    if meta is not None and not isinstance(meta, dict):
        raise InvalidMessage(DeadLetterReason.INVALID_SCHEMA,
                             f"meta: expected a JSON object, got {type(meta).__name__}")
    del meta
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version not in SUPPORTED_INPUT_VERSIONS:
        raise InvalidMessage(DeadLetterReason.UNSUPPORTED_VERSION,
                             f"schema_version {version} (supported: {sorted(SUPPORTED_INPUT_VERSIONS)})")
    try:
        complaint = Complaint.model_validate(obj)
    except ValidationError as exc:
        raise InvalidMessage(DeadLetterReason.INVALID_SCHEMA, _short_errors(exc)) from None
    if not complaint.text.strip():
        raise InvalidMessage(DeadLetterReason.EMPTY_TEXT, "text is empty or whitespace only")
    if len(complaint.text) > max_text_chars:
        raise InvalidMessage(DeadLetterReason.TEXT_TOO_LONG,
                             f"text has {len(complaint.text)} characters, the limit is {max_text_chars}")
    return complaint


def _short_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


class LabelOut(BaseModel):
    label: str
    score: float
    evidence: list[str] = Field(default_factory=list)


class Timings(BaseModel):
    """Milliseconds. Cache, tokenize and inference times are those of the micro-batch the message
    rode in (they are shared by its messages); queue and total are the message's own."""

    queue_ms: float
    cache_ms: float = 0.0
    tokenize_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float


class Classified(BaseModel):
    """Output topic, keyed by complaint id."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    labels: list[LabelOut]
    model_version: str
    cached: bool
    source: str | None = None
    created_at: datetime | None = None
    processed_at: datetime
    timings: Timings


Severity = Literal["info", "low", "medium", "high", "critical"]


class Alert(BaseModel):
    """Alert topics, keyed by complaint id: one message per rule that fired."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    rule: str
    severity: Severity
    labels: list[LabelOut]  # the labels that made the rule fire, with their scores
    model_version: str
    source: str | None = None
    created_at: datetime | None = None
    fired_at: datetime


def to_bytes(model: BaseModel) -> bytes:
    return model.model_dump_json().encode("utf-8")


# (topic, key, value, headers) of one message to produce
Outgoing = tuple[str, "bytes | None", "bytes | None", list[tuple[str, bytes]]]
ALERT_SEVERITY_HEADER = "fmlc.alert.severity"


class FiredRule(Protocol):
    """What rendering needs of a rule that fired (worker.alerts.AlertRule); a protocol, so that the wire
    formats do not import the alert rules, which import them."""

    @property
    def name(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def severity(self) -> Severity: ...


class AlertFiring(Protocol):
    """A rule and the labels that made it fire (worker.alerts.Firing)."""

    @property
    def rule(self) -> FiredRule: ...

    @property
    def labels(self) -> list[LabelOut]: ...


def render_result(result: Classified, output_topic: str, firings: Sequence[AlertFiring] = ()) -> list[Outgoing]:
    """The messages a classified complaint becomes: its output, keyed by complaint id, then one alert
    per rule that fired (worker.alerts.AlertRules.evaluate), fired at the time it was processed."""
    key = result.id.encode("utf-8")
    out: list[Outgoing] = [(output_topic, key, to_bytes(result), [])]
    for firing in firings:
        rule = firing.rule
        alert = Alert(id=result.id, rule=rule.name, severity=rule.severity, labels=firing.labels,
                      model_version=result.model_version, source=result.source, created_at=result.created_at,
                      fired_at=result.processed_at)
        out.append((rule.topic, key, to_bytes(alert), [(ALERT_SEVERITY_HEADER, rule.severity.encode())]))
    return out


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- dead letters ------------------------------------------------------------------------------------

DLQ_REASON = "fmlc.dlq.reason"
DLQ_ERROR = "fmlc.dlq.error"
DLQ_TOPIC = "fmlc.dlq.source.topic"
DLQ_PARTITION = "fmlc.dlq.source.partition"
DLQ_OFFSET = "fmlc.dlq.source.offset"
DLQ_TIMESTAMP = "fmlc.dlq.source.timestamp"
DLQ_TRUNCATED = "fmlc.dlq.truncated"
DLQ_TRUNCATED_HEADERS = "fmlc.dlq.truncated.headers"
DLQ_TRUNCATED_KEY = "fmlc.dlq.truncated.key"
# Bytes of a record batch around one record's key, value and header bytes (message format v2: a
# 61-byte batch header, up to 21 bytes of record varints, up to 10 per header), with room to spare.
RECORD_OVERHEAD = 128
HEADER_OVERHEAD = 10


@dataclass(frozen=True)
class DeadLetter:
    """The original key and bytes, untouched, plus headers that say why and where from."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """An upper bound of what a record takes against a producer's max_request_size and a broker's
    message.max.bytes (both count the whole batch: key, value, headers and framing)."""
    return (RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            + sum(HEADER_OVERHEAD + len(k.encode("utf-8")) + len(v or b"") for k, v in headers))


def dead_letter(*, topic: str, partition: int, offset: int, timestamp: int | None, key: bytes | None,
                value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None,
                reason: DeadLetterReason, error: str, max_bytes: int) -> DeadLetter:
    """`max_bytes` bounds the whole record (key + value + headers + framing), so the dead letter
    can always be written: what does not fit is cut — the value first, then the original headers,
    then the key — and headers say what was cut and how big it was."""
    # Original headers come first and are kept, so tracing ids survive into the dead-letter topic;
    # earlier fmlc.dlq.* headers (a message replayed from the DLQ) are replaced, not duplicated.
    kept = [(k, v if v is not None else b"") for k, v in (headers or []) if not k.startswith("fmlc.dlq.")]
    ours = [
        (DLQ_REASON, reason.value.encode()),
        (DLQ_ERROR, error[:_ERROR_HEADER_CHARS].encode("utf-8", "replace")),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]
    if timestamp is not None:
        ours.append((DLQ_TIMESTAMP, str(timestamp).encode()))
    # Room for the markers below, whichever of them are needed.
    markers = [(DLQ_TRUNCATED, b"9" * 20), (DLQ_TRUNCATED_HEADERS, b"9" * 20), (DLQ_TRUNCATED_KEY, b"9" * 20)]
    if record_size(key, value, kept + ours) > max_bytes:
        room = max_bytes - record_size(key, None, kept + ours + markers)
        if value is not None and room >= 0:
            ours.append((DLQ_TRUNCATED, str(len(value)).encode()))
            value = value[:room]
        else:
            # Key and headers alone do not fit: the original headers go (their count is kept).
            if value is not None:
                ours.append((DLQ_TRUNCATED, str(len(value)).encode()))
                value = b""
            ours.append((DLQ_TRUNCATED_HEADERS, str(len(kept)).encode()))
            kept = []
            room = max_bytes - record_size(None, value, ours + markers)
            if key is not None and len(key) > room:
                ours.append((DLQ_TRUNCATED_KEY, str(len(key)).encode()))
                key = key[:max(0, room)]
    if key is None and value is None:
        # A producer refuses a record with neither (a null-key tombstone, a record whose bytes the
        # client could not decode): an empty value keeps the dead letter writable.
        value = b""
    return DeadLetter(key=key, value=value, headers=kept + ours)


def render_dead_letter(*, topic: str, partition: int, offset: int, timestamp: int | None, key: bytes | None,
                       value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None,
                       invalid: InvalidMessage | None, dlq_topic: str, max_bytes: int) -> Outgoing:
    """The dead-letter message of a consumed record the worker could not classify: `invalid` says
    why; None (no result for another reason) is a processing error."""
    reason = invalid.reason if invalid is not None else DeadLetterReason.PROCESSING_ERROR
    detail = invalid.detail if invalid is not None else "no result"
    dl = dead_letter(topic=topic, partition=partition, offset=offset, timestamp=timestamp, key=key, value=value,
                     headers=headers, reason=reason, error=detail, max_bytes=max_bytes)
    return (dlq_topic, dl.key, dl.value, dl.headers)


__all__ = [
    "ALERT_SEVERITY_HEADER", "Alert", "Classified", "Complaint", "DeadLetter", "DeadLetterReason", "InvalidMessage",
    "LabelOut", "Outgoing", "SCHEMA_VERSION", "Severity", "Timings", "dead_letter", "parse_complaint", "record_size",
    "render_dead_letter", "render_result", "to_bytes", "utcnow",
]
