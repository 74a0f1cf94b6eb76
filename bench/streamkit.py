"""Plumbing shared by the streaming benches (`bench.worker_throughput`, `bench.faults`).

Workers run as `python -m worker` subprocesses (their own interpreter and GIL, as in production)
or in a thread of the bench process (cheaper to start; used by the smoke test). Outputs are read
back with manual partition assignment from the beginning, so reading never joins a group and never
commits anything. Process statistics (RSS, threads, open descriptors, CPU seconds) come from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_DATA, REPO

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TINY_MODEL_DIR = REPO / "runs" / "bench-tiny-model"
# The dimensions of tests/model_fixtures.py: a model that trains in seconds, for the fault runs and
# the smoke test, where delivery is the point and not the model.
TINY = dict(epochs=6, lr=1e-2, batch_size=32, embed_dim=32, hidden=32, attn_dim=32, graph_dim=32, filters=32,
            max_len=96, w2v_epochs=2, patience=4, progress=False, threads=1)


# --- small helpers ---------------------------------------------------------------------------------------

def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def uid() -> str:
    return uuid.uuid4().hex[:8]


def message(mid: str, text: str, **extra: Any) -> bytes:
    return json.dumps({"schema_version": 1, "id": mid, "text": text, "source": "bench", **extra},
                      ensure_ascii=False).encode()


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def ccks_texts(data: Path = DEFAULT_DATA) -> list[str]:
    """Real ccks2019_fin texts, unique after the worker's normalisation (so that no two of them share
    a cache entry), in file order."""
    from worker.cache import text_digest

    seen: set[str] = set()
    out: list[str] = []
    path = data / "data.jsonl" if data.is_dir() else data
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            if not text.strip():
                continue
            digest = text_digest(text)
            if digest not in seen:
                seen.add(digest)
                out.append(text)
    return out


class TextPool:
    """Hands out texts without repetition; once the pool is used up it starts again with a short
    numbered suffix, so every text handed out is still a cache miss."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.i = 0
        self.suffixed = 0

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            round_, j = divmod(self.i, len(self.texts))
            text = self.texts[j]
            if round_:
                text = f"{text}（{round_}）"
                self.suffixed += 1
            out.append(text)
            self.i += 1
        return out


def tiny_model(out: Path = TINY_MODEL_DIR) -> Path:
    """The tiny FMLC of tests/model_fixtures.py, trained once on synthetic complaints and reused."""
    if (out / "VERSION").exists():
        return out
    from training.synth import generate
    from training.trainer import TrainConfig, train

    @dataclass(frozen=True)
    class Doc:
        id: str
        text: str
        labels: tuple[str, ...]

    docs = [Doc(d["id"], d["text"], tuple(d["labels"])) for d in generate(2400, 0)]
    splits = {"train": docs[:1680], "valid": docs[1680:2040], "test": docs[2040:]}
    train(splits, TrainConfig.of(model="fmlc", **TINY), out)
    return out


# --- /proc ---------------------------------------------------------------------------------------------

def proc_stats(pid: int) -> dict[str, float]:
    """RSS (MiB), threads, open file descriptors and CPU seconds (user + system) of one process."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    out["rss_mib"] = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        kids = child_pids(pid)
        out["children"] = len(kids)
        # The worker's tokenizer runs in a child process: its CPU is the worker's too.
        out["cpu_s"] = cpu_seconds(pid) + sum(_cpu_or_zero(k) for k in kids)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def child_pids(pid: int) -> list[int]:
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(x) for x in fh.read().split()]
        except FileNotFoundError:
            continue
    return kids


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return total - idle, total


class BusyMeter:
    """Fraction of the whole machine's CPU that was busy between start() and read() (all processes)."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> BusyMeter:
        self._b0, self._t0 = machine_jiffies()
        return self

    def read(self) -> float:
        b1, t1 = machine_jiffies()
        return (b1 - self._b0) / max(1, t1 - self._t0)


