"""The training package's `fmlc` commands: synth, train, evaluate, experiment and the experiment's
report tools (report, results-table, sensitivity, defaults-study). Registered under the `fmlc.commands`
entry-point group; `fmlc.cli` assembles them with the library's own commands.

Options left unset fall back to the configuration classes (TrainConfig and its presets,
ExperimentConfig), so no default is written twice. Training code is imported inside each command,
so that `fmlc --help` stays instant and works where only the worker's dependencies are installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fmlc.cli import user_errors

app = typer.Typer()


def run_as_module(command: str) -> None:
    """`python -m training.MODULE ARGS` runs `fmlc COMMAND ARGS`, for the commands that began as scripts."""
    app(args=[command, *sys.argv[1:]], prog_name="fmlc")


def _given(**options: object) -> dict:
    """The options the user set: None means "unset", so the configuration class's default applies."""
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def synth(n: Annotated[int, typer.Option(help="number of complaints")] = 10_000,
          seed: Annotated[int, typer.Option()] = 0,
          out: Annotated[Path, typer.Option(help="JSONL file to write")] = Path("data/synth.jsonl"),
          stats: Annotated[bool, typer.Option(help="also print statistics of the set (tokenises every text)")]
          = False) -> None:
    """Write the synthetic complaint set (the embedded default) as JSONL."""
    from training.synth import describe, generate, write_jsonl

    write_jsonl(out, n, seed)
    typer.echo(f"wrote {n} complaints to {out}")
    if stats:
        from fmlc.text import Tokenizer

        typer.echo(json.dumps(describe(generate(n, seed), Tokenizer()), ensure_ascii=False, indent=1))


PRESET_HELP = ("default (what every option below falls back to; chosen from measurements, reports/defaults/), "
               "paper (the paper's model, FMLC alone, at Adam lr 1e-4 constant for 10 epochs) or small "
               "(64 dimensions, lr 3e-3, at most 15 epochs: the demo's)")
FROM_PRESET = "unset: the preset's value"


