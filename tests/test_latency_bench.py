"""bench.latency at toy size: the capacity, one paced level through the librdkafka generator, and
the load generator's own CPU, all with sane, self-consistent values (not a measurement)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_latency_bench_measures_capacity_levels_and_its_own_cpu(kafka_broker, worker_model_dir: Path,
                                                                tmp_path: Path) -> None:
    from bench import latency
    from training.synth import generate

    texts = list(dict.fromkeys(d["text"] for d in generate(400, 9)))
    p = latency.run(worker_model_dir, texts, messages=120, levels=(0.5,), level_seconds=1.5,
                    bootstrap=kafka_broker.bootstrap, batch_size=16, workdir=tmp_path)
    assert p["capacity_msgs_per_s"] > 0 and p["worker_exit_code"] == 0
    (lv,) = p["levels"]
    assert lv["load_fraction"] == 0.5 and lv["target_msgs_per_s"] == pytest.approx(0.5 * p["capacity_msgs_per_s"])
    assert 0 < lv["p50_ms"] <= lv["p99_ms"] <= lv["max_ms"]
    assert lv["p50_ms_to_output_produced"] <= lv["p50_ms"] + 1, "an output is produced before it is read back"
    assert 0 <= lv["load_generator_cores"] < 2 and lv["worker_cores"] > 0
    md = "\n".join(latency.markdown(p))
    assert "| 50% |" in md and "load generator" in md
