"""The `fmlc` command. Thin: parse arguments, call the packages. Heavy imports stay inside the
commands so that `fmlc --help` is instant and `fmlc predict` never loads training code."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FMLC: multi-label classification of Chinese internet-finance complaints.")
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., object])


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False) -> None:
    _state["debug"] = debug


def _user_errors(command: F) -> F:
    """Errors in what the user gave (data, artifact, file, setting) end the command with their own
    one-line message on stderr and exit code 2; `fmlc --debug ...` lets the traceback through."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        # training.data.DataError and fmlc.artifact.ArtifactError are ValueErrors whose message
        # already names the file (and line and field); not imported here, so that `fmlc predict`
        # never loads training code.
        except (ValueError, FileNotFoundError) as exc:
            if _state["debug"]:
                raise
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
def synth(n: Annotated[int, typer.Option(help="number of complaints")] = 10_000,
          seed: Annotated[int, typer.Option()] = 0,
          out: Annotated[Path, typer.Option(help="JSONL file to write")] = Path("data/synth.jsonl")) -> None:
    """Write the synthetic complaint set (the embedded default) as JSONL."""
    from training.synth import write_jsonl

    write_jsonl(out, n, seed)
    typer.echo(f"wrote {n} complaints to {out}")


PRESET_HELP = ("default (what every option below falls back to; chosen from measurements, reports/defaults/), "
               "paper (the paper's Adam lr 1e-4 constant for 10 epochs) or small (64 dimensions, lr 3e-3, "
               "at most 15 epochs: the demo's)")
FROM_PRESET = "unset: the preset's value"


@app.command()
@_user_errors
def train(
    data: Annotated[Path, typer.Option(help="JSONL/CSV file or a directory of JSONL files")],
    out: Annotated[Path, typer.Option(help="artifact directory to write")],
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "default",
    model: Annotated[str | None, typer.Option(help="fmlc | bigru-lwan | caml | zacnn | linear")] = None,
    loss: Annotated[str | None, typer.Option(help="asl | bce")] = None,
    graph: Annotated[str | None, typer.Option(help="cooccurrence | identity")] = None,
    epochs: Annotated[int | None, typer.Option(help="most epochs; early stopping usually ends sooner. "
                                                    + FROM_PRESET)] = None,
    lr: Annotated[float | None, typer.Option(help="Adam's peak learning rate. " + FROM_PRESET)] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="plateau | cosine | constant. " + FROM_PRESET)] = None,
    warmup_epochs: Annotated[float | None, typer.Option(help="linear warm-up, in epochs. " + FROM_PRESET)] = None,
    batch_size: Annotated[int | None, typer.Option(help=FROM_PRESET)] = None,
    embed_dim: Annotated[int | None, typer.Option(help=FROM_PRESET)] = None,
    hidden: Annotated[int | None, typer.Option(help="GRU units per direction (d_c). " + FROM_PRESET)] = None,
    graph_dim: Annotated[int | None, typer.Option(help=FROM_PRESET)] = None,
    max_len: Annotated[int | None, typer.Option(help=FROM_PRESET)] = None,
    seed: Annotated[int, typer.Option()] = 0,
    patience: Annotated[int | None, typer.Option(help="epochs without a better validation macro-F1 before "
                                                      "stopping. " + FROM_PRESET)] = None,
    use_given_split: Annotated[bool, typer.Option(help="use each record's 'split' field")] = False,
    skip_bad: Annotated[bool, typer.Option(help="skip malformed records (counted) instead of stopping")] = False,
    user_dict: Annotated[Path | None, typer.Option(help="jieba user dictionary")] = None,
    freeze_embeddings: Annotated[bool, typer.Option(help="keep the word2vec vectors fixed")] = False,
    w2v_epochs: Annotated[int | None, typer.Option(help="word2vec epochs over the whole corpus")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 is fastest on a busy 2-core box)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train one model and write its artifact (config, vocabulary, graph, thresholds, safetensors)."""
    from training.data import load_path, split_records
    from training.report import print_split_metrics
    from training.trainer import TrainConfig, still_improving
    from training.trainer import train as run_training

    # Options left unset keep the preset's value, so the defaults live in TrainConfig and PRESETS only.
    cfg = TrainConfig.from_preset(
        preset, model=model, loss=loss, graph=graph, epochs=epochs, lr=lr, lr_schedule=lr_schedule,
        warmup_epochs=warmup_epochs, batch_size=batch_size, embed_dim=embed_dim, hidden=hidden, attn_dim=hidden,
        graph_dim=graph_dim, filters=hidden, max_len=max_len, seed=seed, patience=patience, threads=threads,
        user_dict=str(user_dict) if user_dict else None, freeze_embeddings=freeze_embeddings or None,
        w2v_epochs=w2v_epochs, progress=not quiet)
    typer.echo(f"preset {cfg.preset}: {cfg.model}/{cfg.loss}, Adam lr {cfg.lr:g} ({cfg.lr_schedule}, warm-up "
               f"{cfg.warmup_epochs:g} epochs), at most {cfg.epochs} epochs, patience {cfg.patience}, "
               f"batch {cfg.batch_size}")
    loaded = load_path(data, skip_bad=skip_bad)
    _report_load(loaded)
    splits = split_records(loaded.records, seed=seed, use_given=use_given_split)
    typer.echo("split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    for note in splits.notes:
        typer.echo(f"split: {note}", err=True)
    result = run_training(splits, cfg, out)
    print_split_metrics(result.metrics, "test")
    typer.echo(f"model {result.version} written to {out}")
    note = still_improving(result.history, cfg.patience)
    if note:
        typer.echo(note)


def _report_load(loaded: object) -> None:
    skipped, dups = getattr(loaded, "skipped", []), getattr(loaded, "duplicates", [])
    if skipped:
        typer.echo(f"skipped {len(skipped)} bad records, first: {skipped[0]}", err=True)
    if dups:
        typer.echo(f"{len(dups)} records repeat an earlier text, e.g. {dups[0][1]} repeats {dups[0][0]}", err=True)


@app.command()
@_user_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    data: Annotated[Path, typer.Option(help="labelled JSONL/CSV file")],
    out: Annotated[Path | None, typer.Option(help="write the metrics as JSON here")] = None,
    tail_below: Annotated[int, typer.Option()] = 100,
    skip_bad: Annotated[bool, typer.Option()] = False,
) -> None:
    """Score a labelled file with a saved model: metrics at 0.5 and at the model's tuned thresholds."""
    from fmlc import Predictor
    from fmlc.metrics import evaluate as run_eval
    from fmlc.metrics import to_matrix
    from training.data import load_path
    from training.report import print_split_metrics

    predictor = Predictor.load(model)
    loaded = load_path(data, skip_bad=skip_bad)
    _report_load(loaded)
    records = loaded.records
    _warn_unknown_labels([r.labels for r in records], predictor.labels, data)
    scores = predictor.scores(predictor.tokenize([r.text for r in records]))
    y = to_matrix([r.labels for r in records], predictor.labels)
    counts = predictor.artifact.train_counts
    metrics = {"data": {"threshold_0.5": run_eval(y, scores, 0.5, counts, tail_below),
                        "tuned": run_eval(y, scores, predictor.thresholds, counts, tail_below)},
               "model_version": predictor.version}
    for block in metrics["data"].values():
        block.pop("per_label_f1", None)
    print_split_metrics(metrics, "data")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, ensure_ascii=False, indent=1))