@app.command()
@user_errors
def train(
    data: Annotated[Path, typer.Option(help="JSONL/CSV file or a directory of JSONL files")],
    out: Annotated[Path, typer.Option(help="artifact directory to write")],
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "default",
    model: Annotated[str | None, typer.Option(help="fmlc-wide | fmlc | bigru-lwan | caml | zacnn | linear")] = None,
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
    seed: Annotated[int | None, typer.Option(help=FROM_PRESET)] = None,
    patience: Annotated[int | None, typer.Option(help="epochs without a better validation macro-F1 before "
                                                      "stopping. " + FROM_PRESET)] = None,
    use_given_split: Annotated[bool, typer.Option(help="use each record's 'split' field")] = False,
    skip_bad: Annotated[bool, typer.Option(help="skip malformed records (counted) instead of stopping")] = False,
    corrections: Annotated[Path | None, typer.Option(help="agents' corrections (`fmlc corrections collect`): each "
                                                          "replaces the records with its id or text")] = None,
    user_dict: Annotated[Path | None, typer.Option(help="jieba user dictionary")] = None,
    freeze_embeddings: Annotated[bool, typer.Option(help="keep the word2vec vectors fixed")] = False,
    w2v_epochs: Annotated[int | None, typer.Option(help="word2vec epochs over the whole corpus. "
                                                        + FROM_PRESET)] = None,
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
    records = loaded.records
    if corrections is not None:
        from training.data import apply_corrections

        fixes = load_path(corrections, skip_bad=skip_bad)
        _report_load(fixes)
        records, counts = apply_corrections(records, fixes.records)
        typer.echo(f"corrections: {counts['corrections']} from {corrections} replace {counts['replaced']} training "
                   "records")
    splits = split_records(records, seed=cfg.seed, use_given=use_given_split)
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
@user_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    data: Annotated[Path, typer.Option(help="labelled JSONL/CSV file")],
    out: Annotated[Path | None, typer.Option(help="write the metrics as JSON here")] = None,
    tail_below: Annotated[int | None, typer.Option(help="labels with fewer training examples are the tail. "
                                                        "Unset: the training default")] = None,
    skip_bad: Annotated[bool, typer.Option()] = False,
) -> None:
    """Score a labelled file with a saved model: metrics at 0.5 and at the model's tuned thresholds."""
    from fmlc.metrics import evaluate as run_eval
    from fmlc.metrics import to_matrix
    from fmlc.predictor import Predictor
    from training.data import load_path
    from training.report import print_split_metrics
    from training.trainer import TrainConfig

    tail_below = TrainConfig.tail_below if tail_below is None else tail_below
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
@user_errors
def experiment(
    data: Annotated[Path, typer.Option(help="JSONL file or directory of a labelled set")],
    out: Annotated[Path, typer.Option(help="report directory, e.g. reports/ccks2019_fin")],
    methods: Annotated[str | None, typer.Option(help="comma list; unset: every method")] = None,
    seeds: Annotated[int | None, typer.Option(help="unset: the experiment's default (3)")] = None,
    preset: Annotated[str | None, typer.Option(help="training preset of every run: paper (the paper's comparison), "
                                                    "default or small; recorded in the report. Unset: paper")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs for recurrent models (unset: the preset's; "
                                                    "paper: 10)")] = None,
    conv_epochs: Annotated[int | None, typer.Option(help="epochs for convolutional models (unset: the "
                                                         "paper's 30)")] = None,
    lr: Annotated[float | None, typer.Option(help="unset: the preset's (paper: 1e-4)")] = None,
    dim: Annotated[int | None, typer.Option(help="embedding, GRU-per-direction, graph and filter size "
                                                 "(unset: the training default, 300)")] = None,
    max_docs: Annotated[int | None, typer.Option(help="random subset of this many documents")] = None,
    parent_labels: Annotated[str | None, typer.Option(help="separator; 'a-b' also gets label 'a'")] = None,
    use_given_split: Annotated[bool, typer.Option()] = False,
    peer: Annotated[bool, typer.Option(help="also run LibMultiLabel (training/peer/setup_libmultilabel.sh)")]
    = False,
    peer_epochs: Annotated[int | None, typer.Option(help="epoch cap for LibMultiLabel's networks")] = None,
    quick: Annotated[bool, typer.Option(help="2 epochs, one seed: a smoke test of the whole grid")] = False,
    threads: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Train and evaluate every method on one split and one set of vectors; write report.md, results.json
    and plots. Rerunning with the same arguments resumes where it stopped."""
    from fmlc.models.config import ModelConfig
    from training.experiment import ExperimentConfig, run

    dim = ModelConfig.embed_dim if dim is None else dim
    base = {"embed_dim": dim, "hidden": dim, "attn_dim": dim, "graph_dim": dim, "filters": dim, "threads": threads}
    if lr is not None:
        base["lr"] = lr
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None
    cfg = ExperimentConfig(data=str(data), out=str(out), epochs_recurrent=epochs, quick=quick, max_docs=max_docs,
                           parent_labels=parent_labels, use_given_split=use_given_split, peer=peer,
                           peer_epochs=peer_epochs, base=base,
                           **_given(preset=preset, methods=chosen, seeds=1 if quick else seeds,
                                    epochs_convolutional=conv_epochs))
    results = run(cfg)
    typer.echo(f"report: {out / 'report.md'}")
    gains = results["summary"].get("gains")
    if gains:
        typer.echo(json.dumps(gains, ensure_ascii=False))


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Argument(help="report folder holding results.json, e.g. reports/ccks2019_fin")],
    rescore_peer: Annotated[bool, typer.Option(help="score LibMultiLabel's saved outputs (peer/*.npz) again")]
    = False,
    graph_stats: Annotated[bool, typer.Option(help="recompute the label-graph statistics from the split")] = False,
) -> None:
    """Re-render an experiment's report.md and plots from its results.json (e.g. of a grid still running
    or cut short)."""
    from training.experiment import rerender

    rerender(out, peer=rescore_peer, graph=graph_stats)
    typer.echo(f"wrote {out / 'report.md'}")


@app.command("results-table")
@user_errors
def results_table(
    reports: Annotated[list[Path], typer.Argument(help="report folders holding results.json")],
    names: Annotated[str | None, typer.Option(help="comma list of column titles, one per report "
                                                   "(unset: the folder names)")] = None,
) -> None:
    """One markdown table across experiment reports: macro-F1 and tail macro-F1 per method and data set."""
    from training.results_table import table

    typer.echo(table(reports, names.split(",") if names else None))


@app.command()
@user_errors
def sensitivity(
    out: Annotated[Path, typer.Option(help="folder for sensitivity.json, .md and .png")],
    data: Annotated[str | None, typer.Option(help="labelled set (required unless --render-only)")] = None,
    parent_labels: Annotated[str | None, typer.Option()] = None,
    max_docs: Annotated[int | None, typer.Option()] = None,
    seeds: Annotated[int | None, typer.Option(help="unset: 1")] = None,
    epochs: Annotated[int | None, typer.Option(help="unset: 10")] = None,
    lr: Annotated[float | None, typer.Option(help="unset: 1e-3")] = None,
    dim: Annotated[int | None, typer.Option(help="unset: the training default, 300")] = None,
    threads: Annotated[int | None, typer.Option(help="unset: 1")] = None,
    variants: Annotated[str | None, typer.Option(help="comma list of variant names (unset: all)")] = None,
    render_only: Annotated[bool, typer.Option(help="rewrite sensitivity.md/.png from sensitivity.json")] = False,
) -> None:
    """How FMLC/ASL's validation macro-F1 moves with its loss and graph settings (validation only, on
    the experiment's split)."""
    from training import sensitivity as study

    if render_only:
        study.render(out)
        return
    if not data:
        raise ValueError("--data is required (unless --render-only)")
    study.run_options(data, out, parent_labels=parent_labels, max_docs=max_docs,
                      variants=[v.strip() for v in variants.split(",")] if variants else None,
                      **_given(seeds=seeds, epochs=epochs, lr=lr, dim=dim, threads=threads))


