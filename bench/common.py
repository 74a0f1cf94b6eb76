"""Helpers shared by the benchmark scripts: a paper-dimension model on real data, result files."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ccks2019_fin"


def machine() -> dict:
    return {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def padded_over_real(lengths: list[int], groups: list[list[int]], batch: int, max_tokens: int | None) -> float:
    """Padded / real tokens when each group of texts (positions into `lengths`) is sorted by length and
    cut into forward passes the way the predictor does (fmlc.batching.length_chunks)."""
    from fmlc.batching import length_chunks

    total = 0
    for group in groups:
        for chunk in length_chunks([lengths[i] for i in group], batch, True, max_tokens):
            total += len(chunk) * max(lengths[group[i]] for i in chunk)
    return total / sum(lengths)


def train_bench_model(out: Path, data: Path = DEFAULT_DATA, epochs: int = 2, max_docs: int = 6000,
                      dim: int = 300) -> tuple[Path, dict]:
    """A paper-dimension FMLC/ASL trained briefly on real data: enough for speed and for the F1 cost
    of a speed-up (both sides use the same weights), not a quality claim. Reused if present."""
    from training.data import load_path, split_records
    from training.experiment import subset
    from training.trainer import TrainConfig, train

    records = load_path(data).records
    records = subset(records, max_docs, 0) if len(records) > max_docs else records
    splits = split_records(records, seed=0)
    if not (out / "VERSION").exists():
        cfg = TrainConfig.of(model="fmlc", loss="asl", epochs=epochs, lr=1e-3, embed_dim=dim, hidden=dim, attn_dim=dim,
                          graph_dim=dim, filters=dim)
        train(splits, cfg, out)
    return out, splits


def write_results(name: str, payload: dict, markdown: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1))
    (RESULTS / f"{name}.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")


def rate(fn, n_items: int, repeat: int = 3) -> float:
    """Items per second, best of `repeat` runs (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_items / best