def _warn_unknown_labels(label_sets: list, known: list[str], data: Path) -> None:
    """Labels the model cannot predict drop out of every metric; say how much of the data that is."""
    from fmlc.metrics import unknown_labels

    unknown = unknown_labels(label_sets, known)
    if not unknown:
        return
    left_out = sum(unknown.values())
    total = sum(len(set(labels)) for labels in label_sets)
    docs = sum(1 for labels in label_sets if labels and not set(labels) & set(known))
    shown = ", ".join(f"{name} ({n})" for name, n in unknown.most_common(10)) + (", ..." if len(unknown) > 10 else "")
    typer.echo(f"warning: {data}: {len(unknown)} labels are unknown to the model: {shown}. Their {left_out} of "
               f"{total} positives ({left_out / total:.1%}) are left out of every metric below; {docs} records have "
               "no label the model knows.", err=True)


@app.command()
@_user_errors
def predict(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    texts: Annotated[list[str], typer.Argument(help="complaint texts")],
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto")] = None,
) -> None:
    """Classify texts; prints one JSON object per text."""
    from fmlc import Predictor

    predictor = Predictor.load(model, device=device)
    for text, pred in zip(texts, predictor.predict(texts), strict=True):
        typer.echo(json.dumps({"text": text, **pred.to_dict(), "model_version": predictor.version},
                              ensure_ascii=False))


@app.command()
@_user_errors
def tokenize(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    texts: Annotated[list[str], typer.Argument(help="texts to segment")],
) -> None:
    """Print, as JSON, the tokens the served model sees for each text (normalised, segmented with the
    model's own user dictionary, stop words out, cut at its max length), to debug segmentation."""
    from fmlc import Predictor

    predictor = Predictor.load(model, device="cpu")
    for text, tokens in zip(texts, predictor.tokenize(texts), strict=True):
        typer.echo(json.dumps({"text": text, "tokens": tokens, "model_version": predictor.version},
                              ensure_ascii=False))


