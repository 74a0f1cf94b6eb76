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

import contextlib
import itertools
import json
import logging
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, NamedTuple

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class TokenizerTimeout(RuntimeError):
    """The child did not answer a request in time; it has been killed and will be replaced."""


class _Pending(NamedTuple):
    """A request written to a child and not yet answered."""

    proc: subprocess.Popen[bytes]
    request_id: int
    key: str
    deadline: float
    timeout_s: float


class TokenizerProcess:
    """One child that tokenises for the prepare stage. Not thread-safe: one caller at a time.

    Every request carries an id, which the reply echoes, and has a deadline. A child that does not
    answer in time (hung, stopped, swapping), that dies, or whose reply does not match its request
    is killed; the failed call raises (its caller tokenises itself) and the next call starts a new
    child. `on_restart(reason)` is told each time (reason: timeout, exited, protocol)."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_restart: Callable[[str], None] | None = None) -> None:
        self.timeout_s = timeout_s
        self._on_restart = on_restart
        self._proc: subprocess.Popen[bytes] | None = None
        self._known: set[str] = set()  # keys whose config the current child has been sent
        self._ids = itertools.count(1)
        self._buffer = b""
        self._answered = False  # has the current child answered a request yet?

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is not None:
            self._lost("exited", "it exited")
        if self._proc is None:
            self._proc = subprocess.Popen([sys.executable, "-m", "worker.tokenizing"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
            self._known = set()
            self._buffer = b""
            self._answered = False
        return self._proc

    def tokenize(self, key: str, tokenizer_config: dict, max_len: int, texts: list[str]) -> list[list[str]]:
        """`key` names the config (the model version): the config, a few hundred stop words, crosses
        the pipe once per child and key, not with every micro-batch."""
        return self.receive(self.send(key, tokenizer_config, max_len, texts))

    def send(self, key: str, tokenizer_config: dict, max_len: int, texts: list[str]) -> _Pending:
        """Write one request; its reply is read by `receive`, so that a pool can keep several
        children busy at once."""
        proc = self._child()
        request_id = next(self._ids)
        request: dict = {"id": request_id, "key": key, "max_len": max_len, "texts": texts}
        if key not in self._known:
            request["config"] = tokenizer_config
        # A new child loads jieba's dictionary with its first request (a second or two, more on a
        # busy host): that one is given twice the time, still below the default stall timeout.
        timeout_s = self.timeout_s if self._answered else 2 * self.timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            assert proc.stdin is not None
            # A request bigger than the pipe's buffer returns once the child has read it; a stopped
            # child with a full pipe would block this write, which the stall check then reports.
            proc.stdin.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            self._lost("exited", f"pipe error {exc!r}")
            raise RuntimeError("tokenizer process: cannot send a request") from exc
        return _Pending(proc, request_id, key, deadline, timeout_s)

    def receive(self, pending: _Pending) -> list[list[str]]:
        """The reply to `pending`, or kill the child at its deadline (see the class docstring)."""
        proc, request_id, key, deadline, timeout_s = pending
        if proc is not self._proc:
            raise RuntimeError("tokenizer process: the child that had this request is gone")
        line = self._read_line(proc, deadline, timeout_s)
        try:
            reply = json.loads(line)
            ok = isinstance(reply, dict) and reply.get("id") == request_id
        except ValueError:
            ok = False
        if not ok:
            self._lost("protocol", "its reply does not match the request")
            raise RuntimeError("tokenizer process: reply does not match the request")
        self._known.add(key)
        self._answered = True
        if "error" in reply:
            raise RuntimeError(f"tokenizer process: {reply['error']}")
        return reply["tokens"]

    def _read_line(self, proc: subprocess.Popen[bytes], deadline: float, timeout_s: float) -> bytes:
        """One reply line, or kill the child at the deadline. Reads the raw descriptor: a buffered
        readline() cannot be given a timeout."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._lost("timeout", f"no answer within {timeout_s:g} s")
                    raise TokenizerTimeout(f"tokenizer process: no answer within {timeout_s:g} s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._lost("exited", "it exited")
                    raise RuntimeError("tokenizer process exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _lost(self, reason: str, why: str) -> None:
        log.warning("tokenizer process lost (%s); a new one starts with the next batch", why)
        self.close(kill=True)
        if self._on_restart is not None:
            self._on_restart(reason)

    def close(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        self._buffer = b""
        if proc is None:
            return
        try:
            if kill:
                # SIGKILL works on a stopped child too; closing its stdin would not.
                proc.kill()
            elif proc.stdin is not None:
                proc.stdin.close()  # the child's read loop ends on EOF
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class TokenizerPool:
    """`processes` children tokenising one micro-batch together. Not thread-safe: one caller at a time.

    The texts are cut into contiguous slices (at least `min_slice` texts each, so that a small batch
    does not pay a round trip per child), every slice is sent before any reply is read, and the
    replies are joined in slice order: the tokens come back in the order of the texts. One child
    that fails makes the call fail, after the others' replies have been read (so that no stale
    reply is left in a pipe); the caller then tokenises the batch itself, as with one child. Each
    child is replaced on its own (`on_restart(reason)`)."""

    def __init__(self, processes: int, timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_restart: Callable[[str], None] | None = None, min_slice: int = 16) -> None:
        if processes < 1:
            raise ValueError(f"a tokenizer pool needs at least one process, got {processes}")
        self.children = [TokenizerProcess(timeout_s, on_restart) for _ in range(processes)]
        self.min_slice = max(1, min_slice)

    @property
    def size(self) -> int:
        return len(self.children)

    @property
    def pids(self) -> list[int | None]:
        return [c.pid for c in self.children]

    @property
    def pid(self) -> int | None:
        """The first child's (the only one in a pool of one)."""
        return self.children[0].pid

    def warm_up(self, key: str, tokenizer_config: dict, max_len: int) -> None:
        """Start every child and have it load jieba's dictionary (a second or two each), together."""
        self._run(key, tokenizer_config, max_len, [["预热"] for _ in self.children])

    def tokenize(self, key: str, tokenizer_config: dict, max_len: int, texts: list[str]) -> list[list[str]]:
        if not texts:
            return []
        n = max(1, min(len(self.children), len(texts) // self.min_slice))
        bounds = [len(texts) * i // n for i in range(n + 1)]
        slices = [texts[bounds[i]:bounds[i + 1]] for i in range(n)]
        return self._run(key, tokenizer_config, max_len, slices)

    def _run(self, key: str, tokenizer_config: dict, max_len: int, slices: list[list[str]]) -> list[list[str]]:
        sent: list[tuple[TokenizerProcess, _Pending]] = []
        error: BaseException | None = None
        for child, part in zip(self.children, slices, strict=False):
            try:
                sent.append((child, child.send(key, tokenizer_config, max_len, part)))
            except Exception as exc:
                error = exc
                break
        tokens: list[list[str]] = []
        for child, pending in sent:
            try:
                tokens += child.receive(pending)
            except Exception as exc:  # read the others' replies anyway: none may stay in a pipe
                error = error or exc
        if error is not None:
            raise error
        return tokens

    def close(self, kill: bool = False) -> None:
        for child in self.children:
            child.close(kill=kill)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's loop: one JSON request per line in, one JSON reply per line out, until EOF."""
    from fmlc.text import Tokenizer

    tokenizers: dict[str, Tokenizer] = {}
    for line in stdin:
        req: dict = {}
        try:
            req = json.loads(line)
            if "config" in req:
                tokenizers[req["key"]] = Tokenizer.from_config(req["config"])
            tok = tokenizers[req["key"]]
            # The same call as Predictor.tokenize, on the same config: served tokens cannot drift.
            reply: dict = {"tokens": [tok.tokenize(t, req["max_len"]) for t in req["texts"]]}
        except Exception as exc:  # one bad batch must not end the child: the caller retries text by text
            reply = {"error": repr(exc)}
        reply["id"] = req.get("id") if isinstance(req, dict) else None
        stdout.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)


__all__ = ["DEFAULT_TIMEOUT_S", "TokenizerPool", "TokenizerProcess", "TokenizerTimeout", "serve"]
