"""The model being served, and its hot reload.

A reload loads the new artifact completely (in the watcher thread, while the old model keeps
serving) and then swaps one reference. A micro-batch holds the model it started with, so its
cache look-up, its predictions and the model_version in its outputs always agree. A reload that
fails (half-copied directory, bad weights) keeps the old model and is tried again at the next poll.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fmlc import OutOfMemoryError, Predictor

log = logging.getLogger(__name__)

# A text every model must classify: the warm-up text, and the probe that tells a broken model from
# poison input when every text of a batch fails.
PROBE_TEXT = "预热：借款平台客服电话打不通，利息太高。"


def is_out_of_memory(exc: BaseException) -> bool:
    """Out of memory on any device, wherever in predict it was raised: fmlc's own error (a CUDA OOM
    in the forward pass), torch's CUDA error raised elsewhere, Python's MemoryError, and the CPU
    allocator's failure, which torch raises as a plain RuntimeError."""
    if isinstance(exc, (OutOfMemoryError, MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass(frozen=True)
class ServedModel:
    predictor: Predictor
    version: str
    device: str
    labels: tuple[str, ...]
    quantize: str = "none"  # part of the cache key and of fmlc_model_info: fp32 and int8 results never mix


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / container CPU sets
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_cpu_threads() -> int:
    return max(1, usable_cpus() - 1)


def default_tokenizer_processes(device: str) -> int:
    """On the CPU one: a jieba process tokenises several thousand texts/s per core, well above the CPU
    model's few hundred (bench/results/tokenizer_pool.md), and every other core is the model's. On an
    accelerator the model is fast and jieba becomes the limit: every usable CPU but one (left to the
    worker's own threads)."""
    return max(1, usable_cpus() - 1) if device.startswith("cuda") else 1


def load_model(path: Path, device: str | None, threads: int | None, quantize: str = "none") -> ServedModel:
    if threads is None and not (device or "auto").startswith("cuda"):
        threads = default_cpu_threads()
    # Refuses int8 on a CUDA device ("auto" resolved to one): fmlc.predictor.check_quantize.
    predictor = Predictor.load(path, device=device, torch_threads=threads, quantize=quantize)
    # jieba builds its dictionary and torch its kernels on first use (about a second); doing that
    # here keeps the first real batch — and a reload's first batch — inside the latency target.
    predictor.predict([PROBE_TEXT])
    return ServedModel(predictor=predictor, version=predictor.version, device=predictor.device,
                       labels=tuple(predictor.labels), quantize=predictor.quantize)


class ModelWatcher:
    """Reloads on request (SIGHUP) or when the artifact's VERSION changes (polled)."""

    def __init__(self, path: Path, device: str | None, threads: int | None, poll_interval_s: float,
                 initial: ServedModel, on_swap: Callable[[ServedModel], None],
                 on_result: Callable[[bool], None], quantize: str = "none") -> None:
        self.path = path
        self.quantize = quantize
        self.device = device
        self.threads = threads
        self.poll_interval_s = poll_interval_s
        self.current = initial  # read by the pipeline; a plain attribute swap is atomic
        self._on_swap = on_swap
        self._on_result = on_result
        self._requested = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_version: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fmlc-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._requested.set()

    def request_reload(self) -> None:
        """Safe from a signal handler: only sets an event."""
        self._requested.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            timeout = self.poll_interval_s if self.poll_interval_s > 0 else None
            forced = self._requested.wait(timeout)
            if self._stop.is_set():
                return
            self._requested.clear()
            try:
                self.check(force=forced)
            except Exception:  # the watcher must outlive any one bad artifact
                log.exception("model reload check failed")

    def check(self, force: bool = False) -> bool:
        """Reload when the on-disk version differs (or when forced). True when a new model was swapped in."""
        try:
            on_disk = Predictor.artifact_version(self.path)
        except Exception as exc:
            log.warning("cannot read the model version at %s: %s", self.path, exc)
            return False
        if not force and on_disk == self.current.version:
            return False
        if not force and on_disk == self._failed_version:
            # Retried at each poll regardless, but logged once per bad version rather than each time.
            log.debug("version %s failed to load before; trying again", on_disk)
        log.info("loading model %s from %s (serving %s)", on_disk, self.path, self.current.version)
        try:
            new = load_model(self.path, self.device, self.threads, self.quantize)
        except Exception as exc:
            self._failed_version = on_disk
            self._on_result(False)
            log.error("model reload failed, still serving %s: %s", self.current.version, exc)
            return False
        self._failed_version = None
        self._on_result(True)
        if new.version == self.current.version:
            log.info("model %s unchanged", new.version)
            return False
        old, self.current = self.current, new
        self._on_swap(new)
        log.info("model swapped: %s -> %s on %s", old.version, new.version, new.device)
        return True


__all__ = ["PROBE_TEXT", "ModelWatcher", "ServedModel", "default_tokenizer_processes", "is_out_of_memory",
           "load_model"]