# --- Kafka ---------------------------------------------------------------------------------------------

def ensure(settings: Any) -> None:
    from worker.kafka import ensure_topics

    ensure_topics(settings)


def make_producer(bootstrap: str, **kw: Any) -> Any:
    from kafka import KafkaProducer

    cfg = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_in_flight_requests_per_connection=5)
    cfg.update(kw)
    return KafkaProducer(**cfg)


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]],
            partitions: int | None = None, headers: dict[int, list[tuple[str, bytes]]] | None = None) -> int:
    """Send and wait for every acknowledgement; with `partitions`, spread round-robin over them
    (even shares whatever the keys hash to). Returns the number sent."""
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


@dataclass
class Seen:
    """What a Reader saw: records, and the wall time at which each was read."""

    records: list[Any] = field(default_factory=list)
    read_at: list[float] = field(default_factory=list)


class Reader:
    """Reads topics from the beginning by manual assignment; can run in a background thread."""

    def __init__(self, bootstrap: str, *topics: str, fetch_max_wait_ms: int = 20, keep: bool = True) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.bootstrap = bootstrap
        self.topics = topics
        self._fetch_wait = fetch_max_wait_ms
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms,
                                      max_poll_records=2000)
        parts = []
        for topic in topics:
            wait_for(lambda t=topic: bool(self.consumer.partitions_for_topic(t)), 20, f"metadata of {topic}")
            parts += [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.parts = parts
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.seen = Seen()
        self.keep = keep  # False: only the on_record callback sees records (long soaks)
        self.n = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_record: Callable[[Any, float], None] | None = None

    def poll(self, timeout_ms: int = 100) -> int:
        got = self.consumer.poll(timeout_ms=timeout_ms)
        now = time.time()
        n = 0
        with self._lock:
            for batch in got.values():
                for r in batch:
                    self.n += 1
                    if self.keep:
                        self.seen.records.append(r)
                        self.seen.read_at.append(now)
                    if self.on_record is not None:
                        self.on_record(r, now)
                    n += 1
        return n

    # background reading -------------------------------------------------------------------------------
    def start(self) -> Reader:
        def loop() -> None:
            from kafka.errors import KafkaError

            while not self._stop.is_set():
                try:
                    self.poll(50)
                except KafkaError:  # e.g. while the broker is frozen; keep reading once it is back
                    self.errors += 1
                    time.sleep(0.2)

        self._thread = threading.Thread(target=loop, name="bench-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def count(self, topic: str | None = None) -> int:
        with self._lock:
            if topic is None:
                return self.n
            return sum(1 for r in self.seen.records if r.topic == topic)

    def snapshot(self) -> tuple[list[Any], list[float]]:
        with self._lock:
            return list(self.seen.records), list(self.seen.read_at)

    def wait_count(self, n: int, timeout: float, what: str, topic: str | None = None) -> None:
        if self._thread is not None:
            wait_for(lambda: self.count(topic) >= n, timeout, what, interval=0.02)
        else:
            deadline = time.monotonic() + timeout
            while self.count(topic) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} "
                                       f"({self.count(topic)}/{n})")
                self.poll(50)

    def close(self) -> None:
        self.stop()
        self.consumer.close()


