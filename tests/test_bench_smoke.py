"""Smoke test of the throughput bench's core (`bench.worker_throughput.run_bench`) at toy size.

Not a measurement: a few hundred messages through an in-process worker with the tiny model, to show
that the bench runs end to end and that its JSON carries sane, self-consistent fields. The worker's
behaviour itself (SIGKILL, Redis down, …) is tested in tests/test_worker.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_throughput_bench_core_runs_and_reports_sane_numbers(kafka_broker, worker_model_dir: Path,
                                                             tmp_path: Path) -> None:
    from bench.worker_throughput import BenchConfig, markdown, run_bench
    from training.synth import generate

    texts = list(dict.fromkeys(d["text"] for d in generate(1200, 3)))
    cfg = BenchConfig(model_dir=worker_model_dir, texts=texts, messages=300, batch_size=32, max_wait_ms=20,
                      limit_docs=160, limit_b1_docs=40, limit_repeat=1, naive_messages=30, load_levels=(0.5,),
                      level_seconds=1.5, scaling=False, redis=False, worker_mode="thread", repeats=2,
                      bootstrap=kafka_broker.bootstrap, workdir=tmp_path, log=lambda _msg: None)
    p = run_bench(cfg)

    for key in ("worker_vs_limit", "worker_vs_naive", "model_batch_gain", "batch_gain_kept",
                "worker_vs_limit_per_microbatch", "naive_vs_limit_b1"):
        assert math.isfinite(p[key]) and p[key] > 0, (key, p[key])
    # the ratios are what they say they are
    thr = p["worker"]["throughput"]
    assert p["worker_vs_limit_first_run"] == pytest.approx(thr["docs_per_s"] / p["limit"]["limit_b_best_docs_per_s"])
    runs = p["repeated"]["runs"]
    assert len(runs) == 2 and all(r["duplicates"] == 0 for r in runs)
    for r in runs:
        assert r["worker_vs_limit"] == pytest.approx(
            r["worker_docs_per_s"] / max(r["limit_before_docs_per_s"], r["limit_after_docs_per_s"]))
    assert p["worker_vs_limit"] == pytest.approx(sum(r["worker_vs_limit"] for r in runs) / 2)  # median of two
    assert p["worker_vs_naive"] == pytest.approx(thr["docs_per_s"] / p["naive"]["docs_per_s"])
    assert p["batch_gain_kept"] == pytest.approx(p["worker_vs_naive"] / p["model_batch_gain"])
    # counts add up: every message answered exactly once, nothing dead-lettered, nothing from the cache
    assert thr["messages"] == 300 and thr["duplicates"] == 0 and thr["dead_letters"] == 0
    assert thr["cached_outputs"] == 0
    assert p["naive"]["messages"] == 30
    levels = p["latency_levels"]
    assert [lv["load_fraction"] for lv in levels] == [0.5]
    for lv in levels:
        assert 0 < lv["p50_ms"] <= lv["p99_ms"] < 60_000
        assert lv["budget_ms"] > cfg.max_wait_ms
    detail = p["worker"]["latency"]["levels"][0]
    assert detail["messages"] >= 1 and detail["mean_batch_size"] and 1 <= detail["mean_batch_size"] <= 32
    assert p["worker"]["worker_exit_code"] == 0
    assert p["scaling"] is None and p["scaling_on_paper"]["table"]
    json.dumps(p)  # the payload is what write_results stores
    assert any("worker_vs_limit" in line for line in markdown(p))


def test_worker_ab_interleaves_variants_and_passes_their_settings(kafka_broker, worker_model_dir: Path,
                                                                  tmp_path: Path) -> None:
    from bench.worker_ab import markdown, parse_variant, run_ab
    from bench.worker_throughput import BenchConfig
    from training.synth import generate

    assert parse_variant("fast:FMLC_BATCH_SIZE=16,FMLC_MAX_IN_FLIGHT=null") == (
        "fast", {"FMLC_BATCH_SIZE": "16", "FMLC_MAX_IN_FLIGHT": "null"})
    assert parse_variant("plain:") == parse_variant("plain") == ("plain", {})
    for bad in (":FMLC_X=1", "x:BATCH_SIZE=1", "x:FMLC_X"):
        with pytest.raises(SystemExit):
            parse_variant(bad)

    texts = list(dict.fromkeys(d["text"] for d in generate(800, 4)))
    cfg = BenchConfig(model_dir=worker_model_dir, texts=texts, messages=120, batch_size=32, limit_docs=100,
                      redis=False, bootstrap=kafka_broker.bootstrap, workdir=tmp_path, log=lambda _msg: None)
    variants = {"default": {}, "b16": {"FMLC_BATCH_SIZE": "16"}}
    p = run_ab(cfg, variants, rounds=2)
    assert list(p["summary"]) == ["default", "b16"]
    for name, s in p["summary"].items():
        runs = p["runs"][name]
        assert len(runs) == 2 and all(r["duplicates"] == 0 for r in runs)
        assert s["ratios"] == [r["worker_vs_limit"] for r in runs] and s["min"] <= s["median"] <= s["max"]
    assert any("| b16 | FMLC_BATCH_SIZE=16 |" in line for line in markdown(p))
    # the variant's settings reach the worker process: an invalid one stops it from starting
    with pytest.raises(RuntimeError, match="worker exited"):
        run_ab(cfg, {"broken": {"FMLC_BATCH_SIZE": "0"}}, rounds=1)