@app.command()
@_user_errors
def experiment(
    data: Annotated[Path, typer.Option(help="JSONL file or directory of a labelled set")],
    out: Annotated[Path, typer.Option(help="report directory, e.g. reports/ccks2019_fin")],
    methods: Annotated[str, typer.Option(help="comma list")] = "linear,caml,zacnn,bigru-lwan,fmlc-bce,fmlc-asl,"
                                                                 "fmlc-asl-identity",
    seeds: Annotated[int, typer.Option()] = 3,
    preset: Annotated[str, typer.Option(help="training preset of every run: paper (the paper's comparison), "
                                             "default or small; recorded in the report")] = "paper",
    epochs: Annotated[int | None, typer.Option(help="epochs for recurrent models (unset: the preset's; "
                                                    "paper: 10)")] = None,
    conv_epochs: Annotated[int, typer.Option(help="epochs for convolutional models (paper: 30)")] = 30,
    lr: Annotated[float | None, typer.Option(help="unset: the preset's (paper: 1e-4)")] = None,
    dim: Annotated[int, typer.Option(help="embedding, GRU-per-direction, graph and filter size")] = 300,
    max_docs: Annotated[int | None, typer.Option(help="random subset of this many documents")] = None,
    parent_labels: Annotated[str | None, typer.Option(help="separator; 'a-b' also gets label 'a'")] = None,
    use_given_split: Annotated[bool, typer.Option()] = False,
    peer: Annotated[bool, typer.Option(help="also run LibMultiLabel (bench/setup_libmultilabel.sh)")] = False,
    peer_epochs: Annotated[int | None, typer.Option(help="epoch cap for LibMultiLabel's networks")] = None,
    quick: Annotated[bool, typer.Option(help="2 epochs, one seed: a smoke test of the whole grid")] = False,
    threads: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Train and evaluate every method on one split and one set of vectors; write report.md, results.json
    and plots. Rerunning with the same arguments resumes where it stopped."""
    from training.experiment import ExperimentConfig, run

    base = {"embed_dim": dim, "hidden": dim, "attn_dim": dim, "graph_dim": dim, "filters": dim, "threads": threads}
    if lr is not None:
        base["lr"] = lr
    cfg = ExperimentConfig(data=str(data), out=str(out), methods=[m.strip() for m in methods.split(",") if m.strip()],
                           preset=preset, seeds=1 if quick else seeds, epochs_recurrent=epochs,
                           epochs_convolutional=conv_epochs, quick=quick, max_docs=max_docs,
                           parent_labels=parent_labels, use_given_split=use_given_split, peer=peer,
                           peer_epochs=peer_epochs, base=base)
    results = run(cfg)
    typer.echo(f"report: {out / 'report.md'}")
    gains = results["summary"].get("gains")
    if gains:
        typer.echo(json.dumps(gains, ensure_ascii=False))


@app.command()
def demo(
    reuse_model: Annotated[bool, typer.Option(help="reuse runs/demo/model if it exists")] = False,
    n_train: Annotated[int, typer.Option(help="synthetic complaints to train on")] = 6000,
    n_stream: Annotated[int, typer.Option(help="complaints to stream through the worker")] = 3000,
    preset: Annotated[str, typer.Option(help="training preset of the demo's model")] = "small",
    epochs: Annotated[int | None, typer.Option(help="unset: the preset's")] = None,
    workdir: Annotated[Path, typer.Option()] = Path("runs/demo"),
    serve: Annotated[bool, typer.Option(help="keep the worker up after the summary until Ctrl-C")] = False,
    rate: Annotated[float, typer.Option(help="messages/s to send; 0 = as fast as possible")] = 0.0,
) -> None:
    """The main job on the embedded default: synthesize, train a small FMLC/ASL, start a broker and Redis,
    stream complaints through the worker with a live view, then print a summary."""
    from worker.demo import DemoConfig, run_demo

    raise typer.Exit(run_demo(DemoConfig(workdir=workdir, n_train=n_train, n_stream=n_stream, reuse_model=reuse_model,
                                         preset=preset, epochs=epochs, serve=serve, rate=rate)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def worker(ctx: typer.Context) -> None:
    """Run the streaming worker. Settings come from FMLC_* variables; every non-secret setting is also a
    flag (`fmlc worker --help` lists them, e.g. --model-path, --batch-size, --create-topics true)."""
    from worker.__main__ import main as worker_main

    raise typer.Exit(worker_main(list(ctx.args)))


if __name__ == "__main__":
    app()
