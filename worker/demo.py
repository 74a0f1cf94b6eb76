"""`fmlc demo`: the whole product on one machine, no Docker.

Synthetic complaints → a small FMLC/ASL model (trained through the `fmlc` CLI, so this module
stays free of training code) → a Kafka-protocol broker (Tansu) and Redis started here → the worker →
a few thousand complaints streamed through it, with a live view and a summary at the end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from worker.lifecycle_demo import life_settings, run_lifecycle, serve_link
from worker.testkit import (
    ThreadWorker,
    TopicReader,
    fmlc_command,
    make_producer,
    message,
    redis_url_or_start,
    start_broker,
)

if TYPE_CHECKING:
    from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
console = Console()


@dataclass
class DemoConfig:
    workdir: Path = Path("runs/demo")
    n_train: int = 6000
    n_stream: int = 3000
    reuse_model: bool = False
    preset: str = "small"  # `fmlc train --preset small`: the default schedule at 64 dimensions
    epochs: int | None = None  # None: the preset's
    batch_size: int = 64  # the worker's micro-batch
    max_wait_ms: int = 25
    repeat_share: float = 0.15  # resent texts (new ids) that the cache should answer
    bad_share: float = 0.01  # malformed messages that must end in the dead-letter topic
    rate: float = 0.0  # messages/s to produce; 0 = as fast as the broker takes them
    live: bool = True
    serve: bool = False  # keep the worker up after the summary until Ctrl-C
    lifecycle: bool = False  # then drift, review, corrections, retraining, shadow and promotion (a few minutes more)
    redis_url: str | None = "redis://127.0.0.1:6379/0"


def _fmlc(*args: str) -> None:
    fmlc_command(*args, echo=lambda line: console.print(f"[dim]{escape(line)}[/]"))


def ensure_model(cfg: DemoConfig) -> Path:
    model = cfg.workdir / "model"
    if cfg.reuse_model and (model / "VERSION").exists():
        console.print(f"[green]reusing model[/] {model} ({(model / 'VERSION').read_text().strip()})")
        return model
    train = cfg.workdir / "train.jsonl"
    _fmlc("synth", "--n", str(cfg.n_train), "--seed", "0", "--out", str(train))
    epochs = ["--epochs", str(cfg.epochs)] if cfg.epochs else []
    # The default model (FMLC wide & deep), as a user's `fmlc train` makes it.
    _fmlc("train", "--data", str(train), "--out", str(model), "--preset", cfg.preset, *epochs,
          # One thread: two OpenMP threads on a busy 2-core machine ran GRU training 5-100x slower (measured).
          "--threads", "1")
    return model


def stream_messages(cfg: DemoConfig) -> list[tuple[str | None, bytes]]:
    """(id, bytes) to send: fresh complaints, resent texts under new ids, and malformed ones."""
    path = cfg.workdir / "stream.jsonl"
    _fmlc("synth", "--n", str(cfg.n_stream), "--seed", "7", "--out", str(path))
    docs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rng = np.random.default_rng(7)
    out: list[tuple[str | None, bytes]] = []
    bad = [b"{not json", b"\xff\xfe\x00broken", json.dumps({"id": "x", "text": "   "}).encode(),
           json.dumps({"text": "no id here"}).encode(), json.dumps({"id": "y", "text": 12345}).encode()]
    run = uuid.uuid4().hex[:6]
    for i, doc in enumerate(docs):
        out.append((f"demo-{run}-{i}", _msg(f"demo-{run}-{i}", doc["text"])))
        if i and rng.random() < cfg.repeat_share:
            j = int(rng.integers(0, i))
            out.append((f"demo-{run}-{i}-again", _msg(f"demo-{run}-{i}-again", docs[j]["text"])))
        if rng.random() < cfg.bad_share:
            out.append((None, bad[int(rng.integers(0, len(bad)))]))
    return out


def _msg(mid: str, text: str) -> bytes:
    return message(mid, text, source="demo")


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    outputs: int = 0
    cached: int = 0
    dead: Counter = field(default_factory=Counter)
    alerts: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    recent: deque = field(default_factory=lambda: deque(maxlen=8))
    recent_alerts: deque = field(default_factory=lambda: deque(maxlen=5))
    texts: dict[str, str] = field(default_factory=dict)
    first_sent: float = 0.0
    last_out: float = 0.0
    seen: int = 0  # records read from the output, dead-letter and alert topics


def _view(t: Tally, total: int, metrics_url: str) -> Group:
    done = t.outputs + sum(t.dead.values())
    elapsed = max(1e-6, (t.last_out or time.time()) - t.first_sent) if t.first_sent else 0.0
    head = (f"sent [bold]{total}[/]  processed [bold]{done}[/]  labelled {t.outputs} (cached {t.cached})  "
            f"dead letters {sum(t.dead.values())}  alerts {sum(t.alerts.values())}  "
            f"throughput {t.outputs / elapsed if elapsed else 0:.0f}/s   metrics {metrics_url}")
    table = Table(expand=True, show_lines=False)
    table.add_column("id", width=18, overflow="fold")
    table.add_column("complaint", ratio=3, overflow="ellipsis", no_wrap=True)
    table.add_column("labels (score) — evidence", ratio=4)
    for mid, text, labels, cached in reversed(t.recent):
        cell = "\n".join(f"{lab['label']} ({lab['score']:.2f}) — {' '.join(lab['evidence'])}" for lab in labels[:3])
        shown = (escape(cell) or "[dim]no label[/]") + (" [cyan]cached[/]" if cached else "")
        table.add_row(mid[-18:], escape(text), shown)
    alerts = "\n".join(t.recent_alerts) or "[dim]none yet[/]"
    return Group(Panel(head, title="FMLC demo"), table, Panel(alerts, title="latest risk alerts"))


def run_demo(cfg: DemoConfig) -> int:
    from worker.alerts import AlertRules
    from worker.kafka import ensure_topics
    from worker.settings import WorkerSettings

    cfg.workdir.mkdir(parents=True, exist_ok=True)
    model = ensure_model(cfg)
    messages = stream_messages(cfg)
    broker = redis = worker = None
    try:
        console.print("[bold]starting[/] Kafka-protocol broker (Tansu) and Redis…")
        broker = start_broker(log_path=str(cfg.workdir / "broker.log"))
        redis = redis_url_or_start(cfg.redis_url)
        rules = REPO / "deploy" / "alert_rules.yaml"
        # With the lifecycle the worker serves from a link, as in production, so that a promotion reloads it.
        served = serve_link(cfg.workdir, model) if cfg.lifecycle else model
        settings = WorkerSettings(
            bootstrap_servers=broker.bootstrap, model_path=served, redis_url=redis.url, group_id="fmlc-demo",
            dlq_topic="fmlc.dead-letter", alert_rules=rules if rules.exists() else None, create_topics=True,
            metrics_host="127.0.0.1", metrics_port=0, batch_size=cfg.batch_size, max_wait_ms=cfg.max_wait_ms,
            session_timeout_ms=6000, max_poll_interval_ms=10000,
            # A fresh prefix per run: the demo shows the cache filling, not last run's entries.
            cache_prefix=f"fmlc-demo-{uuid.uuid4().hex[:8]}", cache_ttl_s=3600,
            **(life_settings() if cfg.lifecycle else {}))
        alert_topics = AlertRules.load(settings.alert_rules).topics
        ensure_topics(settings, alert_topics)
        worker = ThreadWorker(settings).start()
        metrics_url = f"http://127.0.0.1:{worker.port}/metrics"
        reader = TopicReader(broker.bootstrap, settings.output_topic, settings.dlq_topic, *alert_topics,
                             committed_only=False, keep=False)
        with contextlib.suppress(TimeoutError):  # not ready in a minute: the stream shows why
            worker.wait_ready(60)
        tally = _stream(cfg, messages, broker.bootstrap, settings, reader, metrics_url)
        reader.close()
        _summary(tally, len(messages), metrics_url)
        if cfg.lifecycle:
            worker = run_lifecycle(cfg.workdir, broker.bootstrap, settings, worker, cfg.workdir / "train.jsonl",
                                   cfg.preset, cfg.epochs)
        if cfg.serve:
            console.print(f"worker still serving; metrics at {metrics_url}. Ctrl-C to stop.")
            while worker.alive():
                time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: shutting down")
        return 130
    finally:
        if worker is not None:
            with contextlib.suppress(RuntimeError):
                worker.stop(30)
        if broker is not None:
            broker.stop()
        if redis is not None and redis.owned:
            redis.stop()
        console.print("[dim]worker, broker and Redis stopped[/]")


def _stream(cfg: DemoConfig, messages: list[tuple[str | None, bytes]], bootstrap: str, settings: WorkerSettings,
            reader: TopicReader, metrics_url: str) -> Tally:
    tally = Tally()
    producer = make_producer(bootstrap)
    total = len(messages)

    def produce() -> None:
        tally.first_sent = time.time()
        for mid, value in messages:
            if mid is not None:
                tally.sent_at[mid] = time.time()
                tally.texts[mid] = json.loads(value)["text"][:60]
            producer.send(settings.input_topic, key=mid.encode() if mid else None, value=value)
            if cfg.rate:
                time.sleep(1.0 / cfg.rate)
        producer.flush()

    reader.on_record = lambda record, now: _take(record, now, tally, settings)
    sender = threading.Thread(target=produce, daemon=True)
    sender.start()
    idle_since = time.time()
    with Live(_view(tally, total, metrics_url), console=console, refresh_per_second=4,
              transient=not cfg.live) as live:
        while tally.outputs + sum(tally.dead.values()) < total:
            before = tally.seen
            reader.poll(200)
            if tally.seen > before:
                idle_since = time.time()
                live.update(_view(tally, total, metrics_url))
            elif time.time() - idle_since > 60:
                console.print("[red]no output for 60 s; stopping the stream early[/]")
                break
    producer.close()
    return tally


def _take(record: Any, now: float, tally: Tally, settings: WorkerSettings) -> None:
    tally.seen += 1
    if record.topic == settings.output_topic:
        out = json.loads(record.value)
        tally.outputs += 1
        tally.cached += bool(out["cached"])
        tally.last_out = now
        sent = tally.sent_at.get(out["id"])
        if sent:
            tally.latencies_ms.append(1000 * (now - sent))
        for lab in out["labels"]:
            tally.labels[lab["label"]] += 1
        tally.recent.append((out["id"], tally.texts.get(out["id"], ""), out["labels"], out["cached"]))
    elif record.topic == settings.dlq_topic:
        reason = dict(record.headers or []).get("fmlc.dlq.reason", b"?").decode()
        tally.dead[reason] += 1
        tally.last_out = now
    else:
        alert = json.loads(record.value)
        tally.alerts[(record.topic, alert["severity"])] += 1
        names = ", ".join(lab["label"] for lab in alert["labels"])
        tally.recent_alerts.append(escape(f"[{alert['severity']}] {record.topic}: {alert['rule']} ← {names} "
                                          f"({alert['id']})"))


def _summary(t: Tally, total: int, metrics_url: str) -> None:
    elapsed = max(1e-6, t.last_out - t.first_sent)
    lat = np.array(t.latencies_ms) if t.latencies_ms else np.zeros(1)
    table = Table(title="demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in [
        ("messages sent", total), ("labelled", t.outputs), ("served from cache", t.cached),
        ("dead letters", sum(t.dead.values())), ("alerts", sum(t.alerts.values())),
        ("throughput (labelled/s, first send → last output)", f"{t.outputs / elapsed:.0f}"),
        ("end-to-end latency p50 / p95 / p99 (ms; includes waiting behind the backlog when sent at full speed)",
         f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} / {np.percentile(lat, 99):.0f}"),
    ]:
        table.add_row(name, str(value))
    for reason, n in t.dead.most_common():
        table.add_row(f"  dead letter: {reason}", str(n))
    for (topic, severity), n in sorted(t.alerts.items()):
        table.add_row(escape(f"  alert {topic} [{severity}]"), str(n))
    table.add_row("top labels", ", ".join(f"{k} {v}" for k, v in t.labels.most_common(5)))
    console.print(table)
    console.print(f"metrics were served at {metrics_url} (Prometheus format)")
