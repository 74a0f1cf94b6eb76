"""FMLC streaming worker: Kafka in, labels / alerts / dead letters out (see worker.app).

Importing the package stays cheap (no torch, no Kafka client): `worker.testkit` starts brokers and
Redis for demos, tests and benches that may never start a worker. The heavy parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.app import WorkerApp, run_worker
    from worker.settings import WorkerSettings, load_settings

__all__ = ["WorkerApp", "WorkerSettings", "load_settings", "run_worker"]


def __getattr__(name: str) -> Any:
    if name in ("WorkerApp", "run_worker"):
        from worker import app

        return getattr(app, name)
    if name in ("WorkerSettings", "load_settings"):
        from worker import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
