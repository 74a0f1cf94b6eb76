"""Two costs behind the worker's design, measured on the bench model (paper dimensions, ccks texts):

1. Padding by sort window: padded / real tokens when the model sorts windows of W texts by length
   before cutting forward passes of 64 (W = 64 is an arrival-order micro-batch; the worker merges up
   to sort_window micro-batches under a backlog).
2. GIL contention: inference per document alone, and while a thread of the same process tokenises
   other texts with jieba (pure Python), flat out or 15% of the time, at CPython's default GIL switch
   interval (5 ms) and at 0.05 ms — why the worker tokenises in a child process.

    python -m bench.worker_costs     → bench/results/worker_costs.{json,md}
"""

from __future__ import annotations

import sys
import threading
import time

import torch

from bench.common import REPO, ccks_texts, padded_over_real, write_results

NAME = "worker_costs"
WINDOWS = (64, 128, 256, 512, 1024, 4096)
DUTIES = (1.0, 0.15)  # flat out; about what py-spy saw the worker's other threads hold
FAST_SWITCH_S = 0.00005


def padding_by_window(lengths: list[int], batch: int, budget: int | None) -> dict[int, float]:
    n = len(lengths)
    return {w: padded_over_real(lengths, [list(range(s, min(s + w, n))) for s in range(0, n, w)], batch, budget)
            for w in WINDOWS}


def main() -> None:
    from bench.common import train_bench_model
    from fmlc import Predictor

    torch.set_num_threads(1)
    model_dir, _ = train_bench_model(REPO / "runs" / "bench-model")
    pred = Predictor.load(model_dir, device="cpu", torch_threads=1)
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
    default_interval = sys.getswitchinterval()

    def contended(duty: float, interval_s: float) -> tuple[float, int]:
        """Inference per document while a thread of this process tokenises other texts with jieba,
        busy `duty` of the time (in bursts of one 64-text chunk), at the given GIL switch interval."""
        stop = threading.Event()
        done = [0]

        def tokenise() -> None:
            i = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                pred.tokenize(other[i : i + 64])
                i = (i + 64) % max(64, len(other) - 64)
                done[0] += 64
                if duty < 1:
                    stop.wait((time.perf_counter() - t0) * (1 - duty) / duty)

        sys.setswitchinterval(interval_s)
        th = threading.Thread(target=tokenise, daemon=True)
        th.start()
        try:
            return min(infer_ms_per_doc() for _ in range(2)), done[0]
        finally:
            stop.set()
            th.join()
            sys.setswitchinterval(default_interval)

    grid = []
    for duty in DUTIES:
        for interval in (default_interval, FAST_SWITCH_S):
            ms, n = contended(duty, interval)
            grid.append({"tokeniser_duty": duty, "switch_interval_ms": 1000 * interval, "inference_ms_per_doc": ms,
                         "slowdown": ms / alone, "texts_tokenised_meanwhile": n})
    payload = {"model_dir": str(model_dir), "docs_for_padding": len(lengths), "batch_size": 64,
               "predictor_max_batch_tokens": pred.max_batch_tokens,
               "padded_over_real_tokens_by_window": {str(k): v for k, v in padding.items()},
               "docs_for_inference": len(work), "inference_ms_per_doc_alone": alone, "contention": grid}
    md = ["# Worker costs: padding by sort window, GIL contention (torch 1 thread, bench model, ccks texts)", "",
          "| sort window (texts sorted together, forward passes of 64) | padded / real tokens |", "|---|---|",
          *[f"| {w} | {v:.2f}x |" for w, v in padding.items()], "",
          f"Inference over {len(work)} tokenised texts: {alone:.2f} ms per document alone. While a thread of the "
          "same process tokenises other texts with jieba (pure Python: it holds the GIL the model thread needs "
          "between torch ops), busy all the time or in bursts a part of it, at the interpreter's GIL switch "
          f"interval ({1000 * default_interval:g} ms) and at {1000 * FAST_SWITCH_S:g} ms:", "",
          "| tokeniser thread busy | switch interval | inference ms/doc | slowdown | texts tokenised meanwhile |",
          "|---|---|---|---|---|",
          *[f"| {g['tokeniser_duty']:.0%} | {g['switch_interval_ms']:g} ms | {g['inference_ms_per_doc']:.2f} | "
            f"{g['slowdown']:.2f}x | {g['texts_tokenised_meanwhile']} |" for g in grid], "",
          "The worker tokenises in a child process (worker/tokenizing.py); its other threads (delivery, "
          "cache, the consume loop) still run Python beside the model thread."]
    write_results(NAME, payload, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
