"""The CPU model in a child process of the worker, off the worker's GIL.

The model thread needs the GIL back after every torch op. In the worker it shares the GIL with the
threads that deliver (render hundreds of outputs, wait on producer futures, write the cache), prepare
and consume; a thread of the same process running Python only 15% of the time made inference 1.2x
slower per document, flat out 6.3x (`python -m bench.worker_costs`). In a child the model has an
interpreter of its own, and the model thread of the worker waits on a pipe, which releases the GIL.

Like the tokenizer child (worker/tokenizing.py): a plain child over a pipe (JSON lines), started with
`python -m worker.inference`, which exits by itself when the worker dies because its stdin closes.
The child loads the artifact itself (safetensors, no pickle) and refuses to serve a version other
than the one the worker asked for, so a model file replaced between the worker's load and the
child's cannot label a batch with the wrong version. CPU only: a CUDA model stays in the worker's
model thread, where the OOM splitting of worker/pipeline.py applies directly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from fmlc import LabelScore, OutOfMemoryError, Prediction

log = logging.getLogger(__name__)
KEEP_VERSIONS = 2  # the served one and the one before it, for batches still in flight at a swap
RETRY_REFUSED_S = 30.0  # a version the child could not load is not asked for again before this


class ChildUnavailable(RuntimeError):
    """The child could not serve this call (it died, could not load the model, or has another version
    on disk); the caller predicts in its own thread instead."""


class InferenceProcess:
    """One child that runs the model for the infer stage. Not thread-safe: one caller at a time. A
    child that dies is replaced on the next call."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._proc: subprocess.Popen[bytes] | None = None
        self._loaded: list[str] = []  # versions the current child holds, oldest first
        self._refused: dict[str, tuple[float, str]] = {}  # version -> (when, why)

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", "worker.inference"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
            self._loaded = []
        return self._proc

    def _call(self, request: dict) -> dict:
        proc = self._child()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except OSError as exc:
            self._lost(f"pipe error {exc!r}")
            raise ChildUnavailable(f"model process pipe error: {exc!r}") from exc
        if not line:
            self._lost("it exited")
            raise ChildUnavailable("model process exited")
        return json.loads(line)

    def load(self, path: Path, version: str) -> None:
        """Make the child hold `version` from `path` (a no-op when it already does)."""
        self._child()  # a dead child is replaced here, and the new one holds nothing yet
        if version in self._loaded:
            return
        refused = self._refused.get(version)
        if refused is not None and time.monotonic() - refused[0] < RETRY_REFUSED_S:
            raise ChildUnavailable(refused[1])
        reply = self._call({"load": str(path), "version": version, "threads": self.threads,
                            "keep": KEEP_VERSIONS})
        if "error" in reply:
            why = f"model process cannot serve {version}: {reply['error']}"
            self._refused[version] = (time.monotonic(), why)
            raise ChildUnavailable(why)
        self._refused.pop(version, None)
        self._loaded = [v for v in self._loaded if v != version][-(KEEP_VERSIONS - 1):] + [version]

    def predict_tokens(self, path: Path, version: str, tokens: Sequence[Sequence[str]],
                       batch_size: int) -> list[Prediction]:
        self.load(path, version)
        reply = self._call({"version": version, "batch_size": batch_size, "tokens": tokens})
        if "error" in reply:
            if reply.get("unknown_version"):
                self._loaded = [v for v in self._loaded if v != version]
                raise ChildUnavailable(reply["error"])
            raise (OutOfMemoryError if reply.get("oom") else RuntimeError)(f"model process: {reply['error']}")
        return [Prediction([LabelScore(label, score, evidence) for label, score, evidence in labels])
                for labels in reply["predictions"]]

    def _lost(self, why: str) -> None:
        log.warning("model process lost (%s); a new one starts with the next batch", why)
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._loaded = []
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the child's read loop ends on EOF
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's loop: one JSON request per line in, one JSON reply per line out, until EOF."""
    from fmlc import Predictor

    models: dict[str, Predictor] = {}
    for line in stdin:
        reply: dict
        try:
            req = json.loads(line)
            if "load" in req:
                version = req["version"]
                on_disk = Predictor.artifact_version(req["load"])
                if on_disk != version:
                    raise ValueError(f"{req['load']} now holds {on_disk}, not {version}")
                pred = Predictor.load(req["load"], device="cpu", threads=req.get("threads"))
                if pred.version != version:  # replaced while it was being read
                    raise ValueError(f"{req['load']} changed while loading ({pred.version}, not {version})")
                pred.predict_tokens([["预热"]])  # torch's kernels now, not in the first batch's latency
                models.pop(version, None)
                models[version] = pred
                while len(models) > max(1, int(req.get("keep", 2))):
                    models.pop(next(iter(models)))
                reply = {"loaded": version}
            elif req["version"] not in models:
                reply = {"error": f"version {req['version']} not loaded", "unknown_version": True}
            else:
                preds = models[req["version"]].predict_tokens(req["tokens"], batch_size=req["batch_size"])
                reply = {"predictions": [[[ls.label, ls.score, ls.evidence] for ls in p.labels] for p in preds]}
        except OutOfMemoryError as exc:
            reply = {"error": repr(exc), "oom": True}
        except Exception as exc:  # one bad batch must not end the child: the caller splits and retries
            reply = {"error": repr(exc)}
        stdout.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)


__all__ = ["ChildUnavailable", "InferenceProcess", "serve"]
