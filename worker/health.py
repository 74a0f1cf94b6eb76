"""HTTP on the metrics port: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).

Liveness says the consume loop is turning (a hung loop should be restarted); readiness says the
worker is a working member of its consumer group: a model is loaded and the group has given it an
assignment, possibly empty (a replica beyond the partition count is a standby, not a failure). A
worker that is draining for shutdown reports not ready.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict]]


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, live: Check, ready: Check) -> None:
        self.registry = registry
        self._live = live
        self._ready = ready
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
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
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
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
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
                # Probes arrive every few seconds; they would drown the worker's own log.
                log.debug("health: " + format, *args)

        return Handler


__all__ = ["HealthServer"]
