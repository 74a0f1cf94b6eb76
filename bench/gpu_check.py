"""One prepared accelerator run: what the worker's model and the worker do on a CUDA GPU.

    bash bench/gpu_check.sh [--model DIR] [--only STEP ...]     (the script picks the interpreter)
    python -m bench.gpu_check --plan                            (print the plan, measure nothing)

Time on a machine with an accelerator is rare and short, so this run is prepared in advance and
bounded: it finishes within 8 minutes in total, every step has its own time budget and runs in a
child process of its own (a hung CUDA call is killed with its step, not with the run), and
bench/results/gpu.{json,md} are rewritten after every step, so a step that fails or runs out of
time leaves the others' results and its own partial ones.

Steps (see STEPS for the budgets):
1. model_limit: the model alone (pre-tokenised, host-to-device copy and result copy included) in
   fp32 and under bf16 / fp16 autocast at batch 1, 64, 256 and 1024, length-sorted as the
   predictor cuts batches; and jieba's tokenisation rate in one process, the GPU's feeder.
2. cpu_model: the same model on the CPU of the same machine at the worker's batch (64), fp32 and
   int8 where available, with the worker's default thread count: the GPU ÷ CPU ratio.
3. worker_e2e: `python -m worker` on the GPU through a local Tansu broker (no cache): a backlog
   of synthetic complaints drained, outputs read back, messages/s and the worker's own counters.
4. oom: a real CUDA out-of-memory error. The rest of the GPU's memory is taken by a ballast
   tensor, then the worker's model call (worker.pipeline.predict_isolating) is given a batch
   sized to exceed what is left: it must split, recover every prediction and count the errors
   in fmlc_oom_total.

The model is `--model DIR` when given, else runs/bench-model when present (the paper-dimension
model of bench.common.train_bench_model), else a paper-dimension FMLC with random weights built
from synthetic complaints (speed does not depend on the weights; its labels mean nothing). The
texts are the embedded synthetic complaints (training.synth): the machine needs no data set and
no network.

Without CUDA (no CUDA build of torch, or no device) it prints the plan and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Not from bench.common, which imports torch: the plan and the "no CUDA" answer must work without it.
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
NAME = "gpu"
TOTAL_BUDGET_S = 480
BATCH_SIZES = (1, 64, 256, 1024)
PRECISIONS = ("fp32", "bf16", "fp16")
PAPER_DIM = 300


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: float
    what: str


STEPS = (
    Step("model_limit", 110, "model alone, fp32 vs bf16/fp16 autocast, batch 1/64/256/1024; jieba docs/s"),
    Step("cpu_model", 50, "same model on this machine's CPU, batch 64, fp32 and int8: GPU / CPU ratio"),
    Step("tokenizer_pool", 40, "jieba texts/s through 1, 2, 4, 8 and cores-1 tokenizer processes"),
    Step("worker_e2e", 140, "python -m worker on the GPU through a local Tansu broker with the tokenizer "
                            "pool, backlog drained, msgs/s and counters"),
    Step("oom", 70, "real CUDA out-of-memory: ballast fills the GPU, an oversized batch splits and recovers, "
                    "fmlc_oom_total checked"),
)
PREPARE_BUDGET_S = 40  # building (or loading) the model and the texts, in the parent


def plan_lines(steps: Sequence[Step] = STEPS) -> list[str]:
    total = PREPARE_BUDGET_S + sum(s.budget_s for s in steps)
    lines = [f"gpu_check plan (at most {total:.0f} s of {TOTAL_BUDGET_S} s; results: bench/results/{NAME}.json, "
             f"{NAME}.md, rewritten after each step):",
             f"  0. prepare ({PREPARE_BUDGET_S} s): the model (--model, runs/bench-model, or a random-weight "
             f"paper-dimension FMLC) and synthetic texts"]
    lines += [f"  {i}. {s.name} ({s.budget_s:.0f} s): {s.what}" for i, s in enumerate(steps, 1)]
    return lines


def cuda_state() -> tuple[bool, str]:
    """(usable, why not): torch importable, built with CUDA, and a device visible."""
    try:
        import torch
    except ImportError:
        return False, f"torch is not installed for {sys.executable}"
    if torch.version.cuda is None:
        return False, (f"torch has no CUDA build (torch {torch.__version__} at {sys.executable}); "
                       "install a CUDA build or run with one (FMLC_PYTHON=...)")
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} was built for CUDA {torch.version.cuda} but sees no CUDA device"
    return True, ""


# --- the model and the texts -------------------------------------------------------------------------------

def synthetic_texts(n: int, seed: int = 11) -> list[str]:
    from training.synth import generate

    return [d["text"] for d in generate(n, seed)]


def speed_artifact(out: Path, n_docs: int = 3000, dim: int = PAPER_DIM, max_len: int = 256, seed: int = 0) -> Path:
    """A full FMLC artifact with random weights: vocabulary and labels from synthetic complaints,
    thresholds 0.5. For speed only: the time of a forward pass does not depend on the weights."""
    import numpy as np
    import torch

    from fmlc import artifact as artifact_io
    from fmlc.models import ModelConfig, build_model
    from fmlc.text import Tokenizer
    from fmlc.vocab import Vocab
    from training.synth import generate

    docs = generate(n_docs, seed)
    tokenizer = Tokenizer()
    vocab = Vocab.build([tokenizer.tokenize(d["text"], max_len) for d in docs], min_count=1)
    labels = sorted({lab for d in docs for lab in d["labels"]})
    cfg = ModelConfig(model="fmlc", vocab_size=len(vocab), n_labels=len(labels), embed_dim=dim, hidden=dim,
                      attn_dim=dim, graph_dim=dim, filters=dim)
    torch.manual_seed(seed)
    net = build_model(cfg)
    art = artifact_io.Artifact(
        model_config=cfg, tokenizer_config=tokenizer.to_config(), labels=labels, train_counts=[1] * len(labels),
        vocab=vocab, thresholds=np.full(len(labels), 0.5, dtype=np.float32), state_dict=net.state_dict(),
        max_len=max_len, meta={"note": "random weights, for speed measurements only (bench.gpu_check)"})
    artifact_io.save(art, out)
    return out


def pick_model(given: Path | None, work: Path) -> tuple[Path, str]:
    """(artifact directory, where it came from)."""
    if given is not None:
        return given, "given (--model)"
    bench_model = REPO / "runs" / "bench-model"
    if (bench_model / "VERSION").exists():
        return bench_model, "runs/bench-model (trained, paper dimensions)"
    out = work / "speed-model"
    if not (out / "VERSION").exists():
        speed_artifact(out)
    return out, "random weights, paper dimensions (bench.gpu_check.speed_artifact)"


# --- timing ---------------------------------------------------------------------------------------------

def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype)


def model_rate(model: Any, encoded: Sequence[Sequence[int]], batch_size: int, device: str, precision: str,
               min_seconds: float = 2.0, max_tokens: int | None = None) -> dict:
    """Documents per second through the model alone: length-sorted chunks of `batch_size` (as
    fmlc.Predictor cuts them), each padded and copied to the device, run, and its probabilities
    copied back (which waits for the device). Chunks are run round-robin after one warm-up pass over
    the first few, until `min_seconds` have passed."""
    import torch

    from fmlc.batching import length_chunks, pad_batch

    chunks = length_chunks([len(e) for e in encoded], batch_size, True, max_tokens)
    # Shuffled, so that a run cut short by min_seconds samples every length, not just the shortest.
    random.Random(0).shuffle(chunks)

    def run(chunk: list[int]) -> None:
        ids, mask = pad_batch([encoded[i] for i in chunk], device)
        with torch.inference_mode(), autocast(device, precision):
            out = model(ids, mask)
            torch.sigmoid(out.logits.float()).cpu()

    for chunk in chunks[:3]:
        run(chunk)
    docs = calls = 0
    t0 = time.perf_counter()
    while True:
        chunk = chunks[calls % len(chunks)]
        run(chunk)
        docs += len(chunk)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
    return {"batch_size": batch_size, "precision": precision, "device": device, "docs_per_s": docs / elapsed,
            "docs": docs, "calls": calls, "seconds": elapsed}


def tokenize_rate(texts: Sequence[str], min_seconds: float = 2.0) -> float:
    """jieba texts/s in this process (one core): what one tokenizer process feeds."""
    from fmlc.text import Tokenizer

    tok = Tokenizer()
    tok.tokenize(texts[0])  # loads jieba's dictionary
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        for text in texts[:200]:
            tok.tokenize(text, 256)
        done += min(200, len(texts))
    return done / (time.perf_counter() - t0)


# --- steps (each runs in a child process; `emit` saves partial results as they come) ----------------------

Emit = Callable[[dict], None]


def _load(model_dir: Path, device: str, **kw: Any) -> Any:
    from fmlc import Predictor

    return Predictor.load(model_dir, device=device, **kw)


def step_model_limit(model_dir: Path, texts: Sequence[str], emit: Emit, device: str = "cuda",
                     batch_sizes: Sequence[int] = BATCH_SIZES, precisions: Sequence[str] = PRECISIONS,
                     min_seconds: float = 2.0, deadline: float | None = None) -> dict:
    predictor = _load(model_dir, device)
    result: dict[str, Any] = {"model_version": predictor.version, "rows": [], "skipped": []}
    if device.startswith("cuda"):
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
        if "bf16" in precisions and not torch.cuda.is_bf16_supported():
            precisions = [p for p in precisions if p != "bf16"]
            result["skipped"].append("bf16: not supported by this device")
    result["tokenize_docs_per_s_one_process"] = tokenize_rate(texts, min(min_seconds, 2.0))
    tokens = predictor.tokenize(texts)
    encoded = [predictor.artifact.vocab.encode(t, predictor.max_len) for t in tokens]
    result["docs"] = len(encoded)
    result["tokens_per_doc_mean"] = sum(len(e) for e in encoded) / max(1, len(encoded))
    emit(result)
    for b in batch_sizes:
        for precision in precisions:
            if deadline is not None and time.monotonic() + 2 * min_seconds > deadline:
                result["skipped"].append(f"b={b} {precision}: out of time")
                continue
            row = model_rate(predictor.model, encoded, b, predictor.device, precision, min_seconds,
                             predictor.max_batch_tokens)
            result["rows"].append({k: row[k] for k in ("batch_size", "precision", "docs_per_s", "calls")})
            emit(result)
    return result


def step_cpu_model(model_dir: Path, texts: Sequence[str], emit: Emit, batch_size: int = 64,
                   min_seconds: float = 5.0, threads: int | None = None) -> dict:
    """The model on this machine's CPU, with the worker's default thread count (all usable CPUs but one)."""
    from worker.model import default_cpu_threads

    threads = threads or default_cpu_threads()
    result: dict[str, Any] = {"threads": threads, "rows": []}
    for quantize in (None, "int8"):
        try:
            predictor = _load(model_dir, "cpu", torch_threads=threads, quantize=quantize)
        except (ValueError, RuntimeError) as exc:  # no int8 kernels in this build: say so, keep fp32
            result["rows"].append({"mode": quantize, "error": f"{type(exc).__name__}: {exc}"})
            continue
        encoded = [predictor.artifact.vocab.encode(t, predictor.max_len) for t in predictor.tokenize(texts)]
        row = model_rate(predictor.model, encoded, batch_size, "cpu", "fp32", min_seconds, predictor.max_batch_tokens)
        result["rows"].append({"mode": quantize or "fp32", "batch_size": batch_size, "docs_per_s": row["docs_per_s"]})
        emit(result)
    return result


def worker_end_to_end(bootstrap: str, model_dir: Path, texts: Sequence[str], workdir: Path, device: str = "cuda",
                      batch_size: int = 256, partitions: int = 4, timeout_s: float = 120.0,
                      **overrides: Any) -> dict:
    """`python -m worker` drains a backlog of `texts` (pre-produced, unique ids) through the broker."""
    from bench.worker_throughput import Outputs
    from worker.kafka import ensure_topics
    from worker.testkit import TopicReader, WorkerProcess, message, metric, produce, worker_settings

    # cpu_threads None: the worker's own default (all usable CPUs but one; none set on CUDA).
    s = worker_settings(bootstrap, model_dir, redis_url=None, device=device, batch_size=batch_size,
                        topic_partitions=partitions, **{"cpu_threads": None, **overrides})
    ensure_topics(s)
    out = Outputs(s.output_topic, s.dlq_topic)
    reader = TopicReader(bootstrap, s.output_topic, s.dlq_topic, committed_only=False)
    reader.on_record = out
    reader.start()
    ids = [f"g-{i}" for i in range(len(texts))]
    t0 = time.time()
    produce(bootstrap, s.input_topic, [(i.encode(), message(i, t)) for i, t in zip(ids, texts, strict=True)],
            partitions=partitions)
    produce_s = time.time() - t0
    w = WorkerProcess(s, workdir / "gpu-check-worker.log")
    deadline = time.monotonic() + timeout_s
    try:
        t_ready = w.wait_ready(min(90.0, timeout_s))
        try:
            out.wait(ids, max(5.0, deadline - time.monotonic()), "worker_e2e")
        except TimeoutError:
            raise TimeoutError(f"worker_e2e: {out.have(ids)} of {len(ids)} outputs within {timeout_s:.0f} s; "
                               f"worker log:\n{w.log()[-1500:]}") from None
        t_done = max(out.read_at[i] for i in ids)
        m = w.metrics()
        w.stop()
    finally:
        if w.alive():
            w.kill()
        reader.close()
    tokenizer_settings = {k: getattr(s, k) for k in ("tokenizer", "tokenizer_processes") if k in type(s).model_fields}
    if tokenizer_settings.get("tokenizer_processes", 0) is None:
        from worker.model import default_tokenizer_processes

        tokenizer_settings["tokenizer_processes"] = f"auto: {default_tokenizer_processes(device)}"
    return {"messages": len(ids), "device": device, "batch_size": batch_size, "partitions": partitions,
            "tokenizer_settings": tokenizer_settings, "produce_s": produce_s,
            "docs_per_s": len(ids) / (t_done - t_ready), "duplicates": out.duplicates,
            "dead_letters": out.dead_letters, "oom_total": metric(m, "fmlc_oom_total"),
            "inference_seconds": metric(m, "fmlc_inference_seconds_sum"),
            "tokenize_seconds": metric(m, "fmlc_tokenize_seconds_sum"),
            "model_calls": metric(m, "fmlc_model_batch_size_count"),
            "texts_per_model_call": metric(m, "fmlc_model_batch_size_sum") / max(1.0, metric(
                m, "fmlc_model_batch_size_count"))}


def step_tokenizer_pool(texts: Sequence[str], emit: Emit, counts: Sequence[int] | None = None,
                        deadline: float | None = None) -> dict:
    """jieba texts/s through pools of 1, 2, 4, 8 and (usable CPUs - 1) processes, in calls of 256."""
    from bench.tokenizer_pool import pool_rate
    from worker.model import usable_cpus

    cpus = usable_cpus()
    counts = counts or sorted({n for n in (1, 2, 4, 8, cpus - 1) if 1 <= n <= max(1, cpus - 1)})
    result: dict[str, Any] = {"usable_cpus": cpus, "rows": []}
    for n in counts:
        if deadline is not None and time.monotonic() > deadline:
            result.setdefault("skipped", []).append(f"{n} processes: out of time")
            continue
        result["rows"].append(pool_rate(texts, n, batch=256, repeat=1))
        emit(result)
    return result


def step_worker_e2e(model_dir: Path, texts: Sequence[str], emit: Emit, workdir: Path, device: str = "cuda",
                    timeout_s: float = 120.0) -> dict:
    from worker.testkit import start_broker

    broker = start_broker(log_path=str(workdir / "gpu-check-broker.log"))
    try:
        result = worker_end_to_end(broker.bootstrap, model_dir, texts, workdir, device=device, timeout_s=timeout_s)
    finally:
        broker.stop()
    emit(result)
    return result


def ballast_bytes(free: int, fits: int, exceeds: int, margin: int = 256 << 20) -> int | None:
    """Bytes to take so that a call needing `fits` bytes still runs and one needing `exceeds` does
    not: leave room for the small call (twice over, plus a margin for the allocator's rounding),
    which must stay well below the large one. None when the two needs are too close to separate."""
    room = 2 * fits + margin
    if exceeds < 2 * room or room >= free:
        return None
    return free - room


def long_docs(tokens: Sequence[Sequence[str]], n: int, length: int) -> list[list[str]]:
    """`n` token lists of `length` tokens each (texts' tokens repeated): the biggest a batch of n gets."""
    pool = [t for doc in tokens for t in doc] or ["空"]
    return [[pool[(i * 7 + j) % len(pool)] for j in range(length)] for i in range(n)]


def oom_split(predictor: Any, tokens: Sequence[Sequence[str]], big: int = 8192, small: int = 64,
              ballast: Callable[[int, int], Any] | None = None) -> dict:
    """Give the worker's model stage a batch of `big` max-length texts with the rest of the device's
    memory taken (by `ballast(fits, exceeds)`, which returns what it allocated): it must split until
    the pieces fit, answer every text with the labels it gets without the pressure, and count each
    out-of-memory error in fmlc_oom_total. On a CPU (tests) there is no ballast and nothing runs out."""
    import torch

    from fmlc import Prediction
    from worker.metrics import WorkerMetrics
    from worker.model import ServedModel
    from worker.pipeline import predict_isolating, retry_after_oom

    docs = long_docs(tokens, big, predictor.max_len)
    reference = [p.names for p in predictor.predict_tokens(docs[:small], batch_size=small)]
    on_cuda = predictor.device.startswith("cuda")
    need_small = need_big = 0
    if on_cuda:
        for n in (small, big):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            try:
                predictor.predict_tokens(docs[:n], batch_size=n)
                peak = torch.cuda.max_memory_allocated() - base
            except Exception:  # the big batch need not even fit an empty device; its need is then "all"
                peak = torch.cuda.mem_get_info()[1]
            torch.cuda.empty_cache()
            need_small, need_big = (peak, need_big) if n == small else (need_small, peak)
    metrics = WorkerMetrics()
    served = ServedModel(predictor=predictor, version=predictor.version, device=predictor.device,
                         labels=tuple(predictor.labels))

    def retry(model: ServedModel, single: list[list[str]]) -> Any:  # the worker's, with its default budget
        return retry_after_oom(model, single, 10.0, threading.Event(), metrics)

    held = ballast(need_small, need_big) if ballast is not None else None
    t0 = time.perf_counter()
    try:
        results = predict_isolating(served, docs, big, metrics, retry)
    finally:
        del held
        if on_cuda:
            torch.cuda.empty_cache()
    answered = [r for r in results if isinstance(r, Prediction)]
    agree = sum(1 for r, ref in zip(results[:small], reference, strict=True)
                if isinstance(r, Prediction) and r.names == ref)
    return {"batch_texts": big, "tokens_per_text": predictor.max_len, "need_small_bytes": need_small,
            "need_big_bytes": need_big, "oom_total": metrics.value("fmlc_oom_total"),
            "answered": len(answered), "failed": len(results) - len(answered),
            "same_labels_as_unpressured": agree / small, "seconds": time.perf_counter() - t0,
            "recovered": len(answered) == big}


def cuda_ballast(fits: int, exceeds: int) -> Any:
    import torch

    free, _ = torch.cuda.mem_get_info()
    take = ballast_bytes(free, fits, exceeds)
    if take is None:
        raise RuntimeError(f"cannot size a ballast: free {free}, small call {fits}, big call {exceeds} bytes")
    return torch.empty(take, dtype=torch.uint8, device="cuda")


def step_oom(model_dir: Path, texts: Sequence[str], emit: Emit, device: str = "cuda", big: int = 8192,
             small: int = 64) -> dict:
    # One forward pass per call (no token cap), so that the batch is as big as asked for.
    predictor = _load(model_dir, device, max_batch_tokens=1 << 40)
    tokens = predictor.tokenize(list(texts[:500]))
    result = oom_split(predictor, tokens, big=big, small=small,
                       ballast=cuda_ballast if device.startswith("cuda") else None)
    result["checked"] = bool(result["recovered"] and result["oom_total"] >= 1) if device.startswith("cuda") \
        else result["recovered"]
    emit(result)
    return result


# --- the parent: steps in children, results after each -----------------------------------------------------

def run_step(argv: Sequence[str], budget_s: float, partial_path: Path) -> dict:
    """Run one step's child with its budget; whatever it saved is kept even on failure or timeout."""
    t0 = time.monotonic()
    with contextlib.suppress(FileNotFoundError):
        partial_path.unlink()
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=budget_s, cwd=REPO)
        status = "ok" if proc.returncode == 0 else "failed"
        error = None if proc.returncode == 0 else (proc.stderr or proc.stdout)[-2000:]
    except subprocess.TimeoutExpired as exc:
        status, error = "timeout", f"over its budget of {budget_s:.0f} s; {_text(exc.stderr)[-1000:]}"
    entry: dict[str, Any] = {"status": status, "budget_s": budget_s, "seconds": round(time.monotonic() - t0, 1)}
    try:
        entry["result"] = json.loads(partial_path.read_text())
    except (FileNotFoundError, ValueError):
        entry["result"] = None
    if error:
        entry["error"] = error
    return entry


def _text(raw: str | bytes | None) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")


def summarise(steps: dict[str, dict]) -> dict:
    """Headline figures from whatever steps produced results."""
    out: dict[str, Any] = {}
    limit = (steps.get("model_limit") or {}).get("result") or {}
    rows = limit.get("rows") or []
    if rows:
        best = max(rows, key=lambda r: r["docs_per_s"])
        out["gpu_best"] = best
        for b in {r["batch_size"] for r in rows}:
            fp32 = [r for r in rows if r["batch_size"] == b and r["precision"] == "fp32"]
            for r in rows:
                if r["batch_size"] == b and r["precision"] != "fp32" and fp32:
                    out[f"autocast_{r['precision']}_over_fp32_b{b}"] = r["docs_per_s"] / fp32[0]["docs_per_s"]
    cpu_rows = [r for r in ((steps.get("cpu_model") or {}).get("result") or {}).get("rows", []) if "docs_per_s" in r]
    if rows and cpu_rows:
        for r in cpu_rows:
            out[f"gpu_over_cpu_{r['mode']}"] = out["gpu_best"]["docs_per_s"] / r["docs_per_s"]
    pool_rows = ((steps.get("tokenizer_pool") or {}).get("result") or {}).get("rows") or []
    if pool_rows:
        best_pool = max(pool_rows, key=lambda r: r["texts_per_s"])
        out["tokenizer_pool_best"] = {k: best_pool[k] for k in ("processes", "texts_per_s")}
    feed = limit.get("tokenize_docs_per_s_one_process")
    if rows and feed:
        b256 = [r["docs_per_s"] for r in rows if r["batch_size"] == 256]
        if b256:
            out["tokenizer_processes_to_feed_b256"] = max(b256) / feed
    return out


def markdown(payload: dict) -> list[str]:
    m = payload.get("machine", {})
    lines = [f"# Accelerator check ({m.get('cuda') or 'no CUDA device'}, torch {m.get('torch')}, {m.get('when')})", "",
             f"Model: {payload.get('model_source')} ({payload.get('model_version')}); texts: synthetic complaints.",
             "", "| step | status | seconds (budget) |", "|---|---|---|"]
    for name, st in payload["steps"].items():
        lines.append(f"| {name} | {st['status']} | {st['seconds']} ({st['budget_s']:.0f}) |")
    limit = (payload["steps"].get("model_limit") or {}).get("result") or {}
    if limit.get("rows"):
        precisions = [p for p in PRECISIONS if any(r["precision"] == p for r in limit["rows"])]
        lines += ["", f"Model alone, docs/s ({limit.get('tokens_per_doc_mean', 0):.1f} tokens/doc):", "",
                  "| batch | " + " | ".join(precisions) + " |", "|---" * (len(precisions) + 1) + "|"]
        for b in sorted({r["batch_size"] for r in limit["rows"]}):
            cells = []
            for p in precisions:
                got = [r["docs_per_s"] for r in limit["rows"] if r["batch_size"] == b and r["precision"] == p]
                cells.append(f"{got[0]:.0f}" if got else "")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        if limit.get("tokenize_docs_per_s_one_process"):
            lines.append(f"\njieba in one process: {limit['tokenize_docs_per_s_one_process']:.0f} texts/s.")
    cpu = (payload["steps"].get("cpu_model") or {}).get("result") or {}
    for r in cpu.get("rows", []):
        if "docs_per_s" in r:
            lines.append(f"- CPU ({cpu.get('threads')} threads) {r['mode']} at batch {r['batch_size']}: "
                         f"{r['docs_per_s']:.0f} docs/s")
    pool = (payload["steps"].get("tokenizer_pool") or {}).get("result") or {}
    if pool.get("rows"):
        rates = ", ".join(f"{r['processes']}: {r['texts_per_s']:.0f}" for r in pool["rows"])
        lines.append(f"- jieba through tokenizer processes (texts/s): {rates} ({pool['usable_cpus']} usable CPUs)")
    e2e = (payload["steps"].get("worker_e2e") or {}).get("result") or {}
    if e2e:
        lines.append(f"- worker end to end on {e2e['device']}: {e2e['docs_per_s']:.0f} msgs/s over {e2e['messages']} "
                     f"messages, batch {e2e['batch_size']}, {e2e['texts_per_model_call']:.0f} texts per model call, "
                     f"tokenizer {e2e['tokenizer_settings']}, OOM {e2e['oom_total']:.0f}, dead letters "
                     f"{e2e['dead_letters']}")
    oom = (payload["steps"].get("oom") or {}).get("result") or {}
    if oom:
        lines.append(f"- out of memory: a batch of {oom['batch_texts']} × {oom['tokens_per_text']} tokens "
                     f"(needs {oom['need_big_bytes'] / 2**30:.2f} GiB, a batch of 64 "
                     f"{oom['need_small_bytes'] / 2**20:.0f} MiB) beside a ballast: {oom['oom_total']:.0f} "
                     f"out-of-memory errors counted, {oom['answered']}/{oom['batch_texts']} answered, labels as "
                     f"without pressure for {100 * oom['same_labels_as_unpressured']:.0f}% of the checked texts "
                     f"→ {'checked' if oom.get('checked') else 'NOT checked'}")
    summary = payload.get("summary") or {}
    if summary:
        lines += ["", "Summary:", ""]
        lines += [f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in summary.items()]
    for name, st in payload["steps"].items():
        if st.get("error"):
            lines += ["", f"{name} {st['status']}:", "", "```", st["error"].strip()[-1500:], "```"]
    return lines


def write(payload: dict, results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    payload["summary"] = summarise(payload["steps"])
    (results / f"{NAME}.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1))
    (results / f"{NAME}.md").write_text("\n".join(markdown(payload)) + "\n", encoding="utf-8")


def run_all(model: Path | None, only: Sequence[str], work: Path, results: Path = RESULTS, device: str = "cuda",
            quick: bool = False) -> dict:
    import torch

    from bench.common import machine
    from fmlc.artifact import read_version

    t_start = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    model_dir, source = pick_model(model, work)
    payload: dict[str, Any] = {"machine": machine(), "model_dir": str(model_dir), "model_source": source,
                               "model_version": read_version(model_dir), "plan": plan_lines(), "steps": {},
                               "torch_cuda": torch.version.cuda, "device": device, "quick": quick}
    for step in STEPS:
        if only and step.name not in only:
            continue
        partial = work / f"{step.name}.json"
        argv = [sys.executable, "-m", "bench.gpu_check", "--step", step.name, "--model", str(model_dir),
                "--partial", str(partial), "--work", str(work), "--budget", str(step.budget_s), "--device", device]
        argv += ["--quick"] if quick else []
        print(f"[{time.strftime('%H:%M:%S')}] {step.name} (budget {step.budget_s:.0f} s)", flush=True)
        payload["steps"][step.name] = run_step(argv, step.budget_s, partial)
        print(f"[{time.strftime('%H:%M:%S')}] {step.name}: {payload['steps'][step.name]['status']}", flush=True)
        write(payload, results)
    payload["wall_s"] = round(time.monotonic() - t_start, 1)
    write(payload, results)
    return payload


# Sizes per step: the real run's, and tiny ones (--quick) for a smoke run on a CPU.
SIZES = {False: {"limit_texts": 16384, "batch_sizes": BATCH_SIZES, "min_seconds": 2.0, "cpu_texts": 1024,
                 "cpu_seconds": 5.0, "pool_texts": 4000, "pool_counts": None, "e2e_texts": 20000, "oom_texts": 500,
                 "oom_big": 8192, "oom_small": 64},
         True: {"limit_texts": 64, "batch_sizes": (1, 8), "min_seconds": 0.05, "cpu_texts": 32, "cpu_seconds": 0.05,
                "pool_texts": 40, "pool_counts": (1, 2), "e2e_texts": 30, "oom_texts": 50, "oom_big": 16,
                "oom_small": 4}}


def run_child(step: str, model_dir: Path, partial: Path, work: Path, budget_s: float, device: str = "cuda",
              quick: bool = False) -> None:
    """One step in this process; every emit rewrites `partial` (the parent reads it however this ends)."""
    deadline = time.monotonic() + budget_s - 5
    z: dict[str, Any] = SIZES[quick]

    def emit(result: dict) -> None:
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, ensure_ascii=False))
        tmp.replace(partial)

    if step == "model_limit":
        precisions = PRECISIONS if device.startswith("cuda") else ("fp32", "bf16")  # no fp16 autocast on CPU
        step_model_limit(model_dir, synthetic_texts(z["limit_texts"]), emit, device=device,
                         batch_sizes=z["batch_sizes"], precisions=precisions, min_seconds=z["min_seconds"],
                         deadline=deadline)
    elif step == "cpu_model":
        step_cpu_model(model_dir, synthetic_texts(z["cpu_texts"]), emit, min_seconds=z["cpu_seconds"])
    elif step == "tokenizer_pool":
        step_tokenizer_pool(synthetic_texts(z["pool_texts"]), emit, counts=z["pool_counts"], deadline=deadline)
    elif step == "worker_e2e":
        step_worker_e2e(model_dir, synthetic_texts(z["e2e_texts"], seed=5), emit, work, device=device,
                        timeout_s=budget_s - 30)
    elif step == "oom":
        step_oom(model_dir, synthetic_texts(z["oom_texts"]), emit, device=device, big=z["oom_big"],
                 small=z["oom_small"])
    else:
        raise SystemExit(f"unknown step {step!r}; steps: {', '.join(s.name for s in STEPS)}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="artifact directory (default: runs/bench-model, else random weights)")
    ap.add_argument("--only", action="append", default=[], help="run only this step (repeatable)")
    ap.add_argument("--plan", action="store_true", help="print the plan and exit")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "gpu-check")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--partial", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every step (also on a CPU)")
    args = ap.parse_args(argv)
    if args.step:
        run_child(args.step, args.model, args.partial, args.work, args.budget, args.device, args.quick)
        return 0
    print("\n".join(plan_lines()), flush=True)
    if args.plan:
        return 0
    usable, why = cuda_state()
    if not usable:
        print(f"gpu_check: {why}; nothing measured.", flush=True)
        return 0
    payload = run_all(args.model, args.only, args.work, quick=args.quick)
    print("\n".join(markdown(payload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

