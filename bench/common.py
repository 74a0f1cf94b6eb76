"""Helpers shared by the benchmark scripts: a paper-dimension model on real data, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ccks2019_fin"
TINY_MODEL_DIR = REPO / "runs" / "bench-tiny-model"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
                      dim: int = 300, model: str = "fmlc") -> tuple[Path, dict]:
    """A paper-dimension FMLC/ASL trained briefly on real data: enough for speed and for the F1 cost
    of a speed-up (both sides use the same weights), not a quality claim. Reused if present.
    `model="fmlc-wide"`: the default model with the same settings and seed (its own word2vec draw)."""
    from training.data import load_path, split_records
    from training.experiment import subset
    from training.trainer import TrainConfig, train

    records = load_path(data).records
    records = subset(records, max_docs, 0) if len(records) > max_docs else records
    splits = split_records(records, seed=0)
    if not (out / "VERSION").exists():
        cfg = TrainConfig.of(model=model, loss="asl", epochs=epochs, lr=1e-3, embed_dim=dim, hidden=dim, attn_dim=dim,
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


# --- streaming benches: texts, percentiles, /proc ----------------------------------------------------

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
