"""jieba in a child process, off the worker's GIL.

jieba is pure Python. In a thread of the worker it holds the GIL that the model thread needs
between torch ops: measured on the bench model, a tokeniser thread running flat out made inference
5.3x slower per document (2.53 → 13.42 ms; `python -m bench.worker_costs`). A child process
tokenises the next micro-batches while the model thread runs; the prepare thread waits on a pipe,
which releases the GIL.

A plain child over a pipe (JSON lines) rather than multiprocessing: it imports only fmlc.text (no
torch, no Kafka client, no re-import of the worker's main module) and exits by itself when the
worker dies, because its stdin closes. The child builds its tokenizer from the model's own
tokenizer config, so a reloaded model with other stop words gets a tokenizer of its own there too.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import IO

log = logging.getLogger(__name__)


class TokenizerProcess:
    """One child that tokenises for the prepare stage. Not thread-safe: one caller at a time. A child
    that dies is replaced on the next call; the failed call raises and its caller tokenises itself."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._known: set[str] = set()  # keys whose config the current child has been sent

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", "worker.tokenizing"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
            self._known = set()
        return self._proc

    def tokenize(self, key: str, tokenizer_config: dict, max_len: int, texts: list[str]) -> list[list[str]]:
        """`key` names the config (the model version): the config, a few hundred stop words, crosses
        the pipe once per child and key, not with every micro-batch."""
        proc = self._child()
        request: dict = {"key": key, "max_len": max_len, "texts": texts}
        if key not in self._known:
            request["config"] = tokenizer_config
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except OSError as exc:
            self._lost(f"pipe error {exc!r}")
            raise
        if not line:
            self._lost("it exited")
            raise RuntimeError("tokenizer process exited")
        self._known.add(key)
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"tokenizer process: {reply['error']}")
        return reply["tokens"]

    def _lost(self, why: str) -> None:
        log.warning("tokenizer process lost (%s); a new one starts with the next batch", why)
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
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
    from fmlc.text import Tokenizer

    tokenizers: dict[str, Tokenizer] = {}
    for line in stdin:
        try:
            req = json.loads(line)
            if "config" in req:
                tokenizers[req["key"]] = Tokenizer.from_config(req["config"])
            tok = tokenizers[req["key"]]
            # The same call as Predictor.tokenize, on the same config: served tokens cannot drift.
            reply: dict = {"tokens": tok.tokenize_many(req["texts"], req["max_len"])}
        except Exception as exc:  # one bad batch must not end the child: the caller retries text by text
            reply = {"error": repr(exc)}
        stdout.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)


__all__ = ["TokenizerProcess", "serve"]