def read_all(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> list[Any]:
    """Everything in `topics` now, read by a fresh consumer until its position reaches the high
    watermark of each partition (Tansu's ListOffsets(latest) is not trusted; the fetch's is)."""
    reader = Reader(bootstrap, *topics)
    c = reader.consumer
    try:
        def caught_up() -> bool:
            reader.poll(100)
            return all(c.highwater(tp) is not None and c.position(tp) >= c.highwater(tp) for tp in reader.parts)

        wait_for(caught_up, timeout, "the reader to catch up", interval=0)
        return list(reader.seen.records)
    finally:
        reader.close()


def committed_and_end(bootstrap: str, group: str, topic: str, timeout: float = 20) -> dict[int, tuple[int, int]]:
    """partition -> (committed offset or 0, high watermark)."""
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


# --- workers -------------------------------------------------------------------------------------------

def worker_settings(bootstrap: str, model_dir: Path, *, redis_url: str | None = None, **overrides: Any) -> Any:
    """Settings with topics, group and cache prefix of their own."""
    from worker.settings import WorkerSettings

    u = uid()
    base: dict[str, Any] = dict(
        bootstrap_servers=bootstrap, input_topic=f"b{u}.in", output_topic=f"b{u}.out", dlq_topic=f"b{u}.dlq",
        group_id=f"bench-{u}", transactional_id=f"btx-{u}", model_path=model_dir, redis_url=redis_url,
        cache_prefix=f"bench-{u}", metrics_host="127.0.0.1", metrics_port=0, create_topics=True,
        topic_partitions=2, session_timeout_ms=6000, max_poll_interval_ms=10000, model_poll_interval_s=0,
        shutdown_timeout_s=15, cpu_threads=1, log_level="INFO", cache_ttl_s=3600)
    base.update(overrides)
    return WorkerSettings(**base)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class WorkerProcess:
    """`python -m worker` with the given settings (as FMLC_* variables) on a metrics port of its own."""

    def __init__(self, settings: Any, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        from worker.local_services import free_port
        from worker.settings import env_for

        self.port = settings.metrics_port or free_port()
        self.settings = settings.model_copy(update={"metrics_port": self.port})
        self.log_path = log_path
        env = {**os.environ, **env_for(self.settings, include_secrets=True), "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # env_for leaves out settings whose value is None; for redis_url that would fall back to the
        # default redis://127.0.0.1:6379/0, so "no cache" has to be said explicitly.
        if self.settings.redis_url is None:
            env["FMLC_REDIS_URL"] = ""
        env.update(extra_env or {})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:  # one log per worker process
            self.proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readyz(self) -> tuple[bool, dict]:
        code, body = http_get(self.port, "/readyz")
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

    def metrics(self) -> dict:
        code, body = http_get(self.port, "/metrics", timeout=5)
        return parse_metrics(body) if code == 200 else {}

    def stats(self) -> dict[str, float]:
        return proc_stats(self.proc.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM (drain), then wait; SIGKILL if it does not exit in time."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)


class ThreadWorker:
    """A WorkerApp in a thread of this process (the smoke test's cheap variant)."""

    def __init__(self, settings: Any) -> None:
        from worker.app import WorkerApp

        self.settings = settings
        self.app = WorkerApp(settings)
        self.exit_code: int | None = None
        self._thread: threading.Thread | None = None
        self.pid = os.getpid()

    def start(self) -> ThreadWorker:
        self.app.start()

        def run() -> None:
            self.exit_code = self.app.run()

        self._thread = threading.Thread(target=run, name="bench-worker", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ready(self) -> bool:
        return self.app.ready

    def wait_ready(self, timeout: float = 90) -> float:
        wait_for(lambda: self.app.ready, timeout, "worker ready", interval=0.02)
        return time.time()

    def assigned(self) -> int:
        return len(self.app.assigned)

    def metrics(self) -> dict:
        from prometheus_client import generate_latest

        return parse_metrics(generate_latest(self.app.metrics.registry).decode())

    def stats(self) -> dict[str, float]:
        return proc_stats(self.pid)

    def terminate(self, timeout: float = 40) -> int:
        self.app.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.exit_code if self.exit_code is not None else -1

    def kill(self) -> None:
        self.terminate()


__all__ = [
    "BusyMeter", "Reader", "TextPool", "ThreadWorker", "WorkerProcess", "ccks_texts", "committed_and_end",
    "cpu_seconds", "ensure", "machine_jiffies", "message", "metric", "parse_metrics", "percentile", "proc_stats",
    "produce", "read_all", "tiny_model", "uid", "wait_for", "worker_settings",
]
