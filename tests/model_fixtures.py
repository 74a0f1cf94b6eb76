"""Synthetic splits and a tiny training run for the training tests, and the tiny model of the
streaming test kit (worker.testkit.tiny_model) for every test that needs a served model (predictor,
worker, deploy). Small dimensions keep each to seconds on 2 cores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TINY = dict(epochs=6, lr=1e-2, batch_size=32, embed_dim=32, hidden=32, attn_dim=32, graph_dim=32, filters=32,
            max_len=96, w2v_epochs=2, patience=4, progress=False, threads=1, lr_schedule="constant", warmup_epochs=0.0)


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    labels: tuple[str, ...]


def synthetic_splits(n: int = 2400, seed: int = 0) -> dict[str, list[Doc]]:
    from training.synth import generate

    docs = [Doc(d["id"], d["text"], tuple(d["labels"])) for d in generate(n, seed)]
    a, b = int(0.7 * n), int(0.85 * n)
    return {"train": docs[:a], "valid": docs[a:b], "test": docs[b:]}


@pytest.fixture(scope="session")
def tiny_splits() -> dict[str, list[Doc]]:
    return synthetic_splits()


@pytest.fixture(scope="session")
def tiny_training(tiny_splits: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory):
    from training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "tiny-fmlc"
    return train(tiny_splits, TrainConfig.of(model="fmlc", **TINY), out)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.testkit import tiny_model

    return tiny_model(tmp_path_factory.mktemp("served") / "tiny-fmlc")
