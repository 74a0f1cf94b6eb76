"""HTTP on the metrics port: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).

Liveness says the consume loop is turning (a hung loop should be restarted); readiness says the
worker is a working member of its consumer group: a model is loaded and the group has given it an
assignment, possibly empty (a replica beyond the partition count is a standby, not a failure). A
worker that is draining for shutdown reports not ready. Both answer a short JSON body whose `reason`
is a fixed code (see docs/operations.md), never an exception's text, which could carry anything.

The server is exposed to whatever can reach the metrics port, so it is bounded: each connection
gets a socket timeout (a client that opens a connection and sends nothing is dropped after
HTTP_TIMEOUT_S) and at most HTTP_THREADS requests are served at once; connections beyond that are
closed at once rather than queued, so no client can make the worker grow threads or file handles.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict]]

HTTP_TIMEOUT_S = 5.0  # per connection: reading the request and writing the answer
HTTP_THREADS = 8  # requests served at once: probes and scrapes need one or two


class BoundedHTTPServer(HTTPServer):
    """One short-lived thread per request, at most `max_threads` at a time."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_threads: int) -> None:
        super().__init__(address, handler)
        self.max_threads = max_threads
        self._slots = threading.BoundedSemaphore(max_threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("health: %d requests in progress; refusing a connection", self.max_threads)
            self.shutdown_request(request)
            return
        threading.Thread(target=self._serve_one, args=(request, client_address), name="fmlc-http",
                         daemon=True).start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # one broken client must not end the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client that hung up is not worth one.
        log.debug("health: request from %s failed", client_address, exc_info=True)


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, live: Check, ready: Check,
                 timeout_s: float = HTTP_TIMEOUT_S, max_threads: int = HTTP_THREADS) -> None:
        self.registry = registry
        self._live = live
        self._ready = ready
        self.timeout_s = timeout_s
        self._server = BoundedHTTPServer((host, port), self._handler(), max_threads)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fmlc-health", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = server.timeout_s  # applied to the socket by StreamRequestHandler.setup

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (server._live if path == "/healthz" else server._ready)()
                    body = json.dumps({"ok": ok, **detail}, ensure_ascii=False).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (TimeoutError, ConnectionError):
                    log.debug("health: client did not take the answer")

            def log_message(self, format: str, *args: object) -> None:
                # Probes arrive every few seconds; they would drown the worker's own log.
                log.debug("health: " + format, *args)

        return Handler


__all__ = ["HTTP_THREADS", "HTTP_TIMEOUT_S", "BoundedHTTPServer", "HealthServer"]
