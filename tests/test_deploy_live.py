"""A real Prometheus scraping real workers: the dashboard and the alert rules against live metrics.

Two workers (one consumer group, as the compose file runs them) serve the tiny test model from a
local broker and Redis; Prometheus scrapes their /metrics every second with deploy/prometheus/
rules.yml loaded. After traffic (good complaints, a repeat pass for cache hits, and a few
malformed messages for dead letters), every dashboard query and every alert expression goes
through Prometheus' HTTP API: each must parse and evaluate, and every panel must show data.
Then one worker is stopped and the worker-down expression must see it.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import PROM_DIR, alert_rules, dashboard_panels, grafana_to_promql, load_replay, tool

from worker.testkit import ThreadWorker, free_port, redis_url_or_start, start_broker, wait_for

pytestmark = pytest.mark.slow

INPUT, OUTPUT, DLQ = "fmlc.complaints", "fmlc.labels", "fmlc.dead-letter"
N_GOOD, N_BAD = 120, 6


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROM_DIR / "rules.yml")],
            # The job name the rules select on (up{job="fmlc-worker"}); static targets stand in for
            # the DNS discovery that only works inside the compose network.
            "scrape_configs": [{"job_name": "fmlc-worker", "static_configs": [{"targets": targets}]}],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 30, "Prometheus to be ready", interval=0.2)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: the query did not parse or evaluate
            body = json.load(exc)
        assert body["status"] == "success", f"{params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def finite_values(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


@pytest.fixture(scope="module")
def stack(worker_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:

    from fmlc import Predictor
    from worker.settings import WorkerSettings

    prometheus_bin = tool("prometheus")
    workdir = tmp_path_factory.mktemp("deploy-live")
    # Alert rules the tiny model will trigger, so the alerts panel has something to show: any
    # predicted label fires. The real deploy/alert_rules.yaml names labels of the production model.
    labels = Predictor.load(worker_model_dir, device="cpu").labels
    rules = workdir / "alert_rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [
        {"name": "any-label", "any_of": list(labels), "topic": "fmlc.alerts.test", "severity": "high"}]},
        allow_unicode=True), encoding="utf-8")

    broker = start_broker(log_path=str(workdir / "broker.log"))
    # None: always a Redis of our own, so no entry cached by an earlier run turns inference into hits.
    redis = redis_url_or_start(None)
    workers: list[ThreadWorker] = []
    prometheus: Prometheus | None = None
    try:
        settings = WorkerSettings(
            bootstrap_servers=broker.bootstrap, input_topic=INPUT, output_topic=OUTPUT, dlq_topic=DLQ,
            group_id=f"deploy-live-{uuid.uuid4().hex[:8]}", model_path=worker_model_dir, device="cpu",
            cpu_threads=1, redis_url=redis.url, metrics_host="127.0.0.1", metrics_port=0, batch_size=16,
            max_wait_ms=20, alert_rules=rules, create_topics=True, topic_partitions=4,
            model_poll_interval_s=0, session_timeout_ms=6_000, shutdown_timeout_s=5,
            # The model-life panels need data too: drift early, generous review, a shadow on every complaint.
            drift_window=200, drift_min_docs=10, review_topic=f"{INPUT}.review", review_margin=0.5,
            shadow_model_path=worker_model_dir, shadow_sample=1.0, shadow_topic=f"{INPUT}.shadow")
        for _ in range(2):
            workers.append(ThreadWorker(settings).start())
        wait_for(lambda: all(w.app.ready for w in workers), 45, "both workers to hold partitions", interval=0.2)
        targets = [f"127.0.0.1:{w.app.metrics_port}" for w in workers]
        prometheus = Prometheus(prometheus_bin, workdir, targets)
        yield {"prometheus": prometheus, "workers": workers, "broker": broker, "targets": targets}
    finally:
        for w in workers:
            w.stop()
        if prometheus is not None:
            prometheus.stop()
        redis.stop()
        broker.stop()


def processed(workers: list[ThreadWorker]) -> float:
    return sum(w.app.metrics.value("fmlc_messages_total", {"outcome": o})
               for w in workers for o in ("ok", "cached", "dead_letter"))


@pytest.fixture(scope="module")
def traffic(stack: dict) -> dict:
    """Complaints through the demo producer (deploy/replay.py) in two passes (the second repeats the
    texts, so it is answered from the cache), each with a few malformed messages.

    Prometheus must see every counter before, between and after the passes: rate() needs two
    samples, and a labelled series that first appears with a non-zero value (a dead-letter reason,
    a predicted label) only shows a rate once it grows again."""
    from kafka import KafkaProducer

    from training.synth import generate

    replay = load_replay()
    workers, prometheus = stack["workers"], stack["prometheus"]
    records = generate(N_GOOD, seed=11)

    def scraped_total(n: int) -> Callable[[], bool]:
        return lambda: finite_values(prometheus.query('sum(fmlc_messages_total{job="fmlc-worker"})')) == [n]

    def processed_total(n: int) -> Callable[[], bool]:
        return lambda: processed(workers) >= n

    wait_for(lambda: all(v >= 2 for v in finite_values(
                 prometheus.query('count_over_time(up{job="fmlc-worker"}[1m])'))) and
             len(prometheus.query('up{job="fmlc-worker"}')) == len(workers),
             20, "two scrapes of every worker before traffic", interval=0.2)
    producer = KafkaProducer(bootstrap_servers=stack["broker"].bootstrap, acks="all")
    total = 0
    try:
        for suffix in ("", "-again"):
            messages = (dict(replay.to_message(r, f"c{i}"), id=f"c{i}{suffix}") for i, r in enumerate(records))
            # Paced, so that the pass spans several scrapes.
            total += replay.replay(producer, INPUT, messages, rate=100)
            for i in range(N_BAD // 2):
                producer.send(INPUT, key=f"bad{suffix}-{i}".encode(), value=b"{not json")
            producer.flush()
            total += N_BAD // 2
            wait_for(processed_total(total), 60, f"pass {suffix or 'one'} to be processed", interval=0.2)
            wait_for(scraped_total(total), 20, "Prometheus to scrape the counts", interval=0.2)
    finally:
        producer.close()
    # The lag gauges are exported once a second: let them and a few more scrapes catch up.
    time.sleep(2.5)
    return {"total": total}


def test_workers_are_scraped(stack: dict, traffic: dict) -> None:
    up = stack["prometheus"].query('up{job="fmlc-worker"}')
    assert sorted((r["metric"]["instance"], r["value"][1]) for r in up) == sorted(
        (t, "1") for t in stack["targets"])


def test_every_dashboard_query_runs_and_every_panel_shows_data(stack: dict, traffic: dict) -> None:
    prometheus = stack["prometheus"]
    empty = []
    for panel in dashboard_panels():
        values = []
        for target in panel["targets"]:
            values += finite_values(prometheus.query(grafana_to_promql(target["expr"])))
        if not values:
            empty.append(panel["title"])
    assert empty == [], "panels without data after traffic"


def test_panel_values_match_the_traffic(stack: dict, traffic: dict) -> None:
    prometheus = stack["prometheus"]

    def one(expr: str) -> float:
        values = finite_values(prometheus.query(expr))
        assert len(values) == 1, f"{expr}: {values}"
        return values[0]

    total = traffic["total"]
    assert one("sum(increase(fmlc_messages_total[5m]))") == pytest.approx(total, rel=0.35)
    assert one('sum(fmlc_messages_total{outcome="dead_letter"})') == N_BAD
    assert one('sum(fmlc_dead_letters_total{reason="not_json"})') == N_BAD
    assert one('sum(fmlc_messages_total{outcome="cached"})') >= N_GOOD // 2
    assert one("count(fmlc_model_info)") == 2
    assert one("sum(fmlc_assigned_partitions)") == 4
    assert one("sum(max by (topic, partition) (fmlc_consumer_lag))") == 0


def test_alert_rules_evaluate_cleanly(stack: dict, traffic: dict) -> None:
    prometheus = stack["prometheus"]
    names = {r["alert"] for r in alert_rules()}

    def evaluated() -> list[dict] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("20") for r in rules)
        return rules if done and {r["name"] for r in rules} >= names else None

    rules = wait_for(evaluated, 15, "every rule to be evaluated", interval=0.2)
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_alert_expressions_against_live_metrics(stack: dict, traffic: dict) -> None:
    prometheus = stack["prometheus"]
    results = {r["alert"]: prometheus.query(r["expr"]) for r in alert_rules()}
    # Healthy workers with the backlog drained: none of these may hold.
    for name in ("FmlcWorkerDown", "FmlcNoWorkerUp", "FmlcWorkerStalled", "FmlcConsumerLagGrowing",
                 "FmlcModelVersionSkew", "FmlcDeliveryFailing", "FmlcPollErrors", "FmlcStageStalled",
                 "FmlcCacheErrors", "FmlcModelReloadFailing", "FmlcPartitionsPausedTooLong"):
        assert results[name] == [], f"{name} holds on a healthy stack: {results[name]}"
    # 6 malformed messages in 246 is 2.4%, above the 1% threshold.
    assert finite_values(results["FmlcDeadLetterRateHigh"]) == [pytest.approx(N_BAD / traffic["total"], rel=0.3)]


def test_worker_down_is_seen(stack: dict, traffic: dict) -> None:
    # Last: it stops a worker for good.
    prometheus, victim = stack["prometheus"], stack["workers"][1]
    victim.stop()
    assert victim.exit_code == 0
    expr = next(r["expr"] for r in alert_rules() if r["alert"] == "FmlcWorkerDown")
    down = wait_for(lambda: prometheus.query(expr), 15, "the worker-down expression to see the stopped worker",
                    interval=0.2)
    assert [r["metric"]["instance"] for r in down] == [stack["targets"][1]]
