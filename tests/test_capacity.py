"""The capacity model in docs/operations.md is the one bench/capacity.py computes from the committed
benchmark results, and the Kubernetes manifests are sized by it. No broker, no model: the measured
figures are read from bench/results/ (rerun `python -m bench.capacity` to measure them again)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from bench import capacity

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "operations.md"


def load_render():
    spec = importlib.util.spec_from_file_location("k8s_render_cap", ROOT / "deploy" / "k8s" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(capacity.CAPACITY.read_text())


@pytest.fixture(scope="module")
def model(committed: dict) -> dict:
    return capacity.build(json.loads(capacity.THROUGHPUT.read_text()), committed["measured"])


def test_committed_results_are_what_the_code_computes(committed: dict, model: dict) -> None:
    # A change to the planning rules, or a new throughput run, must be followed by a re-plan.
    assert json.loads(json.dumps(model)) == committed["model"], "run `python -m bench.capacity --plan-only`"
    md = (ROOT / "bench" / "results" / "capacity.md").read_text(encoding="utf-8")
    assert md == "\n".join(capacity.markdown(model, committed["measured"])) + "\n"


def test_operations_doc_carries_the_computed_table(model: dict) -> None:
    doc = OPERATIONS.read_text(encoding="utf-8")
    for line in capacity.table_markdown(model):
        assert line in doc, f"docs/operations.md lacks the capacity row: {line}"
    w = model["worked"]
    assert f"{w['at_peak']['replicas']} replicas" in doc and f"{w['at_peak']['partitions']} partitions" in doc


def test_per_replica_figures_come_from_the_throughput_bench() -> None:
    throughput = json.loads(capacity.THROUGHPUT.read_text())
    rep = capacity.per_replica(throughput)
    assert rep["docs_per_s"] == throughput["worker"]["throughput"]["docs_per_s"]
    # The planned load is a measured level that met the 1 s p99 budget; a higher one did not.
    levels = {lv["load_fraction"]: lv["p99_ms"] for lv in throughput["latency_levels"]}
    assert levels[rep["planned_load"]] <= capacity.LATENCY_BUDGET_MS
    assert all(p99 > capacity.LATENCY_BUDGET_MS for f, p99 in levels.items() if f > rep["planned_load"])


def test_plan_rules(model: dict) -> None:
    rep = model["replica"]
    for row in model["table"]:
        assert row["replicas"] * rep["planned_docs_per_s"] >= row["msgs_per_s"]
        assert row["replicas"] <= row["partitions"] and row["partitions"] % capacity.PARTITION_STEP == 0
        assert row["replicas"] >= 2
    rates = [r["msgs_per_s"] for r in model["table"]]
    replicas = [r["replicas"] for r in model["table"]]
    assert replicas == sorted(replicas) and rates == sorted(rates)
    assert math.isclose(model["worked"]["peak_msgs_per_s"], 10_000_000 / 86_400 * 10)


def test_manifests_are_sized_by_the_worked_case(model: dict) -> None:
    render = load_render()
    w = model["worked"]
    assert w["at_peak"]["partitions"] == render.PARTITIONS, "the topic Job's partitions are the worked case's"
    assert w["at_peak"]["replicas"] <= render.PARTITIONS
    assert w["at_mean"]["replicas"] == render.MIN_REPLICAS
    cpu = render.deployment(render.WorkerSettings(), "cpu")
    requests = cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert requests["memory"] == f"{model['memory_request_mib']}Mi"
    assert float(requests["cpu"].rstrip("m")) / 1000 == capacity.CPU_REQUEST
    assert model["replica"]["cores_used"] <= capacity.CPU_REQUEST, "the request covers the measured use"
    # The memory request covers the model process, twice the in-flight byte budget (the bound the
    # worker's metadata benchmark holds RSS growth to) and 100 MiB; the limit is above the request.
    limit = cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    budget_mib = render.WorkerSettings().max_in_flight_bytes / 2**20
    rss = json.loads(capacity.CAPACITY.read_text())["measured"]["peak_rss_mib"]
    assert limit.endswith("Gi") and int(limit[:-2]) * 1024 >= model["memory_request_mib"]
    assert model["memory_request_mib"] >= rss + 2 * budget_mib + 100
    assert capacity.REPLICATION == render.REPLICATION
    # The autoscalers' target lag is a few seconds of one replica's planned rate.
    assert 3 <= render.LAG_PER_REPLICA / model["replica"]["planned_docs_per_s"] <= 10


def test_measurement_runs_on_a_real_redis(worker_model_dir: Path, redis_server, tmp_path: Path) -> None:
    """bench.capacity's measuring half at toy size: the worker's own cache code writes the entries
    into a real Redis, which reports their size; nothing is left behind."""
    import redis

    data = tmp_path / "texts.jsonl"
    from training.synth import generate

    with data.open("w", encoding="utf-8") as fh:
        for i, doc in enumerate(generate(60, seed=3)):
            fh.write(json.dumps({"id": f"d{i}", "text": doc["text"], "labels": doc["labels"]}, ensure_ascii=False)
                     + "\n")
    sizes = capacity.measure(worker_model_dir, data, 40, redis_server.url)
    assert sizes["texts"] == 40 and sizes["input_bytes_mean"] > 0 and sizes["output_bytes_mean"] > 0
    assert sizes["redis_memory_usage_per_key_mean"] > sizes["redis_key_bytes"]
    assert sizes["peak_rss_mib"] > 50
    # The measurement's entries (its own random prefix) are deleted again; others' keys are not ours to count.
    assert not list(redis.Redis.from_url(redis_server.url).scan_iter(match="capacity*:labels:*"))
    model = capacity.build(json.loads(capacity.THROUGHPUT.read_text()), sizes)
    assert model["worked"]["at_peak"]["replicas"] >= 2
