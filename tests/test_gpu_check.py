"""bench/gpu_check.sh and every helper it calls, on the CPU: the accelerator run must work the first
time it meets a GPU, so each piece is exercised here with device="cpu" and tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check as gc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gc.speed_artifact(tmp_path_factory.mktemp("gpu") / "speed", n_docs=200, dim=16, max_len=48)


def test_without_cuda_the_script_prints_the_plan_and_exits_0() -> None:
    before = (REPO / "bench" / "results" / "gpu.json").read_bytes() if (REPO / "bench/results/gpu.json").exists() \
        else None
    # No visible device: on a CUDA build of torch this is the "no device" path, on a CPU build the "no CUDA build" one.
    env = {**os.environ, "FMLC_PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for step in gc.STEPS:
        assert step.name in proc.stdout
    assert "torch has no CUDA build" in proc.stdout or "sees no CUDA device" in proc.stdout, proc.stdout
    assert "nothing measured" in proc.stdout
    after = (REPO / "bench" / "results" / "gpu.json").read_bytes() if (REPO / "bench/results/gpu.json").exists() \
        else None
    assert before == after, "a run without CUDA must not touch the results"


def test_the_script_is_executable_and_the_budgets_fit_in_8_minutes() -> None:
    assert os.access(REPO / "bench" / "gpu_check.sh", os.X_OK)
    assert gc.PREPARE_BUDGET_S + sum(s.budget_s for s in gc.STEPS) <= gc.TOTAL_BUDGET_S == 480
    assert [line for line in gc.plan_lines() if "oom" in line]


def test_cuda_state_says_why_not_here() -> None:
    import torch

    usable, why = gc.cuda_state()
    assert usable == torch.cuda.is_available()
    if torch.version.cuda is None:
        assert why.startswith("torch has no CUDA build")


def test_speed_artifact_serves_and_model_rate_times_each_precision(speed_model: Path) -> None:
    from fmlc import Predictor

    p = Predictor.load(speed_model, device="cpu")
    assert p.artifact.model_config.hidden == 16
    assert len(p.predict(["平台暴力催收"])) == 1
    encoded = [p.artifact.vocab.encode(t, p.max_len) for t in p.tokenize(gc.synthetic_texts(40))]
    for b in (1, 8):
        for precision in ("fp32", "bf16"):
            row = gc.model_rate(p.model, encoded, b, "cpu", precision, min_seconds=0.05)
            assert row["docs_per_s"] > 0 and row["calls"] >= 1 and row["seconds"] >= 0.05
            assert row["docs"] <= row["calls"] * b
    assert gc.tokenize_rate(gc.synthetic_texts(10), min_seconds=0.05) > 0


def test_ballast_leaves_room_for_the_small_call_only() -> None:
    gib, mib = 1 << 30, 1 << 20
    take = gc.ballast_bytes(free=100 * gib, fits=10 * mib, exceeds=4 * gib)
    assert take is not None
    room = 100 * gib - take
    assert 10 * mib < room < 4 * gib
    assert gc.ballast_bytes(free=100 * gib, fits=1 * gib, exceeds=2 * gib) is None, "too close to separate"
    assert gc.ballast_bytes(free=100 * mib, fits=10 * mib, exceeds=4 * gib) is None, "no room at all"
    docs = gc.long_docs([["a", "b"], ["c"]], n=5, length=7)
    assert len(docs) == 5 and {len(d) for d in docs} == {7} and set(docs[0]) <= {"a", "b", "c"}


def test_oom_split_runs_the_worker_model_stage_on_the_cpu(speed_model: Path) -> None:
    from fmlc import Predictor

    p = Predictor.load(speed_model, device="cpu", max_batch_tokens=1 << 40)
    res = gc.oom_split(p, p.tokenize(gc.synthetic_texts(20)), big=24, small=6)
    # No ballast on a CPU: nothing runs out, every text is answered as without pressure.
    assert res["recovered"] and res["answered"] == 24 and res["failed"] == 0
    assert res["oom_total"] == 0 and res["same_labels_as_unpressured"] == 1.0


def test_run_step_keeps_what_a_failed_or_timed_out_step_saved(tmp_path: Path) -> None:
    partial = tmp_path / "p.json"
    save = f"import json,time,sys; open({str(partial)!r},'w').write(json.dumps({{'rows': [1]}}));"
    ok = gc.run_step([sys.executable, "-c", save], 30, partial)
    assert ok["status"] == "ok" and ok["result"] == {"rows": [1]} and "error" not in ok
    failed = gc.run_step([sys.executable, "-c", save + "sys.exit('boom')"], 30, partial)
    assert failed["status"] == "failed" and failed["result"] == {"rows": [1]} and "boom" in failed["error"]
    slow = gc.run_step([sys.executable, "-c", save + "time.sleep(30)"], 2, partial)
    assert slow["status"] == "timeout" and slow["result"] == {"rows": [1]} and slow["seconds"] < 10
    nothing = gc.run_step([sys.executable, "-c", "pass"], 30, partial)
    assert nothing["status"] == "ok" and nothing["result"] is None, "a stale partial file is not reused"


def test_markdown_and_summary_from_partial_results(tmp_path: Path) -> None:
    rows = [{"batch_size": b, "precision": p, "docs_per_s": v, "calls": 1}
            for b, p, v in ((64, "fp32", 1000.0), (64, "bf16", 3000.0), (256, "fp32", 2000.0), (256, "bf16", 8000.0))]
    payload = {"machine": {"cuda": "X", "torch": "t", "when": "w"}, "model_source": "s", "model_version": "v",
               "steps": {"model_limit": {"status": "ok", "budget_s": 120, "seconds": 30,
                                         "result": {"rows": rows, "tokens_per_doc_mean": 50.0,
                                                    "tokenize_docs_per_s_one_process": 4000.0}},
                         "cpu_model": {"status": "ok", "budget_s": 60, "seconds": 12,
                                       "result": {"threads": 15, "rows": [{"mode": "fp32", "batch_size": 64,
                                                                           "docs_per_s": 500.0}]}},
                         "worker_e2e": {"status": "timeout", "budget_s": 150, "seconds": 150, "result": None,
                                        "error": "over its budget"},
                         "oom": {"status": "failed", "budget_s": 75, "seconds": 3, "result": None,
                                 "error": "RuntimeError: cannot size a ballast"}}}
    gc.write(payload, tmp_path)
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["summary"]["gpu_over_cpu_fp32"] == pytest.approx(16.0)
    assert saved["summary"]["autocast_bf16_over_fp32_b256"] == pytest.approx(4.0)
    assert saved["summary"]["tokenizer_processes_to_feed_b256"] == pytest.approx(2.0)
    md = (tmp_path / "gpu.md").read_text()
    assert "| 256 | 2000 | 8000 |" in md and "| worker_e2e | timeout |" in md
    assert "cannot size a ballast" in md


def test_run_all_quick_on_the_cpu_writes_every_step(speed_model: Path, tmp_path: Path) -> None:
    payload = gc.run_all(speed_model, ("model_limit", "cpu_model", "tokenizer_pool", "oom"), tmp_path / "work",
                         tmp_path, device="cpu", quick=True)
    assert {n: s["status"] for n, s in payload["steps"].items()} == {
        "model_limit": "ok", "cpu_model": "ok", "tokenizer_pool": "ok", "oom": "ok"}, payload["steps"]
    assert [r["processes"] for r in payload["steps"]["tokenizer_pool"]["result"]["rows"]] == [1, 2]
    limit = payload["steps"]["model_limit"]["result"]
    assert {(r["batch_size"], r["precision"]) for r in limit["rows"]} == {(1, "fp32"), (1, "bf16"), (8, "fp32"),
                                                                          (8, "bf16")}
    modes = [r["mode"] for r in payload["steps"]["cpu_model"]["result"]["rows"]]
    assert modes == ["fp32", "int8"]
    assert payload["steps"]["oom"]["result"]["checked"]
    assert json.loads((tmp_path / "gpu.json").read_text())["summary"]["gpu_over_cpu_fp32"] > 0


def test_worker_end_to_end_through_the_broker_on_the_cpu(kafka_broker, worker_model_dir: Path,
                                                          tmp_path: Path) -> None:
    texts = gc.synthetic_texts(40, seed=3)
    res = gc.worker_end_to_end(kafka_broker.bootstrap, worker_model_dir, texts, tmp_path, device="cpu",
                               batch_size=16, partitions=2, timeout_s=90, cpu_threads=1)
    assert res["messages"] == 40 and res["dead_letters"] == 0 and res["duplicates"] == 0
    assert res["docs_per_s"] > 0 and res["model_calls"] >= 1 and res["oom_total"] == 0
    assert res["tokenizer_settings"], "the tokenizer settings the run used are recorded"