@app.command()
@user_errors
def curves(
    data: Annotated[str | None, typer.Option(help="JSONL/CSV file or a directory of JSONL files")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (results.json, report.md, curves.png)")] = None,
    index: Annotated[Path | None, typer.Option(help="only write FOLDER/README.md: one table over the curves "
                                                    "reports in FOLDER")] = None,
    sizes: Annotated[str, typer.Option(help="training documents per point, comma-separated; 'all' for the "
                                            "whole training split")] = "1000,2000,5000,all",
    seeds: Annotated[int, typer.Option(help="seeds per point")] = 1,
    parent_labels: Annotated[str | None, typer.Option(help="separator: a label 'a-b' also gets 'a'")] = None,
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "default",
    threads: Annotated[int | None, typer.Option(help="torch threads (1 keeps runs comparable)")] = 1,
    embed_dim: Annotated[int | None, typer.Option(help="word vector size; " + FROM_PRESET)] = None,
    epochs: Annotated[int | None, typer.Option(help="most epochs; " + FROM_PRESET)] = None,
) -> None:
    """Test macro-F1 and tail macro-F1 against the number of training documents: linear TF-IDF,
    FMLC/ASL and FMLC wide & deep, one wide & deep run per point (training.curves)."""
    from training import curves as curves_mod

    if index is not None:
        curves_mod.write_index(index)
        typer.echo(f"wrote {index / 'README.md'}")
        return
    if data is None or out is None:
        raise typer.BadParameter("give --data and --out (or --index FOLDER)")
    base = _given(threads=threads, epochs=epochs)
    if embed_dim is not None:
        base |= {"embed_dim": embed_dim, "hidden": embed_dim, "attn_dim": embed_dim, "graph_dim": embed_dim}
    cfg = curves_mod.CurvesConfig(data=data, out=str(out), sizes=curves_mod.parse_sizes(sizes), seeds=seeds,
                                  parent_labels=parent_labels, preset=preset, base=base)
    curves_mod.run(cfg)
    typer.echo(f"wrote {out / 'report.md'}")


@app.command("blend-study")
@user_errors
def blend_study(
    scores: Annotated[list[Path], typer.Argument(help="saved probabilities of wide & deep runs "
                                                      "(split/scores/*.npz of `fmlc experiment` or `fmlc curves`)")],
    out: Annotated[Path | None, typer.Option(help="write the table to this markdown file (unset: print it)")] = None,
    tail_below: Annotated[int, typer.Option(help="a label is tail below this many training documents")] = 100,
) -> None:
    """Each way of blending FMLC wide & deep's paths, out of fold on validation and on test, from saved
    probabilities: does the blend's rule pick the way that is best on test? (training.blend_study)"""
    from training.blend_study import render

    text = render(scores, tail_below)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("defaults-study")
@user_errors
def defaults_study(
    data: Annotated[str | None, typer.Option(help="JSONL/CSV file, directory, or synth:N:SEED")] = None,
    out: Annotated[Path | None, typer.Option()] = None,
    variants: Annotated[str, typer.Option(help="comma list of variant names (see training/defaults_study.py)")]
    = "defaults",
    threads: Annotated[int | None, typer.Option(help="unset: 1")] = None,
    seed: Annotated[int | None, typer.Option(help="unset: the training default")] = None,
    reference: Annotated[str | None, typer.Option(help="an experiment grid on the same split, e.g. "
                                                       "reports/ccks2019_fin")] = None,
    render: Annotated[list[Path] | None, typer.Option(help="re-render a finished study folder (repeatable)")]
    = None,
    index: Annotated[Path | None, typer.Option(help="write FOLDER/README.md from the studies under FOLDER")] = None,
) -> None:
    """Train the default settings (and variants) on one split, beside the paper's settings; writes
    results, a report and learning curves. --render and --index rewrite finished studies."""
    from training import defaults_study as study

    if render or index:
        for folder in render or []:
            study.render(folder)
        if index:
            study.index(index)
        return
    if not data or not out:
        raise ValueError("--data and --out are required (unless --render or --index)")
    study.run(data, out, [v.strip() for v in variants.split(",") if v.strip()], reference=reference,
              **_given(threads=threads, seed=seed))


@app.command()
@user_errors
def promote(
    candidate: Annotated[Path, typer.Option(help="the new model's artifact directory")],
    current: Annotated[Path, typer.Option(help="the served model (its directory, or the link itself)")],
    data: Annotated[Path, typer.Option(help="held-out labelled JSONL/CSV, used by neither model's training")],
    link: Annotated[Path, typer.Option(help="the symlink the workers serve from, e.g. models/current")],
    min_gain: Annotated[float, typer.Option(help="least macro-F1 gain (points) the candidate must show")] = 0.0,
    max_tail_loss: Annotated[float, typer.Option(help="most tail macro-F1 (points) the candidate may lose")] = 1.0,
    tail_below: Annotated[int, typer.Option(help="tail labels: fewer training examples than this")] = 100,
) -> None:
    """Evaluate the candidate against the served model on the same held-out data and swap --link to the
    candidate only if it passes the gate. Exit 0: promoted; 3: refused; any other code: it failed."""
    from fmlc.predictor import Predictor
    from training.data import load_path
    from training.promote import PROMOTED, REFUSED, Gate, compare, render, swap_link

    gate = Gate(min_gain=min_gain, max_tail_loss=max_tail_loss)
    loaded = load_path(data)
    _report_load(loaded)
    records = loaded.records
    # A bad artifact or data file ends the command with exit 2 (user_errors): neither 0 nor 3.
    result = compare(Predictor.load(candidate), Predictor.load(current), [r.text for r in records],
                     [r.labels for r in records], tail_below=tail_below)
    refusals = gate.reasons_to_refuse(result)
    typer.echo(render(result, refusals))
    if refusals:
        typer.echo(f"not promoted: {link} still points at {link.resolve() if link.exists() else 'nothing'}")
        raise typer.Exit(REFUSED)
    swap_link(link, candidate)
    typer.echo(f"promoted: {link} -> {candidate.resolve()}")
    raise typer.Exit(PROMOTED)
