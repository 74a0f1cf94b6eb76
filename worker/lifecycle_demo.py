"""`fmlc demo --lifecycle`: after the main stream, the model's life on the same broker.

1. drift: the scores after the usual mix, then after a stream drawn from one label group only;
2. review: the copies the worker made of complaints it was unsure about;
3. corrections: agents (simulated: the synthetic generator knows the true labels) answer each
   review copy on `fmlc.corrections`; `fmlc corrections collect` gathers them;
4. retraining with `fmlc train --corrections`, the candidate scored as a shadow on fresh traffic;
5. `fmlc promote` through the gate onto the link the worker serves from.

Every step goes through the same commands and topics an operator uses (docs/operations.md, the
runbook), so the demo is also their end-to-end check.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from worker.testkit import ThreadWorker, TopicReader, make_producer, message, wait_for

if TYPE_CHECKING:
    from worker.settings import WorkerSettings

console = Console()
REVIEW_TOPIC = "fmlc.review"
CORRECTIONS_TOPIC = "fmlc.corrections"
SHADOW_TOPIC = "fmlc.shadow"


def life_settings() -> dict[str, Any]:
    """What the demo's worker sets for the lifecycle: review copies, and a window that fills quickly."""
    return {"review_topic": REVIEW_TOPIC, "review_max_per_s": 200.0, "drift_window": 600, "drift_min_docs": 100}


def serve_link(workdir: Path, model: Path) -> Path:
    """`workdir/current` -> the model (relative, as `fmlc promote` writes it): what the worker serves."""
    link = workdir / "current"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(model.resolve(), workdir.resolve()), target_is_directory=True)
    return link


