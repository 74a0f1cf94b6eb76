"""The tokenizer pool: several jieba children tokenise one micro-batch together, in order, and a
child that dies fails one call only (the worker path with two processes is in test_worker.py)."""

from __future__ import annotations

import os
import signal

import pytest

from fmlc.text import Tokenizer
from worker.tokenizing import TokenizerPool


def texts(n: int) -> list[str]:
    from training.synth import generate

    return [d["text"] for d in generate(n, 4)]


def test_two_processes_split_a_batch_and_keep_its_order() -> None:
    local = Tokenizer()
    restarts: list[str] = []
    pool = TokenizerPool(2, on_restart=restarts.append, min_slice=4)
    try:
        pool.warm_up("a", local.to_config(), 256)
        assert None not in pool.pids and len(set(pool.pids)) == 2, "both children started by the warm-up"
        batch = texts(40)
        assert pool.tokenize("a", local.to_config(), 256, batch) == [local.tokenize(t, 256) for t in batch]
        assert pool.tokenize("a", local.to_config(), 256, batch[:5]) == [local.tokenize(t, 256) for t in batch[:5]]
        assert pool.tokenize("a", local.to_config(), 256, []) == []
        # One child killed: the call fails (the caller tokenises itself), the other's reply is read,
        # and the next call has a new child and the right tokens again.
        first, second = pool.pids
        os.kill(second, signal.SIGKILL)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="tokenizer process"):
            pool.tokenize("a", local.to_config(), 256, batch)
        assert restarts == ["exited"]
        assert pool.tokenize("a", local.to_config(), 256, batch) == [local.tokenize(t, 256) for t in batch]
        assert pool.pids[0] == first and pool.pids[1] not in (None, second)
    finally:
        pool.close()
    assert pool.pids == [None, None]


def test_a_small_batch_uses_one_child_and_a_pool_needs_one() -> None:
    local = Tokenizer()
    pool = TokenizerPool(3, min_slice=16)
    try:
        assert pool.tokenize("a", local.to_config(), 256, texts(20)) == [local.tokenize(t, 256) for t in texts(20)]
        assert pool.pids[0] is not None and pool.pids[1:] == [None, None], "20 texts: one slice of at least 16"
    finally:
        pool.close()
    with pytest.raises(ValueError, match="at least one process"):
        TokenizerPool(0)
