"""Two costs behind the worker's design, measured on the bench model (paper dimensions, ccks texts):

1. Padding by sort window: padded / real tokens when the model sorts windows of W texts by length
   before cutting forward passes of 64 (W = 64 is an arrival-order micro-batch; the worker merges up
   to sort_window micro-batches under a backlog).
2. GIL contention: inference per document alone, and while a thread of the same process tokenises
   other texts flat out with jieba (pure Python) — why the worker tokenises in a child process.

    python -m bench.worker_costs     → bench/results/worker_costs.{json,md}
"""

from __future__ import annotations

import threading
import time

import torch

from bench.common import REPO, padded_over_real, write_results
from bench.streamkit import ccks_texts

NAME = "worker_costs"
WINDOWS = (64, 128, 256, 512, 1024, 4096)


def padding_by_window(lengths: list[int], batch: int, budget: int | None) -> dict[int, float]:
    n = len(lengths)
    return {w: padded_over_real(lengths, [list(range(s, min(s + w, n))) for s in range(0, n, w)], batch, budget)
            for w in WINDOWS}


def main() -> None:
    from bench.common import train_bench_model
    from fmlc import Predictor

    torch.set_num_threads(1)
    model_dir, _ = train_bench_model(REPO / "runs" / "bench-model")
    pred = Predictor.load(model_dir, device="cpu", threads=1)
    texts = ccks_texts()
    sample, other = texts[:4096], texts[4096:]
    tokens = pred.tokenize(sample)
    lengths = [max(1, len(pred.artifact.vocab.encode(t, pred.max_len))) for t in tokens]
    padding = padding_by_window(lengths, 64, pred.max_batch_tokens)

    work = tokens[:1500]
    pred.predict_tokens(work[:64], batch_size=64)  # warm-up

    def infer_ms_per_doc() -> float:
        t0 = time.perf_counter()
        pred.predict_tokens(work, batch_size=64)
        return 1000 * (time.perf_counter() - t0) / len(work)

    alone = min(infer_ms_per_doc() for _ in range(2))
    stop = threading.Event()
    done = [0]

    def tokenise_flat_out() -> None:
        i = 0
        while not stop.is_set():
            pred.tokenize(other[i : i + 64])
            i = (i + 64) % max(64, len(other) - 64)
            done[0] += 64

    th = threading.Thread(target=tokenise_flat_out, daemon=True)
    th.start()
    try:
        contended = min(infer_ms_per_doc() for _ in range(2))
    finally:
        stop.set()
        th.join()
    payload = {"model_dir": str(model_dir), "docs_for_padding": len(lengths), "batch_size": 64,
               "predictor_max_batch_tokens": pred.max_batch_tokens,
               "padded_over_real_tokens_by_window": {str(k): v for k, v in padding.items()},
               "docs_for_inference": len(work), "inference_ms_per_doc_alone": alone,
               "inference_ms_per_doc_with_tokeniser_thread": contended, "slowdown": contended / alone,
               "texts_tokenised_by_the_thread_meanwhile": done[0]}
    md = ["# Worker costs: padding by sort window, GIL contention (torch 1 thread, bench model, ccks texts)", "",
          "| sort window (texts sorted together, forward passes of 64) | padded / real tokens |", "|---|---|",
          *[f"| {w} | {v:.2f}x |" for w, v in padding.items()], "",
          f"Inference over {len(work)} tokenised texts: {alone:.2f} ms per document alone, {contended:.2f} ms while "
          f"a thread of the same process tokenises other texts with jieba ({contended / alone:.2f}x slower; "
          f"{done[0]} texts tokenised meanwhile). jieba is pure Python and holds the GIL that the model thread "
          "needs between torch ops, so the worker tokenises in a child process (worker/tokenizing.py)."]
    write_results(NAME, payload, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
