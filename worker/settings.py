"""Worker configuration: one pydantic-settings object, read from `FMLC_*` environment variables.

Command-line flags become constructor overrides (`load_settings(**flags)`); secrets are the one
exception: they are accepted from the environment only, so that they never show up in a process
list, a shell history or a crash dump of argv. Secrets are SecretStr (their repr is masked), and
validation errors never echo the input (`hide_input_in_errors`): a whole-config check would
otherwise print every value it was given, passwords included.

Settings that make no sense together are refused at start-up with a message that names the
environment variable to fix (FMLC_...), never a value.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A Redis URL may carry a password (redis://user:password@host:6379/0), so it is a secret too.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_password", "redis_url"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Settings that name something and may not be empty or blank.
REQUIRED_NAMES = ("bootstrap_servers", "input_topic", "output_topic", "dlq_topic", "group_id", "client_id",
                  "cache_prefix")


def env_name(field: str) -> str:
    return f"FMLC_{field.upper()}"


def redact_url(url: str) -> str:
    """The URL with any user name and password replaced by ***, for log lines."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"  # unparseable: say nothing about it
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, f"***@{host}{port}", parts.path, parts.query, parts.fragment))


class WorkerSettings(BaseSettings):
    # FMLC_X=null means "unset" (None) for any optional setting, e.g. FMLC_REDIS_URL=null: no cache.
    model_config = SettingsConfigDict(env_prefix="FMLC_", extra="ignore", validate_default=True,
                                      env_parse_none_str="null", hide_input_in_errors=True)

    # --- Kafka ---------------------------------------------------------------------------------------
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "fmlc.complaints"
    output_topic: str = "fmlc.labels"
    dlq_topic: str = "fmlc.dead-letter"
    group_id: str = "fmlc-worker"
    client_id: str = "fmlc-worker"
    delivery: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # Exactly-once needs a transactional id unique per worker instance and stable across restarts of
    # that instance, so that a restarted process fences its predecessor's open transaction instead of
    # waiting out its timeout. Default: "<group_id>-<instance_id>", the instance id being
    # FMLC_INSTANCE_ID (the pod name on Kubernetes) or else the host name. Two live workers given the
    # same id refuse to start (worker.kafka.check_transactional_id) rather than fence each other.
    transactional_id: str | None = None
    instance_id: str | None = None
    transaction_timeout_ms: int = Field(60_000, ge=1_000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int | None = None  # None: a third of the session timeout
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    max_poll_records: int = Field(500, ge=1)
    create_topics: bool = False  # never create topics silently in production
    topic_partitions: int = Field(3, ge=1)
    topic_replication: int = Field(1, ge=1)
    # Security: PLAINTEXT for local brokers; SASL_SSL with SCRAM for managed clusters.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # A dead letter (key + value + headers) never exceeds the smallest of max_dead_letter_bytes, the
    # producer's max_request_size and max_message_bytes: the broker's message.max.bytes (Kafka's
    # default 1,048,588) or the dead-letter topic's max.message.bytes, if that is lower. Bigger ones
    # are cut (value, then original headers, then key) and marked fmlc.dlq.truncated*.
    max_dead_letter_bytes: int = Field(900_000, ge=4_096)
    max_message_bytes: int = Field(1_048_588, ge=4_096)
    # Codec of everything the worker produces (outputs, alerts, dead letters). zstd: 4.6x smaller
    # outputs than none for about 2 us more CPU per message (bench/results/compression.md); readers
    # need Kafka clients from 2.1 on. Input is read in whatever codec its producers chose.
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "zstd"

    # --- model and batching --------------------------------------------------------------------------
    model_path: Path = Path("runs/model")
    device: str | None = None  # None / "auto": CUDA when present, else CPU
    # None: all CPUs this process may use but one, which is left to the consume/tokenise/produce
    # threads (torch's own default takes every core and, on a busy box, its threads then spin
    # against each other: measured 8x slower per batch on 2 shared cores).
    cpu_threads: int | None = Field(None, ge=1)
    # int8: dynamic int8 quantisation of the GRU and linear layers, on the CPU only (2.57x the fp32
    # model for 0.04 macro-F1 points on ccks2019_fin, bench/results/model_speed.md). Refused here
    # when FMLC_DEVICE names a CUDA device, and at model load when "auto" finds one.
    quantize: Literal["none", "int8"] = "none"
    batch_size: int = Field(64, ge=1)  # texts per forward pass
    # Under a backlog the model takes up to sort_window micro-batches that are already tokenised and
    # waiting in one call, sorts them by length together and cuts forward passes of batch_size: less
    # padding (ccks texts: 1.62x the real tokens for 64 in arrival order, 1.23x for 256, 1.14x for 512).
    # It never waits for them, so a light stream sees no extra latency.
    sort_window: int = Field(8, ge=1)
    max_wait_ms: int = Field(25, ge=0)
    # Records consumed but not yet committed. None: enough for every stage to hold a full window
    # (6 * batch_size * sort_window); fewer starves the merge under a backlog.
    max_in_flight: int | None = Field(None, ge=1)
    # ... and the bytes they hold (raw key, value and headers plus what is kept parsed; see
    # worker.offsets.record_cost). Fetching pauses at this budget and resumes at half of it, and each
    # fetch is cut to a quarter of it, so large messages cannot add up to an out-of-memory kill.
    max_in_flight_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    max_text_chars: int = Field(5_000, ge=1)
    # Where jieba runs. "process": in a child process, tokenising the next micro-batches while the
    # model runs (jieba is pure Python; in a thread it would take the GIL from the model thread, see
    # docs/decisions/0001). "inline": in the model stage, taking turns with the model. "auto":
    # "process" on a GPU or where this process may use more than one CPU, else "inline".
    tokenizer: Literal["auto", "process", "inline"] = "auto"
    # Tokenizer child processes (FMLC_TOKENIZER=process), which split each micro-batch between them,
    # in order. None: one on the CPU, where the model needs the cores; on CUDA every usable CPU but
    # one, since jieba then limits the worker (worker.model.default_tokenizer_processes).
    tokenizer_processes: int | None = Field(None, ge=1)
    model_poll_interval_s: float = Field(30.0, ge=0)  # 0 turns polling off (SIGHUP still reloads)

    # --- cache ---------------------------------------------------------------------------------------
    redis_url: SecretStr | None = SecretStr("redis://127.0.0.1:6379/0")  # empty: no cache
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    cache_prefix: str = "fmlc"
    cache_socket_timeout_s: float = Field(0.05, gt=0)
    cache_retry_s: float = Field(5.0, ge=0)  # first back-off after an outage; doubles up to 60 s

    # --- liveness ------------------------------------------------------------------------------------
    # /healthz fails when a stage (prepare, tokenizer, infer, deliver, transaction) has held work for
    # this long without progress, or the consume loop has not turned for this long.
    stall_timeout_s: float = Field(30.0, gt=0)
    # A tokenizer child that does not answer within this is killed and replaced (its batch is
    # tokenised in the worker meanwhile). Below the stall timeout, so that the worker heals itself
    # before the liveness probe gives up on it.
    tokenizer_timeout_s: float = Field(10.0, gt=0)

    # --- alerts, metrics, lifecycle ------------------------------------------------------------------
    alert_rules: Path | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9108, ge=0, le=65535)  # 0: any free port (tests)
    shutdown_timeout_s: float = Field(20.0, gt=0)
    log_level: str = "INFO"

    # --- the model's life after deployment (docs/operations.md, "The model's life") ---------------------
    # A window of a few thousand complaints is minutes of traffic at the rates the worker serves:
    # long enough that one burst does not move the score, short enough to show a shift within the hour.
    drift_window: int = Field(2000, ge=1)
    drift_min_docs: int = Field(200, ge=1)
    review_topic: str | None = None  # unset: no review copies
    review_margin: float = Field(0.05, ge=0, le=1)
    review_max_per_s: float = Field(5.0, gt=0)
    shadow_model_path: Path | None = None  # unset: no shadow scoring
    shadow_sample: float = Field(0.1, gt=0, le=1)
    shadow_topic: str = "fmlc.shadow"

    @field_validator("redis_url", "transactional_id", "instance_id", "device", "sasl_username", "alert_rules",
                     "ssl_cafile", "ssl_certfile", "ssl_keyfile", "review_topic", "shadow_model_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # A SecretStr arrives when the settings are built in code (tests, the demo), a str from the env.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.strip().upper() not in LOG_LEVELS:
            # The value itself is not echoed: whatever was set, the fix is one of these.
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    @model_validator(mode="after")
    def _check_together(self) -> WorkerSettings:
        for name in REQUIRED_NAMES:
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{env_name(name)} must not be empty")
        if self.drift_min_docs > self.drift_window:
            raise ValueError("FMLC_DRIFT_MIN_DOCS must not exceed FMLC_DRIFT_WINDOW")
        if self.shadow_model_path is not None and not self.shadow_topic.strip():
            raise ValueError("FMLC_SHADOW_TOPIC must not be empty when FMLC_SHADOW_MODEL_PATH is set")
        sasl_complete = bool(self.sasl_mechanism and self.sasl_username and self.sasl_password)
        if self.security_protocol.startswith("SASL") and not sasl_complete:
            raise ValueError(f"FMLC_SECURITY_PROTOCOL={self.security_protocol} needs FMLC_SASL_MECHANISM, "
                             "FMLC_SASL_USERNAME and FMLC_SASL_PASSWORD")
        if self.session_timeout_ms > self.max_poll_interval_ms:
            raise ValueError("FMLC_SESSION_TIMEOUT_MS must not exceed FMLC_MAX_POLL_INTERVAL_MS")
        if self.heartbeat_interval_ms is not None and not (
                0 < self.heartbeat_interval_ms * 3 < self.session_timeout_ms):
            # The broker drops a member that misses heartbeats for a session timeout; fewer than
            # three heartbeats per timeout make one lost packet a rebalance.
            raise ValueError(f"FMLC_HEARTBEAT_INTERVAL_MS must be positive and below a third of "
                             f"FMLC_SESSION_TIMEOUT_MS ({self.session_timeout_ms} ms)")
        if self.quantize == "int8" and (self.device or "").strip().lower().startswith("cuda"):
            raise ValueError("FMLC_QUANTIZE=int8 runs on the CPU only: set FMLC_DEVICE=cpu, or FMLC_QUANTIZE=none "
                             "on a CUDA device")
        if self.max_in_flight is not None and self.max_in_flight < self.batch_size:
            # The batch would never fill and every batch would wait max_wait_ms.
            raise ValueError(f"FMLC_MAX_IN_FLIGHT must be at least FMLC_BATCH_SIZE ({self.batch_size})")
        if self.redis_url is not None and urlsplit(self.redis_url.get_secret_value()).scheme not in (
                "redis", "rediss", "unix"):
            raise ValueError("FMLC_REDIS_URL must be a redis://, rediss:// or unix:// URL (or empty: no cache)")
        return self

    @property
    def in_flight_limit(self) -> int:
        return self.max_in_flight or 6 * self.batch_size * self.sort_window

    @property
    def commit_timeout_ms(self) -> int:
        """The budget of one synchronous offset commit (kafka-python retries inside it): a quarter
        of the stall timeout, at most 10 s, so that a commit that cannot get through never holds
        the consume loop anywhere near the liveness limit."""
        return int(min(10.0, self.stall_timeout_s / 4) * 1000)

    @property
    def max_request_size(self) -> int:
        """The producer's limit: room for a full-size dead letter, never below kafka-python's default."""
        return max(1_048_576, self.max_dead_letter_bytes + 64 * 1024)

    @property
    def dead_letter_limit(self) -> int:
        """Bytes one dead-letter record may take, framing included."""
        return min(self.max_dead_letter_bytes, self.max_request_size, self.max_message_bytes)

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"{self.group_id}-{self.instance_id or socket.gethostname()}"

    @property
    def redis_url_value(self) -> str | None:
        return self.redis_url.get_secret_value() if self.redis_url is not None else None

    def secret_values(self) -> list[str]:
        """Every secret as it could appear in text: for the log filter that masks them."""
        values: list[str] = []
        for name in sorted(SECRET_FIELDS):
            secret = getattr(self, name)
            if secret is not None:
                values.append(secret.get_secret_value())
        if self.redis_url is not None:
            with contextlib.suppress(ValueError):
                parts = urlsplit(self.redis_url.get_secret_value())
                values += [parts.password] if parts.password else []
        return values

    def redacted(self) -> dict[str, Any]:
        """For the start-up log line: everything except secret values. The Redis URL keeps its
        host, port and database (what an operator needs to check) without its credentials."""
        data = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            if data.get(name):
                data[name] = "***"
        if self.redis_url is not None:
            data["redis_url"] = redact_url(self.redis_url.get_secret_value())
        return data


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the variables, never their values."""


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, each naming its FMLC_ variable. Built from the error's location and
    message only: the input (which may be a password) is never part of it."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err.get("loc", ()) if isinstance(p, str)]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if loc and loc[0] in WorkerSettings.model_fields:
            lines.append(f"{env_name(loc[0])}: {msg}")
        else:
            lines.append(msg)
    return "; ".join(lines)


def load_settings(**overrides: Any) -> WorkerSettings:
    """Environment first, then explicit overrides (CLI flags); None means "flag not given".

    Secrets are refused here on purpose: pass them as FMLC_SASL_PASSWORD / FMLC_SSL_PASSWORD /
    FMLC_REDIS_URL. Invalid settings raise SettingsError naming the variables.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    refused = SECRET_FIELDS & given.keys()
    if refused:
        raise SettingsError(f"{', '.join(sorted(refused))} may only come from the environment "
                            f"({', '.join(env_name(n) for n in sorted(refused))})")
    try:
        return WorkerSettings(**given)
    except ValidationError as exc:
        raise SettingsError(f"invalid worker settings: {describe_errors(exc)}") from None


def env_for(settings: WorkerSettings, include_secrets: bool = False) -> dict[str, str]:
    """The settings as FMLC_* variables, e.g. to start a worker subprocess. Secrets only with
    `include_secrets` (the environment is the one place they may travel); an unset secret always
    travels as "null", so that a child without a cache does not fall back to the default Redis."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if name in SECRET_FIELDS:
            secret = getattr(settings, name)
            if secret is None:
                env[env_name(name)] = "null"
            elif include_secrets:
                env[env_name(name)] = secret.get_secret_value()
            continue
        # None travels as "null" (env_parse_none_str): dropping it would let the child fall back to the
        # default, e.g. a cache at 127.0.0.1:6379 where none was wanted.
        if value is None:
            env[f"FMLC_{name.upper()}"] = "null"
            continue
        env[f"FMLC_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


__all__ = ["LOG_LEVELS", "SECRET_FIELDS", "SettingsError", "WorkerSettings", "describe_errors", "env_for",
           "env_name", "load_settings", "redact_url"]
