"""What operating the worker needs: settings that refuse nonsense by name, no secret in any log line,
error or response, a bounded HTTP server with reason codes, liveness that sees a hung stage,
model errors that never dead-letter a valid message, and the metrics an SRE looks for.

Unit-level tests run in a second or two; the ones with a broker are marked slow (still in the
default run) and share the session's Tansu broker and Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.health import HealthServer
from worker.metrics import WorkerMetrics
from worker.settings import SettingsError, WorkerSettings, env_for, load_settings

ROOT = Path(__file__).resolve().parents[1]
PLANTED = "pl4nted-S3CRET-7f3a"  # searched for in every log, error and response below


def _worker_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("FMLC_")}, **env,
                "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "worker", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


# --- 10. settings that make no sense ---------------------------------------------------------------

NONSENSE = [
    ({"FMLC_LOG_LEVEL": "LOUD"}, "FMLC_LOG_LEVEL"),
    ({"FMLC_LOG_LEVEL": ""}, "FMLC_LOG_LEVEL"),
    ({"FMLC_SESSION_TIMEOUT_MS": "9000", "FMLC_HEARTBEAT_INTERVAL_MS": "3000"}, "FMLC_HEARTBEAT_INTERVAL_MS"),
    ({"FMLC_HEARTBEAT_INTERVAL_MS": "0"}, "FMLC_HEARTBEAT_INTERVAL_MS"),
    ({"FMLC_BATCH_SIZE": "64", "FMLC_MAX_IN_FLIGHT": "10"}, "FMLC_MAX_IN_FLIGHT"),
    ({"FMLC_GROUP_ID": ""}, "FMLC_GROUP_ID"),
    ({"FMLC_GROUP_ID": "   "}, "FMLC_GROUP_ID"),
    ({"FMLC_INPUT_TOPIC": ""}, "FMLC_INPUT_TOPIC"),
    ({"FMLC_BOOTSTRAP_SERVERS": " "}, "FMLC_BOOTSTRAP_SERVERS"),
    ({"FMLC_SESSION_TIMEOUT_MS": "20000", "FMLC_MAX_POLL_INTERVAL_MS": "10000"}, "FMLC_SESSION_TIMEOUT_MS"),
    ({"FMLC_BATCH_SIZE": "zero"}, "FMLC_BATCH_SIZE"),
    ({"FMLC_REDIS_URL": "http://cache:6379"}, "FMLC_REDIS_URL"),
]


@pytest.mark.parametrize(("env", "variable"), NONSENSE, ids=[v + str(i) for i, (_, v) in enumerate(NONSENSE)])
def test_settings_that_make_no_sense_are_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_sensible_edges_of_those_settings_are_accepted() -> None:
    s = WorkerSettings(session_timeout_ms=9000, heartbeat_interval_ms=2999, batch_size=16, max_in_flight=16,
                       log_level="debug")
    assert (s.heartbeat_interval_ms, s.max_in_flight, s.log_level) == (2999, 16, "DEBUG")


def test_the_command_line_says_what_is_wrong_in_one_line_without_a_traceback() -> None:
    for env, variable, value in (({"FMLC_LOG_LEVEL": "verbose"}, "FMLC_LOG_LEVEL", "verbose"),
                                 ({"FMLC_MAX_IN_FLIGHT": "3"}, "FMLC_MAX_IN_FLIGHT", None)):
        done = _worker_cli([], env)
        assert done.returncode == 2
        assert variable in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr and (value is None or value not in done.stderr)


# --- 5. no secret anywhere -------------------------------------------------------------------------

def test_secrets_never_appear_in_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMLC_SASL_PASSWORD", PLANTED)
    monkeypatch.setenv("FMLC_SSL_PASSWORD", PLANTED)
    monkeypatch.setenv("FMLC_REDIS_URL", f"redis://fmlc:{PLANTED}@127.0.0.1:6379/0")
    # SASL without a user name: a whole-config check that fails with every secret set.
    monkeypatch.setenv("FMLC_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError) as raw:
        WorkerSettings()
    assert PLANTED not in str(raw.value) and PLANTED not in repr(raw.value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "FMLC_SASL_USERNAME" in str(err.value) and PLANTED not in str(err.value)
    # A field-level failure next to the secrets: the secret fields' own input is not echoed either.
    monkeypatch.setenv("FMLC_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("FMLC_REDIS_URL", f"http://fmlc:{PLANTED}@cache:6379/0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "FMLC_REDIS_URL" in str(err.value) and PLANTED not in str(err.value)


def test_redis_url_is_a_secret_masked_everywhere_but_where_it_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://fmlc:{PLANTED}@cache.internal:6380/2"
    monkeypatch.setenv("FMLC_REDIS_URL", url)
    s = load_settings()
    assert s.redis_url_value == url
    for text in (repr(s), str(s), json.dumps(s.redacted()), s.model_dump_json(), str(env_for(s))):
        assert PLANTED not in text
    assert s.redacted()["redis_url"] == "redis://***@cache.internal:6380/2", "host, port and db stay visible"
    assert env_for(s, include_secrets=True)["FMLC_REDIS_URL"] == url, "a child worker gets it by environment"
    with pytest.raises(SettingsError, match="FMLC_REDIS_URL"):
        load_settings(redis_url=url)
    monkeypatch.delenv("FMLC_REDIS_URL")
    assert WorkerSettings().redis_url_value == "redis://127.0.0.1:6379/0"
    assert WorkerSettings(redis_url="").redis_url is None


@pytest.mark.parametrize("flag", ["--redis-url", "--sasl-password", "--ssl-password"])
def test_secret_flags_are_refused_without_echoing_the_value(flag: str) -> None:
    for args in ([flag, f"redis://:{PLANTED}@h:6379/0"], [f"{flag}=redis://:{PLANTED}@h:6379/0"]):
        done = _worker_cli(args, {})
        assert done.returncode == 2
        assert "FMLC_" + flag[2:].replace("-", "_").upper() in done.stderr
        assert PLANTED not in done.stderr + done.stdout


def test_the_log_filter_masks_secrets_in_messages_arguments_and_tracebacks() -> None:
    import logging

    from worker.logs import SecretFilter

    flt = SecretFilter([PLANTED, f"redis://u:{PLANTED}@h/0"])
    try:
        raise ConnectionError(f"cannot reach redis://u:{PLANTED}@h/0")
    except ConnectionError:
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "failed: %s (%s)",
                                   (f"redis://u:{PLANTED}@h/0", PLANTED), sys.exc_info())
    assert flt.filter(record)
    handler = logging.StreamHandler()
    text = handler.format(record)
    assert PLANTED not in text and "failed: *** (***)" in text and "ConnectionError" in text


# --- 10. the HTTP server ---------------------------------------------------------------------------

def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
            code = resp.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read().decode(), exc.code
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body


def test_http_server_drops_idle_connections_and_bounds_its_threads() -> None:
    metrics = WorkerMetrics()
    server = HealthServer("127.0.0.1", 0, metrics.registry, live=lambda: (True, {"reason": "ok"}),
                          ready=lambda: (True, {"reason": "ok"}), timeout_s=0.5, max_threads=4).start()
    before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        # Clients that connect and never send a request (or send half of one).
        for i in range(12):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            idle.append(sock)
        time.sleep(0.2)
        assert threading.active_count() - before <= 4, "one thread per idle connection"
        # Every one of them is closed by the server (at once when no thread was free, otherwise once
        # its timeout has passed), and the threads go with them.
        for sock in idle:
            sock.settimeout(5)
            assert sock.recv(1024) == b""
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before, "idle connections still hold threads"
        assert _get(f"http://127.0.0.1:{server.port}/healthz") == (200, {"ok": True, "reason": "ok"})
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_healthz_answers_a_reason_code_never_the_error_text() -> None:
    from worker.app import WorkerApp

    app = WorkerApp(WorkerSettings(stall_timeout_s=5))  # nothing started: only the checks are exercised
    assert app._live() == (True, {"reason": "ok", "loop_age_s": pytest.approx(0, abs=1)})
    app.fail(RuntimeError(f"SASL authentication failed for fmlc:{PLANTED}@broker"))
    ok, body = app._live()
    assert not ok and body["reason"] == "fatal_error"
    assert PLANTED not in json.dumps(body) and "SASL" not in json.dumps(body)
    ready_ok, ready = app._ready()
    assert not ready_ok and ready["reason"] == "fatal_error" and PLANTED not in json.dumps(ready)
    stalled = WorkerApp(WorkerSettings(stall_timeout_s=5))
    stalled._loop_beat -= 6
    assert stalled._live()[1]["reason"] == "consume_loop_stalled"


def test_an_idle_connection_is_closed_by_the_server() -> None:
    server = HealthServer("127.0.0.1", 0, WorkerMetrics().registry, live=lambda: (True, {}),
                          ready=lambda: (True, {}), timeout_s=0.3).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        started = time.monotonic()
        assert sock.recv(1024) == b"", "the server closes a connection that sends nothing"
        assert time.monotonic() - started < 3
        sock.close()
    finally:
        server.stop()


# --- 5. a live worker with secrets planted -----------------------------------------------------------

def _start_redis_with_password(password: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    from worker.testkit import free_port, redis_answers, redis_binary

    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--requirepass", password],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not redis_answers(f"redis://:{password}@127.0.0.1:{port}/0"):
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server with a password did not start"
        time.sleep(0.05)
    return proc, port


@pytest.mark.slow
def test_a_live_worker_at_debug_level_leaks_no_planted_secret(
        kafka_broker, redis_server, worker_model_dir: Path, tmp_path: Path) -> None:
    from test_worker import docs, settings_for

    from worker.kafka import ensure_topics
    from worker.testkit import TopicReader, WorkerProcess, free_port, ids_in, message, produce, wait_for

    redis_proc, redis_port = _start_redis_with_password(PLANTED, tmp_path)
    try:
        redis_url = f"redis://default:{PLANTED}@127.0.0.1:{redis_port}/0"
        port = free_port()
        s = settings_for(kafka_broker, redis_server, worker_model_dir, redis_url=redis_url, metrics_port=port,
                         log_level="DEBUG", sasl_username="fmlc", sasl_password=PLANTED, ssl_password=PLANTED)
        ensure_topics(s)
        items = docs(30, seed=5, prefix="sec")
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic)
        bodies: list[str] = []
        with WorkerProcess(s, tmp_path / "worker.log") as proc:
            wait_for(lambda: "partitions assigned" in proc.log(), 60, "the worker in its group")
            # Twice the same texts (the second pass must come from the password-protected cache) and
            # two malformed messages (dead letters carry an error text).
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items])
            reader.wait(lambda r: len(ids_in(r, s.output_topic)) >= len(items), 60, "first pass")
            produce(kafka_broker.bootstrap, s.input_topic, [(f"{c}-again".encode(), message(f"{c}-again", t))
                                                  for c, t in items] + [(b"bad", b"{oops"), (b"bad2", b"")])
            reader.wait(lambda r: len(r) >= 2 * len(items) + 2, 60, "second pass and dead letters")
            for path in ("/healthz", "/readyz", "/metrics", "/nothing-here"):
                code, body = _get(f"http://127.0.0.1:{port}{path}")
                bodies.append(json.dumps(body) if not isinstance(body, str) else body)
            proc.signal(signal.SIGTERM)
            assert proc.wait(s.shutdown_timeout_s + 5) == 0
            log = proc.log()
        cached = sum(1 for r in reader.of(s.output_topic) if json.loads(r.value).get("cached"))
        records = [r.value or b"" for r in reader.records] + [
            b"".join(v for _, v in (r.headers or [])) for r in reader.records]
        reader.close()
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
    assert cached == len(items), "the worker used the Redis URL's password (the second pass was cached)"
    assert " DEBUG " in log and "settings: " in log, "the log is at DEBUG level and has the settings dump"
    assert "redis://***@127.0.0.1" in log, "the settings dump shows where Redis is, without credentials"
    assert PLANTED not in log
    for body in bodies:
        assert PLANTED not in body
    assert all(PLANTED.encode() not in r for r in records)


# --- 6. liveness sees a hung stage -------------------------------------------------------------------

def test_stage_progress_reports_busy_stages_without_progress_only() -> None:
    from worker.progress import StageProgress

    now = [100.0]
    p = StageProgress(clock=lambda: now[0])
    assert p.stalled(1.0) == []
    with p.working("infer"):
        now[0] += 5
        assert p.stalled_for("infer") == 5 and p.stalled(5.0) == ["infer"] and p.stalled(5.1) == []
        p.beat("infer")
        assert p.stalled_for("infer") == 0
        with p.working("infer"):  # nested: still busy after the inner one ends
            now[0] += 1
        now[0] += 2
        assert p.stalled_for("infer") == 2
    now[0] += 100
    assert p.stalled(1.0) == [] and p.stalled_for("infer") == 0, "an idle stage is never stalled"
    p.beat("deliver")  # a beat of an idle stage does not make it busy
    assert p.stalled_for("deliver") == 0


def test_tokenizer_requests_time_out_and_a_stopped_child_is_replaced_and_counted() -> None:
    from fmlc.text import Tokenizer
    from worker.tokenizing import TokenizerProcess, TokenizerTimeout

    restarts: list[str] = []
    local = Tokenizer()
    proc = TokenizerProcess(timeout_s=30.0, on_restart=restarts.append)
    stopped: int | None = None
    try:
        # The first request loads jieba's dictionary in the child: a generous timeout for it.
        assert proc.tokenize("a", local.to_config(), 64, ["利息太高"]) == [local.tokenize("利息太高")]
        proc.timeout_s = 1.0
        stopped = proc.pid
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(TokenizerTimeout):
            proc.tokenize("a", local.to_config(), 64, ["提现不到账"])
        assert 0.9 <= time.monotonic() - t0 < 3
        assert restarts == ["timeout"] and proc.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)  # killed and reaped, not left behind stopped
        stopped = None
        # The next request starts a new child, which is sent the config again. (A child that dies
        # between requests is replaced too: test_worker_units' tokenizer test.)
        proc.timeout_s = 15.0
        assert proc.tokenize("a", local.to_config(), 64, ["提现不到账"]) == [local.tokenize("提现不到账")]
        assert restarts == ["timeout"]
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
        proc.close()


def test_the_commit_budget_is_well_below_the_liveness_limit() -> None:
    for stall in (1.0, 8.0, 30.0, 60.0, 600.0):
        s = WorkerSettings(stall_timeout_s=stall)
        assert s.commit_timeout_ms / 1000 <= stall / 4 and s.commit_timeout_ms <= 10_000
    default = WorkerSettings()
    assert default.stall_timeout_s <= 60 and default.tokenizer_timeout_s < default.stall_timeout_s


@pytest.mark.slow
def test_a_stopped_tokenizer_child_turns_healthz_red_and_the_worker_recovers(
        kafka_broker, redis_server, worker_model_dir: Path) -> None:
    from test_worker import docs, settings_for

    from worker.testkit import ThreadWorker, TopicReader, ids_in, message, produce, wait_for

    # The stall timeout below the tokenizer's own: liveness must see the hang before the worker
    # heals itself (by default it is the other way round: the worker heals first).
    s = settings_for(kafka_broker, redis_server, worker_model_dir, redis_url="", tokenizer="process",
                     stall_timeout_s=2.0, tokenizer_timeout_s=7.0, topic_partitions=1)
    items = docs(40, seed=17, prefix="hang")
    stopped: int | None = None
    with ThreadWorker(s) as w:
        w.wait_ready(45)
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        base = f"http://127.0.0.1:{w.app.metrics_port}"
        try:
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[:20]])
            reader.wait(lambda r: len(ids_in(r)) >= 20, 60, "the first 20 answered")
            assert _get(base + "/healthz")[0] == 200
            assert w.app.pipeline is not None and w.app.pipeline.tokenizer is not None
            stopped = w.app.pipeline.tokenizer.pid
            assert stopped is not None
            os.kill(stopped, signal.SIGSTOP)
            t0 = time.monotonic()
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[20:]])
            seen: list[tuple[int, dict | str]] = []
            wait_for(lambda: seen.append(_get(base + "/healthz")) or seen[-1][0] == 503, s.stall_timeout_s + 4,
                     "/healthz to go red", interval=0.1)
            red_after = time.monotonic() - t0
            body = seen[-1][1]
            assert isinstance(body, dict)
            assert body["reason"] == "stage_stalled" and "tokenizer" in body["stalled_stages"], body
            assert w.metric("fmlc_stage_stall_seconds", stage="tokenizer") >= s.stall_timeout_s
            # The worker heals itself: the child is killed at its timeout, the batch is tokenised in
            # the worker, everything is answered and /healthz is green again.
            reader.wait(lambda r: len(ids_in(r)) >= len(items), 60, "every message answered")
            wait_for(lambda: _get(base + "/healthz")[0] == 200, 10, "/healthz green again")
            with pytest.raises(ProcessLookupError):
                os.kill(stopped, 0)
            stopped = None
            assert w.metric("fmlc_tokenizer_restarts_total", reason="timeout") >= 1
            assert w.metric("fmlc_messages_total", outcome="dead_letter") == 0
            assert w.metric("fmlc_stage_stall_seconds", stage="tokenizer") == 0
        finally:
            if stopped is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stopped, signal.SIGKILL)
            reader.close()
    assert ids_in(reader.records) == {c for c, _ in items}
    assert red_after <= s.stall_timeout_s + 2, red_after


# --- 8. model errors ---------------------------------------------------------------------------------

class _Wrapped:
    """A real Predictor with a fault injected in front of predict_tokens; everything else delegates.
    (The faults themselves cannot be had from the tiny model on demand: a text that makes a real
    model raise, memory pressure from another process at the right moment.)"""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


class _MemoryPressure(_Wrapped):
    """The first `failures` calls hit a real CPU allocator failure (torch cannot allocate 1 PiB)."""

    def __init__(self, real: object, failures: int) -> None:
        super().__init__(real)
        self.failures = failures

    def predict_tokens(self, tokens: list[list[str]], batch_size: int | None = None) -> list:
        import torch

        self.calls += 1
        if self.calls <= self.failures:
            torch.empty(2**50, dtype=torch.uint8)
        return self.real.predict_tokens(tokens, batch_size=batch_size)  # type: ignore[attr-defined]


class _Poison(_Wrapped):
    """Raises, like a model bug on odd input would, on any batch holding a text with 'poison' in it."""

    def predict_tokens(self, tokens: list[list[str]], batch_size: int | None = None) -> list:
        self.calls += 1
        if any("poison" in "".join(t).lower() for t in tokens):
            raise IndexError("index out of range in self")
        return self.real.predict_tokens(tokens, batch_size=batch_size)  # type: ignore[attr-defined]




def test_out_of_memory_is_recognised_wherever_predict_raises_it() -> None:
    import torch

    from fmlc import OutOfMemoryError
    from worker.model import is_out_of_memory

    try:
        torch.empty(2**50, dtype=torch.uint8)
    except RuntimeError as exc:
        cpu = exc
    for exc in (cpu, OutOfMemoryError("x"), torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"),
                MemoryError(), RuntimeError("CUDA error: out of memory")):
        assert is_out_of_memory(exc), exc
    for exc in (RuntimeError("index out of range"), IndexError("x"), ValueError("memory")):
        assert not is_out_of_memory(exc), exc


def test_out_of_memory_on_a_single_text_is_retried_after_a_pause_and_not_dead_lettered(
        worker_model_dir: Path) -> None:
    from fmlc import Prediction, Predictor
    from worker.model import ServedModel

    real = Predictor.load(worker_model_dir, device="cpu")
    texts = ["平台暴力催收，天天打电话骚扰家人", "提现一直不到账"]
    from worker.pipeline import predict_isolating, retry_after_oom

    metrics, stop = WorkerMetrics(), threading.Event()
    # A batch of two: the first call fails (split), then each single text once more (retried).
    flaky = _MemoryPressure(real, failures=3)
    model = ServedModel(predictor=flaky, version=real.version, device="cpu", labels=tuple(real.labels))  # type: ignore[arg-type]
    t0 = time.monotonic()
    # a batch of 8; a third of a 30 s stall timeout for retrying a single text, as the pipeline gives
    results = predict_isolating(model, real.tokenize(texts), 8, metrics,
                                lambda m, t: retry_after_oom(m, t, 10.0, stop, metrics))
    took = time.monotonic() - t0
    assert all(isinstance(r, Prediction) for r in results), results
    assert [r.names for r in results] == [p.names for p in real.predict(texts)]
    assert metrics.value("fmlc_oom_total") == 3
    assert took >= 0.5 + 1.0, "each retry of a single text waits first (0.5 s, then 1 s)"


def test_two_poison_texts_in_one_batch_are_dead_letters_not_a_crash_loop(
        kafka_broker, redis_server, worker_model_dir: Path) -> None:
    from test_worker import docs, settings_for

    from fmlc import Predictor
    from worker.app import WorkerApp
    from worker.model import ServedModel
    from worker.testkit import ThreadWorker, TopicReader, committed_and_end, message, produce, wait_for

    real = Predictor.load(worker_model_dir, device="cpu")
    poison = _Poison(real)
    served = ServedModel(predictor=poison, version=real.version, device="cpu", labels=tuple(real.labels))  # type: ignore[arg-type]
    s = settings_for(kafka_broker, redis_server, worker_model_dir, redis_url="", topic_partitions=1, batch_size=8,
                     max_wait_ms=200)
    good = docs(6, seed=23, prefix="good")
    bad = [("bad-1", "poison 这条投诉让模型出错"), ("bad-2", "又一条 poison 文本")]
    reader: TopicReader | None = None
    w = ThreadWorker(s, WorkerApp(s, model=served))
    with w:
        w.wait_ready(45)
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic, s.dlq_topic)
        # The two poison texts alone first: a batch in which every text fails.
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in bad])
        reader.wait(lambda r: len(r) >= 2, 60, "two dead letters")
        produce(kafka_broker.bootstrap, s.input_topic,
                [(c.encode(), message(c, t)) for c, t in good[:3] + bad + good[3:]])
        reader.wait(lambda r: len(r) >= 2 + len(good) + 2, 60, "the mixed batch")
        assert w.app._fatal is None and w.app._live()[0], "the worker goes on"
        # The counters move after the acknowledgements, a moment after a reader can see the records.
        wait_for(lambda: w.metric("fmlc_dead_letters_total", reason="model_error") == 4
                 and w.metric("fmlc_messages_total", outcome="ok") == len(good), 10, "the batch counted")
        wait_for_commit = time.monotonic() + 15
        while time.monotonic() < wait_for_commit:
            ends = committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic)
            if all(c == e for c, e in ends.values()):
                break
            time.sleep(0.2)
    assert w.exit_code == 0
    dead = [r for r in reader.records if r.topic == s.dlq_topic]
    assert sorted(r.key.decode() for r in dead) == ["bad-1", "bad-1", "bad-2", "bad-2"]
    assert {dict(r.headers)["fmlc.dlq.reason"] for r in dead} == {b"model_error"}
    assert {r.key.decode() for r in reader.records if r.topic == s.output_topic} == {c for c, _ in good}
    # Committed past the poison: a restarted worker does not meet it again.
    assert all(c == e for c, e in committed_and_end(kafka_broker.bootstrap, s.group_id, s.input_topic).values())
    reader.close()


# --- 9. what an SRE expects ----------------------------------------------------------------------------

class _Gated(_Wrapped):
    """The real model behind a gate the test opens: while it is shut the model stage holds its batch
    (as a slow model on a busy host would), so back-pressure pauses the partitions."""

    def __init__(self, real: object) -> None:
        super().__init__(real)
        self.gate = threading.Event()

    def predict_tokens(self, tokens: list[list[str]], batch_size: int | None = None) -> list:
        self.gate.wait(60)
        return self.real.predict_tokens(tokens, batch_size=batch_size)  # type: ignore[attr-defined]


def test_the_worker_registry_has_process_metrics() -> None:
    m = WorkerMetrics()
    assert m.value("process_resident_memory_bytes") > 10_000_000
    assert m.value("process_open_fds") > 0 and m.value("process_max_fds") > 0
    assert m.value("process_cpu_seconds_total") > 0
    for name, labels in (("fmlc_rebalances_total", {"kind": "assigned"}), ("fmlc_rewinds_total", {}),
                         ("fmlc_commit_failures_total", {}), ("fmlc_records_dropped_on_revoke_total", {}),
                         ("fmlc_tokenizer_restarts_total", {"reason": "timeout"}),
                         ("fmlc_redis_seconds_count", {"op": "get"}), ("fmlc_produce_ack_seconds_count", {})):
        assert m.registry.get_sample_value(name, labels) == 0, name


@pytest.mark.slow
def test_lag_is_fresh_while_paused_and_rebalances_drops_redis_and_acks_are_counted(
        kafka_broker, redis_server, worker_model_dir: Path) -> None:
    from test_worker import docs, settings_for

    from fmlc import Predictor
    from worker.app import WorkerApp
    from worker.model import ServedModel
    from worker.testkit import ThreadWorker, TopicReader, committed_and_end, ids_in, message, produce, wait_for

    real = Predictor.load(worker_model_dir, device="cpu")
    gated = _Gated(real)
    served = ServedModel(predictor=gated, version=real.version, device="cpu",  # type: ignore[arg-type]
                         labels=tuple(real.labels))
    s = settings_for(kafka_broker, redis_server, worker_model_dir, topic_partitions=2, batch_size=8,
                     max_in_flight=8, sort_window=1, max_wait_ms=50)
    items = docs(160, seed=29, prefix="lag")
    a, b = ThreadWorker(s, WorkerApp(s, model=served)), ThreadWorker(s, WorkerApp(s, model=served))

    def lag(w: ThreadWorker) -> float:
        return sum(w.metric("fmlc_consumer_lag", topic=s.input_topic, partition=str(p)) for p in range(2))

    def broker_lag() -> int:
        return sum(end - committed for committed, end in committed_and_end(
            kafka_broker.bootstrap, s.group_id, s.input_topic).values())

    with a:
        a.wait_ready(45)
        reader = TopicReader(kafka_broker.bootstrap, s.output_topic)
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[:40]])
        wait_for(lambda: a.metric("fmlc_consumer_paused") == 1, 30, "back-pressure to pause the partitions")
        # Nothing is committed while the gate is shut: the lag is every record produced.
        wait_for(lambda: lag(a) == 40, 10, "the lag of the first 40")
        produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[40:140]])
        # Paused partitions are not fetched: the gauge must still see the 100 new records.
        wait_for(lambda: lag(a) == 140, 10, "the lag gauge to see records produced while paused")
        assert a.metric("fmlc_consumer_paused") == 1
        assert broker_lag() == 140
        with b:
            b.wait_ready(45)  # A gave up a partition while its model stage held a batch of it
            gated.gate.set()
            produce(kafka_broker.bootstrap, s.input_topic, [(c.encode(), message(c, t)) for c, t in items[140:]])
            reader.wait(lambda r: len(ids_in(r)) >= len(items), 120, "every message answered")
            wait_for(lambda: a.metric("fmlc_consumer_lag", topic=s.input_topic, partition="0")
                     + a.metric("fmlc_consumer_lag", topic=s.input_topic, partition="1")
                     + lag(b) == 0, 15, "lag back to zero")
            assert b.metric("fmlc_rebalances_total", kind="assigned") >= 1
        assert a.metric("fmlc_rebalances_total", kind="revoked") >= 1
        assert a.metric("fmlc_rebalances_total", kind="assigned") >= 2
        assert a.metric("fmlc_records_dropped_on_revoke_total") >= 1, "A held in-flight work when B joined"
        both = (a, b)
        assert sum(w.metric("fmlc_redis_seconds_count", op="get") for w in both) > 0
        assert sum(w.metric("fmlc_redis_seconds_count", op="set") for w in both) > 0
        assert sum(w.metric("fmlc_produce_ack_seconds_count") for w in both) > 0
        reader.close()