def _fmlc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    console.print(f"[dim]$ fmlc {' '.join(args)}[/]")
    return subprocess.run([sys.executable, "-m", "fmlc.cli", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True)


def _drift_table(worker: ThreadWorker, title: str) -> dict[str, float]:
    samples = worker.metrics()
    scores = {labels["group"]: value for (name, labels), value in _series(samples, "fmlc_drift_score")}
    console.print(f"[bold]{title}[/]")
    table = Table()
    table.add_column("label group")
    table.add_column("PSI", justify="right")
    for group, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        table.add_row(group, f"{score:.3f}" + ("  [red]drift[/]" if score > 0.25 else ""))
    console.print(table)
    return scores


def _series(samples: Any, name: str) -> list[tuple[tuple[str, dict[str, str]], float]]:
    return [((n, dict(labels)), v) for (n, labels), v in samples.items() if n == name]


def _send(bootstrap: str, topic: str, docs: list[tuple[str, str]]) -> None:
    producer = make_producer(bootstrap)
    try:
        for mid, text in docs:
            producer.send(topic, key=mid.encode(), value=message(mid, text, source="demo-lifecycle"))
        producer.flush()
    finally:
        producer.close()


def _synth(workdir: Path, name: str, n: int, seed: int) -> list[dict]:
    path = workdir / f"{name}.jsonl"
    subprocess.run([sys.executable, "-m", "fmlc.cli", "synth", "--n", str(n), "--seed", str(seed), "--out", str(path)],
                   check=True, capture_output=True)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_lifecycle(workdir: Path, bootstrap: str, settings: WorkerSettings, worker: ThreadWorker,
                  train_file: Path, preset: str, epochs: int | None) -> ThreadWorker:
    """Runs the loop against the running `worker`; returns the worker serving at the end (a new one:
    the shadow needs a restart with FMLC_SHADOW_MODEL_PATH)."""
    # Label groups as the model's drift baseline records them (the taxonomy's groups for synthetic data).
    model = settings.model_path  # the link the worker serves from
    baseline = json.loads((model / "drift.json").read_text(encoding="utf-8"))
    groups_of = dict(zip(json.loads((model / "labels.json").read_text(encoding="utf-8"))["labels"],
                         baseline["label_group"], strict=True))
    console.rule("[bold]the model's life: drift, review, corrections, shadow, promotion")
    served = worker.metric("fmlc_messages_total", outcome="ok")
    usual = _synth(workdir, "life-usual", 600, 31)
    _send(bootstrap, settings.input_topic, [(f"life-u{i}", d["text"]) for i, d in enumerate(usual)])
    wait_for(lambda: worker.metric("fmlc_messages_total", outcome="ok") >= served + len(usual), 120, "usual mix")
    _drift_table(worker, "drift after the usual mix (window of the last 600 model-scored complaints)")

    pool = _synth(workdir, "life-pool", 6000, 32)

    def only(group: str) -> list[dict]:
        return [d for d in pool if d["labels"] and all(groups_of.get(lab) == group for lab in d["labels"])][:600]

    group = max(sorted(set(groups_of.values())), key=lambda g: len(only(g)))
    shifted = only(group)
    served = worker.metric("fmlc_messages_total", outcome="ok")
    console.print(f"now a campaign: {len(shifted)} complaints all about [bold]{group}[/]")
    _send(bootstrap, settings.input_topic, [(f"life-s{i}", d["text"]) for i, d in enumerate(shifted)])
    wait_for(lambda: worker.metric("fmlc_messages_total", outcome="ok") >= served + len(shifted), 120, "shifted mix")
    _drift_table(worker, f"drift after the {group} campaign (FmlcDrift fires above 0.25 held for 30 minutes)")

    # Agents answer the review copies with the labels the complaint really has.
    truth = {f"life-u{i}": d for i, d in enumerate(usual)} | {f"life-s{i}": d for i, d in enumerate(shifted)}
    reviews = [json.loads(r.value) for r in TopicReader(bootstrap, REVIEW_TOPIC, committed_only=False).drain(10)]
    producer = make_producer(bootstrap)
    answered = 0
    for copy in reviews:
        doc = truth.get(copy["id"])
        if doc is None:
            continue
        producer.send(CORRECTIONS_TOPIC, key=copy["id"].encode(), value=json.dumps(
            {"id": copy["id"], "text": doc["text"], "labels": doc["labels"], "source": "demo-agent"},
            ensure_ascii=False).encode())
        answered += 1
    producer.flush()
    producer.close()
    console.print(f"review: the worker copied {len(reviews)} unsure complaints to {REVIEW_TOPIC}; "
                  f"agents answered the {answered} of this part on {CORRECTIONS_TOPIC}")

    corrections = workdir / "corrections.jsonl"
    res = _fmlc("corrections", "collect", "--from-topic", CORRECTIONS_TOPIC, "--out", str(corrections),
                env={"FMLC_BOOTSTRAP_SERVERS": bootstrap})
    console.print(res.stdout.strip() or res.stderr.strip())
    candidate = workdir / "model-candidate"
    epochs_args = ["--epochs", str(epochs)] if epochs else []
    res = _fmlc("train", "--data", str(train_file), "--corrections", str(corrections), "--out", str(candidate),
                "--preset", preset, *epochs_args, "--threads", "1", "--quiet")
    if res.returncode != 0:
        console.print(f"[red]retraining failed[/]: {res.stderr.strip()[-400:]}")
        return worker
    console.print(res.stdout.strip().splitlines()[-1])

    # The candidate as a shadow: a restart with FMLC_SHADOW_MODEL_PATH.
    worker.stop(30)
    shadow_settings = settings.model_copy(update={"shadow_model_path": candidate, "shadow_sample": 1.0,
                                                  "shadow_topic": SHADOW_TOPIC})
    worker = ThreadWorker(shadow_settings).start()
    with contextlib.suppress(TimeoutError):
        worker.wait_ready(60)
    fresh = _synth(workdir, "life-fresh", 300, 33)
    _send(bootstrap, settings.input_topic, [(f"life-f{i}", d["text"]) for i, d in enumerate(fresh)])
    wait_for(lambda: worker.metric("fmlc_shadow_samples_total", result="scored") >= len(fresh), 180, "shadow")
    count = worker.metric("fmlc_shadow_agreement_count")
    mean = worker.metric("fmlc_shadow_agreement_sum") / count if count else float("nan")
    console.print(f"shadow: the candidate scored {int(count)} complaints beside the live model; mean Jaccard "
                  f"agreement {mean:.2f} (its labels are on {SHADOW_TOPIC}, the live outputs untouched)")

    heldout = workdir / "heldout.jsonl"
    _synth(workdir, "heldout", 800, 34)
    link = settings.model_path
    before = worker.app.model.version if worker.app.model else "?"
    res = _fmlc("promote", "--candidate", str(candidate), "--current", str(link), "--data", str(heldout),
                "--link", str(link))
    console.print(res.stdout.strip())
    verdict = {0: "[green]promoted[/]", 3: "[yellow]refused by the gate[/]"}.get(res.returncode, "[red]failed[/]")
    console.print(f"promotion: {verdict} (exit {res.returncode}); {link} -> {os.readlink(link)}")
    if res.returncode == 0 and worker.app.models is not None:
        worker.app.models.request_reload()  # what SIGHUP does; otherwise within FMLC_MODEL_POLL_INTERVAL_S
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: worker.app.model is not None and worker.app.model.version != before, 60, "reload")
        console.print(f"the worker now serves {worker.app.model.version if worker.app.model else '?'} "
                      f"(was {before})")
    return worker


__all__ = ["life_settings", "run_lifecycle"]
