from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_fixtures import tiny_model_dir, tiny_splits, tiny_training  # noqa: F401


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator:
    """One Tansu broker (memory-only, free port) for the whole session; tests use their own topics."""
    from worker.testkit import start_broker

    broker = start_broker()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator:
    """The Redis at FMLC_TEST_REDIS_URL / 127.0.0.1:6379 when one answers, else one of our own.
    Tests that stop or freeze Redis start their own server instead of touching this one."""
    from worker.testkit import redis_url_or_start

    server = redis_url_or_start(os.environ.get("FMLC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_model_dir(request: pytest.FixtureRequest) -> Path:
    """The tiny trained model; FMLC_TEST_MODEL_DIR points at an existing artifact instead, which
    saves the training minutes when iterating on the worker tests alone."""
    given = os.environ.get("FMLC_TEST_MODEL_DIR")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_model_dir")
