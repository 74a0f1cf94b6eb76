"""The worker package's `fmlc` commands: `worker` (the streaming service) and `demo` (the whole path on
the embedded default). Registered under the `fmlc.commands` entry-point group; `fmlc.cli` assembles
them with the library's own commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer()
DEMO_DEFAULT = "Unset: the demo's default (worker.demo.DemoConfig)"


@app.command()
def demo(
    reuse_model: Annotated[bool, typer.Option(help="reuse runs/demo/model if it exists")] = False,
    n_train: Annotated[int | None, typer.Option(help="synthetic complaints to train on. " + DEMO_DEFAULT)] = None,
    n_stream: Annotated[int | None, typer.Option(help="complaints to stream through the worker. " + DEMO_DEFAULT)]
    = None,
    preset: Annotated[str | None, typer.Option(help="training preset of the demo's model. " + DEMO_DEFAULT)] = None,
    epochs: Annotated[int | None, typer.Option(help="unset: the preset's")] = None,
    workdir: Annotated[Path | None, typer.Option(help="unset: the demo's folder")] = None,
    serve: Annotated[bool, typer.Option(help="keep the worker up after the summary until Ctrl-C")] = False,
    lifecycle: Annotated[bool, typer.Option(help="then show the model's life: drift on a shifted mix, review copies, "
                                                 "agents' corrections, retraining, a shadow, the promotion gate")]
    = False,
    rate: Annotated[float | None, typer.Option(help="messages/s to send; 0 = as fast as possible")]
    = None,
) -> None:
    """The main job on the embedded default: synthesize, train a small FMLC/ASL, start a broker and Redis,
    stream complaints through the worker with a live view, then print a summary."""
    from worker.demo import DemoConfig, run_demo

    # Options left unset keep DemoConfig's defaults, so they are written in one place.
    options: dict[str, Any] = {"n_train": n_train, "n_stream": n_stream, "preset": preset, "epochs": epochs,
                               "workdir": workdir, "rate": rate}
    given = {k: v for k, v in options.items() if v is not None}
    raise typer.Exit(run_demo(DemoConfig(reuse_model=reuse_model, serve=serve, lifecycle=lifecycle, **given)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def worker(ctx: typer.Context) -> None:
    """Run the streaming worker. Settings come from FMLC_* variables; every non-secret setting is also a
    flag (`fmlc worker --help` lists them, e.g. --model-path, --batch-size, --create-topics true)."""
    from worker.__main__ import main as worker_main

    raise typer.Exit(worker_main(list(ctx.args)))


corrections_app = typer.Typer(help="Agents' corrections: gather them from their topic into a training file.")
app.add_typer(corrections_app, name="corrections")


@corrections_app.command("collect")
def collect_corrections(
    from_topic: Annotated[str, typer.Option(help="the corrections topic")] = "fmlc.corrections",
    out: Annotated[Path, typer.Option(help="JSONL training file to write (merged with what it holds)")]
    = Path("data/corrections.jsonl"),
    group: Annotated[str, typer.Option(help="consumer group that remembers what was collected")] = "fmlc-corrections",
    timeout_s: Annotated[float, typer.Option(help="give up when the end is not reached within this")] = 120.0,
) -> None:
    """Read the corrections topic up to its end, keep the latest correction per id in --out (a file
    `fmlc train --corrections` accepts), then commit, so the next run reads only what is new. The
    broker and its security settings come from FMLC_BOOTSTRAP_SERVERS and the other FMLC_* settings."""
    from worker.corrections import collect
    from worker.settings import load_settings

    try:
        result = collect(load_settings(), from_topic, out, group_id=group, timeout_s=timeout_s)
    except (ValueError, TimeoutError) as exc:  # SettingsError is a ValueError; neither echoes a secret
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(result.summary(out))
